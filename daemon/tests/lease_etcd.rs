//! Subnet leasing against a real etcd (`etcd-server`), started on loopback per test.
#![allow(clippy::unwrap_used)]

use ipnetwork::Ipv4Network;
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use twill_testutil::Etcd;
use twilld::lease::manager::{self, HeldLease, LeaseError, LeaseStatus, NodeIdentity, PeerSet};
use twilld::lease::registry::{Registry, RegistryError};

const PREFIX: &str = "/twill/network";
const TTL: Duration = Duration::from_secs(60);

fn node(i: u8) -> NodeIdentity {
    NodeIdentity {
        name: format!("node-{i}"),
        public_ip: Ipv4Addr::new(192, 168, 50, i),
        backend_type: "vxlan".into(),
        backend_data: serde_json::json!({"VNI": 1, "VtepMAC": format!("02:00:00:00:00:{i:02x}")}),
    }
}

/// A fresh etcd with `config` at the prefix, a client, and the parsed config.
async fn cluster_store(config: &str) -> (Etcd, Registry, twilld::netconf::NetConfig) {
    let etcd = Etcd::start();
    let reg = registry(&etcd, config).await;
    let cfg = reg.config().await.unwrap();
    (etcd, reg, cfg)
}

/// Node `i`'s lease with the default TTL and no previous subnet; panics on failure.
async fn claim(reg: &Registry, cfg: &twilld::netconf::NetConfig, i: u8) -> HeldLease {
    manager::acquire(reg, cfg, &node(i), None, TTL)
        .await
        .unwrap()
}

async fn registry(etcd: &Etcd, config: &str) -> Registry {
    let reg = Registry::connect(std::slice::from_ref(&etcd.endpoint), PREFIX)
        .await
        .unwrap();
    reg.put_config(config).await.unwrap();
    reg
}

#[tokio::test]
async fn claims_a_subnet_with_flannel_value_and_ttl() {
    let etcd = Etcd::start();
    let reg = registry(
        &etcd,
        r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#,
    )
    .await;
    let cfg = reg.config().await.unwrap();
    let held = claim(&reg, &cfg, 1).await;
    assert_eq!(held.subnet.prefix(), 24);
    assert!(cfg.network.contains(held.subnet.ip()));
    let (leases, bad, rev) = reg.list().await.unwrap();
    assert!(bad.is_empty() && rev > 0);
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].attrs.public_ip, Ipv4Addr::new(192, 168, 50, 1));
    assert_eq!(leases[0].attrs.backend_type, "vxlan");
    assert_eq!(leases[0].lease_id, held.lease_id);
    let ttl = reg.ttl(held.lease_id).await.unwrap().unwrap();
    assert!(ttl > 0 && ttl <= 60, "{ttl}");
}

#[tokio::test]
async fn missing_or_bad_config_is_a_clear_error() {
    let etcd = Etcd::start();
    let reg = Registry::connect(std::slice::from_ref(&etcd.endpoint), PREFIX)
        .await
        .unwrap();
    let e = reg.config().await.unwrap_err();
    assert!(matches!(e, RegistryError::NoConfig { .. }), "{e}");
    assert!(e.to_string().contains("/twill/network/config"));
    reg.put_config(r#"{"Network":"10.244.0.0/16","SubnetLen":8}"#)
        .await
        .unwrap();
    let e = reg.config().await.unwrap_err();
    assert!(e.to_string().contains("SubnetLen"), "{e}");
}

#[tokio::test]
async fn a_restarted_node_takes_back_its_subnet() {
    let (_etcd, reg, cfg) = cluster_store(r#"{"Network":"10.244.0.0/16"}"#).await;
    let first = claim(&reg, &cfg, 1).await;
    // Restart without a subnet file: found through our PublicIP.
    let again = claim(&reg, &cfg, 1).await;
    assert_eq!(again.subnet, first.subnet);
    assert_ne!(again.lease_id, first.lease_id);
    assert_eq!(reg.list().await.unwrap().0.len(), 1);
    // Lease gone (deleted), subnet file remembers it: the same subnet is claimed again.
    reg.delete(first.subnet).await.unwrap();
    let third = manager::acquire(&reg, &cfg, &node(1), Some(first.subnet), TTL)
        .await
        .unwrap();
    assert_eq!(third.subnet, first.subnet);
}

#[tokio::test]
async fn twenty_nodes_at_once_get_distinct_subnets() {
    let etcd = Etcd::start();
    let reg = registry(&etcd, r#"{"Network":"10.250.0.0/16","SubnetLen":24}"#).await;
    let cfg = reg.config().await.unwrap();
    let mut tasks = Vec::new();
    for i in 1..=20u8 {
        let (reg, cfg) = (reg.clone(), cfg.clone());
        tasks.push(tokio::spawn(async move {
            manager::acquire(&reg, &cfg, &node(i), None, TTL)
                .await
                .unwrap()
        }));
    }
    let mut subnets = HashSet::new();
    for t in tasks {
        subnets.insert(t.await.unwrap().subnet);
    }
    assert_eq!(subnets.len(), 20);
    assert_eq!(reg.list().await.unwrap().0.len(), 20);
}

#[tokio::test]
async fn racing_for_a_tiny_network_never_duplicates_and_reports_full() {
    let etcd = Etcd::start();
    // /26 split into /28s: three usable subnets.
    let reg = registry(&etcd, r#"{"Network":"10.9.0.0/26"}"#).await;
    let cfg = reg.config().await.unwrap();
    let mut tasks = Vec::new();
    for i in 1..=5u8 {
        let (reg, cfg) = (reg.clone(), cfg.clone());
        tasks.push(tokio::spawn(async move {
            manager::acquire(&reg, &cfg, &node(i), None, TTL).await
        }));
    }
    let mut won = HashSet::new();
    let mut full = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(h) => assert!(won.insert(h.subnet), "duplicate {}", h.subnet),
            Err(LeaseError::NetworkFull { capacity, .. }) => {
                assert_eq!(capacity, 3);
                full += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((won.len(), full), (3, 2));
    let e = manager::acquire(&reg, &cfg, &node(9), None, TTL)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("is full"), "{e}");
}

async fn wait_for<T: std::fmt::Debug>(
    rx: &mut watch::Receiver<T>,
    what: &str,
    pred: impl Fn(&T) -> bool,
) {
    let r = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if pred(&rx.borrow_and_update()) {
                return;
            }
            rx.changed().await.unwrap();
        }
    })
    .await;
    if r.is_err() {
        panic!(
            "timed out waiting for {what}; last value: {:?}",
            *rx.borrow()
        );
    }
}

/// `watch_peers` running for a node holding `mine`, with its channels.
struct PeerWatch {
    peers_rx: watch::Receiver<Option<Arc<PeerSet>>>,
    stop_tx: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    errors: Arc<std::sync::atomic::AtomicU64>,
    _status_tx: watch::Sender<LeaseStatus>,
}

impl PeerWatch {
    fn start(reg: &Registry, mine: HeldLease) -> PeerWatch {
        let (status_tx, status_rx) = watch::channel(LeaseStatus::Held {
            lease: mine,
            ttl_secs: 60,
        });
        let (peers_tx, peers_rx) = watch::channel(None::<Arc<PeerSet>>);
        let (stop_tx, stop_rx) = watch::channel(false);
        let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let task = tokio::spawn(manager::watch_peers(
            reg.clone(),
            status_rx,
            peers_tx,
            errors.clone(),
            stop_rx,
        ));
        PeerWatch {
            peers_rx,
            stop_tx,
            task,
            errors,
            _status_tx: status_tx,
        }
    }
}

#[tokio::test]
async fn peers_are_followed_level_triggered() {
    let (_etcd, reg, cfg) = cluster_store(r#"{"Network":"10.244.0.0/16"}"#).await;
    let mine = claim(&reg, &cfg, 1).await;
    let other = claim(&reg, &cfg, 2).await;
    let PeerWatch {
        mut peers_rx,
        stop_tx,
        task,
        ..
    } = PeerWatch::start(&reg, mine);
    wait_for(&mut peers_rx, "first peer", |p| {
        p.as_ref()
            .is_some_and(|p| p.len() == 1 && p.contains_key(&other.subnet))
    })
    .await;
    let third = claim(&reg, &cfg, 3).await;
    wait_for(&mut peers_rx, "added peer", |p| {
        p.as_ref().is_some_and(|p| p.contains_key(&third.subnet))
    })
    .await;
    reg.delete(other.subnet).await.unwrap();
    wait_for(&mut peers_rx, "removed peer", |p| {
        p.as_ref()
            .is_some_and(|p| !p.contains_key(&other.subnet) && p.len() == 1)
    })
    .await;
    assert!(
        !peers_rx
            .borrow()
            .as_ref()
            .unwrap()
            .contains_key(&mine.subnet)
    );
    stop_tx.send_replace(true);
    task.await.unwrap();
}

#[tokio::test]
async fn expired_lease_is_claimed_again_and_etcd_outage_is_survived() {
    let mut etcd = Etcd::start();
    let reg = registry(&etcd, r#"{"Network":"10.244.0.0/16"}"#).await;
    let cfg = reg.config().await.unwrap();
    // A 2 s lease that nobody renews expires: the key disappears.
    let short = Duration::from_secs(2);
    let held = manager::acquire(&reg, &cfg, &node(1), None, short)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(15), async {
        while !reg.list().await.unwrap().0.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("lease should expire");
    // The keeper notices on its next renewal and claims the same subnet again.
    let (status_tx, mut status_rx) = watch::channel(LeaseStatus::Held {
        lease: held,
        ttl_secs: 0,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let keeper = tokio::spawn(manager::keep(
        reg.clone(),
        cfg.clone(),
        node(1),
        held,
        Duration::from_secs(3),
        status_tx,
        stop_rx,
    ));
    wait_for(&mut status_rx, "re-claim", |s| {
        matches!(s, LeaseStatus::Held { lease, ttl_secs } if *ttl_secs > 0 && lease.lease_id != held.lease_id)
    })
    .await;
    let reclaimed: HeldLease = status_rx.borrow().lease();
    assert_eq!(reclaimed.subnet, held.subnet);
    // etcd goes away: the keeper reports it, and recovers when etcd is back.
    etcd.stop();
    wait_for(&mut status_rx, "unreachable", |s| {
        matches!(s, LeaseStatus::EtcdUnreachable { .. })
    })
    .await;
    etcd.resume();
    wait_for(&mut status_rx, "held again", |s| {
        matches!(s, LeaseStatus::Held { .. })
    })
    .await;
    assert_eq!(status_rx.borrow().lease().subnet, held.subnet);
    let subnets: Vec<Ipv4Network> = reg
        .list()
        .await
        .unwrap()
        .0
        .iter()
        .map(|l| l.subnet)
        .collect();
    assert_eq!(subnets, vec![held.subnet]);
    stop_tx.send_replace(true);
    keeper.await.unwrap();
}

#[tokio::test]
async fn a_watch_behind_compacted_history_says_so() {
    let (_etcd, reg, cfg) = cluster_store(r#"{"Network":"10.244.0.0/16"}"#).await;
    let (_, _, before) = reg.list().await.unwrap();
    let held = claim(&reg, &cfg, 1).await;
    reg.delete(held.subnet).await.unwrap();
    let (_, _, now) = reg.list().await.unwrap();
    reg.compact(now).await.unwrap();
    let mut w = reg.watch(before).await.unwrap();
    let e = w.next().await.unwrap_err();
    assert!(matches!(e, RegistryError::Compacted { .. }), "{e}");
    // From the current revision the watch works.
    let mut w = reg.watch(now).await.unwrap();
    let other = claim(&reg, &cfg, 2).await;
    let (events, rev) = w.next().await.unwrap();
    assert!(rev > now);
    assert!(
        matches!(&events[..], [twilld::lease::registry::LeaseEvent::Added(l)] if l.subnet == other.subnet),
        "{events:?}"
    );
}

#[tokio::test]
async fn the_peer_watch_survives_an_etcd_restart() {
    let mut etcd = Etcd::start();
    let reg = registry(&etcd, r#"{"Network":"10.244.0.0/16"}"#).await;
    let cfg = reg.config().await.unwrap();
    let mine = claim(&reg, &cfg, 1).await;
    let first = claim(&reg, &cfg, 2).await;
    let PeerWatch {
        mut peers_rx,
        stop_tx,
        task,
        errors,
        _status_tx,
    } = PeerWatch::start(&reg, mine);
    wait_for(&mut peers_rx, "first peer", |p| {
        p.as_ref().is_some_and(|p| p.contains_key(&first.subnet))
    })
    .await;
    etcd.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    etcd.resume();
    let second = claim(&reg, &cfg, 3).await;
    wait_for(&mut peers_rx, "peer added after the restart", |p| {
        p.as_ref()
            .is_some_and(|p| p.contains_key(&second.subnet) && p.contains_key(&first.subnet))
    })
    .await;
    assert!(errors.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    stop_tx.send_replace(true);
    task.await.unwrap();
}

#[tokio::test]
async fn peers_stay_right_when_our_own_subnet_changes() {
    let (_etcd, reg, cfg) = cluster_store(r#"{"Network":"10.244.0.0/16"}"#).await;
    let old = claim(&reg, &cfg, 1).await;
    let b = claim(&reg, &cfg, 2).await;
    let PeerWatch {
        mut peers_rx,
        stop_tx,
        task,
        _status_tx: status_tx,
        ..
    } = PeerWatch::start(&reg, old);
    wait_for(&mut peers_rx, "first peer", |p| {
        p.as_ref().is_some_and(|p| p.len() == 1)
    })
    .await;
    // Our lease is lost; node 3 takes our old subnet, and we claim a new one.
    reg.delete(old.subnet).await.unwrap();
    let taken = reg
        .create(old.subnet, &node(3).attrs(), TTL)
        .await
        .unwrap()
        .unwrap();
    assert!(taken > 0);
    let new = claim(&reg, &cfg, 1).await;
    assert_ne!(new.subnet, old.subnet);
    status_tx.send_replace(LeaseStatus::Held {
        lease: new,
        ttl_secs: 60,
    });
    wait_for(
        &mut peers_rx,
        "node 3 on our old subnet and node 2, not us",
        |p| {
            p.as_ref().is_some_and(|p| {
                p.len() == 2
                    && p.contains_key(&old.subnet)
                    && p.contains_key(&b.subnet)
                    && !p.contains_key(&new.subnet)
            })
        },
    )
    .await;
    stop_tx.send_replace(true);
    task.await.unwrap();
}
