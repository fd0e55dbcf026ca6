//! Conntrack listing and deletion against the real kernel, in a throwaway namespace.

#![allow(clippy::unwrap_used)]

use twill_net::conntrack::{self, Family, UDP};
use twill_net::nft::{
    BaseChain, ChainType, Family as NftFamily, Hook, L4Proto, Rule, Stmt, TableRef, Transaction,
};
use twill_testutil::traffic::{Proto, Server, ask_from};
use twill_testutil::{Netns, require_tool};

mod common;
use common::run;

/// Conntrack only tracks a namespace once a rule needs it: a NAT statement does.
fn enable_conntrack(ns: &Netns) {
    let t = TableRef::new(NftFamily::Ip, "ct");
    let mut tx = Transaction::new();
    tx.add_table(&t)
        .add_chain(
            &t,
            "out",
            Some(BaseChain::new(ChainType::Nat, Hook::Output, -100)),
        )
        .add_rule(
            &t,
            "out",
            Rule::new(vec![
                Stmt::dport(L4Proto::Tcp, 1),
                Stmt::Dnat {
                    addr: "127.0.0.1".parse().unwrap(),
                    port: Some(1),
                },
            ]),
        );
    run(ns, || tx.commit()).unwrap();
}

#[test]
fn udp_flows_are_listed_and_deleted_by_destination_port() {
    require_tool("conntrack", "conntrack");
    let ns = Netns::new("ct");
    enable_conntrack(&ns);
    let _a = Server::start(&ns, Proto::Udp, "127.0.0.1", 5301, "a");
    let _b = Server::start(&ns, Proto::Udp, "127.0.0.1", 5302, "b");
    assert_eq!(
        ask_from(&ns, Proto::Udp, "127.0.0.1", 5301, 40001).unwrap(),
        "a 127.0.0.1"
    );
    assert_eq!(
        ask_from(&ns, Proto::Udp, "127.0.0.1", 5302, 40002).unwrap(),
        "b 127.0.0.1"
    );

    let udp_dports = |ns: &Netns| -> Vec<u16> {
        let mut v: Vec<u16> = run(ns, || conntrack::flows(Family::V4))
            .unwrap()
            .into_iter()
            .filter(|f| f.proto == UDP)
            .map(|f| f.dport)
            .collect();
        v.sort();
        v
    };
    assert_eq!(udp_dports(&ns), vec![5301, 5302]);
    let tool = ns.exec_ok(&["conntrack", "-L", "-p", "udp"]);
    assert!(tool.contains("dport=5301"), "{tool}");

    let n = run(&ns, || {
        conntrack::delete_by_dport(Family::V4, UDP, &[5301, 9999])
    })
    .unwrap();
    assert_eq!(n, 1);
    assert_eq!(udp_dports(&ns), vec![5302]);
    let tool = ns.exec_ok(&["conntrack", "-L", "-p", "udp"]);
    assert!(
        !tool.contains("dport=5301") && tool.contains("dport=5302"),
        "{tool}"
    );
    // Nothing left to delete is fine, and IPv6 has its own table.
    assert_eq!(
        run(&ns, || conntrack::delete_by_dport(Family::V4, UDP, &[5301])).unwrap(),
        0
    );
    assert_eq!(
        run(&ns, || conntrack::delete_by_dport(Family::V6, UDP, &[5302])).unwrap(),
        0
    );
    assert_eq!(udp_dports(&ns), vec![5302]);
}
