//! The manifest source against a real directory: files added, changed, broken, fixed and
//! removed while the source runs; the model is read from its watch channel and the status
//! from the shared state, both with deadlines and no fixed sleeps.

use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use twilld::source::model::{Model, ObjectKey};
use twilld::source::{SourceConfig, SourceHandle, spawn};
use twilld::state::{SourceStatus, State};

const DEADLINE: Duration = Duration::from_secs(5);

struct Src {
    dir: tempfile::TempDir,
    handle: SourceHandle,
    state: Arc<State>,
    _shutdown: watch::Sender<bool>,
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Src {
    async fn start_with(files: &[(&str, &str)]) -> Src {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        let state = Arc::new(State::default());
        let (tx, rx) = watch::channel(false);
        let handle = spawn(
            SourceConfig::Manifests(dir.path().to_owned()),
            state.clone(),
            rx,
        )
        .await
        .expect("spawn");
        Src {
            dir,
            handle,
            state,
            _shutdown: tx,
        }
    }

    async fn start() -> Src {
        Src::start_with(&[]).await
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `name` atomically (rename over), as editors and `kubectl`-like tools do, and
    /// returns its digest.
    fn write(&self, name: &str, bytes: &[u8]) -> String {
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).expect("write");
        std::fs::rename(&tmp, self.path(name)).expect("rename");
        sha(bytes)
    }

    async fn model(&mut self, what: &str, ok: impl Fn(&Model) -> bool) -> Arc<Model> {
        wait_model(&mut self.handle.models, DEADLINE, what, ok).await
    }

    fn status(&self) -> SourceStatus {
        self.state.snapshot().source.unwrap_or_default()
    }

    /// Polls the status (it is written right after each model, and on its own when only
    /// errors change) until `ok`.
    async fn status_until(&self, what: &str, ok: impl Fn(&SourceStatus) -> bool) -> SourceStatus {
        let start = Instant::now();
        loop {
            let s = self.status();
            if ok(&s) {
                return s;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for {what}; status: {s:#?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn wait_model(
    rx: &mut watch::Receiver<Arc<Model>>,
    within: Duration,
    what: &str,
    ok: impl Fn(&Model) -> bool,
) -> Arc<Model> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let m = rx.borrow_and_update().clone();
        if ok(&m) {
            return m;
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("model channel closed waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}; last model: {m:#?}"),
        }
    }
}

fn pod_yaml(ns: &str, name: &str, app: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  namespace: {ns}\n  name: {name}\n  labels: {{app: {app}}}\nspec:\n  containers: [{{name: c}}]\nstatus:\n  podIP: 10.1.0.{}\n",
        name.len()
    )
}

fn ns_yaml(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n")
}

fn policy_yaml(ns: &str, name: &str, op: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: {ns}\n  name: {name}\nspec:\n  podSelector:\n    matchLabels: {{app: web}}\n  ingress:\n  - from:\n    - podSelector:\n        matchExpressions: [{{key: role, operator: {op}, values: [client]}}]\n"
    )
}

fn app_of(m: &Model, ns: &str, name: &str) -> Option<String> {
    m.pods
        .get(&ObjectKey::new(ns, name))
        .and_then(|p| p.labels.get("app").cloned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_files_arrive_synced() {
    let text = format!("{}---\n{}", ns_yaml("web"), pod_yaml("web", "a", "web"));
    let mut src = Src::start_with(&[("web.yaml", &text)]).await;
    let m = src.model("first synced model", |m| m.synced).await;
    assert_eq!(app_of(&m, "web", "a").as_deref(), Some("web"));
    let st = src
        .status_until("status of the first model", |s| s.synced)
        .await;
    assert_eq!(st.kind, "manifests");
    assert_eq!(st.generation, m.generation);
    assert_eq!(st.files["web.yaml"].sha256, sha(text.as_bytes()));
    assert_eq!(st.files["web.yaml"].objects, 2);
    assert!(st.errors.is_empty(), "{:?}", st.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_relabel_delete() {
    let mut src = Src::start().await;
    let m0 = src.model("synced", |m| m.synced).await;

    let started = Instant::now();
    let digest = src.write("p.yaml", pod_yaml("default", "a", "web").as_bytes());
    let m1 = src
        .model("pod added", |m| {
            app_of(m, "default", "a").as_deref() == Some("web")
        })
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert!(m1.generation > m0.generation);
    let st = src
        .status_until("digest of p.yaml", |s| {
            s.files.get("p.yaml").is_some_and(|f| f.sha256 == digest)
        })
        .await;
    assert!(st.generation >= m1.generation);

    // A same-size rewrite right after: content digests, not stat data, decide.
    let started = Instant::now();
    src.write("p.yaml", pod_yaml("default", "a", "wab").as_bytes());
    let m2 = src
        .model("pod relabelled", |m| {
            app_of(m, "default", "a").as_deref() == Some("wab")
        })
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert!(m2.generation > m1.generation);

    // In place (truncate and write), as `echo > file` does.
    std::fs::write(src.path("p.yaml"), pod_yaml("default", "a", "web2")).expect("write");
    src.model("pod relabelled in place", |m| {
        app_of(m, "default", "a").as_deref() == Some("web2")
    })
    .await;

    std::fs::remove_file(src.path("p.yaml")).expect("rm");
    let m3 = src.model("pod removed", |m| m.pods.is_empty()).await;
    let st = src
        .status_until("file gone", |s| s.generation == m3.generation)
        .await;
    assert!(!st.files.contains_key("p.yaml"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_document_list_and_json() {
    let mut src = Src::start().await;
    src.model("synced", |m| m.synced).await;
    let list = format!(
        "# a comment\n{}---\napiVersion: v1\nkind: List\nitems:\n- {}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {{name: ignored, namespace: shop}}\n---\n{}",
        ns_yaml("shop"),
        pod_yaml("shop", "a", "web")
            .trim_end()
            .replace('\n', "\n  "),
        policy_yaml("shop", "allow", "In")
    );
    src.write("shop.yml", list.as_bytes());
    let json = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": "shop", "name": "b", "labels": {"app": "db"}},
         "spec": {"containers": [{"name": "c", "ports": [{"name": "pg", "containerPort": 5432}]}]}}]}"#;
    src.write("more.json", json.as_bytes());
    let m = src
        .model("list, documents and json", |m| {
            m.pods.len() == 2 && m.policies.len() == 1 && m.namespaces.contains_key("shop")
        })
        .await;
    let b = &m.pods[&ObjectKey::new("shop", "b")];
    assert_eq!(b.ports[0].name.as_deref(), Some("pg"));
    let ns = &m.namespaces["shop"];
    assert_eq!(
        ns.labels
            .get("kubernetes.io/metadata.name")
            .map(String::as_str),
        Some("shop")
    );
    let st = src
        .status_until("counts", |s| s.generation == m.generation)
        .await;
    assert_eq!(st.files["shop.yml"].objects, 3);
    assert_eq!(st.files["more.json"].objects, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_file_keeps_its_last_good_version() {
    let mut src = Src::start().await;
    src.model("synced", |m| m.synced).await;
    let good = format!(
        "{}---\n{}",
        ns_yaml("x"),
        policy_yaml("x", "allow-web", "In")
    );
    src.write("pol.yaml", good.as_bytes());
    let m1 = src.model("policy", |m| m.policies.len() == 1).await;

    // An invalid operator: the whole file keeps its previous version.
    let bad = format!(
        "{}---\n{}",
        ns_yaml("x"),
        policy_yaml("x", "allow-web", "Like")
    );
    let bad_digest = src.write("pol.yaml", bad.as_bytes());
    let st = src
        .status_until("the invalid operator reported", |s| {
            s.files
                .get("pol.yaml")
                .is_some_and(|f| f.sha256 == bad_digest && f.error.is_some())
        })
        .await;
    let f = &st.files["pol.yaml"];
    assert_eq!(
        f.error.as_deref(),
        Some(
            "pol.yaml: NetworkPolicy x/allow-web: spec.ingress[0].from[0].podSelector.matchExpressions[0].operator: \"Like\" is not one of In, NotIn, Exists, DoesNotExist"
        )
    );
    assert_eq!(f.objects, 2, "the last good version stays in force");
    assert!(st.errors.iter().any(|e| e.contains("\"Like\"")));
    assert_eq!(st.generation, m1.generation, "nothing changed in the model");
    assert_eq!(src.handle.models.borrow().policies.len(), 1);

    // Unparseable YAML: same.
    let digest = src.write("pol.yaml", b"kind: [unclosed\n");
    let st = src
        .status_until("the parse error reported", |s| {
            s.files.get("pol.yaml").is_some_and(|f| f.sha256 == digest)
        })
        .await;
    assert!(
        st.files["pol.yaml"]
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("pol.yaml: does not parse as YAML")),
        "{st:?}"
    );
    assert_eq!(src.handle.models.borrow().policies.len(), 1);

    // Fixed: the new version applies and the error clears.
    let fixed = format!(
        "{}---\n{}",
        ns_yaml("x"),
        policy_yaml("x", "allow-web", "NotIn")
    );
    let digest = src.write("pol.yaml", fixed.as_bytes());
    let m2 = src
        .model("fixed policy", |m| {
            m.policies
                .values()
                .any(|p| format!("{:?}", p.ingress).contains("NotIn"))
        })
        .await;
    let st = src
        .status_until("the error cleared", |s| {
            s.files
                .get("pol.yaml")
                .is_some_and(|f| f.sha256 == digest && f.error.is_none())
        })
        .await;
    assert!(st.errors.is_empty(), "{:?}", st.errors);
    assert!(st.generation >= m2.generation);
}

/// A file that was never good contributes nothing and does not disturb the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_refused_and_the_rest_applies() {
    let mut src = Src::start().await;
    src.model("synced", |m| m.synced).await;
    // 10 MB of pseudo-random bytes (xorshift; no need for a real RNG).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let garbage: Vec<u8> = (0..10_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(src.path("garbage.yaml"), &garbage).expect("write");
    let small: Vec<u8> = garbage[..4096].to_vec();
    let small_digest = src.write("binary.json", &small);
    src.write("ok.yaml", pod_yaml("default", "ok", "web").as_bytes());
    src.model("the good file applies", |m| m.pods.len() == 1)
        .await;
    let big_digest = sha(&garbage);
    let st = src
        .status_until("both bad files reported", |s| {
            s.files
                .get("garbage.yaml")
                .is_some_and(|f| f.sha256 == big_digest)
                && s.files
                    .get("binary.json")
                    .is_some_and(|f| f.sha256 == small_digest)
        })
        .await;
    assert_eq!(
        st.files["garbage.yaml"].error.as_deref(),
        Some("garbage.yaml: is 10000000 bytes, larger than the limit of 8388608 bytes")
    );
    assert!(
        st.files["binary.json"]
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("binary.json: is not UTF-8 text")),
        "{st:?}"
    );
    assert_eq!(st.files["garbage.yaml"].objects, 0);
    assert_eq!(st.files["ok.yaml"].objects, 1);
    assert!(st.files["ok.yaml"].error.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_waits_for_its_namespace() {
    let mut src = Src::start().await;
    src.model("synced", |m| m.synced).await;
    let digest = src.write("p.yaml", policy_yaml("q", "p", "In").as_bytes());
    let st = src
        .status_until("missing namespace reported", |s| {
            s.files.get("p.yaml").is_some_and(|f| f.sha256 == digest)
        })
        .await;
    assert!(
        st.errors
            .contains(&"p.yaml: NetworkPolicy q/p: namespace \"q\" does not exist".to_owned()),
        "{:?}",
        st.errors
    );
    assert_eq!(st.files["p.yaml"].objects, 0);
    assert!(
        st.files["p.yaml"].error.is_none(),
        "the file itself is fine"
    );
    assert!(src.handle.models.borrow().policies.is_empty());

    src.write("ns.yaml", ns_yaml("q").as_bytes());
    let m = src
        .model("policy in force once q exists", |m| m.policies.len() == 1)
        .await;
    let st = src
        .status_until("problem cleared", |s| s.generation == m.generation)
        .await;
    assert!(st.errors.is_empty(), "{:?}", st.errors);
    // `default` exists without being declared.
    src.write("d.yaml", policy_yaml("default", "p", "In").as_bytes());
    src.model("policy in default", |m| m.policies.len() == 2)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_object_keeps_the_first_file() {
    let mut src = Src::start().await;
    src.model("synced", |m| m.synced).await;
    src.write("b.yaml", pod_yaml("default", "dup", "second").as_bytes());
    src.model("b's pod", |m| {
        app_of(m, "default", "dup").as_deref() == Some("second")
    })
    .await;
    src.write("a.yaml", pod_yaml("default", "dup", "first").as_bytes());
    let m = src
        .model("a's pod wins", |m| {
            app_of(m, "default", "dup").as_deref() == Some("first")
        })
        .await;
    let st = src
        .status_until("duplicate reported", |s| s.generation == m.generation)
        .await;
    assert_eq!(
        st.errors,
        vec!["b.yaml: Pod default/dup: also defined in a.yaml; the definition in a.yaml is used"]
    );
    assert_eq!(st.files["b.yaml"].objects, 0);
    std::fs::remove_file(src.path("a.yaml")).expect("rm");
    src.model("b's pod back", |m| {
        app_of(m, "default", "dup").as_deref() == Some("second")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_and_temporary_files_are_ignored() {
    let mut src = Src::start().await;
    src.model("synced", |m| m.synced).await;
    for name in [".hidden.yaml", "p.yaml~", "#p.yaml#", "notes.txt"] {
        std::fs::write(src.path(name), "kind: [broken").expect("write");
    }
    std::fs::create_dir(src.path("sub.yaml")).expect("mkdir");
    src.write("z.yaml", pod_yaml("default", "z", "web").as_bytes());
    let m = src.model("z applies", |m| m.pods.len() == 1).await;
    let st = src
        .status_until("status of z", |s| s.generation == m.generation)
        .await;
    assert_eq!(st.files.keys().collect::<Vec<_>>(), vec!["z.yaml"]);
    assert!(st.errors.is_empty(), "{:?}", st.errors);
}

#[tokio::test]
async fn a_missing_directory_is_an_error_at_start() {
    let state = Arc::new(State::default());
    let (_tx, rx) = watch::channel(false);
    let err = spawn(
        SourceConfig::Manifests(Path::new("/nonexistent/twill-manifests").to_owned()),
        state,
        rx,
    )
    .await
    .err()
    .expect("refused");
    assert!(
        err.to_string()
            .starts_with("manifest directory /nonexistent/twill-manifests: "),
        "{err}"
    );
}

/// One label change, many times: how long from the write to the model (printed; the
/// assertion is loose because CI machines are noisy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relabel_latency() {
    let mut src = Src::start().await;
    src.model("synced", |m| m.synced).await;
    let mut took = Vec::new();
    for i in 0..20 {
        let app = format!("v{i:02}");
        let started = Instant::now();
        src.write("p.yaml", pod_yaml("default", "a", &app).as_bytes());
        src.model("relabel", |m| {
            app_of(m, "default", "a").as_deref() == Some(app.as_str())
        })
        .await;
        took.push(started.elapsed());
    }
    took.sort();
    eprintln!(
        "write-to-model latency: median {:?}, max {:?}",
        took[10], took[19]
    );
    assert!(
        took[10] < Duration::from_millis(500),
        "median {:?}",
        took[10]
    );
}

/// The directory removed and made again: the periodic rescan finds the new one and watches
/// it, so changes are fast again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_directory_is_watched_again() {
    let mut src = Src::start_with(&[("a.yaml", &pod_yaml("default", "a", "web"))]).await;
    src.model("synced", |m| m.synced && m.pods.len() == 1).await;
    std::fs::remove_dir_all(src.dir.path()).expect("rm -r");
    let st = src
        .status_until("the missing directory reported", |s| {
            s.errors
                .iter()
                .any(|e| e.starts_with("read manifest directory "))
        })
        .await;
    assert!(st.synced);
    assert_eq!(
        src.handle.models.borrow().pods.len(),
        1,
        "objects stay in force while the directory is gone"
    );
    std::fs::create_dir(src.dir.path()).expect("mkdir");
    src.write("b.yaml", pod_yaml("default", "b", "web").as_bytes());
    wait_model(
        &mut src.handle.models,
        twilld::source::manifests::RESCAN + DEADLINE,
        "the new directory read by the periodic rescan",
        |m| m.pods.len() == 1 && app_of(m, "default", "b").is_some(),
    )
    .await;
    let started = Instant::now();
    src.write("c.yaml", pod_yaml("default", "c", "web").as_bytes());
    src.model("c through inotify", |m| m.pods.len() == 2).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}: not watched",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_the_task() {
    let mut src = Src::start().await;
    src.model("synced", |m| m.synced).await;
    src._shutdown.send(true).expect("send");
    tokio::time::timeout(DEADLINE, &mut src.handle.task)
        .await
        .expect("task ended")
        .expect("task did not panic");
}
