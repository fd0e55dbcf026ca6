//! MAC spoof check for bridge ports (the bridge plugin's `macspoofchk`).
//!
//! Frames entering the bridge from a container's host-side veth must carry the container's
//! MAC as source; anything else is dropped before the bridge learns or forwards it. Layout,
//! in our own table so the `bridge nat` table other tools use is never touched:
//!
//! ```text
//! table bridge twill_macspoof {
//!     chain prerouting {
//!         type filter hook prerouting priority dstnat; policy accept;
//!         iifname "veth1a2b3c" ether saddr != 02:42:0a:01:02:02 drop comment "<id> if=eth0 net=mynet"
//!     }
//! }
//! ```
//!
//! The reference plugin builds two regular chains per container and a jump; one rule with a
//! negated match does the same with one object to add and delete, found by its owner comment.
//! Priority -300 (`dstnat` in the bridge family) runs before any bridge NAT or filtering.

use super::list::rules_with_comment;
use super::model::{
    BaseChain, ChainType, CmpOp, Family, Hook, IfField, Rule, Stmt, Verdict, parse_mac,
};
use super::owner::Owner;
use super::tx::{TableRef, Transaction};
use super::{NftError, retry_stale};

pub const TABLE: &str = "twill_macspoof";
pub const CHAIN: &str = "prerouting";
pub const PRIORITY: i32 = -300;

pub fn table() -> TableRef {
    TableRef::new(Family::Bridge, TABLE)
}

/// The one rule of an attachment.
pub fn attachment_rule(owner: &Owner, host_veth: &str, mac: [u8; 6]) -> Rule {
    Rule::new(vec![
        Stmt::Ifname {
            field: IfField::Iifname,
            op: CmpOp::Eq,
            name: host_veth.to_owned(),
        },
        Stmt::EtherSaddr {
            op: CmpOp::Neq,
            mac,
        },
        Stmt::Verdict(Verdict::Drop),
    ])
    .with_comment(&owner.comment())
}

/// The setup batch: table and base chain, `stale` handles of this owner deleted, its rule
/// added.
pub fn setup_transaction(
    owner: &Owner,
    host_veth: &str,
    mac: [u8; 6],
    stale: &[u64],
) -> Transaction {
    let t = table();
    let mut tx = Transaction::new();
    tx.add_table(&t).add_chain(
        &t,
        CHAIN,
        Some(BaseChain::new(
            ChainType::Filter,
            Hook::Prerouting,
            PRIORITY,
        )),
    );
    for h in stale {
        tx.delete_rule(&t, CHAIN, *h);
    }
    tx.add_rule(&t, CHAIN, attachment_rule(owner, host_veth, mac));
    tx
}

fn inputs(network: &str, container_id: &str, ifname: &str) -> Result<Owner, NftError> {
    if network.is_empty() || container_id.is_empty() || ifname.is_empty() {
        return Err(NftError::Invalid {
            what: "mac spoof check".to_owned(),
            reason: "empty network name, container id or interface name".to_owned(),
        });
    }
    Ok(Owner::new(container_id, ifname, Some(network)))
}

fn mac_of(container_mac: &str) -> Result<[u8; 6], NftError> {
    parse_mac(container_mac).ok_or_else(|| NftError::Invalid {
        what: "mac spoof check".to_owned(),
        reason: format!("invalid MAC address {container_mac:?}"),
    })
}

fn handles(owner: &Owner) -> Result<Vec<u64>, NftError> {
    Ok(rules_with_comment(&table(), CHAIN, &owner.comment())?
        .into_iter()
        .map(|r| r.handle)
        .collect())
}

/// Drops frames from `host_veth` whose source MAC is not `container_mac`; replaces an earlier
/// rule of the same attachment. One atomic batch.
pub fn setup(
    network: &str,
    container_id: &str,
    ifname: &str,
    host_veth: &str,
    container_mac: &str,
) -> Result<(), NftError> {
    let owner = inputs(network, container_id, ifname)?;
    let mac = mac_of(container_mac)?;
    setup_transaction(&owner, host_veth, mac, &[]).validate()?;
    retry_stale(|| setup_transaction(&owner, host_veth, mac, &handles(&owner)?).commit())
}

/// Removes the attachment's rule; nothing there is success.
pub fn teardown(network: &str, container_id: &str, ifname: &str) -> Result<(), NftError> {
    let owner = inputs(network, container_id, ifname)?;
    let t = table();
    retry_stale(|| {
        let mut tx = Transaction::new();
        for h in handles(&owner)? {
            tx.delete_rule(&t, CHAIN, h);
        }
        tx.commit()
    })
}

/// Errors unless the attachment's rule is in place with this interface and MAC.
pub fn check(
    network: &str,
    container_id: &str,
    ifname: &str,
    host_veth: &str,
    container_mac: &str,
) -> Result<(), NftError> {
    let owner = inputs(network, container_id, ifname)?;
    let want = attachment_rule(&owner, host_veth, mac_of(container_mac)?);
    let have = rules_with_comment(&table(), CHAIN, &owner.comment())?;
    if have.iter().any(|r| r.rule == want) {
        Ok(())
    } else {
        Err(NftError::Missing(format!(
            "mac spoof check for container {container_id} interface {ifname} is missing: {}",
            want.render(Family::Bridge)
        )))
    }
}

/// Removes the rules of this network's attachments that are not in `valid`
/// (`(container id, ifname)` pairs); other networks' rules are left alone.
pub fn gc(network: &str, valid: &[(String, String)]) -> Result<(), NftError> {
    super::gc_owned_rules(&table(), CHAIN, network, valid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_setup_batch() {
        let owner = Owner::new("c1", "eth0", Some("mynet"));
        let tx = setup_transaction(&owner, "veth1234", [2, 0, 0, 0, 0, 1], &[3]);
        assert_eq!(
            tx.to_string(),
            "\
add table bridge twill_macspoof
add chain bridge twill_macspoof prerouting { type filter hook prerouting priority -300; policy accept; }
delete rule bridge twill_macspoof prerouting handle 3
add rule bridge twill_macspoof prerouting iifname \"veth1234\" ether saddr != 02:00:00:00:00:01 drop comment \"c1 if=eth0 net=mynet\"
"
        );
        tx.validate().unwrap();
    }

    #[test]
    fn bad_mac_is_refused_before_the_kernel() {
        let e = setup("mynet", "c1", "eth0", "veth1", "02:00:00:00:00").unwrap_err();
        assert_eq!(
            e.to_string(),
            "mac spoof check: invalid MAC address \"02:00:00:00:00\""
        );
    }
}
