//! Names of the chains and sets the policy engine creates. They are a pure function of the
//! policy's namespace and name (never of the node or of an order), so every node uses the
//! same names, `netctl policy explain` can name them without asking the node, and an
//! operator reading `nft list table inet twill_policy` can tell what each object is for.
//!
//! Kubernetes names are DNS labels and subdomains (`[a-z0-9.-]`), which nft accepts in
//! identifiers after a letter, so names are readable: `pol-in/x/allow-web`. The kernel
//! limits names to 256 bytes; a name that would pass 200 keeps its first 180 bytes and
//! gets a hash of the whole appended, so it stays unique.

use super::semantics::Direction;
use crate::source::model::NetworkPolicy;

/// Bytes past which a name is shortened.
const MAX_NAME: usize = 200;
const KEEP: usize = 180;

fn fnv64(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `s`, or a prefix of it plus a hash of all of it when it is too long.
pub fn bounded(s: String, max: usize, keep: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut cut = keep.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{:016x}", &s[..cut], fnv64(&s))
}

fn name(s: String) -> String {
    bounded(s, MAX_NAME, KEEP)
}

fn fam(v6: bool) -> &'static str {
    if v6 { "6" } else { "4" }
}

fn dir_tag(dir: Direction) -> &'static str {
    match dir {
        Direction::Ingress => "in",
        Direction::Egress => "out",
    }
}

/// `ingress4`, `egress6`: the dispatch verdict maps keyed by local pod address.
pub fn dispatch_map(dir: Direction, v6: bool) -> String {
    format!("{}{}", dir.as_str(), fam(v6))
}

/// `ns-in/x`: the namespace chain holding one jump per policy.
pub fn ns_chain(dir: Direction, ns: &str) -> String {
    name(format!("ns-{}/{ns}", dir_tag(dir)))
}

/// `pol-in/x/allow-web`: the rules of one policy for one direction.
pub fn policy_chain(dir: Direction, ns: &str, policy: &str) -> String {
    name(format!("pol-{}/{ns}/{policy}", dir_tag(dir)))
}

/// `sel4/x/allow-web`: the pods of this node the policy selects.
pub fn sel_set(v6: bool, ns: &str, policy: &str) -> String {
    name(format!("sel{}/{ns}/{policy}", fam(v6)))
}

/// `in0`, `out2`: a rule's position, as used in set names and comments.
pub fn rule_tag(dir: Direction, index: usize) -> String {
    format!("{}{index}", dir_tag(dir))
}

/// `peer4/x/allow-web/in0`: addresses of the pods the rule's selector peers match.
pub fn peer_set(v6: bool, ns: &str, policy: &str, tag: &str) -> String {
    name(format!("peer{}/{ns}/{policy}/{tag}", fam(v6)))
}

/// `nport4/x/allow-web/in0`: `address . protocol . port` of the rule's named ports,
/// resolved on each destination pod.
pub fn named_port_set(v6: bool, ns: &str, policy: &str, tag: &str) -> String {
    name(format!("nport{}/{ns}/{policy}/{tag}", fam(v6)))
}

/// The comment on every rule a policy rule became: `x/allow-web ingress[0]` (at most 127
/// bytes, the kernel's limit for comments).
pub fn rule_comment(pol: &NetworkPolicy, dir: Direction, index: usize) -> String {
    bounded(
        format!("{}/{} {}[{index}]", pol.namespace, pol.name, dir.as_str()),
        120,
        100,
    )
}

/// The nflog prefix for packets a namespace's policies deny (at most 127 bytes).
pub fn log_prefix(dir: Direction, ns: &str) -> String {
    bounded(format!("twill-deny {} {ns}: ", dir.as_str()), 120, 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_readable_and_bounded() {
        assert_eq!(
            policy_chain(Direction::Ingress, "x", "allow-web"),
            "pol-in/x/allow-web"
        );
        assert_eq!(sel_set(true, "x", "p"), "sel6/x/p");
        assert_eq!(peer_set(false, "x", "p", "out1"), "peer4/x/p/out1");
        let long = "a".repeat(253);
        let a = policy_chain(Direction::Egress, "ns", &long);
        assert!(a.len() <= 200, "{}", a.len());
        let b = policy_chain(Direction::Egress, "ns", &format!("{}b", &long[1..]));
        assert_ne!(a, b, "shortened names stay unique");
    }
}
