//! The on-disk [`Store`]: one file per address, byte-for-byte the reference's layout.
//!
//! `<dataDir>/<network>/` holds, exactly as the reference `backend/disk` writes them:
//! - `<ip>` (e.g. `10.1.2.2`, `2001:db8:1::2`): created with `O_EXCL`, so creating it *is*
//!   the reservation; content `<container id>\r\n<ifname>`, mode 0600 (upstream since 1.2;
//!   1.1.1 wrote 0644, the content is the same);
//! - `last_reserved_ip.<set>`: the last address handed out from range set `<set>`;
//! - `lock`: flock(2)ed exclusively (go-filemutex does the same) for as long as a
//!   [`DiskStore`] lives, so our processes and the reference's serialise on one lock and can
//!   take turns on the same directory.
//!
//! Only top-level files whose name parses as an address are reservations; `lock`,
//! `last_reserved_ip.*` and anything else are never read as one or removed (the reference
//! walks every file, so a legacy match on an id that looks like an address could delete its
//! bookkeeping).

use crate::allocator::{Owner, Store, StoreError};
use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const LAST_RESERVED_PREFIX: &str = "last_reserved_ip.";
const LOCK_FILE: &str = "lock";

/// An open, locked network directory. Dropping it releases the lock.
#[derive(Debug)]
pub struct DiskStore {
    dir: PathBuf,
    _lock: Flock<File>,
}

/// Creates `<data_dir>/<network>` (mode 0755, parents too) and returns it.
pub fn ensure_dir(data_dir: &Path, network: &str) -> Result<PathBuf, StoreError> {
    let dir = data_dir.join(network);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&dir)
        .map_err(|source| StoreError::CreateDir {
            path: dir.display().to_string(),
            source,
        })?;
    Ok(dir)
}

fn open_lock(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o750)
        .open(&path)
        .map_err(|source| StoreError::Lock {
            path: path.display().to_string(),
            source,
        })
}

impl DiskStore {
    /// Opens the network's directory, creating it and its lock file, and waits for the
    /// exclusive lock.
    pub fn open(data_dir: &Path, network: &str) -> Result<DiskStore, StoreError> {
        let dir = ensure_dir(data_dir, network)?;
        let mut file = open_lock(&dir)?;
        let lock = loop {
            match Flock::lock(file, FlockArg::LockExclusive) {
                Ok(l) => break l,
                Err((f, nix::errno::Errno::EINTR)) => file = f,
                Err((_, errno)) => {
                    return Err(StoreError::Lock {
                        path: dir.join(LOCK_FILE).display().to_string(),
                        source: std::io::Error::from(errno),
                    });
                }
            }
        };
        Ok(DiskStore { dir, _lock: lock })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn dir_str(&self) -> String {
        self.dir.display().to_string()
    }

    fn last_path(&self, set: usize) -> PathBuf {
        self.dir.join(format!("{LAST_RESERVED_PREFIX}{set}"))
    }

    fn write_last(&self, set: usize, ip: IpAddr) -> Result<(), StoreError> {
        let path = self.last_path(set);
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(ip.to_string().as_bytes()))
            .map_err(|source| StoreError::LastReserved {
                path: path.display().to_string(),
                source,
            })
    }
}

impl Store for DiskStore {
    fn reserve(
        &mut self,
        id: &str,
        ifname: &str,
        ip: IpAddr,
        set: usize,
    ) -> Result<bool, StoreError> {
        let path = self.dir.join(ip.to_string());
        let err = |source| StoreError::Reserve {
            ip,
            dir: self.dir_str(),
            source,
        };
        let mut f = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(err(e)),
        };
        if let Err(e) = f.write_all(Owner::render(id, ifname).as_bytes()) {
            drop(f);
            let _ = fs::remove_file(&path);
            return Err(err(e));
        }
        drop(f);
        if let Err(e) = self.write_last(set, ip) {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        Ok(true)
    }

    fn last_reserved(&self, set: usize) -> Option<IpAddr> {
        fs::read_to_string(self.last_path(set))
            .ok()
            .and_then(|s| s.trim().parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical())
    }

    fn set_last_reserved(&mut self, set: usize, ip: Option<IpAddr>) -> Result<(), StoreError> {
        match ip {
            Some(ip) => self.write_last(set, ip),
            None => match fs::remove_file(self.last_path(set)) {
                Err(e) if e.kind() != ErrorKind::NotFound => Err(StoreError::LastReserved {
                    path: self.last_path(set).display().to_string(),
                    source: e,
                }),
                _ => Ok(()),
            },
        }
    }

    fn reservations(&self) -> Result<Vec<(IpAddr, Owner)>, StoreError> {
        let list_err = |source| StoreError::List {
            dir: self.dir_str(),
            source,
        };
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(list_err)? {
            let entry = entry.map_err(list_err)?;
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<IpAddr>().ok())
            else {
                continue;
            };
            // Unreadable entries (directories, vanished files) are skipped like the
            // reference does; the address stays taken because its name exists.
            let Ok(bytes) = fs::read(entry.path()) else {
                continue;
            };
            out.push((
                ip.to_canonical(),
                Owner::parse(&String::from_utf8_lossy(&bytes)),
            ));
        }
        out.sort_by_key(|a| a.0);
        Ok(out)
    }

    fn release_ip(&mut self, ip: IpAddr) -> Result<(), StoreError> {
        match fs::remove_file(self.dir.join(ip.to_string())) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(StoreError::Release {
                ip,
                dir: self.dir_str(),
                source: e,
            }),
            _ => Ok(()),
        }
    }
}

/// STATUS: the network directory can be created and written. Leaves no file behind except
/// the directory and its lock file, which ADD would create anyway.
pub fn check_writable(data_dir: &Path, network: &str) -> Result<(), StoreError> {
    let dir = ensure_dir(data_dir, network)?;
    open_lock(&dir)?;
    let probe = dir.join(format!(".status-probe.{}", std::process::id()));
    let res = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&probe)
        .and_then(|mut f| f.write_all(b"probe"));
    let _ = fs::remove_file(&probe);
    res.map_err(|source| StoreError::Write {
        dir: dir.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocator::{Request, allocate, release};
    use crate::range::{RangeSet, RangeSpec};
    use std::os::unix::fs::PermissionsExt;

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    fn tmp(name: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!("twill-hl-disk-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        Tmp(p)
    }

    #[test]
    fn layout_matches_the_reference() {
        let t = tmp("layout");
        let sets = [
            RangeSet::new(&[RangeSpec::subnet("10.1.2.0/24".parse().unwrap())]).unwrap(),
            RangeSet::new(&[RangeSpec::subnet("2001:db8:1::/64".parse().unwrap())]).unwrap(),
        ];
        let mut s = DiskStore::open(&t.0, "mynet").unwrap();
        let r = Request {
            id: "dummy",
            ifname: "eth0",
            requested: &[],
        };
        allocate(&mut s, &sets, &r).unwrap();
        let dir = t.0.join("mynet");
        assert_eq!(
            fs::read_to_string(dir.join("10.1.2.2")).unwrap(),
            "dummy\r\neth0"
        );
        assert_eq!(
            fs::read_to_string(dir.join("2001:db8:1::2")).unwrap(),
            "dummy\r\neth0"
        );
        assert_eq!(
            fs::read_to_string(dir.join("last_reserved_ip.0")).unwrap(),
            "10.1.2.2"
        );
        assert_eq!(
            fs::read_to_string(dir.join("last_reserved_ip.1")).unwrap(),
            "2001:db8:1::2"
        );
        let mode = fs::metadata(dir.join("10.1.2.2"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert!(dir.join("lock").is_file());
        release(&mut s, "dummy", "eth0").unwrap();
        assert!(!dir.join("10.1.2.2").exists());
        assert!(!dir.join("2001:db8:1::2").exists());
        assert!(dir.join("last_reserved_ip.0").exists());
    }

    #[test]
    fn bookkeeping_files_are_not_reservations() {
        let t = tmp("bookkeeping");
        let mut s = DiskStore::open(&t.0, "n").unwrap();
        assert!(
            s.reserve("10.0.0.2", "eth0", "10.0.0.2".parse().unwrap(), 0)
                .unwrap()
        );
        fs::write(t.0.join("n/notes"), "10.0.0.2").unwrap();
        let all = s.reservations().unwrap();
        assert_eq!(all.len(), 1);
        // A legacy-looking release for an id equal to the last reserved address must not
        // remove last_reserved_ip.0.
        release(&mut s, "10.0.0.2", "eth9").unwrap();
        assert!(t.0.join("n/last_reserved_ip.0").exists());
        assert!(t.0.join("n/notes").exists());
        s.set_last_reserved(0, None).unwrap();
        assert!(!t.0.join("n/last_reserved_ip.0").exists());
        assert_eq!(s.last_reserved(0), None);
    }

    #[test]
    fn status_probe_reports_unwritable_dirs() {
        let t = tmp("status");
        check_writable(&t.0, "n").unwrap();
        let names: Vec<_> = fs::read_dir(t.0.join("n"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["lock"]);
        fs::write(t.0.join("file"), "").unwrap();
        let e = check_writable(&t.0.join("file"), "n").unwrap_err();
        assert!(e.to_string().starts_with("create data directory"), "{e}");
    }
}
