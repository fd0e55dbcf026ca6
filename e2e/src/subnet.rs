//! Unique /24 test subnets.
//!
//! Every run lives in its own namespaces, so subnets cannot collide with the machine's real
//! networks; they are still made unique per process and call so that parallel runs and a
//! failing run's leftovers never share addresses, and so log lines point at one run.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// An IPv4 /24 network, `a.b.c.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet24(pub [u8; 3]);

impl Subnet24 {
    /// A subnet inside `10.128.0.0/10`, distinct for each call in this process and varying
    /// with the process id.
    pub fn unique() -> Subnet24 {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        Subnet24::from_seed(std::process::id().wrapping_mul(31).wrapping_add(n))
    }

    /// The subnet for a seed: the low 14 bits pick one of the /24s in `10.128.0.0/10`.
    pub fn from_seed(seed: u32) -> Subnet24 {
        let n = seed & 0x3fff;
        Subnet24([10, 128 + (n >> 8) as u8, (n & 0xff) as u8])
    }

    /// `a.b.c.0/24`.
    pub fn cidr(&self) -> String {
        let [a, b, c] = self.0;
        format!("{a}.{b}.{c}.0/24")
    }

    /// Host address `.n` of the subnet.
    pub fn host(&self, n: u8) -> Ipv4Addr {
        let [a, b, c] = self.0;
        Ipv4Addr::new(a, b, c, n)
    }

    /// The address host-local and bridge pick for the gateway (`.1`).
    pub fn gateway(&self) -> Ipv4Addr {
        self.host(1)
    }

    /// Whether `ip` is a usable host address of the subnet (not network or broadcast).
    pub fn contains_host(&self, ip: Ipv4Addr) -> bool {
        let o = ip.octets();
        o[..3] == self.0 && o[3] != 0 && o[3] != 255
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_map_into_10_128_slash_10() {
        assert_eq!(Subnet24::from_seed(0).cidr(), "10.128.0.0/24");
        assert_eq!(Subnet24::from_seed(0x3fff).cidr(), "10.191.255.0/24");
        assert_eq!(Subnet24::from_seed(0x4001), Subnet24::from_seed(1));
    }

    #[test]
    fn unique_differs_per_call() {
        assert_ne!(Subnet24::unique(), Subnet24::unique());
    }

    #[test]
    fn contains_host_excludes_other_subnets_and_edges() {
        let s = Subnet24([10, 130, 7]);
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 130, 7, 1));
        assert!(s.contains_host(Ipv4Addr::new(10, 130, 7, 2)));
        assert!(!s.contains_host(Ipv4Addr::new(10, 130, 8, 2)));
        assert!(!s.contains_host(Ipv4Addr::new(10, 130, 7, 0)));
        assert!(!s.contains_host(Ipv4Addr::new(10, 130, 7, 255)));
    }
}
