//! Address ranges and range sets: defaults, validation and membership.
//!
//! Behaviour and error texts follow the reference `backend/allocator/range.go` and
//! `range_set.go` as shipped in containernetworking-plugins 1.1.1 (the version in
//! `/usr/lib/cni`), because configs written for the reference must mean the same here:
//! - the gateway defaults to network+1 and is not checked against the subnet (1.1.1 accepts
//!   an off-subnet gateway; later releases reject it);
//! - `rangeStart` defaults to network+1 too: it collides with the default gateway on purpose,
//!   the allocator skips the gateway, so the first address handed out is .2;
//! - `rangeEnd` defaults to the last address of the subnet, minus one for IPv4 (broadcast);
//! - a configured `rangeStart` must lie in the subnet and not after a configured `rangeEnd`,
//!   and both errors say "not in network" as the reference does;
//! - IPv4-mapped IPv6 addresses are IPv4 (Go's `To4` canonicalisation).
//!
//! Everything here is pure; addresses are compared as integers within one family.

use ipnetwork::IpNetwork;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why one range or range set is invalid. Texts are the reference's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("Network {0} too small to allocate from")]
    TooSmall(IpNetwork),
    #[error("IPNet IP and Mask version mismatch")]
    FamilyMismatch,
    #[error(
        "Network has host bits set. For a subnet mask of length {prefix} the network address is {network}"
    )]
    HostBits { prefix: u8, network: IpAddr },
    #[error("RangeStart {ip} not in network {subnet}")]
    StartOutside { ip: IpAddr, subnet: IpNetwork },
    #[error("RangeEnd {ip} not in network {subnet}")]
    EndOutside { ip: IpAddr, subnet: IpNetwork },
    #[error("empty range set")]
    EmptySet,
    #[error("mixed address families")]
    MixedFamilies,
    #[error("subnets {0} and {1} overlap")]
    Overlap(String, String),
}

/// One range as written in the config, before defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSpec {
    pub subnet: IpNetwork,
    pub range_start: Option<IpAddr>,
    pub range_end: Option<IpAddr>,
    pub gateway: Option<IpAddr>,
}

impl RangeSpec {
    pub fn subnet(subnet: IpNetwork) -> RangeSpec {
        RangeSpec {
            subnet,
            range_start: None,
            range_end: None,
            gateway: None,
        }
    }
}

/// A validated range: every address in `start..=end` (inclusive) of `subnet` may be handed
/// out, except `gateway`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub subnet: IpNetwork,
    pub start: IpAddr,
    pub end: IpAddr,
    pub gateway: IpAddr,
}

/// `ip` in Go's canonical form: IPv4-mapped IPv6 becomes IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// The next address in the same family (wrapping at the top, which callers never reach).
pub fn next_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(1))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(1))),
    }
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// Membership with optional bounds, as the reference checks while filling in defaults.
fn within(subnet: &IpNetwork, start: Option<IpAddr>, end: Option<IpAddr>, ip: IpAddr) -> bool {
    let ip = canonical(ip);
    same_family(ip, subnet.ip())
        && subnet.contains(ip)
        && start.is_none_or(|s| ip >= s)
        && end.is_none_or(|e| ip <= e)
}

impl Range {
    /// Fills in defaults and validates, in the reference's order.
    pub fn new(spec: &RangeSpec) -> Result<Range, RangeError> {
        let subnet = spec.subnet;
        let bits = if subnet.is_ipv4() { 32 } else { 128 };
        if subnet.prefix() > bits - 2 {
            return Err(RangeError::TooSmall(subnet));
        }
        if subnet.is_ipv6() && canonical(subnet.ip()).is_ipv4() {
            return Err(RangeError::FamilyMismatch);
        }
        let network = subnet.network();
        if subnet.ip() != network {
            return Err(RangeError::HostBits {
                prefix: subnet.prefix(),
                network,
            });
        }
        // Normalise to the network address so Display and contains() are stable.
        let subnet =
            IpNetwork::new(network, subnet.prefix()).map_err(|_| RangeError::FamilyMismatch)?;
        let gateway = spec
            .gateway
            .map(canonical)
            .unwrap_or_else(|| next_ip(network));
        let start = match spec.range_start.map(canonical) {
            Some(s) => {
                if !within(&subnet, Some(s), spec.range_end.map(canonical), s) {
                    return Err(RangeError::StartOutside { ip: s, subnet });
                }
                s
            }
            None => next_ip(network),
        };
        let end = match spec.range_end.map(canonical) {
            Some(e) => {
                if !within(&subnet, Some(start), Some(e), e) {
                    return Err(RangeError::EndOutside { ip: e, subnet });
                }
                e
            }
            None => last_ip(&subnet),
        };
        Ok(Range {
            subnet,
            start,
            end,
            gateway,
        })
    }

    /// True when `ip` may be allocated from this range (the gateway included: callers
    /// decide about it).
    pub fn contains(&self, ip: IpAddr) -> bool {
        within(&self.subnet, Some(self.start), Some(self.end), ip)
    }

    pub fn is_ipv4(&self) -> bool {
        self.subnet.is_ipv4()
    }

    /// Any overlap between the two `start..=end` spans (different families never overlap).
    pub fn overlaps(&self, other: &Range) -> bool {
        if self.is_ipv4() != other.is_ipv4() {
            return false;
        }
        self.contains(other.start)
            || self.contains(other.end)
            || other.contains(self.start)
            || other.contains(self.end)
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// The last allocatable address of `subnet` by default: IPv4 excludes the broadcast.
fn last_ip(subnet: &IpNetwork) -> IpAddr {
    match subnet.broadcast() {
        IpAddr::V4(b) => IpAddr::V4(Ipv4Addr::from(u32::from(b).wrapping_sub(1))),
        v6 => v6,
    }
}

/// Ranges of one family from which one address is allocated per ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet(pub Vec<Range>);

impl RangeSet {
    /// Validates every range in order, then the family and overlaps within the set.
    pub fn new(specs: &[RangeSpec]) -> Result<RangeSet, RangeError> {
        if specs.is_empty() {
            return Err(RangeError::EmptySet);
        }
        let mut ranges: Vec<Range> = Vec::with_capacity(specs.len());
        for spec in specs {
            let r = Range::new(spec)?;
            if let Some(first) = ranges.first()
                && first.is_ipv4() != r.is_ipv4()
            {
                return Err(RangeError::MixedFamilies);
            }
            ranges.push(r);
        }
        for (i, a) in ranges.iter().enumerate() {
            for b in &ranges[i + 1..] {
                if a.overlaps(b) {
                    return Err(RangeError::Overlap(a.to_string(), b.to_string()));
                }
            }
        }
        Ok(RangeSet(ranges))
    }

    pub fn ranges(&self) -> &[Range] {
        &self.0
    }

    /// The range holding `ip`, if any.
    pub fn range_for(&self, ip: IpAddr) -> Option<&Range> {
        self.0.iter().find(|r| r.contains(ip))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_some()
    }

    pub fn is_ipv4(&self) -> bool {
        self.0.first().is_some_and(Range::is_ipv4)
    }

    pub fn overlaps(&self, other: &RangeSet) -> bool {
        self.0.iter().any(|a| other.0.iter().any(|b| a.overlaps(b)))
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn spec(s: &str) -> RangeSpec {
        RangeSpec::subnet(s.parse().unwrap())
    }

    #[test]
    fn ipv4_defaults_skip_network_and_broadcast() {
        let r = Range::new(&spec("10.1.2.0/24")).unwrap();
        assert_eq!(
            (r.start, r.end, r.gateway),
            (ip("10.1.2.1"), ip("10.1.2.254"), ip("10.1.2.1"))
        );
        assert_eq!(r.to_string(), "10.1.2.1-10.1.2.254");
        let r = Range::new(&spec("10.0.0.0/30")).unwrap();
        assert_eq!((r.start, r.end), (ip("10.0.0.1"), ip("10.0.0.2")));
    }

    #[test]
    fn ipv6_defaults_keep_the_last_address() {
        let r = Range::new(&spec("2001:db8:1::/64")).unwrap();
        assert_eq!(r.gateway, ip("2001:db8:1::1"));
        assert_eq!(r.end, ip("2001:db8:1::ffff:ffff:ffff:ffff"));
    }

    #[test]
    fn too_small_and_host_bits() {
        assert_eq!(
            Range::new(&spec("10.0.0.0/31")).unwrap_err().to_string(),
            "Network 10.0.0.0/31 too small to allocate from"
        );
        assert_eq!(
            Range::new(&spec("10.0.0.1/31")).unwrap_err().to_string(),
            "Network 10.0.0.1/31 too small to allocate from"
        );
        assert_eq!(
            Range::new(&spec("fd00::/127")).unwrap_err().to_string(),
            "Network fd00::/127 too small to allocate from"
        );
        assert_eq!(
            Range::new(&spec("10.0.0.1/24")).unwrap_err().to_string(),
            "Network has host bits set. For a subnet mask of length 24 the network address is 10.0.0.0"
        );
        assert!(Range::new(&spec("10.0.0.0/30")).is_ok());
    }

    #[test]
    fn start_and_end_must_be_inside() {
        let mut s = spec("10.0.0.0/24");
        s.range_start = Some(ip("10.0.1.5"));
        assert_eq!(
            Range::new(&s).unwrap_err().to_string(),
            "RangeStart 10.0.1.5 not in network 10.0.0.0/24"
        );
        s.range_start = Some(ip("fd00::1"));
        assert!(matches!(
            Range::new(&s),
            Err(RangeError::StartOutside { .. })
        ));
        let mut s = spec("10.0.0.0/24");
        s.range_end = Some(ip("10.0.1.5"));
        assert_eq!(
            Range::new(&s).unwrap_err().to_string(),
            "RangeEnd 10.0.1.5 not in network 10.0.0.0/24"
        );
        // Start after end: the reference reports the start.
        let mut s = spec("10.0.0.0/24");
        s.range_start = Some(ip("10.0.0.10"));
        s.range_end = Some(ip("10.0.0.5"));
        assert_eq!(
            Range::new(&s).unwrap_err().to_string(),
            "RangeStart 10.0.0.10 not in network 10.0.0.0/24"
        );
    }

    #[test]
    fn gateway_is_not_checked_like_1_1_1() {
        let mut s = spec("10.0.0.0/24");
        s.gateway = Some(ip("10.0.1.5"));
        let r = Range::new(&s).unwrap();
        assert_eq!((r.gateway, r.start), (ip("10.0.1.5"), ip("10.0.0.1")));
    }

    #[test]
    fn mapped_addresses_are_ipv4() {
        let mut s = spec("10.0.0.0/24");
        s.range_start = Some(ip("::ffff:10.0.0.9"));
        assert_eq!(Range::new(&s).unwrap().start, ip("10.0.0.9"));
        assert!(Range::new(&s).unwrap().contains(ip("::ffff:10.0.0.10")));
        assert_eq!(
            Range::new(&spec("::ffff:10.0.0.0/120")).unwrap_err(),
            RangeError::FamilyMismatch
        );
    }

    #[test]
    fn sets_reject_empty_mixed_and_overlapping() {
        assert_eq!(RangeSet::new(&[]).unwrap_err(), RangeError::EmptySet);
        assert_eq!(
            RangeSet::new(&[spec("10.0.0.0/24"), spec("fd00::/64")]).unwrap_err(),
            RangeError::MixedFamilies
        );
        assert_eq!(
            RangeSet::new(&[spec("10.0.0.0/24"), spec("10.0.0.0/25")])
                .unwrap_err()
                .to_string(),
            "subnets 10.0.0.1-10.0.0.254 and 10.0.0.1-10.0.0.126 overlap"
        );
        let set = RangeSet::new(&[spec("10.0.0.0/24"), spec("10.0.1.0/24")]).unwrap();
        assert_eq!(set.to_string(), "10.0.0.1-10.0.0.254,10.0.1.1-10.0.1.254");
        assert!(set.contains(ip("10.0.1.7")));
        assert!(!set.contains(ip("10.0.1.255")));
        assert!(!set.contains(ip("fd00::1")));
    }

    #[test]
    fn overlap_uses_the_allocatable_span() {
        let mut a = spec("10.0.0.0/24");
        a.range_end = Some(ip("10.0.0.100"));
        let mut b = spec("10.0.0.0/24");
        b.range_start = Some(ip("10.0.0.101"));
        let a = RangeSet::new(&[a]).unwrap();
        let b = RangeSet::new(&[b]).unwrap();
        assert!(!a.overlaps(&b));
        let c = RangeSet::new(&[spec("10.0.0.0/25")]).unwrap();
        assert!(a.overlaps(&c));
    }
}
