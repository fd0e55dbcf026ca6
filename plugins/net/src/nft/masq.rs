//! Masquerading of pod traffic leaving its subnet (the bridge plugin's `ipMasq`).
//!
//! Layout, in our own table `inet twill_masq` (one table for both address families; the
//! reference nftables backend uses `inet cni_plugins_masquerade` with the same shape, we use
//! our own name so we never edit a table the reference plugins manage on the same node):
//!
//! ```text
//! table inet twill_masq {
//!     chain masq_checks {
//!         ip saddr 10.1.2.2 ip daddr != 10.1.2.0/24 masquerade comment "<id> if=eth0 net=mynet"
//!     }
//!
//!     chain postrouting {
//!         type nat hook postrouting priority srcnat; policy accept;
//!         ip daddr 224.0.0.0/4 return
//!         ip6 daddr ff00::/8 return
//!         goto masq_checks
//!     }
//! }
//! ```
//!
//! One rule per pod address, identified by its owner comment (network, container, interface).
//! Traffic from the pod to its own subnet does not match and is left alone; multicast never
//! reaches `masq_checks`. The dispatch chain is flushed and rewritten in every setup batch so
//! a damaged one heals. Setup, teardown and GC are each one atomic batch built from a fresh
//! listing, retried if a concurrent change removed a rule it meant to delete.

use super::list::{list_rules, rules_with_comment};
use super::model::{AddrField, BaseChain, ChainType, CmpOp, Family, Hook, Rule, Stmt, Verdict};
use super::owner::Owner;
use super::tx::{TableRef, Transaction};
use super::{NftError, retry_stale};
use ipnetwork::IpNetwork;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const TABLE: &str = "twill_masq";
pub const CHECKS_CHAIN: &str = "masq_checks";
pub const POSTROUTING_CHAIN: &str = "postrouting";

pub fn table() -> TableRef {
    TableRef::new(Family::Inet, TABLE)
}

/// The base chain's rules: skip multicast, everything else goes to `masq_checks`.
pub fn dispatch_rules() -> Vec<Rule> {
    let mcast = |addr: IpAddr, prefix: u8| {
        // Both prefixes are valid for their address family.
        let net = IpNetwork::new(addr, prefix).unwrap_or(IpNetwork::from(addr));
        Rule::new(vec![
            Stmt::ip(AddrField::Daddr, CmpOp::Eq, net),
            Stmt::Verdict(Verdict::Return),
        ])
    };
    vec![
        mcast(Ipv4Addr::new(224, 0, 0, 0).into(), 4),
        mcast(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0).into(), 8),
        Rule::new(vec![Stmt::Verdict(Verdict::Goto(CHECKS_CHAIN.to_owned()))]),
    ]
}

/// The rules of one attachment: for each pod address, masquerade traffic leaving its subnet.
/// A `/0` address has no outside and gets no rule.
pub fn attachment_rules(owner: &Owner, pod_addrs: &[IpNetwork]) -> Vec<Rule> {
    let comment = owner.comment();
    pod_addrs
        .iter()
        .filter(|a| a.prefix() > 0)
        .map(|a| {
            Rule::new(vec![
                Stmt::ip_addr(AddrField::Saddr, CmpOp::Eq, a.ip()),
                Stmt::ip(AddrField::Daddr, CmpOp::Neq, *a),
                Stmt::Masquerade,
            ])
            .with_comment(&comment)
        })
        .collect()
}

/// The setup batch: table, chains and the dispatch chain (re)written when `ensure_structure`
/// (they are missing or damaged), `stale` rule handles of this owner deleted and its rules
/// added.
///
/// Re-declaring an intact table and chains on every ADD would be harmless but not free: the
/// kernel records even a no-op chain update in the transaction and, like deleted rules, frees
/// it only after an RCU grace period, which the closing batch socket waits for
/// (`nf_tables_trans_destroy_flush_work`): about 10 ms per pod on this kernel. With the
/// structure in place, an ADD's batch holds only its own rules.
pub fn setup_transaction(
    owner: &Owner,
    pod_addrs: &[IpNetwork],
    stale: &[u64],
    ensure_structure: bool,
) -> Transaction {
    let t = table();
    let mut tx = Transaction::new();
    if ensure_structure {
        tx.add_table(&t)
            .add_chain(&t, CHECKS_CHAIN, None)
            .add_chain(
                &t,
                POSTROUTING_CHAIN,
                Some(BaseChain::new(ChainType::Nat, Hook::Postrouting, 100)),
            );
        tx.flush_chain(&t, POSTROUTING_CHAIN);
        for r in dispatch_rules() {
            tx.add_rule(&t, POSTROUTING_CHAIN, r);
        }
    }
    for h in stale {
        tx.delete_rule(&t, CHECKS_CHAIN, *h);
    }
    for r in attachment_rules(owner, pod_addrs) {
        tx.add_rule(&t, CHECKS_CHAIN, r);
    }
    tx
}

/// True when the dispatch chain holds exactly [`dispatch_rules`] (false if the table or chain
/// does not exist yet). Its `goto masq_checks` rule cannot exist without that chain, so an
/// intact dispatch chain means the whole structure is there.
fn dispatch_intact() -> Result<bool, NftError> {
    let have: Vec<Rule> = list_rules(&table(), POSTROUTING_CHAIN)?
        .into_iter()
        .map(|r| r.rule)
        .collect();
    Ok(have == dispatch_rules())
}

fn owner(network: &str, container_id: &str, ifname: &str) -> Result<Owner, NftError> {
    for (what, v) in [
        ("network name", network),
        ("container id", container_id),
        ("interface name", ifname),
    ] {
        if v.is_empty() {
            return Err(NftError::Invalid {
                what: "masquerade rules".to_owned(),
                reason: format!("empty {what}"),
            });
        }
    }
    Ok(Owner::new(container_id, ifname, Some(network)))
}

fn handles(owner: &Owner) -> Result<Vec<u64>, NftError> {
    Ok(
        rules_with_comment(&table(), CHECKS_CHAIN, &owner.comment())?
            .into_iter()
            .map(|r| r.handle)
            .collect(),
    )
}

/// Installs (or replaces) the masquerade rules of one attachment in one atomic batch.
pub fn setup(
    network: &str,
    container_id: &str,
    ifname: &str,
    pod_addrs: &[IpNetwork],
) -> Result<(), NftError> {
    let owner = owner(network, container_id, ifname)?;
    setup_transaction(&owner, pod_addrs, &[], true).validate()?;
    retry_stale(|| {
        setup_transaction(&owner, pod_addrs, &handles(&owner)?, !dispatch_intact()?).commit()
    })
}

/// Removes the attachment's rules; nothing there (not even the table) is success.
pub fn teardown(network: &str, container_id: &str, ifname: &str) -> Result<(), NftError> {
    let owner = owner(network, container_id, ifname)?;
    let t = table();
    retry_stale(|| {
        let mut tx = Transaction::new();
        for h in handles(&owner)? {
            tx.delete_rule(&t, CHECKS_CHAIN, h);
        }
        tx.commit()
    })
}

/// Errors unless exactly the attachment's rules and the dispatch chain are in place.
pub fn check(
    network: &str,
    container_id: &str,
    ifname: &str,
    pod_addrs: &[IpNetwork],
) -> Result<(), NftError> {
    let owner = owner(network, container_id, ifname)?;
    let t = table();
    let dispatch: Vec<Rule> = list_rules(&t, POSTROUTING_CHAIN)?
        .into_iter()
        .map(|r| r.rule)
        .collect();
    if dispatch != dispatch_rules() {
        return Err(NftError::Missing(format!(
            "masquerade chain {TABLE}/{POSTROUTING_CHAIN} is missing or changed"
        )));
    }
    let have: Vec<Rule> = rules_with_comment(&t, CHECKS_CHAIN, &owner.comment())?
        .into_iter()
        .map(|r| r.rule)
        .collect();
    let want = attachment_rules(&owner, pod_addrs);
    for w in &want {
        if !have.contains(w) {
            return Err(NftError::Missing(format!(
                "masquerade rule for container {container_id} interface {ifname} is missing: {}",
                w.render(Family::Inet)
            )));
        }
    }
    if let Some(extra) = have.iter().find(|h| !want.contains(h)) {
        return Err(NftError::Missing(format!(
            "unexpected masquerade rule for container {container_id} interface {ifname}: {}",
            extra.render(Family::Inet)
        )));
    }
    Ok(())
}

/// Removes the rules of this network's attachments that are not in `valid`
/// (`(container id, ifname)` pairs); other networks' rules are left alone.
pub fn gc(network: &str, valid: &[(String, String)]) -> Result<(), NftError> {
    super::gc_owned_rules(&table(), CHECKS_CHAIN, network, valid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_setup_batch() {
        let owner = Owner::new("c1", "eth0", Some("mynet"));
        let addrs: Vec<IpNetwork> = vec![
            "10.1.2.2/24".parse().unwrap(),
            "2001:db8:1::2/64".parse().unwrap(),
            "0.0.0.0/0".parse().unwrap(),
        ];
        let tx = setup_transaction(&owner, &addrs, &[7], true);
        assert_eq!(
            tx.to_string(),
            "\
add table inet twill_masq
add chain inet twill_masq masq_checks
add chain inet twill_masq postrouting { type nat hook postrouting priority 100; policy accept; }
flush chain inet twill_masq postrouting
add rule inet twill_masq postrouting ip daddr 224.0.0.0/4 return
add rule inet twill_masq postrouting ip6 daddr ff00::/8 return
add rule inet twill_masq postrouting goto masq_checks
delete rule inet twill_masq masq_checks handle 7
add rule inet twill_masq masq_checks ip saddr 10.1.2.2 ip daddr != 10.1.2.0/24 masquerade comment \"c1 if=eth0 net=mynet\"
add rule inet twill_masq masq_checks ip6 saddr 2001:db8:1::2 ip6 daddr != 2001:db8:1::/64 masquerade comment \"c1 if=eth0 net=mynet\"
"
        );
        tx.validate().unwrap();
        let quiet = setup_transaction(&owner, &addrs[..1], &[], false).to_string();
        assert!(
            !quiet.contains("postrouting ip") && !quiet.contains("flush"),
            "{quiet}"
        );
    }

    #[test]
    fn empty_names_are_refused() {
        assert!(setup("", "c1", "eth0", &[]).is_err());
        assert!(teardown("n", "", "eth0").is_err());
    }
}
