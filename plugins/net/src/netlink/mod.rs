//! Netlink: namespaces, links, addresses, routes, sysctls (being written).
