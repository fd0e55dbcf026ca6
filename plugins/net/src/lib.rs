//! Kernel plumbing shared by the CNI plugins and (later) the daemon.
//!
//! Two halves, each behind a small synchronous API so short-lived plugins pay no async
//! runtime start-up:
//! - [`netlink`]: network namespaces, links (veth, bridge), addresses, routes, neighbours and
//!   sysctls over `netlink-packet-route` + `netlink-sys`. Sockets are opened inside a target
//!   namespace once and then used from the caller's thread; `setns` happens only on a
//!   dedicated short-lived thread.
//! - [`nft`]: nftables transactions through `nftnl` (one atomic batch per change) and the
//!   listing needed to find rules we own.
//! - [`conntrack`]: finding and deleting tracked flows (stale UDP entries after a port
//!   mapping changes) over ctnetlink.
//!
//! No function here forks `ip`, `iptables` or `nft`.

pub mod conntrack;
pub mod netlink;
pub mod nft;
