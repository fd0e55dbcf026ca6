//! Allocation policy over a [`Store`]: which address to hand out, and which to release.
//!
//! Pure logic in the shape of the reference's `backend/allocator` over `backend.Store`, so it
//! is tested against [`MemStore`] and runs for real over the disk store. The policy is the
//! reference's, because both plugins may take turns on one data directory:
//! - round-robin: start after `last_reserved_ip.<set>` when that address is in the set, else
//!   at the first range's start; walk to each range's end, wrap to the next range, and give up
//!   when back at the first candidate. The gateway is never handed out;
//! - one address per range set; a requested address is taken from the set containing it;
//! - a second ADD for the same (container, ifname) in a set is refused;
//! - DEL matches `<id>\r\n<ifname>` files and, only when none match, legacy files holding just
//!   the id.
//!
//! Deliberate differences: everything one ADD reserved (addresses *and* the previous
//! `last_reserved_ip`) is rolled back by a guard when a later set fails, where the reference
//! releases by (id, ifname) and leaves `last_reserved_ip` moved; and GC, which the reference
//! lacks, releases what the runtime no longer lists.

use crate::range::{Range, RangeSet, next_ip};
use ipnetwork::IpNetwork;
use std::collections::BTreeMap;
use std::net::IpAddr;
use twill_cni::config::Attachment;

/// Separates the container id from the interface name inside a reservation file.
pub const LINE_BREAK: &str = "\r\n";

/// A failure of the storage underneath; the message names the file or directory.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("create data directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("lock {path}: {source}")]
    Lock {
        path: String,
        source: std::io::Error,
    },
    #[error("reserve {ip} in {dir}: {source}")]
    Reserve {
        ip: IpAddr,
        dir: String,
        source: std::io::Error,
    },
    #[error("record last reserved address {path}: {source}")]
    LastReserved {
        path: String,
        source: std::io::Error,
    },
    #[error("release {ip} in {dir}: {source}")]
    Release {
        ip: IpAddr,
        dir: String,
        source: std::io::Error,
    },
    #[error("write a file in {dir}: {source}")]
    Write { dir: String, source: std::io::Error },
    #[error("list reservations in {dir}: {source}")]
    List { dir: String, source: std::io::Error },
}

/// Who holds an address, as read back from its reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub id: String,
    /// `None` for legacy reservations that recorded only the container id.
    pub ifname: Option<String>,
}

impl Owner {
    /// Reads a reservation's content; surrounding whitespace is ignored like the reference.
    pub fn parse(content: &str) -> Owner {
        let t = content.trim();
        match t.split_once(LINE_BREAK) {
            Some((id, ifname)) => Owner {
                id: id.to_owned(),
                ifname: Some(ifname.to_owned()),
            },
            None => Owner {
                id: t.to_owned(),
                ifname: None,
            },
        }
    }

    /// The content written for a new reservation: `<id trimmed>\r\n<ifname>`.
    pub fn render(id: &str, ifname: &str) -> String {
        format!("{}{LINE_BREAK}{ifname}", id.trim())
    }

    /// Exactly this (container, ifname).
    pub fn is(&self, id: &str, ifname: &str) -> bool {
        self.id == id.trim() && self.ifname.as_deref() == Some(ifname)
    }

    /// A legacy reservation of this container.
    pub fn is_legacy_of(&self, id: &str) -> bool {
        self.ifname.is_none() && self.id == id.trim()
    }
}

/// Reservations of one network. The caller holds whatever lock makes a sequence of calls
/// atomic (the disk store is opened locked).
pub trait Store {
    /// Creates the reservation of `ip` for (id, ifname) unless the address is taken, and on
    /// success records `ip` as the last one reserved in range set `set`. `Ok(false)` = taken.
    fn reserve(
        &mut self,
        id: &str,
        ifname: &str,
        ip: IpAddr,
        set: usize,
    ) -> Result<bool, StoreError>;
    /// The last address reserved in range set `set`; `None` when unknown or unreadable
    /// (round-robin then restarts, as in the reference).
    fn last_reserved(&self, set: usize) -> Option<IpAddr>;
    /// Overwrites (or with `None` removes) the last-reserved record of `set`.
    fn set_last_reserved(&mut self, set: usize, ip: Option<IpAddr>) -> Result<(), StoreError>;
    /// Every reservation with its owner, in address order.
    fn reservations(&self) -> Result<Vec<(IpAddr, Owner)>, StoreError>;
    /// Removes the reservation of `ip`; a missing one is not an error.
    fn release_ip(&mut self, ip: IpAddr) -> Result<(), StoreError>;
}

/// An in-memory [`Store`] for tests of the policy (and of plugins built on it).
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    /// Address -> reservation content, as the disk store would hold it.
    pub ips: BTreeMap<IpAddr, String>,
    pub last: BTreeMap<usize, IpAddr>,
    /// Addresses whose release fails (to test that teardown keeps going).
    pub fail_release: Vec<IpAddr>,
}

impl MemStore {
    /// A store already holding `ips` (address, content) and last-reserved records.
    pub fn with(
        ips: &[(&str, &str)],
        last: &[(usize, &str)],
    ) -> Result<MemStore, std::net::AddrParseError> {
        let mut s = MemStore::default();
        for (ip, c) in ips {
            s.ips.insert(ip.parse()?, (*c).to_owned());
        }
        for (set, ip) in last {
            s.last.insert(*set, ip.parse()?);
        }
        Ok(s)
    }
}

impl Store for MemStore {
    fn reserve(
        &mut self,
        id: &str,
        ifname: &str,
        ip: IpAddr,
        set: usize,
    ) -> Result<bool, StoreError> {
        if self.ips.contains_key(&ip) {
            return Ok(false);
        }
        self.ips.insert(ip, Owner::render(id, ifname));
        self.last.insert(set, ip);
        Ok(true)
    }

    fn last_reserved(&self, set: usize) -> Option<IpAddr> {
        self.last.get(&set).copied()
    }

    fn set_last_reserved(&mut self, set: usize, ip: Option<IpAddr>) -> Result<(), StoreError> {
        match ip {
            Some(ip) => self.last.insert(set, ip),
            None => self.last.remove(&set),
        };
        Ok(())
    }

    fn reservations(&self) -> Result<Vec<(IpAddr, Owner)>, StoreError> {
        Ok(self
            .ips
            .iter()
            .map(|(ip, c)| (*ip, Owner::parse(c)))
            .collect())
    }

    fn release_ip(&mut self, ip: IpAddr) -> Result<(), StoreError> {
        if self.fail_release.contains(&ip) {
            return Err(StoreError::Release {
                ip,
                dir: "memory".into(),
                source: std::io::Error::other("injected failure"),
            });
        }
        self.ips.remove(&ip);
        Ok(())
    }
}

/// Candidate addresses of a range set in round-robin order, each with its range.
///
/// Starts after `last_reserved` when the set contains it (so that address itself comes
/// last), else at the first range's start; skips gateways; ends when back at the first
/// candidate.
#[derive(Debug, Clone)]
pub struct Candidates<'a> {
    set: &'a RangeSet,
    idx: usize,
    cur: Option<IpAddr>,
    first: Option<IpAddr>,
    done: bool,
}

impl<'a> Candidates<'a> {
    pub fn new(set: &'a RangeSet, last_reserved: Option<IpAddr>) -> Candidates<'a> {
        let start = last_reserved.and_then(|ip| {
            set.ranges()
                .iter()
                .position(|r| r.contains(ip))
                .map(|idx| (idx, ip))
        });
        match start {
            Some((idx, ip)) => Candidates {
                set,
                idx,
                cur: Some(ip),
                first: None,
                done: false,
            },
            None => Candidates {
                set,
                idx: 0,
                cur: None,
                first: None,
                done: set.ranges().is_empty(),
            },
        }
    }
}

impl<'a> Iterator for Candidates<'a> {
    type Item = (IpAddr, &'a Range);

    fn next(&mut self) -> Option<Self::Item> {
        let ranges = self.set.ranges();
        while !self.done {
            let ip = match self.cur {
                None => ranges[self.idx].start,
                // `>=` rather than the reference's `==`: a rangeStart configured past the
                // default rangeEnd must not walk out of the subnet.
                Some(c) if c >= ranges[self.idx].end => {
                    self.idx = (self.idx + 1) % ranges.len();
                    ranges[self.idx].start
                }
                Some(c) => next_ip(c),
            };
            self.cur = Some(ip);
            match self.first {
                None => self.first = Some(ip),
                Some(f) if f == ip => {
                    self.done = true;
                    return None;
                }
                Some(_) => {}
            }
            let r = &ranges[self.idx];
            if ip != r.gateway {
                return Some((ip, r));
            }
        }
        None
    }
}

/// Why one range set could not provide an address. Texts are the reference's.
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    #[error("requested ip {0} is subnet's gateway")]
    Gateway(IpAddr),
    #[error("requested IP address {ip} is not available in range set {set}")]
    Taken { ip: IpAddr, set: String },
    #[error("{ip} has been allocated to {id}, duplicate allocation is not allowed")]
    Duplicate { ip: IpAddr, id: String },
    #[error("no IP addresses available in range set: {0}")]
    Exhausted(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why an ADD got no addresses (nothing it reserved is left behind).
#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    #[error("failed to allocate for range {set}: {source}")]
    Set { set: usize, source: SetError },
    #[error("failed to allocate all requested IPs: {}", join(.0))]
    Unfulfilled(Vec<IpAddr>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn join(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One ADD's request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub id: &'a str,
    pub ifname: &'a str,
    /// Specific addresses wanted; each must fall in some range set.
    pub requested: &'a [IpAddr],
}

/// An address handed out from range set `set`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub set: usize,
    /// The address with its subnet's prefix length.
    pub address: IpNetwork,
    pub gateway: IpAddr,
}

/// Undoes the reservations of a failed ADD on drop: each address is released and its set's
/// last-reserved record put back.
struct Rollback<'s> {
    store: &'s mut dyn Store,
    undo: Vec<(IpAddr, usize, Option<IpAddr>)>,
}

impl Rollback<'_> {
    fn commit(mut self) {
        self.undo.clear();
    }
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        for (ip, set, prev) in self.undo.drain(..).rev() {
            // Best effort: the error that caused the rollback is the one reported.
            let _ = self.store.release_ip(ip);
            let _ = self.store.set_last_reserved(set, prev);
        }
    }
}

fn allocate_in_set(
    store: &mut dyn Store,
    set: &RangeSet,
    idx: usize,
    req: &Request<'_>,
    requested: Option<IpAddr>,
    existing: &[(IpAddr, Owner)],
) -> Result<(IpAddr, Range), SetError> {
    if let Some(ip) = requested {
        let r = set
            .range_for(ip)
            .ok_or_else(|| SetError::Exhausted(set.to_string()))?;
        if ip == r.gateway {
            return Err(SetError::Gateway(ip));
        }
        if !store.reserve(req.id, req.ifname, ip, idx)? {
            return Err(SetError::Taken {
                ip,
                set: set.to_string(),
            });
        }
        return Ok((ip, r.clone()));
    }
    if let Some((ip, _)) = existing
        .iter()
        .find(|(ip, o)| (o.is(req.id, req.ifname) || o.is_legacy_of(req.id)) && set.contains(*ip))
    {
        return Err(SetError::Duplicate {
            ip: *ip,
            id: req.id.to_owned(),
        });
    }
    let last = store.last_reserved(idx);
    for (ip, r) in Candidates::new(set, last) {
        if store.reserve(req.id, req.ifname, ip, idx)? {
            return Ok((ip, r.clone()));
        }
    }
    Err(SetError::Exhausted(set.to_string()))
}

/// Reserves one address in every range set for (id, ifname). On any failure everything
/// this call reserved is released again and the store is as before.
pub fn allocate(
    store: &mut dyn Store,
    sets: &[RangeSet],
    req: &Request<'_>,
) -> Result<Vec<Allocation>, AllocError> {
    let existing = store.reservations()?;
    let mut pending: Vec<IpAddr> = Vec::new();
    for ip in req.requested {
        if !pending.contains(ip) {
            pending.push(*ip);
        }
    }
    let mut guard = Rollback {
        store,
        undo: Vec::new(),
    };
    let mut out = Vec::with_capacity(sets.len());
    for (idx, set) in sets.iter().enumerate() {
        let want = pending
            .iter()
            .position(|ip| set.contains(*ip))
            .map(|p| pending.remove(p));
        let prev = guard.store.last_reserved(idx);
        let (ip, range) = allocate_in_set(&mut *guard.store, set, idx, req, want, &existing)
            .map_err(|source| AllocError::Set { set: idx, source })?;
        guard.undo.push((ip, idx, prev));
        let address = IpNetwork::new(ip, range.subnet.prefix()).map_err(|_| AllocError::Set {
            set: idx,
            source: SetError::Exhausted(set.to_string()),
        })?;
        out.push(Allocation {
            set: idx,
            address,
            gateway: range.gateway,
        });
    }
    if !pending.is_empty() {
        return Err(AllocError::Unfulfilled(pending));
    }
    guard.commit();
    Ok(out)
}

/// The addresses held by (id, ifname): exact reservations, or when there are none the
/// container's legacy ones.
pub fn find(store: &dyn Store, id: &str, ifname: &str) -> Result<Vec<IpAddr>, StoreError> {
    let all = store.reservations()?;
    let exact: Vec<IpAddr> = all
        .iter()
        .filter(|(_, o)| o.is(id, ifname))
        .map(|(ip, _)| *ip)
        .collect();
    if !exact.is_empty() {
        return Ok(exact);
    }
    Ok(all
        .iter()
        .filter(|(_, o)| o.is_legacy_of(id))
        .map(|(ip, _)| *ip)
        .collect())
}

/// Teardown results: what was released and every failure met on the way.
#[derive(Debug, Default)]
pub struct Released {
    pub ips: Vec<IpAddr>,
    pub errors: Vec<StoreError>,
}

fn release_all(store: &mut dyn Store, ips: Vec<IpAddr>) -> Released {
    let mut out = Released::default();
    for ip in ips {
        match store.release_ip(ip) {
            Ok(()) => out.ips.push(ip),
            Err(e) => out.errors.push(e),
        }
    }
    out
}

/// DEL: releases (id, ifname)'s addresses in every set, continuing past failures. Unknown
/// ids release nothing and are not an error.
pub fn release(store: &mut dyn Store, id: &str, ifname: &str) -> Result<Released, StoreError> {
    let ips = find(store, id, ifname)?;
    Ok(release_all(store, ips))
}

/// GC: releases every reservation whose owner is not among `valid`. A legacy reservation
/// (id only) is kept when any valid attachment has its container id.
pub fn gc(store: &mut dyn Store, valid: &[Attachment]) -> Result<Released, StoreError> {
    let stale: Vec<IpAddr> = store
        .reservations()?
        .into_iter()
        .filter(|(_, o)| match &o.ifname {
            Some(ifname) => !valid
                .iter()
                .any(|a| a.container_id.trim() == o.id && &a.ifname == ifname),
            None => !valid.iter().any(|a| a.container_id.trim() == o.id),
        })
        .map(|(ip, _)| ip)
        .collect();
    Ok(release_all(store, stale))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::range::RangeSpec;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn set(subnets: &[&str]) -> RangeSet {
        let specs: Vec<RangeSpec> = subnets
            .iter()
            .map(|s| RangeSpec::subnet(s.parse().unwrap()))
            .collect();
        RangeSet::new(&specs).unwrap()
    }

    fn req<'a>(id: &'a str) -> Request<'a> {
        Request {
            id,
            ifname: "eth0",
            requested: &[],
        }
    }

    fn get(
        store: &mut MemStore,
        sets: &[RangeSet],
        id: &str,
    ) -> Result<Vec<Allocation>, AllocError> {
        allocate(store, sets, &req(id))
    }

    fn iter_ips(set: &RangeSet, last: Option<&str>) -> Vec<String> {
        Candidates::new(set, last.map(ip))
            .map(|(ip, _)| ip.to_string())
            .collect()
    }

    /// `allocator_test.go` "RangeIter" cases on 192.168.1.0/29.
    #[test]
    fn iterator_loops_from_beginning_end_and_middle() {
        let s = set(&["192.168.1.0/29"]);
        let all = [
            "192.168.1.2",
            "192.168.1.3",
            "192.168.1.4",
            "192.168.1.5",
            "192.168.1.6",
        ];
        assert_eq!(iter_ips(&s, None), all);
        assert_eq!(iter_ips(&s, Some("192.168.1.6")), all);
        assert_eq!(
            iter_ips(&s, Some("192.168.1.3")),
            [
                "192.168.1.4",
                "192.168.1.5",
                "192.168.1.6",
                "192.168.1.2",
                "192.168.1.3"
            ]
        );
    }

    /// `allocator_test.go` "should allocate ips in round robin": (subnets, taken, last, want).
    #[test]
    fn round_robin_table() {
        let cases: &[(&[&str], &[&str], &str, &str)] = &[
            (&["10.0.0.0/29"], &[], "", "10.0.0.2"),
            (&["2001:db8:1::0/64"], &[], "", "2001:db8:1::2"),
            (&["10.0.0.0/30"], &[], "", "10.0.0.2"),
            (&["10.0.0.0/29"], &["10.0.0.2"], "", "10.0.0.3"),
            (&["10.0.0.0/29"], &[], "10.0.0.5", "10.0.0.6"),
            (
                &["10.0.0.0/29"],
                &["10.0.0.4", "10.0.0.5"],
                "10.0.0.3",
                "10.0.0.6",
            ),
            (&["10.0.0.0/29"], &["10.0.0.6"], "10.0.0.5", "10.0.0.2"),
            (&["10.0.0.0/29"], &["10.0.0.2"], "10.0.0.128", "10.0.0.3"),
            (
                &["10.0.0.0/29"],
                &["10.0.0.2", "10.0.0.4", "10.0.0.5", "10.0.0.6"],
                "10.0.0.3",
                "10.0.0.3",
            ),
            (&["10.0.0.0/30", "10.0.1.0/30"], &[], "", "10.0.0.2"),
            (&["10.0.0.0/30", "10.0.1.0/30"], &[], "10.0.0.2", "10.0.1.2"),
            (
                &["10.0.0.0/30", "10.0.1.0/30", "10.0.2.0/30"],
                &[],
                "10.0.2.2",
                "10.0.0.2",
            ),
        ];
        for (i, (subnets, taken, last, want)) in cases.iter().enumerate() {
            let s = set(subnets);
            let taken: Vec<(&str, &str)> = taken.iter().map(|t| (*t, "id")).collect();
            let last: Vec<(usize, &str)> = if last.is_empty() {
                vec![]
            } else {
                vec![(0, *last)]
            };
            let mut store = MemStore::with(&taken, &last).unwrap();
            let got = get(&mut store, &[s], "ID").unwrap_or_else(|e| panic!("case {i}: {e}"));
            assert_eq!(got[0].address.ip().to_string(), *want, "case {i}");
            assert_eq!(store.last_reserved(0), Some(ip(want)), "case {i}");
        }
    }

    #[test]
    fn broadcast_is_not_allocated() {
        let sets = [set(&["192.168.1.0/29"])];
        let mut store = MemStore::default();
        for i in 2..7 {
            let got = get(&mut store, &sets, &format!("ID{i}")).unwrap();
            assert_eq!(got[0].address.to_string(), format!("192.168.1.{i}/29"));
            assert_eq!(got[0].gateway, ip("192.168.1.1"));
        }
        let e = get(&mut store, &sets, "ID8").unwrap_err();
        assert_eq!(
            e.to_string(),
            "failed to allocate for range 0: no IP addresses available in range set: 192.168.1.1-192.168.1.6"
        );
    }

    #[test]
    fn round_robin_after_release() {
        let sets = [set(&["192.168.1.0/29"])];
        let mut store = MemStore::default();
        assert_eq!(
            get(&mut store, &sets, "ID").unwrap()[0].address.to_string(),
            "192.168.1.2/29"
        );
        assert_eq!(
            release(&mut store, "ID", "eth0").unwrap().ips,
            [ip("192.168.1.2")]
        );
        assert_eq!(
            get(&mut store, &sets, "ID").unwrap()[0].address.to_string(),
            "192.168.1.3/29"
        );
    }

    /// `allocator_test.go` "when out of ips".
    #[test]
    fn out_of_ips() {
        let cases: &[(&[&str], &[&str])] = &[
            (&["10.0.0.0/30"], &["10.0.0.2"]),
            (
                &["10.0.0.0/29"],
                &["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"],
            ),
            (&["10.0.0.0/30", "10.0.1.0/30"], &["10.0.0.2", "10.0.1.2"]),
        ];
        for (subnets, taken) in cases {
            let taken: Vec<(&str, &str)> = taken.iter().map(|t| (*t, "id")).collect();
            let mut store = MemStore::with(&taken, &[]).unwrap();
            let before = store.ips.clone();
            let e = get(&mut store, &[set(subnets)], "ID").unwrap_err();
            assert!(
                matches!(
                    &e,
                    AllocError::Set {
                        source: SetError::Exhausted(_),
                        ..
                    }
                ),
                "{e}"
            );
            assert!(
                e.to_string()
                    .contains("no IP addresses available in range set")
            );
            assert_eq!(store.ips, before);
            assert!(store.last.is_empty());
        }
    }

    #[test]
    fn requested_ip() {
        let sets = [set(&["192.168.1.0/29"])];
        let mut store = MemStore::default();
        let want = [ip("192.168.1.5")];
        let r = Request {
            id: "ID",
            ifname: "eth0",
            requested: &want,
        };
        assert_eq!(
            allocate(&mut store, &sets, &r).unwrap()[0].address.ip(),
            want[0]
        );
        let e = allocate(&mut store, &sets, &r).unwrap_err();
        assert_eq!(
            e.to_string(),
            "failed to allocate for range 0: requested IP address 192.168.1.5 is not available in range set 192.168.1.1-192.168.1.6"
        );
        let gw = [ip("192.168.1.1")];
        let r = Request {
            id: "ID2",
            ifname: "eth0",
            requested: &gw,
        };
        let e = allocate(&mut store, &sets, &r).unwrap_err();
        assert_eq!(
            e.to_string(),
            "failed to allocate for range 0: requested ip 192.168.1.1 is subnet's gateway"
        );
    }

    #[test]
    fn requested_ip_outside_range_is_unfulfilled() {
        let mut s = RangeSpec::subnet("192.168.1.0/29".parse().unwrap());
        s.range_end = Some(ip("192.168.1.4"));
        let sets = [RangeSet::new(&[s]).unwrap()];
        let mut store = MemStore::default();
        let want = [ip("192.168.1.5")];
        let r = Request {
            id: "ID",
            ifname: "eth0",
            requested: &want,
        };
        let e = allocate(&mut store, &sets, &r).unwrap_err();
        assert_eq!(
            e.to_string(),
            "failed to allocate all requested IPs: 192.168.1.5"
        );
        assert!(
            store.ips.is_empty(),
            "the set's dynamic address was rolled back"
        );
        assert!(store.last.is_empty());
    }

    #[test]
    fn duplicate_allocation_is_refused_per_set() {
        let sets = [set(&["10.1.2.0/24"]), set(&["2001:db8:1::/64"])];
        let mut store = MemStore::default();
        get(&mut store, &sets, "dummy").unwrap();
        let e = get(&mut store, &sets, "dummy").unwrap_err();
        assert_eq!(
            e.to_string(),
            "failed to allocate for range 0: 10.1.2.2 has been allocated to dummy, duplicate allocation is not allowed"
        );
        // Another interface of the same container is another attachment.
        let r = Request {
            id: "dummy",
            ifname: "eth1",
            requested: &[],
        };
        assert_eq!(
            allocate(&mut store, &sets, &r).unwrap()[0]
                .address
                .to_string(),
            "10.1.2.3/24"
        );
        // A legacy reservation of the id counts as a duplicate too.
        let mut store = MemStore::with(&[("10.1.2.9", "legacy")], &[]).unwrap();
        assert!(matches!(
            get(&mut store, &sets, "legacy"),
            Err(AllocError::Set {
                set: 0,
                source: SetError::Duplicate { .. }
            })
        ));
    }

    #[test]
    fn failure_in_a_later_set_rolls_back_everything() {
        let sets = [set(&["10.1.2.0/24"]), set(&["10.2.0.0/30"])];
        let mut store =
            MemStore::with(&[("10.2.0.2", "other\r\neth0")], &[(0, "10.1.2.7")]).unwrap();
        let before = (store.ips.clone(), store.last.clone());
        let e = get(&mut store, &sets, "c1").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("failed to allocate for range 1: no IP addresses available"),
            "{e}"
        );
        assert_eq!((store.ips.clone(), store.last.clone()), before);
    }

    #[test]
    fn multiple_sets_and_families() {
        let sets = [
            set(&["10.1.2.0/24", "10.2.2.0/24"]),
            set(&["2001:db8:1::/64"]),
        ];
        let mut store = MemStore::default();
        let got = get(&mut store, &sets, "dummy").unwrap();
        assert_eq!(got[0].address.to_string(), "10.1.2.2/24");
        assert_eq!(got[1].address.to_string(), "2001:db8:1::2/64");
        assert_eq!(got[1].gateway, ip("2001:db8:1::1"));
        assert_eq!(store.ips[&ip("10.1.2.2")], "dummy\r\neth0");
        assert_eq!(store.last_reserved(1), Some(ip("2001:db8:1::2")));
        let two = [ip("10.1.2.88"), ip("10.2.2.77")];
        let r = Request {
            id: "c2",
            ifname: "eth0",
            requested: &two,
        };
        let e = allocate(&mut store, &sets, &r).unwrap_err();
        assert_eq!(
            e.to_string(),
            "failed to allocate all requested IPs: 10.2.2.77"
        );
        assert_eq!(store.ips.len(), 2);
    }

    #[test]
    fn release_prefers_exact_matches_then_legacy() {
        let mut store = MemStore::with(
            &[
                ("10.0.0.2", "c1\r\neth0"),
                ("10.0.0.3", "c1\r\neth1"),
                ("10.0.0.4", "c1"),
                ("10.0.0.5", " c2 \n"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            release(&mut store, "c1", "eth0").unwrap().ips,
            [ip("10.0.0.2")]
        );
        assert_eq!(
            find(&store, "c1", "eth0").unwrap(),
            [ip("10.0.0.4")],
            "legacy file found by CHECK"
        );
        assert_eq!(
            release(&mut store, "c1", "eth0").unwrap().ips,
            [ip("10.0.0.4")]
        );
        assert_eq!(
            release(&mut store, "c2", "eth0").unwrap().ips,
            [ip("10.0.0.5")]
        );
        assert!(
            release(&mut store, "nobody", "eth0")
                .unwrap()
                .ips
                .is_empty()
        );
        assert_eq!(
            store.ips.keys().copied().collect::<Vec<_>>(),
            [ip("10.0.0.3")]
        );
    }

    #[test]
    fn gc_keeps_valid_attachments_and_continues_past_errors() {
        let mut store = MemStore::with(
            &[
                ("10.0.0.2", "keep\r\neth0"),
                ("10.0.0.3", "keep\r\neth1"),
                ("10.0.0.4", "gone\r\neth0"),
                ("10.0.0.5", "stuck\r\neth0"),
                ("10.0.0.6", "keep"),
                ("10.0.0.7", "legacy-gone"),
            ],
            &[(0, "10.0.0.7")],
        )
        .unwrap();
        store.fail_release = vec![ip("10.0.0.5")];
        let valid = [Attachment {
            container_id: "keep".into(),
            ifname: "eth0".into(),
        }];
        let r = gc(&mut store, &valid).unwrap();
        assert_eq!(r.ips, [ip("10.0.0.3"), ip("10.0.0.4"), ip("10.0.0.7")]);
        assert_eq!(r.errors.len(), 1);
        assert!(r.errors[0].to_string().contains("release 10.0.0.5"));
        let left: Vec<IpAddr> = store.ips.keys().copied().collect();
        assert_eq!(left, [ip("10.0.0.2"), ip("10.0.0.5"), ip("10.0.0.6")]);
        assert_eq!(
            store.last_reserved(0),
            Some(ip("10.0.0.7")),
            "bookkeeping untouched"
        );
    }

    #[test]
    fn owner_format() {
        assert_eq!(Owner::render("  dummy\n ", "eth0"), "dummy\r\neth0");
        assert_eq!(
            Owner::parse("dummy\r\neth0\n"),
            Owner {
                id: "dummy".into(),
                ifname: Some("eth0".into())
            }
        );
        assert_eq!(
            Owner::parse(" dummy \n"),
            Owner {
                id: "dummy".into(),
                ifname: None
            }
        );
    }

    #[test]
    fn start_past_default_end_stays_in_the_subnet() {
        let mut s = RangeSpec::subnet("10.0.0.0/30".parse().unwrap());
        s.range_start = Some(ip("10.0.0.3"));
        let set = RangeSet::new(&[s]).unwrap();
        assert_eq!(iter_ips(&set, None), ["10.0.0.3"]);
    }
}
