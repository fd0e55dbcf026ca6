//! nftables transactions and listings against the real kernel, inside throwaway namespaces.
//! What we put in is read back two ways: with our own lister (typed) and with `nft list`
//! (text), and both must equal the model we started from.

#![allow(clippy::unwrap_used)]

use twill_net::nft::{
    self, AddrField, BaseChain, Chain, ChainType, CmpOp, Family, Hook, IfField, L4Proto, Policy,
    Rule, Stmt, Table, TableRef, Transaction, Verdict,
};
use twill_testutil::{Netns, require_tool};

mod common;
use common::{nft_list, run};

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

fn sample_tables() -> Vec<Table> {
    let ip = |s: &str| s.parse().unwrap();
    let mut hostports = Chain::regular("hostports");
    hostports.rules = vec![
        Rule::new(vec![
            Stmt::ip_addr(AddrField::Daddr, CmpOp::Eq, ip("192.168.0.2")),
            Stmt::dport(L4Proto::Tcp, 8083),
            Stmt::Dnat {
                addr: ip("10.0.0.2"),
                port: Some(83),
            },
        ])
        .with_comment("abc"),
        Rule::new(vec![
            Stmt::dport(L4Proto::Udp, 8080),
            Stmt::Dnat {
                addr: ip("10.0.0.2"),
                port: Some(81),
            },
        ]),
        Rule::new(vec![
            Stmt::dport(L4Proto::Sctp, 8080),
            Stmt::Dnat {
                addr: ip("10.0.0.2"),
                port: None,
            },
        ]),
    ];
    let mut pre = Chain::base(
        "prerouting",
        BaseChain::new(ChainType::Nat, Hook::Prerouting, -100),
    );
    pre.rules = vec![Rule::new(vec![
        Stmt::FibDaddrLocal,
        Stmt::Verdict(Verdict::Jump("hostports".into())),
    ])];
    let mut out = Chain::base("output", BaseChain::new(ChainType::Nat, Hook::Output, -100));
    out.rules = pre.rules.clone();
    let mut masq = Chain::base(
        "masquerading",
        BaseChain::new(ChainType::Nat, Hook::Postrouting, 100),
    );
    masq.rules = vec![
        Rule::new(vec![
            Stmt::ip(AddrField::Saddr, CmpOp::Neq, "10.1.0.0/20".parse().unwrap()),
            Stmt::ip(AddrField::Daddr, CmpOp::Eq, "10.1.2.0/24".parse().unwrap()),
            Stmt::L4Proto(L4Proto::Tcp),
            Stmt::Masquerade,
        ])
        .with_comment("x y=z"),
    ];
    let mut filt = Chain::base(
        "input",
        BaseChain {
            chain_type: ChainType::Filter,
            hook: Hook::Input,
            priority: 5,
            policy: Policy::Drop,
        },
    );
    filt.rules = vec![
        Rule::new(vec![
            Stmt::Ifname {
                field: IfField::Iifname,
                op: CmpOp::Eq,
                name: "lo".into(),
            },
            Stmt::Verdict(Verdict::Accept),
        ]),
        Rule::new(vec![
            Stmt::ip(
                AddrField::Saddr,
                CmpOp::Eq,
                "2001:db8:0:10::/60".parse().unwrap(),
            ),
            Stmt::Verdict(Verdict::Accept),
        ]),
    ];
    let mut natted = Chain::regular("natted");
    natted.rules = vec![Rule::new(vec![
        Stmt::ip_addr(AddrField::Daddr, CmpOp::Eq, ip("10.0.0.1")),
        Stmt::dport(L4Proto::Tcp, 80),
        Stmt::Dnat {
            addr: ip("10.0.0.2"),
            port: Some(8080),
        },
    ])];
    let mut six = Chain::regular("c");
    six.rules = vec![Rule::new(vec![
        Stmt::ip(
            AddrField::Daddr,
            CmpOp::Neq,
            "2001:db8::/64".parse().unwrap(),
        ),
        Stmt::Ifname {
            field: IfField::Oifname,
            op: CmpOp::Neq,
            name: "eth0".into(),
        },
        Stmt::dport(L4Proto::Tcp, 80),
        Stmt::Dnat {
            addr: ip("2001:db8::2"),
            port: Some(80),
        },
    ])];
    let mut br = Chain::base(
        "prerouting",
        BaseChain::new(ChainType::Filter, Hook::Prerouting, -300),
    );
    br.rules = vec![Rule::new(vec![
        Stmt::Ifname {
            field: IfField::Iifname,
            op: CmpOp::Eq,
            name: "veth1".into(),
        },
        Stmt::EtherSaddr {
            op: CmpOp::Neq,
            mac: [2, 0, 0, 0, 0, 1],
        },
        Stmt::Verdict(Verdict::Drop),
    ])];
    vec![
        Table {
            family: Family::Ip,
            name: "t4".into(),
            chains: vec![hostports, pre, out, masq],
            sets: Vec::new(),
        },
        Table {
            family: Family::Inet,
            name: "ti".into(),
            chains: vec![Chain::regular("empty"), filt, natted],
            sets: Vec::new(),
        },
        Table {
            family: Family::Ip6,
            name: "t6".into(),
            chains: vec![six],
            sets: Vec::new(),
        },
        Table {
            family: Family::Bridge,
            name: "tb".into(),
            chains: vec![br],
            sets: Vec::new(),
        },
    ]
}

#[test]
fn what_we_apply_reads_back_identically() {
    let ns = Netns::new("nftrt");
    for t in sample_tables() {
        let r = TableRef::new(t.family, &t.name);
        run(&ns, || apply(&t).commit()).unwrap();
        let back = run(&ns, || nft::read_table(&r)).unwrap().unwrap();
        assert_eq!(back, t, "typed read-back of {r}");
        assert_eq!(nft_list(&ns, &r), t.to_string(), "nft's view of {r}");
    }
}

#[test]
fn rulesets_written_by_nft_read_back_as_rendered() {
    // Our rendering is valid `nft -f` input, and what nft encodes lifts to the same model.
    let ns = Netns::new("nftin");
    require_tool("nft", "nftables");
    for t in sample_tables() {
        let script = std::env::temp_dir().join(twill_testutil::unique("twill-nft-"));
        std::fs::write(&script, t.to_string()).unwrap();
        let out = ns.exec(&["nft", "-f", script.to_str().unwrap()]);
        std::fs::remove_file(&script).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r = TableRef::new(t.family, &t.name);
        assert_eq!(run(&ns, || nft::read_table(&r)).unwrap().unwrap(), t);
    }
}

#[test]
fn errors_name_the_object_and_nothing_is_applied() {
    let ns = Netns::new("nfterr");
    let t = TableRef::new(Family::Ip, "twill_portmap");
    let mut tx = Transaction::new();
    tx.add_rule(&t, "hostports", Rule::new(vec![Stmt::Masquerade]));
    let e = run(&ns, || tx.commit()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "add rule to chain twill_portmap/hostports: no such file or directory"
    );
    assert!(e.is_not_found());

    // A valid table and chain followed by a failing rule: the batch is all or nothing.
    let mut tx = Transaction::new();
    tx.add_table(&t).add_chain(&t, "hostports", None).add_rule(
        &t,
        "hostports",
        Rule::new(vec![Stmt::Verdict(Verdict::Jump("nowhere".into()))]),
    );
    let e = run(&ns, || tx.commit()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "add rule to chain twill_portmap/hostports: no such file or directory"
    );
    assert!(!run(&ns, || nft::table_exists(&t)).unwrap());

    // A base chain cannot change its hook: the kernel's refusal names the chain.
    let mut tx = Transaction::new();
    tx.add_table(&t).add_chain(
        &t,
        "pre",
        Some(BaseChain::new(ChainType::Nat, Hook::Prerouting, -100)),
    );
    run(&ns, || tx.commit()).unwrap();
    let mut tx = Transaction::new();
    tx.add_chain(
        &t,
        "pre",
        Some(BaseChain::new(ChainType::Nat, Hook::Output, -100)),
    );
    let e = run(&ns, || tx.commit()).unwrap_err();
    assert!(
        e.to_string().starts_with("add chain twill_portmap/pre: "),
        "{e}"
    );
}

#[test]
fn list_delete_by_handle_flush_and_existence() {
    let ns = Netns::new("nftls");
    let t = TableRef::new(Family::Ip, "tl");
    let rule = |port: u16, c: &str| {
        Rule::new(vec![
            Stmt::dport(L4Proto::Tcp, port),
            Stmt::Verdict(Verdict::Accept),
        ])
        .with_comment(c)
    };
    run(&ns, || {
        assert!(!nft::table_exists(&t).unwrap());
        assert!(!nft::chain_exists(&t, "c").unwrap());
        assert!(nft::list_rules(&t, "c").unwrap().is_empty());
        let mut tx = Transaction::new();
        tx.add_table(&t)
            .add_chain(&t, "c", None)
            .add_chain(&t, "d", None);
        tx.add_rule(&t, "c", rule(1, "a"))
            .add_rule(&t, "c", rule(2, "b"))
            .add_rule(&t, "c", rule(3, "a"));
        tx.add_rule(&t, "d", rule(4, "a"));
        tx.commit().unwrap();
        assert!(nft::table_exists(&t).unwrap());
        assert!(nft::chain_exists(&t, "c").unwrap());
        assert!(!nft::chain_exists(&t, "x").unwrap());

        let listed = nft::list_rules(&t, "c").unwrap();
        assert_eq!(
            listed.iter().map(|r| r.rule.clone()).collect::<Vec<_>>(),
            vec![rule(1, "a"), rule(2, "b"), rule(3, "a")]
        );
        let mine = nft::rules_with_comment(&t, "c", "a").unwrap();
        assert_eq!(mine.len(), 2);
        let mut tx = Transaction::new();
        for r in &mine {
            tx.delete_rule(&t, "c", r.handle);
        }
        tx.commit().unwrap();
        assert_eq!(
            nft::list_rules(&t, "c")
                .unwrap()
                .iter()
                .map(|r| r.rule.clone())
                .collect::<Vec<_>>(),
            vec![rule(2, "b")]
        );
        // Deleting a handle that is gone is refused, and recognised as a stale delete.
        let e = tx.commit().unwrap_err();
        assert!(e.is_stale_delete(), "{e}");

        let mut tx = Transaction::new();
        tx.flush_chain(&t, "d").delete_chain(&t, "d");
        tx.commit().unwrap();
        assert!(!nft::chain_exists(&t, "d").unwrap());
        let mut tx = Transaction::new();
        tx.delete_table(&t);
        tx.commit().unwrap();
        assert!(!nft::table_exists(&t).unwrap());
    });
}

#[test]
fn large_batches_are_acknowledged() {
    // Thousands of operations in one batch: every acknowledgement must be read.
    let ns = Netns::new("nftbig");
    let t = TableRef::new(Family::Ip, "big");
    let mut tx = Transaction::new();
    tx.add_table(&t).add_chain(&t, "c", None);
    for p in 1..=3000u16 {
        tx.add_rule(
            &t,
            "c",
            Rule::new(vec![
                Stmt::dport(L4Proto::Udp, p),
                Stmt::Verdict(Verdict::Drop),
            ])
            .with_comment("bulk"),
        );
    }
    run(&ns, || tx.commit()).unwrap();
    assert_eq!(run(&ns, || nft::list_rules(&t, "c")).unwrap().len(), 3000);
}
