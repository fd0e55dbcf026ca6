//! The node-facing half of portmap: nftables, the `route_localnet` sysctl and conntrack.
//!
//! Everything applies to the namespace the plugin runs in (the node's). Rules are found by
//! their owner comment; each change is one atomic nftables batch built from a fresh
//! listing and rebuilt if a concurrent change removed a rule it meant to delete.

use crate::config::PortmapConf;
use crate::rules::{self, Existing, HOSTPORTS, MASQUERADING, OWNED_CHAINS};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use twill_net::conntrack::{self, ConntrackError, UDP};
use twill_net::netlink::{self, Handle, NetlinkError, TABLE_MAIN};
use twill_net::nft::owner::{comment_network, network_token};
use twill_net::nft::{
    self, Family, NftError, Rule, Transaction, list_rules, retry_stale, rules_with_comment,
};

const FAMILIES: [Family; 2] = [Family::Ip, Family::Ip6];

/// Handles of the rules carrying `comment` in one family's table.
pub fn existing(family: Family, comment: &str) -> Result<Existing, NftError> {
    let t = rules::table(family);
    let handles = |chain| -> Result<Vec<u64>, NftError> {
        Ok(rules_with_comment(&t, chain, comment)?
            .into_iter()
            .map(|r| r.handle)
            .collect())
    };
    Ok(Existing {
        hostports: handles(HOSTPORTS)?,
        masquerading: handles(MASQUERADING)?,
    })
}

/// Installs (or replaces) the attachment's rules for each pod address, in one batch.
pub fn apply(conf: &PortmapConf, comment: &str, pods: &[IpAddr]) -> Result<(), NftError> {
    let build = || -> Result<Transaction, NftError> {
        let mut tx = Transaction::new();
        for pod in pods {
            let old = existing(Family::of(pod), comment)?;
            rules::add_ops(&mut tx, conf, comment, *pod, &old);
        }
        Ok(tx)
    };
    retry_stale(|| build()?.commit())
}

/// Removes every rule carrying `comment`, in both families; nothing there is success.
pub fn remove(comment: &str) -> Result<(), NftError> {
    retry_stale(|| {
        let mut tx = Transaction::new();
        for family in FAMILIES {
            rules::delete_ops(&mut tx, family, &existing(family, comment)?);
        }
        tx.commit()
    })
}

/// Errors unless the attachment's rules for `pods` and the jump rules are in place.
pub fn verify(conf: &PortmapConf, comment: &str, pods: &[IpAddr]) -> Result<(), NftError> {
    for pod in pods {
        let family = Family::of(pod);
        let t = rules::table(family);
        for chain in [rules::PREROUTING, rules::OUTPUT] {
            let have: Vec<Rule> = list_rules(&t, chain)?.into_iter().map(|r| r.rule).collect();
            if !have.contains(&rules::jump_rule()) {
                return Err(NftError::Missing(format!(
                    "portmap chain {}/{chain} does not jump to {HOSTPORTS}",
                    t.name
                )));
            }
        }
        let wanted = [
            (HOSTPORTS, rules::dnat_rules(conf, comment, *pod)),
            (MASQUERADING, rules::masq_rules(conf, comment, *pod)),
        ];
        for (chain, want) in wanted {
            let have: Vec<Rule> = rules_with_comment(&t, chain, comment)?
                .into_iter()
                .map(|r| r.rule)
                .collect();
            if let Some(w) = want.iter().find(|w| !have.contains(w)) {
                return Err(NftError::Missing(format!(
                    "missing hostport rule in chain {}/{chain}: {}",
                    t.name,
                    w.render(family)
                )));
            }
        }
    }
    Ok(())
}

/// Removes the rules of `network`'s attachments whose owner comment is not in `keep`.
pub fn gc(network: &str, keep: &HashSet<String>) -> Result<(), NftError> {
    let net = network_token(network);
    retry_stale(|| {
        let mut tx = Transaction::new();
        for family in FAMILIES {
            let t = rules::table(family);
            for chain in OWNED_CHAINS {
                for r in list_rules(&t, chain)? {
                    let Some(c) = r.rule.comment.as_deref() else {
                        continue;
                    };
                    if comment_network(c) == Some(net.as_str()) && !keep.contains(c) {
                        tx.delete_rule(&t, chain, r.handle);
                    }
                }
            }
        }
        tx.commit()
    })
}

/// The interface of the node's main-table route towards `pod` (longest prefix, then lowest
/// metric), like the reference's `getRoutableHostIF`.
pub fn routable_host_if(pod: Ipv4Addr) -> Result<Option<String>, NetlinkError> {
    let mut h = Handle::current()?;
    let pod = IpAddr::V4(pod);
    let best = h
        .routes(netlink::Family::V4)?
        .into_iter()
        .filter(|r| r.table == TABLE_MAIN && r.unicast && r.oif.is_some() && r.dst.contains(pod))
        .max_by_key(|r| (r.dst.prefix(), std::cmp::Reverse(r.metric.unwrap_or(0))));
    match best.and_then(|r| r.oif) {
        Some(oif) => Ok(Some(h.link_by_index(oif)?.name)),
        None => Ok(None),
    }
}

/// Lets packets from 127.0.0.1 DNATed to `pod` leave through the interface that routes to
/// it (`route_localnet=1`); without a route there is nothing to set. This is a setting of a
/// shared node interface (the bridge), set once and never reverted, as in the reference.
pub fn enable_route_localnet(pod: Ipv4Addr) -> Result<Option<String>, NetlinkError> {
    let Some(ifname) = routable_host_if(pod)? else {
        return Ok(None);
    };
    netlink::sysctl::write(None, &format!("net/ipv4/conf/{ifname}/route_localnet"), "1")?;
    Ok(Some(ifname))
}

/// Deletes the UDP conntrack entries of `family` towards the given host ports.
pub fn flush_udp(pod: &IpAddr, ports: &[u16]) -> Result<usize, ConntrackError> {
    conntrack::delete_by_dport(conntrack::Family::of(pod), UDP, ports)
}

/// Whether our table of `family` exists (for tests and diagnostics).
pub fn table_exists(family: Family) -> Result<bool, NftError> {
    nft::table_exists(&rules::table(family))
}
