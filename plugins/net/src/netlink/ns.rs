//! Network namespaces: opening one by path and running code inside it.
//!
//! Namespaces are per thread. Go plugins learned the hard way (CNI `pkg/ns` README) that
//! switching the namespace of a thread which later runs other work leaks the switch into
//! that work. We never switch the caller's thread: [`Netns::run`] spawns a dedicated thread,
//! `setns`-es it, runs the closure and lets the thread exit, so the switch dies with it.
//! Netlink does not even need that much: a socket stays bound to the namespace it was
//! created in, so [`crate::netlink::Handle::in_netns`] uses `run` only to create the
//! socket and then talks to the namespace from the caller's thread. Paths under `/proc/sys`
//! are resolved in the namespace of the *reading thread*, which is why sysctls of another
//! namespace go through `run` as well.

use super::error::{NetlinkError, Result};
use nix::sched::CloneFlags;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

/// An open network namespace (a bind-mounted `/run/netns/<name>` or `/proc/<pid>/ns/net`).
#[derive(Debug)]
pub struct Netns {
    file: File,
    path: PathBuf,
}

impl Netns {
    /// Opens the namespace at `path`. A missing path is an `ENOENT` error
    /// ([`NetlinkError::is_not_found`]); a path that is not a namespace is refused.
    pub fn open(path: impl AsRef<Path>) -> Result<Netns> {
        let path = path.as_ref();
        let what = || format!("open netns {}", path.display());
        let file = File::open(path).map_err(|e| NetlinkError::io(what(), &e))?;
        let fs = nix::sys::statfs::fstatfs(&file).map_err(|e| NetlinkError::nix(what(), e))?;
        let kind = fs.filesystem_type();
        if kind != nix::sys::statfs::NSFS_MAGIC && kind != nix::sys::statfs::PROC_SUPER_MAGIC {
            return Err(NetlinkError::invalid(what(), "not a network namespace"));
        }
        Ok(Netns {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The namespace of the calling thread.
    pub fn current() -> Result<Netns> {
        Self::open("/proc/thread-self/ns/net")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when this is the namespace of the calling thread.
    pub fn is_current(&self) -> Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let what = || format!("stat netns {}", self.path.display());
        let mine = std::fs::metadata("/proc/thread-self/ns/net")
            .map_err(|e| NetlinkError::io(what(), &e))?;
        let this = self
            .file
            .metadata()
            .map_err(|e| NetlinkError::io(what(), &e))?;
        Ok(mine.dev() == this.dev() && mine.ino() == this.ino())
    }

    /// Runs `f` on a dedicated thread that has entered this namespace, and returns its value.
    /// The thread exits afterwards, so no other code ever runs in the switched namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let what = || format!("enter netns {}", self.path.display());
        std::thread::scope(|s| {
            let handle = s.spawn(|| {
                nix::sched::setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET)
                    .map_err(|e| NetlinkError::nix(what(), e))?;
                Ok(f())
            });
            handle
                .join()
                .map_err(|_| NetlinkError::protocol(what(), "namespace thread panicked"))?
        })
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}
