//! `--manifests DIR`: Kubernetes objects from the `*.yaml`, `*.yml` and `*.json` files
//! directly in a directory, for clusters without an API server (tests, demos, edge nodes)
//! and for a ConfigMap mounted as a volume (its files are symlinks through `..data`, which
//! is a dotfile and so ignored itself, while the symlinks are followed).
//!
//! How it behaves, and why:
//! - **A file is all or nothing.** If any document or object in a file fails to parse or
//!   validate, none of the file's new content is used: the objects of its last good version
//!   stay in force and the file's status shows the error. Applying the valid half of a file
//!   would turn a typo in one policy into a half-applied change (a deny without its allow);
//!   keeping the last good version means a broken save never opens or closes anything.
//!   A file that was never good contributes nothing.
//! - **Strict fields.** An unknown field is an error (kubectl's default, strict field
//!   validation): the k8s-openapi types would drop it silently, and a misspelt
//!   `podSelector` would then select every pod of the namespace.
//! - **Limits.** Files larger than [`MAX_FILE_BYTES`] or not UTF-8 are refused with an error
//!   naming the file, before any parsing; YAML parsing uses serde-saphyr's budgets (alias
//!   bombs, nesting). The rest of the directory is unaffected.
//! - **Duplicates.** The same object (kind, namespace, name) in two files: the first file by
//!   name wins, the other is reported. Twice in one file: the file is refused.
//! - **Latency.** inotify (through `notify`) wakes a read of the files its events name;
//!   events are coalesced for [`QUIET`] after the last one, [`MAX_DELAY`] at most, so a burst
//!   of writes (an editor's save, `kubectl`-style multi-file output) costs one rebuild while
//!   one label change reaches the model in milliseconds. Reading only the named files
//!   matters at scale: with 50 files of 100 KB, reading and hashing all of them cost more than
//!   compiling the policies. Events about the directory itself, or without a path, read
//!   everything. A read re-parses only files whose SHA-256 changed: stat data is not
//!   trusted, as coarse mtimes can hide a same-size rewrite. A rescan every [`RESCAN`] is the safety net
//!   for lost events (an overflowed inotify queue), and it re-establishes the watch of a
//!   directory that was removed and made again (the old watch dies with the old inode).
//!   Writers should replace files by rename: a file read halfway through an in-place write
//!   is usually refused (and kept at its last good version) until the write completes, but
//!   a cut that happens to fall between two documents would apply briefly.
//! - **Status.** Each file's SHA-256 is that of the bytes last read (parsed or not), and it
//!   is reported only together with the model built from it.

use super::convert::{self, Kind, Object, ObjectId};
use super::store::Objects;
use super::{Publisher, SourceError};
use crate::state::FileStatus;
use notify::Watcher;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

/// `SourceStatus.kind` of this source.
pub const KIND: &str = "manifests";

/// Larger files are refused (a manifest directory is not a place for bulk data).
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// Quiet time after the last inotify event before a rescan.
pub const QUIET: Duration = Duration::from_millis(3);

/// Longest delay from the first inotify event of a burst to the rescan.
pub const MAX_DELAY: Duration = Duration::from_millis(30);

/// Full rescan period, whether or not inotify said anything.
pub const RESCAN: Duration = Duration::from_secs(10);

/// Whether `name` is a manifest: `*.yaml`, `*.yml`, `*.json`, not hidden, not an editor's
/// backup or lock file.
pub fn is_manifest_name(name: &str) -> bool {
    let ext_ok = [".yaml", ".yml", ".json"]
        .iter()
        .any(|e| name.len() > e.len() && name.ends_with(e));
    ext_ok && !name.starts_with('.') && !name.starts_with('#') && !name.ends_with('~')
}

/// One file as last read.
#[derive(Debug, Default)]
struct FileEntry {
    sha256: String,
    /// Why the bytes last read were refused.
    error: Option<Vec<String>>,
    /// Objects of the last good version.
    good: Option<Objects>,
    /// For an oversized file: the stat data its digest was computed for (it is hashed, never
    /// parsed, and hashing megabytes on every event would be wasteful).
    big: Option<(u64, u64, u64, i64, i64)>,
}

/// The directory's files, as last read.
#[derive(Debug)]
pub struct Scanner {
    dir: PathBuf,
    files: BTreeMap<String, FileEntry>,
    /// Why the directory itself could not be read.
    dir_error: Option<String>,
}

impl Scanner {
    pub fn new(dir: PathBuf) -> Scanner {
        Scanner {
            dir,
            files: BTreeMap::new(),
            dir_error: None,
        }
    }

    /// Reads the directory; returns whether anything (objects, digests, errors) changed.
    pub fn scan(&mut self) -> bool {
        let names = match list_manifests(&self.dir) {
            Ok(n) => n,
            Err(e) => {
                let msg = format!("read manifest directory {}: {e}", self.dir.display());
                let changed = self.dir_error.as_ref() != Some(&msg);
                if changed {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "cannot read manifest directory");
                }
                self.dir_error = Some(msg);
                return changed;
            }
        };
        let mut changed = self.dir_error.take().is_some();
        let before = self.files.len();
        self.files.retain(|name, _| names.contains(name));
        changed |= self.files.len() != before;
        for name in &names {
            let entry = self.files.entry(name.clone()).or_default();
            changed |= read_into(&self.dir, name, entry);
        }
        changed
    }

    /// Reads only `names` (files inotify named): a changed file among 50 large ones costs
    /// one read and one digest instead of fifty. A name that is no longer a regular file is
    /// dropped. Returns whether anything changed.
    pub fn scan_names(&mut self, names: &std::collections::BTreeSet<String>) -> bool {
        let mut changed = false;
        for name in names.iter().filter(|n| is_manifest_name(n)) {
            let is_file = std::fs::metadata(self.dir.join(name)).is_ok_and(|m| m.is_file());
            if is_file {
                let entry = self.files.entry(name.clone()).or_default();
                changed |= read_into(&self.dir, name, entry);
            } else {
                changed |= self.files.remove(name).is_some();
            }
        }
        changed
    }

    /// The objects in force by file (each file's last good version).
    pub fn objects(&self) -> impl Iterator<Item = (&str, &Objects)> {
        self.files
            .iter()
            .filter_map(|(n, f)| f.good.as_ref().map(|g| (n.as_str(), g)))
    }

    /// File statuses (without object counts) and errors, for `/status`.
    pub fn status(&self) -> (BTreeMap<String, FileStatus>, Vec<String>) {
        let mut errors: Vec<String> = self.dir_error.iter().cloned().collect();
        let files = self
            .files
            .iter()
            .map(|(n, f)| {
                if let Some(e) = &f.error {
                    errors.extend(e.iter().cloned());
                }
                let status = FileStatus {
                    sha256: f.sha256.clone(),
                    objects: 0,
                    error: f.error.as_ref().map(|e| e.join("; ")),
                };
                (n.clone(), status)
            })
            .collect();
        (files, errors)
    }
}

fn list_manifests(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !is_manifest_name(&name) {
            continue;
        }
        // Follows symlinks (ConfigMap volumes); skips directories and sockets.
        match std::fs::metadata(entry.path()) {
            Ok(m) if m.is_file() => names.push(name),
            _ => {}
        }
    }
    names.sort();
    Ok(names)
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads one file into `entry`; returns whether the entry changed.
fn read_into(dir: &Path, name: &str, entry: &mut FileEntry) -> bool {
    let path = dir.join(name);
    let refuse = |entry: &mut FileEntry, sha: String, msg: String| {
        let errs = vec![format!("{name}: {msg}")];
        let changed = entry.sha256 != sha || entry.error.as_ref() != Some(&errs);
        if changed {
            tracing::warn!(file = name, error = %msg, "manifest refused; its last good version stays in force");
        }
        entry.sha256 = sha;
        entry.error = Some(errs);
        changed
    };
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        // Gone between listing and opening: the next scan drops it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
        Err(e) => {
            let sha = entry.sha256.clone();
            return refuse(entry, sha, format!("open: {e}"));
        }
    };
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => {
            let sha = entry.sha256.clone();
            return refuse(entry, sha, format!("stat: {e}"));
        }
    };
    if meta.len() > MAX_FILE_BYTES {
        use std::os::unix::fs::MetadataExt;
        let key = (
            meta.dev(),
            meta.ino(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
        );
        let sha = if entry.big == Some(key) {
            entry.sha256.clone()
        } else {
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => h.update(&buf[..n]),
                    Err(_) => break,
                }
            }
            entry.big = Some(key);
            hex(&h.finalize())
        };
        return refuse(
            entry,
            sha,
            format!(
                "is {} bytes, larger than the limit of {MAX_FILE_BYTES} bytes",
                meta.len()
            ),
        );
    }
    entry.big = None;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    if let Err(e) = (&mut file).take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes) {
        let sha = entry.sha256.clone();
        return refuse(entry, sha, format!("read: {e}"));
    }
    let sha = hex(&Sha256::digest(&bytes));
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return refuse(
            entry,
            sha,
            format!("is larger than the limit of {MAX_FILE_BYTES} bytes"),
        );
    }
    if sha == entry.sha256 {
        return false;
    }
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            return refuse(
                entry,
                sha,
                format!("is not UTF-8 text (invalid byte at offset {at})"),
            );
        }
    };
    entry.sha256 = sha;
    match parse_file(name, &text) {
        Ok(objects) => {
            tracing::info!(file = name, objects = objects.len(), "manifest read");
            entry.error = None;
            entry.good = Some(objects);
        }
        Err(errs) => {
            for e in &errs {
                tracing::warn!(file = name, error = %e, "manifest refused; its last good version stays in force");
            }
            entry.error = Some(errs);
        }
    }
    true
}

/// Parses one file's text into objects; every problem is returned, each naming the file
/// and, where there is one, the object.
pub fn parse_file(name: &str, text: &str) -> Result<Objects, Vec<String>> {
    let docs: Vec<Value> = if name.ends_with(".json") {
        match serde_json::from_str(text) {
            Ok(v) => vec![v],
            Err(e) => return Err(vec![format!("{name}: does not parse as JSON: {e}")]),
        }
    } else {
        match serde_saphyr::from_multiple::<Value>(text) {
            Ok(v) => v,
            Err(e) => {
                let msg = e.to_string();
                let first = msg.lines().next().unwrap_or("").trim();
                return Err(vec![format!("{name}: does not parse as YAML: {first}")]);
            }
        }
    };
    let mut objects = Objects::new();
    let mut errors = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        collect(
            name,
            &format!("document {}", i + 1),
            doc,
            &mut objects,
            &mut errors,
        );
    }
    if errors.is_empty() {
        Ok(objects)
    } else {
        Err(errors)
    }
}

fn collect(file: &str, at: &str, doc: Value, out: &mut Objects, errors: &mut Vec<String>) {
    let kind = match &doc {
        Value::Null => return,
        Value::Object(m) => match m.get("kind").and_then(Value::as_str) {
            Some(k) => k.to_owned(),
            None => {
                errors.push(format!("{file}: {at}: has no kind"));
                return;
            }
        },
        _ => {
            errors.push(format!(
                "{file}: {at}: is not a Kubernetes object (a mapping with apiVersion and kind)"
            ));
            return;
        }
    };
    if kind == "List" || kind.ends_with("List") {
        match doc.get("items") {
            Some(Value::Array(items)) => {
                for (j, item) in items.iter().enumerate() {
                    collect(file, &format!("{at} items[{j}]"), item.clone(), out, errors);
                }
            }
            Some(Value::Null) | None => {}
            Some(_) => errors.push(format!("{file}: {at}: {kind}.items is not a list")),
        }
        return;
    }
    let Some(k) = Kind::parse(&kind) else {
        tracing::debug!(file, at, kind, "object kind ignored");
        return;
    };
    let meta = doc.get("metadata");
    let field = |f: &str| {
        meta.and_then(|m| m.get(f))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let id = ObjectId::new(
        k,
        field("namespace").as_deref(),
        &field("name").unwrap_or_default(),
    );
    let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if api_version != k.api_version() {
        errors.push(format!(
            "{file}: {id}: apiVersion {api_version:?} is not supported (use {:?})",
            k.api_version()
        ));
        return;
    }
    match to_object(k, doc) {
        Ok(obj) => {
            let id = obj.id();
            match out.entry(id) {
                std::collections::btree_map::Entry::Occupied(e) => {
                    errors.push(format!("{file}: {}: defined twice in this file", e.key()));
                }
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(obj);
                }
            }
        }
        Err(ToObjectError::Shape(e)) => errors.push(format!("{file}: {id}: {e}")),
        Err(ToObjectError::Unknown(path)) => {
            errors.push(format!("{file}: {id}: unknown field {path}"));
        }
        Err(ToObjectError::Invalid(e)) => errors.push(format!("{file}: {e}")),
    }
}

enum ToObjectError {
    /// The object does not have the k8s-openapi shape (a wrong type, a missing field).
    Shape(serde_json::Error),
    /// Fields the schema does not have (a typo such as `podselector`), by JSON path.
    Unknown(String),
    Invalid(convert::ConvertError),
}

/// Decodes `doc` strictly: like the API server's strict field validation (kubectl's
/// default), a field the schema does not know is an error, not silently dropped. That
/// matters here: a misspelt `podSelector` would otherwise select every pod.
fn decode<T: serde::de::DeserializeOwned + serde::Serialize>(
    doc: Value,
) -> Result<T, ToObjectError> {
    let typed: T = serde_json::from_value(doc.clone()).map_err(ToObjectError::Shape)?;
    let back = serde_json::to_value(&typed).map_err(ToObjectError::Shape)?;
    let mut unknown = Vec::new();
    unknown_fields(&doc, &back, "", &mut unknown);
    if unknown.is_empty() {
        Ok(typed)
    } else {
        Err(ToObjectError::Unknown(unknown.join(", ")))
    }
}

/// Fields of `input` (not null) that have no counterpart in `known`, the same document
/// after a round trip through the typed object.
fn unknown_fields(input: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    _ if v.is_null() => {}
                    None => out.push(p),
                    Some(bv) => unknown_fields(v, bv, &p, out),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, bv)) in a.iter().zip(b).enumerate() {
                unknown_fields(v, bv, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn to_object(kind: Kind, doc: Value) -> Result<Object, ToObjectError> {
    use ToObjectError::Invalid;
    Ok(match kind {
        Kind::Namespace => Object::Namespace(convert::namespace(&decode(doc)?).map_err(Invalid)?),
        Kind::Node => Object::Node(convert::node(&decode(doc)?).map_err(Invalid)?),
        Kind::Pod => Object::Pod(convert::pod(&decode(doc)?).map_err(Invalid)?),
        Kind::NetworkPolicy => {
            Object::NetworkPolicy(convert::network_policy(&decode(doc)?).map_err(Invalid)?)
        }
        Kind::Service => Object::Service(convert::service(&decode(doc)?).map_err(Invalid)?),
        Kind::EndpointSlice => {
            Object::EndpointSlice(convert::endpoint_slice(&decode(doc)?).map_err(Invalid)?)
        }
    })
}

/// Puts the scanner's files into the store and publishes.
fn publish(scanner: &Scanner, publisher: &mut Publisher) {
    let wanted: BTreeMap<&str, &Objects> = scanner.objects().collect();
    let stale: Vec<String> = publisher
        .store
        .origins()
        .filter(|o| !wanted.contains_key(o.as_str()))
        .cloned()
        .collect();
    for o in stale {
        publisher.store.remove_origin(&o);
    }
    for (name, objects) in wanted {
        if publisher.store.origin(name) != Some(objects) {
            publisher.store.set_origin(name, objects.clone());
        }
    }
    let (files, errors) = scanner.status();
    publisher.publish(files, errors);
}

/// Runs a scan off the async threads (file reads block): of the named files only, or of
/// the whole directory when `names` is `None`.
async fn scan(
    scanner: Scanner,
    names: Option<std::collections::BTreeSet<String>>,
) -> (Scanner, bool) {
    let dir = scanner.dir.clone();
    match tokio::task::spawn_blocking(move || {
        let mut s = scanner;
        let changed = match &names {
            Some(n) => s.scan_names(n),
            None => s.scan(),
        };
        (s, changed)
    })
    .await
    {
        Ok(r) => r,
        // The closure does not panic on input; if it did, start over with a fresh scan.
        Err(_) => (Scanner::new(dir), true),
    }
}

/// Checks `dir`, starts watching it, and spawns the task that reads it. The first full
/// read is published with `synced` set.
pub async fn spawn(
    dir: PathBuf,
    mut publisher: Publisher,
    mut shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, SourceError> {
    let meta = std::fs::metadata(&dir).map_err(|source| SourceError::ManifestDir {
        dir: dir.clone(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(SourceError::ManifestDir {
            dir,
            source: std::io::Error::other("not a directory"),
        });
    }
    // Each event names the files it is about; `None` asks for a whole rescan.
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<Wake>();
    // Set when the watched directory itself goes away (removed or renamed): its inotify
    // watch is gone with it, and a directory made again at the same path, even one that
    // reuses the inode number, must be watched anew.
    let lost = Arc::new(AtomicBool::new(false));
    let (lost_cb, dir_cb) = (lost.clone(), dir.clone());
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let wake = match res {
            // Our own reads open files; those events say nothing new.
            Ok(ev) if matches!(ev.kind, notify::EventKind::Access(_)) => None,
            Ok(ev) => {
                let about_dir = ev.paths.iter().any(|p| p == &dir_cb);
                if about_dir
                    && matches!(
                        ev.kind,
                        notify::EventKind::Remove(_)
                            | notify::EventKind::Modify(notify::event::ModifyKind::Name(_))
                    )
                {
                    lost_cb.store(true, Ordering::Relaxed);
                }
                // Files directly in the directory: read just those. Anything else (the
                // directory itself, a path elsewhere, no path): read everything.
                let names: Option<std::collections::BTreeSet<String>> = ev
                    .paths
                    .iter()
                    .map(|p| {
                        (p.parent() == Some(dir_cb.as_path()))
                            .then(|| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
                            .flatten()
                    })
                    .collect();
                Some(names.filter(|n| !n.is_empty() && !about_dir))
            }
            // An overflowed queue or similar: rescan to be safe.
            Err(_) => Some(None),
        };
        if let Some(w) = wake {
            let _ = ev_tx.send(w);
        }
    })
    .map_err(|source| SourceError::Notify {
        dir: dir.clone(),
        source,
    })?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .map_err(|source| SourceError::Notify {
            dir: dir.clone(),
            source,
        })?;
    let mut watched = dir_identity(&dir);
    let task = tokio::spawn(async move {
        // Dropping the watcher stops inotify; keep it for the task's life.
        let mut watcher = watcher;
        let (mut scanner, _) = scan(Scanner::new(dir.clone()), None).await;
        publisher.store.set_synced();
        publish(&scanner, &mut publisher);
        tracing::info!(dir = %dir.display(), files = scanner.files.len(), "manifest source synced");
        let mut rescan = tokio::time::interval(RESCAN);
        rescan.set_missed_tick_behavior(MissedTickBehavior::Delay);
        rescan.tick().await;
        loop {
            let names = tokio::select! {
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() {
                        break;
                    }
                    continue;
                }
                ev = ev_rx.recv() => {
                    let Some(first) = ev else {
                        break;
                    };
                    debounce(first, &mut ev_rx).await
                }
                _ = rescan.tick() => None,
            };
            // The directory was replaced (removed and made again): its inotify watch died
            // with the old one; the periodic rescan got us here, watch the new one. Before
            // the scan, so that nothing written in between goes unnoticed.
            let now = dir_identity(&dir);
            let replaced = now.is_some() && (now != watched || lost.load(Ordering::Relaxed));
            if replaced {
                let _ = watcher.unwatch(&dir);
                match watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        tracing::info!(dir = %dir.display(), "manifest directory replaced; watching the new one");
                        watched = now;
                        lost.store(false, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the replaced manifest directory; rescanning every 10 s only");
                    }
                }
            }
            // A replaced directory is read whole.
            let names = names.filter(|_| !replaced);
            let (s, changed) = scan(scanner, names).await;
            scanner = s;
            if changed {
                publish(&scanner, &mut publisher);
            }
        }
    });
    Ok(task)
}

/// Device and inode of `dir`, to notice that it was replaced.
fn dir_identity(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

/// What one inotify event asks for: the files it names, or (`None`) a whole rescan.
type Wake = Option<std::collections::BTreeSet<String>>;

fn merge(into: &mut Wake, w: Wake) {
    match (into.as_mut(), w) {
        (Some(a), Some(b)) => a.extend(b),
        _ => *into = None,
    }
}

/// Waits until events stop for [`QUIET`], or [`MAX_DELAY`] after the first, and returns
/// the union of what they ask for.
async fn debounce(first: Wake, rx: &mut mpsc::UnboundedReceiver<Wake>) -> Wake {
    let mut wake = first;
    let deadline = Instant::now() + MAX_DELAY;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let wait = QUIET.min(deadline - now);
        match tokio::time::timeout(wait, rx.recv()).await {
            Ok(Some(w)) => merge(&mut wake, w),
            Ok(None) | Err(_) => break,
        }
    }
    while let Ok(w) = rx.try_recv() {
        merge(&mut wake, w);
    }
    wake
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fuzz-style: mangled manifests and random bytes never panic the parser.
    #[test]
    fn mangled_input_never_panics() {
        let seed = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: networking.k8s.io/v1\n  kind: NetworkPolicy\n  metadata: {name: p, namespace: x}\n  spec: {podSelector: {matchExpressions: [{key: a, operator: In, values: [b]}]}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}], ports: [{port: 80, endPort: 90}]}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: q}\nstatus: {podIPs: [{ip: fd00::1}]}\n";
        let bytes = seed.as_bytes();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..3000 {
            let mut b = bytes.to_vec();
            for _ in 0..(next() % 6 + 1) {
                let i = (next() as usize) % b.len();
                match next() % 4 {
                    0 => b[i] = (next() % 128) as u8,
                    1 => {
                        b.remove(i);
                    }
                    2 => {
                        let specials = b"{}[]:,- \n\"'&*!|>#%@`";
                        b.insert(i, specials[(next() as usize) % specials.len()]);
                    }
                    _ => b.truncate(i),
                }
                if b.is_empty() {
                    b.push(b'x');
                }
            }
            let text = String::from_utf8_lossy(&b);
            let _ = parse_file("f.yaml", &text);
            let _ = parse_file("f.json", &text);
        }
    }

    #[test]
    fn names() {
        for ok in ["a.yaml", "a.yml", "b.json", "x.y.yaml"] {
            assert!(is_manifest_name(ok), "{ok}");
        }
        for no in [
            ".a.yaml",
            ".#a.yaml",
            "#a.yaml#",
            "a.yaml~",
            "a.yaml.swp",
            "a.txt",
            ".yaml",
            "4913",
            "..data",
        ] {
            assert!(!is_manifest_name(no), "{no}");
        }
    }

    #[test]
    fn documents_lists_and_errors() {
        let text = "\
apiVersion: v1
kind: Namespace
metadata: {name: web}
---
# empty document next
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: a, namespace: web, labels: {app: web}}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: ignored}
";
        let objs = parse_file("a.yaml", text).expect("valid");
        assert_eq!(objs.len(), 2);

        let bad = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-web, namespace: x}
spec:
  podSelector:
    matchExpressions: [{key: app, operator: Like, values: [a]}]
---
apiVersion: v1
kind: Pod
metadata: {name: p}
spec: {containers: [{name: c, ports: [{containerPort: notanumber}]}]}
---
apiVersion: extensions/v1beta1
kind: NetworkPolicy
metadata: {name: old}
---
just a string
";
        let errs = parse_file("b.yaml", bad).expect_err("invalid");
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert_eq!(
            errs[0],
            "b.yaml: NetworkPolicy x/allow-web: spec.podSelector.matchExpressions[0].operator: \"Like\" is not one of In, NotIn, Exists, DoesNotExist"
        );
        assert!(
            errs[1].starts_with("b.yaml: Pod default/p: "),
            "{}",
            errs[1]
        );
        assert!(
            errs[2].contains(
                "NetworkPolicy default/old: apiVersion \"extensions/v1beta1\" is not supported"
            ),
            "{}",
            errs[2]
        );
        assert!(
            errs[3].contains("document 4: is not a Kubernetes object"),
            "{}",
            errs[3]
        );

        let errs = parse_file("c.yaml", "a: [unclosed").expect_err("yaml");
        assert!(
            errs[0].starts_with("c.yaml: does not parse as YAML: "),
            "{errs:?}"
        );
        assert!(!errs[0].contains('\n'));
        let errs = parse_file("c.json", "{").expect_err("json");
        assert!(
            errs[0].starts_with("c.json: does not parse as JSON: "),
            "{errs:?}"
        );
        let twice = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n";
        let errs = parse_file("d.yaml", twice).expect_err("twice");
        assert_eq!(
            errs,
            vec!["d.yaml: Namespace a: defined twice in this file"]
        );
        let typo = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podselector: {matchLabels: {app: web}}\n  ingress: [{from: [{podSelector: {}, nameSpaceSelector: {}}]}]\n";
        let errs = parse_file("t.yaml", typo).expect_err("typo");
        assert_eq!(
            errs,
            vec![
                "t.yaml: NetworkPolicy default/p: unknown field spec.ingress[0].from[0].nameSpaceSelector, spec.podselector"
            ]
        );
        let typo = typo.replace("podselector", "podSelector");
        let errs = parse_file("t.yaml", &typo).expect_err("typo");
        assert_eq!(
            errs,
            vec![
                "t.yaml: NetworkPolicy default/p: unknown field spec.ingress[0].from[0].nameSpaceSelector"
            ]
        );
        // Nulls, quoted ports, timestamps and status round-trip without complaint.
        let full = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, creationTimestamp: null, labels: {a: b}}\nspec:\n  containers: [{name: c, image: x, ports: [{containerPort: 80}], resources: {limits: {cpu: 100m}}}]\nstatus: {phase: Running, startTime: \"2024-01-01T00:00:00Z\", podIP: 10.0.0.1}\n";
        assert_eq!(parse_file("f.yaml", full).expect("valid").len(), 1);
        let json = r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "j"}}"#;
        assert_eq!(parse_file("e.json", json).expect("json").len(), 1);
    }
}
