//! The portmap ruleset: what one attachment puts into the kernel, as typed rules. Pure.
//!
//! Layout (per family, tables `ip twill_portmap` and `ip6 twill_portmap`), modelled on the
//! reference nftables backend (`cni_hostport`):
//!
//! ```text
//! table ip twill_portmap {
//!     chain hostports {
//!         ip daddr 192.168.0.2 tcp dport 8083 dnat to 10.0.0.2:83 comment "<owner>"
//!         tcp dport 8080 dnat to 10.0.0.2:80 comment "<owner>"
//!     }
//!
//!     chain prerouting {
//!         type nat hook prerouting priority dstnat; policy accept;
//!         fib daddr type local jump hostports
//!     }
//!
//!     chain output {
//!         type nat hook output priority -100; policy accept;
//!         fib daddr type local jump hostports
//!     }
//!
//!     chain masquerading {
//!         type nat hook postrouting priority srcnat; policy accept;
//!         ip saddr 10.0.0.2 ip daddr 10.0.0.2 masquerade comment "<owner>"
//!         ip saddr 127.0.0.1 ip daddr 10.0.0.2 masquerade comment "<owner>"
//!     }
//! }
//! ```
//!
//! Differences from the reference, and why: a `hostIP` mapping lives in `hostports` with an
//! `ip daddr` match instead of a separate `hostip_hostports` chain (one chain to list, same
//! packets matched); nftables `conditionsV4/V6` are put on each DNAT rule of the attachment
//! instead of on the shared jump rules, so one network's conditions cannot change another's
//! forwarding; rules carry an owner comment (container, interface, network) so GC of one
//! network never removes another network's mappings. The jump chains are flushed and
//! rewritten in every ADD batch, which heals them if something damaged them.
//!
//! Traffic covered: from other hosts (prerouting), from the node itself to any local address
//! including 127.0.0.1 (output; `route_localnet` on the pod-facing interface plus the
//! `127.0.0.1` masquerade rule let such packets leave loopback), and hairpin, a pod reaching
//! its own mapping (masqueraded so the reply returns through the node).

use crate::config::{Mapping, PortmapConf};
use std::net::{IpAddr, Ipv4Addr};
use twill_net::nft::{
    AddrField, BaseChain, ChainType, CmpOp, Family, Hook, Rule, Stmt, TableRef, Transaction,
    Verdict,
};

pub const TABLE: &str = "twill_portmap";
pub const HOSTPORTS: &str = "hostports";
pub const PREROUTING: &str = "prerouting";
pub const OUTPUT: &str = "output";
pub const MASQUERADING: &str = "masquerading";
/// Chains holding per-attachment rules.
pub const OWNED_CHAINS: [&str; 2] = [HOSTPORTS, MASQUERADING];
/// DNAT priority for prerouting and output.
pub const DNAT_PRIORITY: i32 = -100;
/// SNAT priority for postrouting.
pub const SNAT_PRIORITY: i32 = 100;

pub fn table(family: Family) -> TableRef {
    TableRef::new(family, TABLE)
}

/// The rule in `prerouting` and `output`: traffic to a local address looks for a mapping.
pub fn jump_rule() -> Rule {
    Rule::new(vec![
        Stmt::FibDaddrLocal,
        Stmt::Verdict(Verdict::Jump(HOSTPORTS.to_owned())),
    ])
}

/// `hostIP` as a destination match for the pod's family: `None` = skip the mapping (other
/// family), `Some(None)` = any local address, `Some(Some(ip))` = that address only.
fn host_ip_match(m: &Mapping, pod: &IpAddr) -> Option<Option<IpAddr>> {
    match m.host_ip {
        None => Some(None),
        Some(h) if h.is_ipv4() != pod.is_ipv4() => None,
        Some(h) if h.is_unspecified() => Some(None),
        Some(h) => Some(Some(h)),
    }
}

/// The DNAT rules of one attachment for the pod address `pod`.
pub fn dnat_rules(conf: &PortmapConf, comment: &str, pod: IpAddr) -> Vec<Rule> {
    let conditions = if pod.is_ipv4() {
        &conf.conditions_v4
    } else {
        &conf.conditions_v6
    };
    conf.mappings
        .iter()
        .filter_map(|m| {
            let host = host_ip_match(m, &pod)?;
            let mut stmts = conditions.clone();
            if let Some(h) = host {
                stmts.push(Stmt::ip_addr(AddrField::Daddr, CmpOp::Eq, h));
            }
            stmts.push(Stmt::dport(m.protocol, m.host_port));
            stmts.push(Stmt::Dnat {
                addr: pod,
                port: Some(m.container_port),
            });
            Some(Rule::new(stmts).with_comment(comment))
        })
        .collect()
}

/// The masquerade rules of one attachment (none without `snat`): hairpin and localhost, or
/// everything towards the pod with `masqAll`.
pub fn masq_rules(conf: &PortmapConf, comment: &str, pod: IpAddr) -> Vec<Rule> {
    if !conf.snat {
        return Vec::new();
    }
    let to_pod = Stmt::ip_addr(AddrField::Daddr, CmpOp::Eq, pod);
    let mut out = Vec::new();
    if conf.masq_all {
        out.push(Rule::new(vec![to_pod, Stmt::Masquerade]).with_comment(comment));
        return out;
    }
    out.push(
        Rule::new(vec![
            Stmt::ip_addr(AddrField::Saddr, CmpOp::Eq, pod),
            to_pod.clone(),
            Stmt::Masquerade,
        ])
        .with_comment(comment),
    );
    if pod.is_ipv4() {
        out.push(
            Rule::new(vec![
                Stmt::ip_addr(AddrField::Saddr, CmpOp::Eq, Ipv4Addr::LOCALHOST.into()),
                to_pod,
                Stmt::Masquerade,
            ])
            .with_comment(comment),
        );
    }
    out
}

/// Handles of an owner's rules already in one family's table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Existing {
    pub hostports: Vec<u64>,
    pub masquerading: Vec<u64>,
}

impl Existing {
    pub fn is_empty(&self) -> bool {
        self.hostports.is_empty() && self.masquerading.is_empty()
    }
}

/// Deletes the owner's `existing` rules of one family.
pub fn delete_ops(tx: &mut Transaction, family: Family, existing: &Existing) {
    let t = table(family);
    for h in &existing.hostports {
        tx.delete_rule(&t, HOSTPORTS, *h);
    }
    for h in &existing.masquerading {
        tx.delete_rule(&t, MASQUERADING, *h);
    }
}

/// ADD for one family: the table skeleton, the jump rules rewritten, the owner's previous
/// rules replaced by its rules for `pod`.
pub fn add_ops(
    tx: &mut Transaction,
    conf: &PortmapConf,
    comment: &str,
    pod: IpAddr,
    existing: &Existing,
) {
    let family = Family::of(&pod);
    let t = table(family);
    tx.add_table(&t).add_chain(&t, HOSTPORTS, None);
    for (chain, hook) in [(PREROUTING, Hook::Prerouting), (OUTPUT, Hook::Output)] {
        tx.add_chain(
            &t,
            chain,
            Some(BaseChain::new(ChainType::Nat, hook, DNAT_PRIORITY)),
        );
        tx.flush_chain(&t, chain);
        tx.add_rule(&t, chain, jump_rule());
    }
    let masq = masq_rules(conf, comment, pod);
    if !masq.is_empty() || !existing.masquerading.is_empty() {
        tx.add_chain(
            &t,
            MASQUERADING,
            Some(BaseChain::new(
                ChainType::Nat,
                Hook::Postrouting,
                SNAT_PRIORITY,
            )),
        );
    }
    delete_ops(tx, family, existing);
    for r in dnat_rules(conf, comment, pod) {
        tx.add_rule(&t, HOSTPORTS, r);
    }
    for r in masq {
        tx.add_rule(&t, MASQUERADING, r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RawConf, parse};
    use serde_json::json;
    use twill_cni::config::PortMapping;
    use twill_net::nft::L4Proto;

    /// The mappings of the reference `portmap_nftables_test.go`.
    fn reference_conf(snat: bool) -> PortmapConf {
        let maps: Vec<PortMapping> = serde_json::from_value(json!([
            { "hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            { "hostPort": 8081, "containerPort": 80, "protocol": "tcp"},
            { "hostPort": 8080, "containerPort": 81, "protocol": "udp"},
            { "hostPort": 8082, "containerPort": 82, "protocol": "udp"},
            { "hostPort": 8083, "containerPort": 83, "protocol": "tcp", "hostIP": "192.168.0.2"},
            { "hostPort": 8084, "containerPort": 84, "protocol": "tcp", "hostIP": "0.0.0.0"},
            { "hostPort": 8085, "containerPort": 85, "protocol": "tcp", "hostIP": "2001:db8:a::1"},
            { "hostPort": 8086, "containerPort": 86, "protocol": "tcp", "hostIP": "::"}
        ]))
        .unwrap();
        let raw: RawConf = serde_json::from_value(json!({"snat": snat})).unwrap();
        parse(&raw, &maps).unwrap()
    }

    const OWNER: &str = "icee6giejonei6so if=foo net=test";

    #[test]
    fn generates_correct_rules_v4_with_snat() {
        let mut tx = Transaction::new();
        let conf = reference_conf(true);
        add_ops(
            &mut tx,
            &conf,
            OWNER,
            "10.0.0.2".parse().unwrap(),
            &Existing::default(),
        );
        assert_eq!(
            tx.to_string(),
            "\
add table ip twill_portmap
add chain ip twill_portmap hostports
add chain ip twill_portmap prerouting { type nat hook prerouting priority -100; policy accept; }
flush chain ip twill_portmap prerouting
add rule ip twill_portmap prerouting fib daddr type local jump hostports
add chain ip twill_portmap output { type nat hook output priority -100; policy accept; }
flush chain ip twill_portmap output
add rule ip twill_portmap output fib daddr type local jump hostports
add chain ip twill_portmap masquerading { type nat hook postrouting priority 100; policy accept; }
add rule ip twill_portmap hostports tcp dport 8080 dnat to 10.0.0.2:80 comment \"icee6giejonei6so if=foo net=test\"
add rule ip twill_portmap hostports tcp dport 8081 dnat to 10.0.0.2:80 comment \"icee6giejonei6so if=foo net=test\"
add rule ip twill_portmap hostports udp dport 8080 dnat to 10.0.0.2:81 comment \"icee6giejonei6so if=foo net=test\"
add rule ip twill_portmap hostports udp dport 8082 dnat to 10.0.0.2:82 comment \"icee6giejonei6so if=foo net=test\"
add rule ip twill_portmap hostports ip daddr 192.168.0.2 tcp dport 8083 dnat to 10.0.0.2:83 comment \"icee6giejonei6so if=foo net=test\"
add rule ip twill_portmap hostports tcp dport 8084 dnat to 10.0.0.2:84 comment \"icee6giejonei6so if=foo net=test\"
add rule ip twill_portmap masquerading ip saddr 10.0.0.2 ip daddr 10.0.0.2 masquerade comment \"icee6giejonei6so if=foo net=test\"
add rule ip twill_portmap masquerading ip saddr 127.0.0.1 ip daddr 10.0.0.2 masquerade comment \"icee6giejonei6so if=foo net=test\"
"
        );
        tx.validate().unwrap();
    }

    #[test]
    fn generates_correct_rules_v6_without_snat_replacing_old_ones() {
        let mut tx = Transaction::new();
        let conf = reference_conf(false);
        let old = Existing {
            hostports: vec![4, 5],
            masquerading: vec![9],
        };
        add_ops(&mut tx, &conf, OWNER, "2001:db8::2".parse().unwrap(), &old);
        assert_eq!(
            tx.to_string(),
            "\
add table ip6 twill_portmap
add chain ip6 twill_portmap hostports
add chain ip6 twill_portmap prerouting { type nat hook prerouting priority -100; policy accept; }
flush chain ip6 twill_portmap prerouting
add rule ip6 twill_portmap prerouting fib daddr type local jump hostports
add chain ip6 twill_portmap output { type nat hook output priority -100; policy accept; }
flush chain ip6 twill_portmap output
add rule ip6 twill_portmap output fib daddr type local jump hostports
add chain ip6 twill_portmap masquerading { type nat hook postrouting priority 100; policy accept; }
delete rule ip6 twill_portmap hostports handle 4
delete rule ip6 twill_portmap hostports handle 5
delete rule ip6 twill_portmap masquerading handle 9
add rule ip6 twill_portmap hostports tcp dport 8080 dnat to [2001:db8::2]:80 comment \"icee6giejonei6so if=foo net=test\"
add rule ip6 twill_portmap hostports tcp dport 8081 dnat to [2001:db8::2]:80 comment \"icee6giejonei6so if=foo net=test\"
add rule ip6 twill_portmap hostports udp dport 8080 dnat to [2001:db8::2]:81 comment \"icee6giejonei6so if=foo net=test\"
add rule ip6 twill_portmap hostports udp dport 8082 dnat to [2001:db8::2]:82 comment \"icee6giejonei6so if=foo net=test\"
add rule ip6 twill_portmap hostports ip6 daddr 2001:db8:a::1 tcp dport 8085 dnat to [2001:db8::2]:85 comment \"icee6giejonei6so if=foo net=test\"
add rule ip6 twill_portmap hostports tcp dport 8086 dnat to [2001:db8::2]:86 comment \"icee6giejonei6so if=foo net=test\"
"
        );
        tx.validate().unwrap();
    }

    #[test]
    fn masq_all_and_snat_rule_counts() {
        // Reference `checkPorts`: 2 masquerade rules for IPv4, 1 for IPv6 or with masqAll.
        let mut conf = reference_conf(true);
        assert_eq!(
            masq_rules(&conf, OWNER, "10.0.0.2".parse().unwrap()).len(),
            2
        );
        assert_eq!(
            masq_rules(&conf, OWNER, "2001:db8::2".parse().unwrap()).len(),
            1
        );
        conf.masq_all = true;
        let r = masq_rules(&conf, OWNER, "10.0.0.2".parse().unwrap());
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0].render(Family::Ip),
            "ip daddr 10.0.0.2 masquerade comment \"icee6giejonei6so if=foo net=test\""
        );
        conf.snat = false;
        assert!(masq_rules(&conf, OWNER, "10.0.0.2".parse().unwrap()).is_empty());
    }

    #[test]
    fn conditions_go_on_each_dnat_rule() {
        let mut conf = reference_conf(true);
        conf.mappings.truncate(1);
        conf.conditions_v4 = vec![Stmt::ip(
            AddrField::Saddr,
            CmpOp::Neq,
            "10.0.0.0/8".parse().unwrap(),
        )];
        let r = dnat_rules(&conf, "c", "10.0.0.2".parse().unwrap());
        assert_eq!(
            r[0].render(Family::Ip),
            "ip saddr != 10.0.0.0/8 tcp dport 8080 dnat to 10.0.0.2:80 comment \"c\""
        );
        assert_eq!(conf.mappings[0].protocol, L4Proto::Tcp);
    }
}
