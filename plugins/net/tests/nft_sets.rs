//! Named sets, verdict maps and the policy statements against the real kernel, inside
//! throwaway namespaces: what we write reads back identically through our lister and as
//! expected through `nft list`; `nft` accepts our transaction scripts; kernel errors name the
//! set; and a policy engine's full-size batch commits in one go.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use twill_net::nft::{
    self, AddrField, BaseChain, Chain, ChainType, CmpOp, CtState, Family, Field, Hook, KeyPart,
    KeyType, L4Proto, LimitUnit, PortField, Rule, Set, SetElem, Stmt, Table, TableRef, Transaction,
    Verdict,
};
use twill_testutil::{Netns, require_tool};

fn run<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    twill_net::netlink::Netns::open(ns.path())
        .unwrap()
        .run(f)
        .unwrap()
}

fn nft_list(ns: &Netns, t: &TableRef) -> String {
    require_tool("nft", "nftables");
    ns.exec_ok(&["nft", "list", "table", t.family.as_str(), &t.name])
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn addr(s: &str) -> KeyPart {
    KeyPart::Addr(ip(s))
}

fn apply(t: &Table) -> Transaction {
    let r = TableRef::new(t.family, &t.name);
    let mut tx = Transaction::new();
    tx.add_table(&r);
    for c in &t.chains {
        tx.add_chain(&r, &c.name, c.base);
    }
    for s in &t.sets {
        tx.add_set(&r, s);
    }
    for c in &t.chains {
        for rule in &c.rules {
            tx.add_rule(&r, &c.name, rule.clone());
        }
    }
    tx
}

/// An inet table with every kind of set and map and every new statement.
fn policy_table() -> Table {
    let mut s = Set::new("s", vec![KeyType::Ipv4Addr]);
    s.comment = Some("pods of ns a".into());
    s.elements = vec![
        SetElem::key(vec![addr("10.0.0.1")]),
        SetElem::key(vec![addr("10.0.0.2")]),
    ];
    let mut c3 = Set::new(
        "c3",
        vec![KeyType::Ipv4Addr, KeyType::InetProto, KeyType::InetService],
    );
    c3.elements = vec![SetElem::key(vec![
        addr("10.0.0.1"),
        KeyPart::Proto(6),
        KeyPart::Port(80),
    ])];
    let mut c6 = Set::new(
        "c6",
        vec![KeyType::Ipv6Addr, KeyType::InetProto, KeyType::InetService],
    );
    c6.elements = vec![SetElem::key(vec![
        addr("2001:db8::1"),
        KeyPart::Proto(17),
        KeyPart::Port(53),
    ])];
    let mut p = Set::new("p", vec![KeyType::InetProto]);
    p.elements = vec![
        SetElem::key(vec![KeyPart::Proto(6)]),
        SetElem::key(vec![KeyPart::Proto(17)]),
    ];
    let mut sv = Set::new("sv", vec![KeyType::InetService]);
    sv.elements = vec![
        SetElem::key(vec![KeyPart::Port(80)]),
        SetElem::key(vec![KeyPart::Port(443)]),
    ];
    let empty6 = Set::new("e6", vec![KeyType::Ipv6Addr]);
    let mut m = Set::vmap("m", vec![KeyType::Ipv4Addr]);
    m.comment = Some("ingress".into());
    m.elements = vec![
        SetElem::map(vec![addr("10.0.0.1")], Verdict::Jump("c".into())),
        SetElem::map(vec![addr("10.0.0.2")], Verdict::Accept),
    ];
    let mut n = Set::vmap("n", vec![KeyType::Ipv4Addr, KeyType::InetService]);
    n.elements = vec![SetElem::map(
        vec![addr("10.0.0.3"), KeyPart::Port(8080)],
        Verdict::Goto("c".into()),
    )];
    let mut r = Chain::base("r", BaseChain::new(ChainType::Filter, Hook::Forward, 0));
    r.rules = vec![
        Rule::new(vec![
            Stmt::ct_state(&[CtState::Related, CtState::Established]),
            Stmt::Verdict(Verdict::Accept),
        ]),
        Rule::new(vec![
            Stmt::ct_state(&[CtState::Invalid]),
            Stmt::Verdict(Verdict::Drop),
        ]),
        Rule::new(vec![
            Stmt::lookup(&[Field::IpSaddr], "s"),
            Stmt::Counter {
                packets: 0,
                bytes: 0,
            },
        ]),
        Rule::new(vec![Stmt::Lookup {
            fields: vec![Field::IpSaddr],
            set: "s".into(),
            negate: true,
        }])
        .with_comment("not a"),
        Rule::new(vec![
            Stmt::lookup(&[Field::IpDaddr, Field::L4Proto, Field::ThDport], "c3"),
            Stmt::Verdict(Verdict::Accept),
        ]),
        Rule::new(vec![
            Stmt::lookup(&[Field::Ip6Daddr, Field::L4Proto, Field::ThDport], "c6"),
            Stmt::Verdict(Verdict::Accept),
        ]),
        Rule::new(vec![Stmt::lookup(&[Field::L4Proto], "p")]),
        Rule::new(vec![Stmt::lookup(&[Field::ThDport], "sv")]),
        Rule::new(vec![Stmt::Vmap {
            fields: vec![Field::IpDaddr],
            map: "m".into(),
        }]),
        Rule::new(vec![Stmt::Vmap {
            fields: vec![Field::IpDaddr, Field::ThDport],
            map: "n".into(),
        }]),
        Rule::new(vec![Stmt::lookup(&[Field::Ip6Saddr], "e6")]),
        Rule::new(vec![
            Stmt::PortRange {
                proto: L4Proto::Tcp,
                field: PortField::Dport,
                lo: 1000,
                hi: 2000,
            },
            Stmt::Limit {
                rate: 10,
                per: LimitUnit::Second,
                burst: 5,
            },
            Stmt::Verdict(Verdict::Accept),
        ]),
        Rule::new(vec![
            Stmt::PortRange {
                proto: L4Proto::Udp,
                field: PortField::Sport,
                lo: 53,
                hi: 53,
            },
            Stmt::Limit {
                rate: 3,
                per: LimitUnit::Minute,
                burst: 7,
            },
        ]),
        Rule::new(vec![
            Stmt::ip(AddrField::Saddr, CmpOp::Eq, "10.1.0.0/16".parse().unwrap()),
            Stmt::Log {
                prefix: Some("twill drop ".into()),
                group: Some(100),
            },
            Stmt::Verdict(Verdict::Drop),
        ]),
        Rule::new(vec![Stmt::Log {
            prefix: None,
            group: None,
        }]),
        Rule::new(vec![Stmt::Log {
            prefix: Some("p".into()),
            group: None,
        }]),
    ];
    Table {
        family: Family::Inet,
        name: "twill_policy".into(),
        chains: vec![Chain::regular("c"), r],
        sets: vec![s, c3, c6, p, sv, empty6, m, n],
    }
}

#[test]
fn sets_maps_and_policy_statements_read_back_identically() {
    let ns = Netns::new("nftset");
    let t = policy_table();
    let r = TableRef::new(t.family, &t.name);
    run(&ns, || apply(&t).commit()).unwrap();
    let listed = nft_list(&ns, &r);
    println!("{listed}");
    let back = run(&ns, || nft::read_table(&r)).unwrap().unwrap();
    assert_eq!(back, t, "typed read-back");
    assert_eq!(listed, t.to_string(), "nft's view");
}
