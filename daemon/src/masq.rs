//! Masquerade of pod traffic leaving the cluster network (`--ip-masq`), in twilld's own
//! nftables table.
//!
//! flannel's rules, in one table we own (`inet twill_node`) instead of iptables chains shared
//! with everyone:
//!
//! ```text
//! table inet twill_node {
//!     chain postrouting {
//!         type nat hook postrouting priority srcnat; policy accept;
//!         ip saddr 10.244.0.0/16 ip daddr 10.244.0.0/16 return
//!         ip saddr 10.244.0.0/16 ip daddr 224.0.0.0/4 return
//!         ip saddr 10.244.0.0/16 masquerade
//!     }
//! }
//! ```
//!
//! Pod-to-pod traffic keeps its source address (NetworkPolicy and logs need it); traffic to
//! the rest of the world leaves with the node's address. The table is rewritten as a whole in
//! one atomic batch (add table/chain, flush, add rules), so applying is idempotent and heals a
//! damaged table; with masquerade off the table is removed.

use ipnetwork::{IpNetwork, Ipv4Network};
use std::net::Ipv4Addr;
use twill_net::nft::{
    AddrField, BaseChain, ChainType, CmpOp, Family, Hook, NftError, Rule, Stmt, TableRef,
    Transaction, Verdict, list_rules, table_exists,
};

pub const TABLE: &str = "twill_node";
pub const CHAIN: &str = "postrouting";

fn table() -> TableRef {
    TableRef::new(Family::Inet, TABLE)
}

/// The chain's rules for cluster network `network`. Pure.
pub fn rules(network: Ipv4Network) -> Vec<Rule> {
    let net = IpNetwork::V4(network);
    let from_pods = || Stmt::ip(AddrField::Saddr, CmpOp::Eq, net);
    let multicast = IpNetwork::V4(
        Ipv4Network::new(Ipv4Addr::new(224, 0, 0, 0), 4)
            .unwrap_or_else(|_| Ipv4Network::from(Ipv4Addr::new(224, 0, 0, 0))),
    );
    vec![
        Rule::new(vec![
            from_pods(),
            Stmt::ip(AddrField::Daddr, CmpOp::Eq, net),
            Stmt::Verdict(Verdict::Return),
        ]),
        Rule::new(vec![
            from_pods(),
            Stmt::ip(AddrField::Daddr, CmpOp::Eq, multicast),
            Stmt::Verdict(Verdict::Return),
        ]),
        Rule::new(vec![from_pods(), Stmt::Masquerade]),
    ]
}

/// The batch that makes the table exactly [`rules`].
pub fn transaction(network: Ipv4Network) -> Transaction {
    let t = table();
    let mut tx = Transaction::new();
    tx.add_table(&t).add_chain(
        &t,
        CHAIN,
        Some(BaseChain::new(ChainType::Nat, Hook::Postrouting, 100)),
    );
    tx.flush_chain(&t, CHAIN);
    for r in rules(network) {
        tx.add_rule(&t, CHAIN, r);
    }
    tx
}

/// Applies masquerade for `network` (or removes our table when `enabled` is false). An
/// intact chain is left alone: a rewrite would make the kernel wait an RCU grace period
/// (about 10 ms) on every reconcile pass for nothing.
pub fn apply(network: Ipv4Network, enabled: bool) -> Result<(), NftError> {
    if enabled {
        let have: Vec<Rule> = list_rules(&table(), CHAIN)?
            .into_iter()
            .map(|r| r.rule)
            .collect();
        if have == rules(network) {
            return Ok(());
        }
        return transaction(network).commit();
    }
    if table_exists(&table())? {
        let mut tx = Transaction::new();
        tx.delete_table(&table());
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_render_like_flannel() {
        let text: Vec<String> = rules("10.244.0.0/16".parse().unwrap())
            .iter()
            .map(|r| r.render(Family::Inet))
            .collect();
        assert_eq!(
            text,
            vec![
                "ip saddr 10.244.0.0/16 ip daddr 10.244.0.0/16 return",
                "ip saddr 10.244.0.0/16 ip daddr 224.0.0.0/4 return",
                "ip saddr 10.244.0.0/16 masquerade",
            ]
        );
    }
}
