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

mod common;
use common::{nft_list, run};

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

/// The batch a policy engine sends for a large cluster: 5,000 sets (half plain address sets,
/// half `ipv4_addr . inet_proto . inet_service` concatenations) with 100,000 elements, a
/// verdict map dispatching to 500 chains, and 10,000 rules, all in one transaction.
#[test]
fn a_policy_sized_batch_commits_in_one_transaction() {
    const SETS: usize = 5_000;
    const PER_SET: usize = 20;
    const CHAINS: usize = 500;
    const RULES: usize = 10_000;
    let ns = Netns::new("nftbig");
    let t = TableRef::new(Family::Inet, "twill_policy");
    let built = std::time::Instant::now();
    let mut tx = Transaction::new();
    tx.add_table(&t);
    for c in 0..CHAINS {
        tx.add_chain(&t, &format!("pol{c}"), None);
    }
    for i in 0..SETS {
        let base = |j: usize| {
            KeyPart::Addr(IpAddr::from([
                10,
                (i / 256) as u8,
                (i % 256) as u8,
                j as u8 + 1,
            ]))
        };
        let set = if i % 2 == 0 {
            let mut s = Set::new(&format!("s{i}"), vec![KeyType::Ipv4Addr]);
            s.elements = (0..PER_SET).map(|j| SetElem::key(vec![base(j)])).collect();
            s
        } else {
            let mut s = Set::new(
                &format!("s{i}"),
                vec![KeyType::Ipv4Addr, KeyType::InetProto, KeyType::InetService],
            );
            s.elements = (0..PER_SET)
                .map(|j| {
                    SetElem::key(vec![
                        base(j),
                        KeyPart::Proto(6),
                        KeyPart::Port(80 + j as u16),
                    ])
                })
                .collect();
            s
        };
        tx.add_set(&t, &set);
    }
    let mut dispatch = Set::vmap("dispatch", vec![KeyType::Ipv4Addr]);
    dispatch.elements = (0..CHAINS)
        .map(|c| {
            SetElem::map(
                vec![KeyPart::Addr(IpAddr::from([
                    10,
                    200,
                    (c / 256) as u8,
                    (c % 256) as u8,
                ]))],
                Verdict::Jump(format!("pol{c}")),
            )
        })
        .collect();
    tx.add_set(&t, &dispatch);
    tx.add_chain(
        &t,
        "forward",
        Some(BaseChain::new(ChainType::Filter, Hook::Forward, 0)),
    );
    tx.add_rule(
        &t,
        "forward",
        Rule::new(vec![Stmt::Vmap {
            fields: vec![Field::IpDaddr],
            map: "dispatch".into(),
        }]),
    );
    for r in 0..RULES - 1 {
        let set = format!("s{}", r % SETS);
        let stmt = if (r % SETS).is_multiple_of(2) {
            Stmt::lookup(&[Field::IpSaddr], &set)
        } else {
            Stmt::lookup(&[Field::IpDaddr, Field::L4Proto, Field::ThDport], &set)
        };
        tx.add_rule(
            &t,
            &format!("pol{}", r % CHAINS),
            Rule::new(vec![stmt, Stmt::Verdict(Verdict::Accept)]),
        );
    }
    let built = built.elapsed();
    let committed = std::time::Instant::now();
    run(&ns, || tx.commit()).unwrap();
    let committed = committed.elapsed();

    let listed = std::time::Instant::now();
    let back = run(&ns, || nft::read_table(&t)).unwrap().unwrap();
    let listed = listed.elapsed();
    let elements: usize = back.sets.iter().map(|s| s.elements.len()).sum();
    let rules: usize = back.chains.iter().map(|c| c.rules.len()).sum();
    println!(
        "policy-sized batch: {} sets, {elements} elements, {rules} rules: built in {built:?}, committed in {committed:?}, read back in {listed:?}",
        back.sets.len()
    );
    assert_eq!(back.sets.len(), SETS + 1);
    assert_eq!(elements, SETS * PER_SET + CHAINS);
    assert_eq!(rules, RULES);
    assert_eq!(back.set("s4999").unwrap().elements.len(), PER_SET);
    // nft agrees on a sample.
    let text = ns.exec_ok(&["nft", "list", "set", "inet", "twill_policy", "s4999"]);
    assert!(text.contains("10.19.135.20 . tcp . 99"), "{text}");
}

/// A transaction using every set operation, as a script and as a batch.
fn set_ops(t: &TableRef) -> Transaction {
    let mut tx = Transaction::new();
    tx.add_table(t)
        .add_chain(t, "c", None)
        .add_chain(t, "d", None);
    let mut s = Set::new("s", vec![KeyType::Ipv4Addr]);
    s.comment = Some("peers".into());
    s.elements = vec![
        SetElem::key(vec![addr("10.0.0.1")]),
        SetElem::key(vec![addr("10.0.0.2")]),
    ];
    tx.add_set(t, &s);
    let mut m = Set::vmap("m", vec![KeyType::Ipv4Addr]);
    m.elements = vec![SetElem::map(
        vec![addr("10.0.0.1")],
        Verdict::Jump("c".into()),
    )];
    tx.add_set(t, &m);
    let c3 = Set::new(
        "c3",
        vec![KeyType::Ipv4Addr, KeyType::InetProto, KeyType::InetService],
    );
    tx.add_set(t, &c3);
    tx.add_elements(
        t,
        "c3",
        &[
            SetElem::key(vec![addr("10.0.0.1"), KeyPart::Proto(6), KeyPart::Port(80)]),
            SetElem::key(vec![
                addr("10.0.0.1"),
                KeyPart::Proto(132),
                KeyPart::Port(80),
            ]),
        ],
    );
    tx.add_elements(
        t,
        "m",
        &[
            SetElem::map(vec![addr("10.0.0.2")], Verdict::Goto("d".into())),
            SetElem::map(vec![addr("10.0.0.3")], Verdict::Drop),
        ],
    );
    tx.add_set(t, &Set::new("gone", vec![KeyType::InetService]));
    tx.add_set(t, &Set::vmap("gone_map", vec![KeyType::InetService]));
    tx.delete_elements(t, "s", &[SetElem::key(vec![addr("10.0.0.2")])]);
    tx.delete_elements(
        t,
        "m",
        &[SetElem::map(
            vec![addr("10.0.0.2")],
            Verdict::Goto("d".into()),
        )],
    );
    tx.delete_chain(t, "d");
    tx.flush_set(t, "c3");
    tx.flush_set(t, "gone_map");
    tx.delete_set(t, "gone").delete_set(t, "gone_map");
    tx.add_rule(
        t,
        "c",
        Rule::new(vec![
            Stmt::lookup(&[Field::IpSaddr], "s"),
            Stmt::Vmap {
                fields: vec![Field::IpDaddr],
                map: "m".into(),
            },
        ]),
    );
    tx
}

#[test]
fn nft_accepts_our_scripts_and_builds_what_we_build() {
    require_tool("nft", "nftables");
    let t = TableRef::new(Family::Inet, "twill_policy");
    let tx = set_ops(&t);
    let script = tx.to_string();
    println!("{script}");
    let file = std::env::temp_dir().join(twill_testutil::unique("twill-nft-"));
    std::fs::write(&file, &script).unwrap();
    let by_nft = Netns::new("nftscr");
    let check = by_nft.exec(&["nft", "-c", "-f", file.to_str().unwrap()]);
    let applied = by_nft.exec(&["nft", "-f", file.to_str().unwrap()]);
    std::fs::remove_file(&file).unwrap();
    for out in [check, applied] {
        assert!(
            out.status.success(),
            "nft refused our script: {}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let by_us = Netns::new("nftscr");
    run(&by_us, || tx.commit()).unwrap();
    let ours = run(&by_us, || nft::read_table(&t)).unwrap().unwrap();
    assert_eq!(run(&by_nft, || nft::read_table(&t)).unwrap().unwrap(), ours);
    assert_eq!(nft_list(&by_nft, &t), nft_list(&by_us, &t));
    let listed = nft_list(&by_us, &t);
    for line in [
        "\tset s {",
        "\t\tcomment \"peers\"",
        "\t\telements = { 10.0.0.1 }",
        "\tmap m {",
        "\t\ttype ipv4_addr : verdict",
        "\t\telements = { 10.0.0.1 : jump c, 10.0.0.3 : drop }",
        "\t\ttype ipv4_addr . inet_proto . inet_service",
        "\t\tip saddr @s ip daddr vmap @m",
    ] {
        assert!(
            listed.lines().any(|l| l == line),
            "{line:?} not in\n{listed}"
        );
    }
    assert!(
        !listed.contains("gone") && !listed.contains("chain d"),
        "{listed}"
    );
    assert_eq!(ours.set("c3").unwrap().elements, vec![]);
}

#[test]
fn rulesets_written_by_nft_read_back_as_rendered() {
    // Our rendering is valid `nft -f` input, and what nft encodes (no concatenation flag,
    // port ranges as two comparisons) lifts to the same model.
    require_tool("nft", "nftables");
    let ns = Netns::new("nftsin");
    let t = policy_table();
    let file = std::env::temp_dir().join(twill_testutil::unique("twill-nft-"));
    std::fs::write(&file, t.to_string()).unwrap();
    let out = ns.exec(&["nft", "-f", file.to_str().unwrap()]);
    std::fs::remove_file(&file).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = TableRef::new(t.family, &t.name);
    assert_eq!(run(&ns, || nft::read_table(&r)).unwrap().unwrap(), t);
    assert_eq!(run(&ns, || nft::list_sets(&r)).unwrap(), t.sets);
}

#[test]
fn set_errors_name_the_set_and_nothing_is_applied() {
    let ns = Netns::new("nftserr");
    let t = TableRef::new(Family::Inet, "twill_policy");
    run(&ns, || {
        let mut tx = Transaction::new();
        tx.add_table(&t).add_chain(&t, "c", None);
        tx.add_elements(&t, "foo", &[SetElem::key(vec![addr("10.0.0.1")])]);
        let e = tx.commit().unwrap_err();
        assert_eq!(
            e.to_string(),
            "add element to set twill_policy/foo: no such file or directory"
        );
        assert!(!nft::table_exists(&t).unwrap());

        let mut tx = Transaction::new();
        tx.add_table(&t).add_chain(&t, "c", None).add_rule(
            &t,
            "c",
            Rule::new(vec![Stmt::lookup(&[Field::IpSaddr], "foo")]),
        );
        let e = tx.commit().unwrap_err();
        assert_eq!(
            e.to_string(),
            "add rule to chain twill_policy/c: no such file or directory"
        );

        // Elements that do not fit a set declared in the transaction fail before the kernel.
        let mut tx = Transaction::new();
        let mut s = Set::new("s", vec![KeyType::Ipv4Addr]);
        s.elements = vec![SetElem::key(vec![addr("2001:db8::1")])];
        tx.add_table(&t).add_set(&t, &s);
        let e = tx.validate().unwrap_err();
        assert_eq!(
            e.to_string(),
            "add element to set twill_policy/s: element 2001:db8::1 does not match type ipv4_addr"
        );
        assert!(tx.commit().is_err());

        // A set a rule uses cannot go; a missing element is a stale delete.
        let mut tx = Transaction::new();
        s.elements = vec![SetElem::key(vec![addr("10.0.0.1")])];
        tx.add_table(&t)
            .add_chain(&t, "c", None)
            .add_set(&t, &s)
            .add_rule(
                &t,
                "c",
                Rule::new(vec![Stmt::lookup(&[Field::IpSaddr], "s")]),
            );
        tx.commit().unwrap();
        let mut tx = Transaction::new();
        tx.delete_set(&t, "s");
        let e = tx.commit().unwrap_err();
        assert_eq!(
            e.to_string(),
            "delete set twill_policy/s: device or resource busy"
        );
        let mut tx = Transaction::new();
        tx.delete_elements(&t, "s", &[SetElem::key(vec![addr("10.9.9.9")])]);
        let e = tx.commit().unwrap_err();
        assert!(e.is_stale_delete(), "{e}");
        assert!(
            e.to_string()
                .starts_with("delete element from set twill_policy/s: "),
            "{e}"
        );
        assert_eq!(nft::list_sets(&t).unwrap(), vec![s.clone()]);
    });
}

#[test]
fn chains_go_after_the_map_elements_that_jump_to_them() {
    let ns = Netns::new("nftsord");
    let t = TableRef::new(Family::Inet, "twill_policy");
    let to_c = SetElem::map(vec![addr("10.0.0.1")], Verdict::Jump("c".into()));
    run(&ns, || {
        let mut m = Set::vmap("m", vec![KeyType::Ipv4Addr]);
        m.elements = vec![to_c.clone()];
        let mut tx = Transaction::new();
        tx.add_table(&t).add_chain(&t, "c", None).add_set(&t, &m);
        tx.commit().unwrap();

        // Wrong order: refused before the kernel sees it.
        let mut tx = Transaction::new();
        tx.delete_chain(&t, "c")
            .delete_elements(&t, "m", std::slice::from_ref(&to_c));
        let e = tx.commit().unwrap_err();
        assert_eq!(
            e.to_string(),
            "delete chain twill_policy/c: must come after delete element from set twill_policy/m, whose element 10.0.0.1 : jump c refers to the chain"
        );
        // Forgotten element: the kernel refuses, naming the chain.
        let mut tx = Transaction::new();
        tx.delete_chain(&t, "c");
        let e = tx.commit().unwrap_err();
        assert_eq!(
            e.to_string(),
            "delete chain twill_policy/c: device or resource busy"
        );
        // A verdict changes by deleting and re-adding the element in one transaction;
        // adding the key with another verdict alone is refused.
        let mut tx = Transaction::new();
        tx.add_elements(
            &t,
            "m",
            &[SetElem::map(vec![addr("10.0.0.1")], Verdict::Drop)],
        );
        let e = tx.commit().unwrap_err();
        assert!(
            e.to_string()
                .starts_with("add element to set twill_policy/m: "),
            "{e}"
        );
        let mut tx = Transaction::new();
        tx.delete_elements(&t, "m", std::slice::from_ref(&to_c))
            .add_elements(
                &t,
                "m",
                &[SetElem::map(vec![addr("10.0.0.1")], Verdict::Accept)],
            );
        tx.commit().unwrap();
        assert_eq!(
            nft::list_sets(&t).unwrap()[0].elements,
            vec![SetElem::map(vec![addr("10.0.0.1")], Verdict::Accept)]
        );
        // Right order, with the jump back: element and chain go in one batch.
        let mut tx = Transaction::new();
        tx.flush_map(&t, "m")
            .add_elements(&t, "m", std::slice::from_ref(&to_c));
        tx.commit().unwrap();
        let mut tx = Transaction::new();
        tx.delete_elements(&t, "m", std::slice::from_ref(&to_c))
            .delete_chain(&t, "c");
        tx.commit().unwrap();
        assert!(!nft::chain_exists(&t, "c").unwrap());
        assert!(nft::list_sets(&t).unwrap()[0].elements.is_empty());
    });
}

#[test]
fn a_batch_with_thousands_of_failures_reports_the_first() {
    // Every message fails: the kernel queues one error each, which must not be mistaken for
    // success or for a protocol problem, and the first failure is the one reported.
    let ns = Netns::new("nftsfail");
    let t = TableRef::new(Family::Inet, "twill_policy");
    let mut tx = Transaction::new();
    tx.add_elements(&t, "first", &[SetElem::key(vec![addr("10.0.0.1")])]);
    for i in 0..20_000u32 {
        tx.add_rule(
            &t,
            &format!("c{i}"),
            Rule::new(vec![Stmt::Verdict(Verdict::Accept)]),
        );
    }
    let e = run(&ns, || tx.commit()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "add element to set twill_policy/first: no such file or directory"
    );
}
