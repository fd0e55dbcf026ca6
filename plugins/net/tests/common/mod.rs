//! Helpers the nftables kernel tests share: run our netlink/nftables code inside a test
//! namespace, and read a table back with `nft` itself.
#![allow(clippy::unwrap_used, dead_code)]

use twill_net::nft::TableRef;
use twill_testutil::{Netns, require_tool};

/// Runs `f` on a thread inside `ns` (our netlink layer's `Netns::run`).
pub fn run<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    twill_net::netlink::Netns::open(ns.path())
        .unwrap()
        .run(f)
        .unwrap()
}

/// `nft list table` of `t` inside `ns`.
pub fn nft_list(ns: &Netns, t: &TableRef) -> String {
    require_tool("nft", "nftables");
    ns.exec_ok(&["nft", "list", "table", t.family.as_str(), &t.name])
}
