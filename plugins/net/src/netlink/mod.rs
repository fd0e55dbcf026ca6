//! Synchronous rtnetlink for the short-lived CNI plugins.
//!
//! Built on `netlink-packet-route` + `netlink-sys` without an async runtime (netavark's
//! experience: faster start-up and a smaller binary than async rtnetlink for a process that
//! makes a few dozen requests and exits). The pieces:
//! - [`Netns`]: open a namespace by path; run a closure on a dedicated thread inside it.
//! - [`Handle`]: a route-netlink socket created inside a namespace once and then used from
//!   the caller's thread. Its methods cover links ([`Link`], veth pairs with the peer placed
//!   straight into another namespace, bridges, bridge-port attributes, bridge VLANs),
//!   addresses ([`Address`]), routes ([`Route`], with `onlink`), neighbour and FDB entries
//!   ([`Neighbour`], [`FdbEntry`]) and VXLAN devices ([`VxlanOptions`]) for the daemon.
//! - [`sysctl`]: `/proc/sys` reads and writes resolved in the right namespace.
//!
//! Errors ([`NetlinkError`]) name the object and carry the kernel's errno, rendered the way
//! the reference plugins print it: `add address 10.1.2.1/24 to br-test: file exists`.
//! Interrupted dumps (`NLM_F_DUMP_INTR`) are retried.

mod addr;
mod bridge;
mod error;
mod handle;
mod link;
mod mac;
mod neigh;
mod ns;
mod route;
pub mod sysctl;
mod vxlan;

pub use addr::{AddrScope, Address, Family};
pub use bridge::BridgeVlan;
pub use error::{Errno, NetlinkError, Result};
pub use handle::Handle;
pub use link::{BridgeOptions, BridgePort, Link, OperState, VethOptions};
pub use mac::{MacAddr, ParseMacError};
pub use neigh::{FdbEntry, Neighbour};
pub use ns::Netns;
pub use route::{PROTO_BOOT, PROTO_KERNEL, Route, RouteScope, TABLE_LOCAL, TABLE_MAIN};
pub use vxlan::{VxlanInfo, VxlanOptions};
