//! Choosing a node subnet: a pure function of the config, the leases seen and a seed.
//!
//! The etcd transaction (create-if-absent) is what makes a claim safe; this only decides what
//! to try. A node first re-uses its previous subnet (from its subnet file or a lease with its
//! PublicIP) so pods keep their addresses across restarts. Otherwise it starts scanning at an
//! offset derived from its seed (a hash of the node name) so nodes booting together spread out
//! instead of all racing for the first free subnet; the loser of a race simply tries the next
//! candidate.

use super::super::netconf::NetConfig;
use ipnetwork::Ipv4Network;
use std::collections::HashSet;
use std::net::Ipv4Addr;

/// Every node subnet the config allows, in address order.
pub fn all_subnets(cfg: &NetConfig) -> impl Iterator<Item = Ipv4Network> + '_ {
    let size = 1u32 << (32 - cfg.subnet_len);
    (0..cfg.capacity()).filter_map(move |i| {
        let ip = Ipv4Addr::from(u32::from(cfg.subnet_min) + i * size);
        Ipv4Network::new(ip, cfg.subnet_len).ok()
    })
}

/// True when `subnet` is one the config could hand out.
pub fn is_valid_subnet(cfg: &NetConfig, subnet: Ipv4Network) -> bool {
    subnet.prefix() == cfg.subnet_len
        && subnet.network() == subnet.ip()
        && subnet.ip() >= cfg.subnet_min
        && subnet.ip() <= cfg.subnet_max
}

/// Candidates to claim, best first: the previous subnet if still valid and free, then the free
/// subnets starting at `seed % capacity`, wrapping. Empty when the network is full.
pub fn candidates(
    cfg: &NetConfig,
    taken: &HashSet<Ipv4Network>,
    previous: Option<Ipv4Network>,
    seed: u64,
) -> Vec<Ipv4Network> {
    let all: Vec<Ipv4Network> = all_subnets(cfg).collect();
    let mut out = Vec::new();
    if let Some(p) = previous.filter(|p| is_valid_subnet(cfg, *p) && !taken.contains(p)) {
        out.push(p);
    }
    if all.is_empty() {
        return out;
    }
    let start = (seed % all.len() as u64) as usize;
    for i in 0..all.len() {
        let s = all[(start + i) % all.len()];
        if !taken.contains(&s) && Some(s) != previous {
            out.push(s);
        }
    }
    out
}

/// A stable seed from a node name (FNV-1a), so a node tries the same order every time.
pub fn seed_for(node: &str) -> u64 {
    node.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> NetConfig {
        NetConfig::parse(r#"{"Network":"10.0.0.0/26"}"#).unwrap()
    }

    #[test]
    fn all_subnets_skip_the_first() {
        let v: Vec<String> = all_subnets(&cfg()).map(|n| n.to_string()).collect();
        assert_eq!(v, vec!["10.0.0.16/28", "10.0.0.32/28", "10.0.0.48/28"]);
    }

    #[test]
    fn previous_first_then_seeded_scan() {
        let c = cfg();
        let prev: Ipv4Network = "10.0.0.32/28".parse().unwrap();
        let got = candidates(&c, &HashSet::new(), Some(prev), 0);
        let want: Vec<Ipv4Network> = vec![
            prev,
            "10.0.0.16/28".parse().unwrap(),
            "10.0.0.48/28".parse().unwrap(),
        ];
        assert_eq!(got, want);
        let got = candidates(&c, &HashSet::new(), None, 1);
        assert_eq!(got[0].to_string(), "10.0.0.32/28");
    }

    #[test]
    fn taken_and_invalid_are_skipped() {
        let c = cfg();
        let taken: HashSet<Ipv4Network> = ["10.0.0.16/28".parse().unwrap()].into();
        let stale_prev: Ipv4Network = "10.9.0.0/28".parse().unwrap();
        let got = candidates(&c, &taken, Some(stale_prev), 0);
        let want: Vec<Ipv4Network> = vec![
            "10.0.0.32/28".parse().unwrap(),
            "10.0.0.48/28".parse().unwrap(),
        ];
        assert_eq!(got, want);
        let full: HashSet<Ipv4Network> = all_subnets(&c).collect();
        assert!(candidates(&c, &full, None, 7).is_empty());
    }

    #[test]
    fn seeds_spread_nodes() {
        let c = NetConfig::parse(r#"{"Network":"10.244.0.0/16"}"#).unwrap();
        let firsts: HashSet<Ipv4Network> = (0..20)
            .map(|i| candidates(&c, &HashSet::new(), None, seed_for(&format!("node-{i}")))[0])
            .collect();
        assert!(
            firsts.len() > 15,
            "20 nodes should mostly start apart: {}",
            firsts.len()
        );
    }
}
