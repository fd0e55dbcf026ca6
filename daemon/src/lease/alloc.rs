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
use std::net::Ipv4Addr;

/// How many free candidates one claim round considers; each round re-lists, so a short list
/// only matters when that many claims in a row lose races.
pub const MAX_CANDIDATES: usize = 32;

/// The `i`-th node subnet the config allows (in address order), for `i < capacity`.
fn nth_subnet(cfg: &NetConfig, i: u32) -> Option<Ipv4Network> {
    let size = 1u32 << (32 - cfg.subnet_len);
    let ip = Ipv4Addr::from(u32::from(cfg.subnet_min).checked_add(i.checked_mul(size)?)?);
    Ipv4Network::new(ip, cfg.subnet_len).ok()
}

/// Every node subnet the config allows, in address order (lazily: a /0 split into /30s is a
/// billion subnets).
pub fn all_subnets(cfg: &NetConfig) -> impl Iterator<Item = Ipv4Network> + '_ {
    (0..cfg.capacity()).filter_map(move |i| nth_subnet(cfg, i))
}

/// True when `subnet` is one the config could hand out.
pub fn is_valid_subnet(cfg: &NetConfig, subnet: Ipv4Network) -> bool {
    subnet.prefix() == cfg.subnet_len
        && subnet.network() == subnet.ip()
        && subnet.ip() >= cfg.subnet_min
        && subnet.ip() <= cfg.subnet_max
}

/// True when two subnets share any address.
pub fn overlaps(a: Ipv4Network, b: Ipv4Network) -> bool {
    a.contains(b.network()) || b.contains(a.network())
}

/// Candidates to claim, best first: the previous subnet if still valid and free, then up to
/// [`MAX_CANDIDATES`] free subnets starting at `seed % capacity`, wrapping. A subnet is free
/// when it overlaps no lease in `taken` (leases written under another `SubnetLen` count).
/// Empty when the network is full.
pub fn candidates(
    cfg: &NetConfig,
    taken: &[Ipv4Network],
    previous: Option<Ipv4Network>,
    seed: u64,
) -> Vec<Ipv4Network> {
    let free = |s: &Ipv4Network| !taken.iter().any(|t| overlaps(*t, *s));
    let mut out = Vec::new();
    if let Some(p) = previous.filter(|p| is_valid_subnet(cfg, *p) && free(p)) {
        out.push(p);
    }
    let capacity = cfg.capacity();
    if capacity == 0 {
        return out;
    }
    let start = (seed % u64::from(capacity)) as u32;
    for i in 0..capacity {
        if out.len() > MAX_CANDIDATES {
            break;
        }
        let Some(s) = nth_subnet(cfg, (start + i) % capacity) else {
            continue;
        };
        if free(&s) && Some(s) != previous {
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
        let got = candidates(&c, &[], Some(prev), 0);
        let want: Vec<Ipv4Network> = vec![
            prev,
            "10.0.0.16/28".parse().unwrap(),
            "10.0.0.48/28".parse().unwrap(),
        ];
        assert_eq!(got, want);
        let got = candidates(&c, &[], None, 1);
        assert_eq!(got[0].to_string(), "10.0.0.32/28");
    }

    #[test]
    fn taken_and_invalid_are_skipped() {
        let c = cfg();
        let taken: Vec<Ipv4Network> = vec!["10.0.0.16/28".parse().unwrap()];
        let stale_prev: Ipv4Network = "10.9.0.0/28".parse().unwrap();
        let got = candidates(&c, &taken, Some(stale_prev), 0);
        let want: Vec<Ipv4Network> = vec![
            "10.0.0.32/28".parse().unwrap(),
            "10.0.0.48/28".parse().unwrap(),
        ];
        assert_eq!(got, want);
        let full: Vec<Ipv4Network> = all_subnets(&c).collect();
        assert!(candidates(&c, &full, None, 7).is_empty());
    }

    #[test]
    fn overlapping_leases_of_another_subnet_len_are_taken() {
        let c = cfg();
        // A /27 written under an older config covers 10.0.0.32/28 and 10.0.0.48/28.
        let taken: Vec<Ipv4Network> = vec!["10.0.0.32/27".parse().unwrap()];
        let got = candidates(&c, &taken, Some("10.0.0.48/28".parse().unwrap()), 0);
        assert_eq!(got, vec!["10.0.0.16/28".parse::<Ipv4Network>().unwrap()]);
    }

    #[test]
    fn huge_networks_are_not_materialised() {
        let c = NetConfig::parse(r#"{"Network":"0.0.0.0/0","SubnetLen":30}"#).unwrap();
        let got = candidates(&c, &[], None, 12345);
        assert!(got.len() <= MAX_CANDIDATES + 1 && !got.is_empty());
    }

    #[test]
    fn seeds_spread_nodes() {
        let c = NetConfig::parse(r#"{"Network":"10.244.0.0/16"}"#).unwrap();
        let firsts: std::collections::HashSet<Ipv4Network> = (0..20)
            .map(|i| candidates(&c, &[], None, seed_for(&format!("node-{i}")))[0])
            .collect();
        assert!(
            firsts.len() > 15,
            "20 nodes should mostly start apart: {}",
            firsts.len()
        );
    }
}
