//! The Kubernetes source against a fake API server on 127.0.0.1 that answers list and watch
//! requests as the real one does: lists carry a resourceVersion; watches stream JSON lines
//! (ADDED, MODIFIED, DELETED, and BOOKMARK when `allowWatchBookmarks=true`) from the version
//! asked for; a version older than the compacted history gets `410 Gone`, as an ERROR event
//! (what the API server sends) or, in one test, as an HTTP 410 answer; and connections can
//! be cut mid-stream. The model is read from the source's watch channel with deadlines.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State as AxState};
use axum::http::{Response, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};
use twilld::source::model::{Model, ObjectKey};
use twilld::source::{SourceConfig, SourceHandle, spawn};
use twilld::state::{SourceStatus, State};

const DEADLINE: Duration = Duration::from_secs(10);

/// (path, list kind, object kind, apiVersion)
const RESOURCES: [(&str, &str, &str, &str); 6] = [
    ("/api/v1/namespaces", "NamespaceList", "Namespace", "v1"),
    ("/api/v1/nodes", "NodeList", "Node", "v1"),
    ("/api/v1/pods", "PodList", "Pod", "v1"),
    ("/api/v1/services", "ServiceList", "Service", "v1"),
    (
        "/apis/networking.k8s.io/v1/networkpolicies",
        "NetworkPolicyList",
        "NetworkPolicy",
        "networking.k8s.io/v1",
    ),
    (
        "/apis/discovery.k8s.io/v1/endpointslices",
        "EndpointSliceList",
        "EndpointSlice",
        "discovery.k8s.io/v1",
    ),
];

fn resource_of_kind(kind: &str) -> &'static str {
    RESOURCES
        .iter()
        .find(|r| r.2 == kind)
        .map(|r| r.0)
        .expect("known kind")
}

#[derive(Clone, Debug)]
struct Event {
    rv: u64,
    path: &'static str,
    line: String,
}

#[derive(Default)]
struct Data {
    rv: u64,
    /// (path, namespace, name) -> object
    objects: BTreeMap<(&'static str, String, String), Value>,
    log: Vec<Event>,
    /// Watches from a version below this get 410.
    compacted: u64,
    /// Answer 410 as an HTTP status instead of an ERROR event.
    gone_as_http: bool,
    lists: HashMap<&'static str, usize>,
    watches: HashMap<&'static str, usize>,
    /// The resourceVersion of the last watch request, per resource.
    watch_rvs: HashMap<&'static str, u64>,
}

#[derive(Clone)]
struct Fake {
    data: Arc<Mutex<Data>>,
    events: broadcast::Sender<Event>,
    /// Bumped to cut every open watch connection.
    cut: Arc<watch::Sender<u64>>,
}

fn key_of(obj: &Value) -> (String, String) {
    let m = &obj["metadata"];
    (
        m["namespace"].as_str().unwrap_or("").to_owned(),
        m["name"].as_str().unwrap_or("").to_owned(),
    )
}

impl Fake {
    fn new() -> Fake {
        let (events, _) = broadcast::channel(1024);
        Fake {
            data: Arc::new(Mutex::new(Data {
                rv: 100,
                ..Data::default()
            })),
            events,
            cut: Arc::new(watch::channel(0).0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Data> {
        self.data.lock().expect("fake api lock")
    }

    /// Stores an object and tells the watchers (ADDED or MODIFIED).
    fn put(&self, mut obj: Value) {
        let kind = obj["kind"].as_str().expect("kind").to_owned();
        let path = resource_of_kind(&kind);
        let (ns, name) = key_of(&obj);
        let mut d = self.lock();
        d.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(d.rv.to_string());
        let ty = if d.objects.insert((path, ns, name), obj.clone()).is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let ev = Event {
            rv: d.rv,
            path,
            line: json!({"type": ty, "object": obj}).to_string(),
        };
        d.log.push(ev.clone());
        let _ = self.events.send(ev);
    }

    fn delete(&self, kind: &str, ns: &str, name: &str) {
        let path = resource_of_kind(kind);
        let mut d = self.lock();
        let Some(mut obj) = d.objects.remove(&(path, ns.to_owned(), name.to_owned())) else {
            return;
        };
        d.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(d.rv.to_string());
        let ev = Event {
            rv: d.rv,
            path,
            line: json!({"type": "DELETED", "object": obj}).to_string(),
        };
        d.log.push(ev.clone());
        let _ = self.events.send(ev);
    }

    /// Removes an object without any event and forgets all history: only a re-list can
    /// notice. Then cuts every watch, so they come back with a version now too old.
    fn lose_history_of_delete(&self, kind: &str, ns: &str, name: &str, as_http: bool) {
        {
            let mut d = self.lock();
            let path = resource_of_kind(kind);
            d.objects.remove(&(path, ns.to_owned(), name.to_owned()));
            d.rv += 1;
            d.compacted = d.rv + 1;
            d.log.clear();
            d.gone_as_http = as_http;
        }
        self.cut_watches();
    }

    /// Sends `line` as is to the watchers of `kind`.
    fn send_raw(&self, kind: &str, line: &str) {
        let rv = self.lock().rv;
        let _ = self.events.send(Event {
            rv: rv + 1,
            path: resource_of_kind(kind),
            line: line.to_owned(),
        });
    }

    /// Sends every watch a BOOKMARK at the current version, then ends it.
    fn bookmark_and_close(&self) {
        let rv = self.lock().rv;
        let _ = self.events.send(Event {
            rv,
            path: "",
            line: String::new(),
        });
    }

    fn cut_watches(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    fn lists(&self, kind: &str) -> usize {
        self.lock()
            .lists
            .get(resource_of_kind(kind))
            .copied()
            .unwrap_or(0)
    }

    fn watches(&self, kind: &str) -> usize {
        self.lock()
            .watches
            .get(resource_of_kind(kind))
            .copied()
            .unwrap_or(0)
    }
}

fn json_response(code: StatusCode, v: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(v.to_string()))
        .expect("response")
}

fn gone_status(rv: u64, compacted: u64) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": format!("too old resource version: {rv} ({compacted})"),
           "reason": "Expired", "code": 410})
}

async fn handle(AxState(fake): AxState<Fake>, req: Request) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let Some(&(rpath, list_kind, kind, api_version)) = RESOURCES.iter().find(|r| r.0 == path)
    else {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound"}),
        );
    };
    let is_watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    if !is_watch {
        let mut d = fake.lock();
        *d.lists.entry(rpath).or_default() += 1;
        let items: Vec<Value> = d
            .objects
            .iter()
            .filter(|((p, _, _), _)| *p == rpath)
            .map(|(_, v)| v.clone())
            .collect();
        let body = json!({"kind": list_kind, "apiVersion": api_version,
                          "metadata": {"resourceVersion": d.rv.to_string()}, "items": items});
        return json_response(StatusCode::OK, &body);
    }
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let bookmarks = query.get("allowWatchBookmarks").map(String::as_str) == Some("true");
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let mut live = fake.events.subscribe();
    let mut cut = fake.cut.subscribe();
    cut.borrow_and_update();
    let backlog: Vec<String>;
    let now;
    {
        let mut d = fake.lock();
        *d.watches.entry(rpath).or_default() += 1;
        d.watch_rvs.insert(rpath, from);
        if from != 0 && from < d.compacted {
            let status = gone_status(from, d.compacted);
            if d.gone_as_http {
                return json_response(StatusCode::GONE, &status);
            }
            let line = format!("{}\n", json!({"type": "ERROR", "object": status}));
            return Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(Body::from(line))
                .expect("response");
        }
        backlog = d
            .log
            .iter()
            .filter(|e| e.path == rpath && e.rv > from)
            .map(|e| e.line.clone())
            .collect();
        now = d.rv;
    }
    tokio::spawn(async move {
        for line in backlog {
            if tx.send(Ok(Bytes::from(format!("{line}\n")))).await.is_err() {
                return;
            }
        }
        if bookmarks {
            let bm = json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version,
                            "metadata": {"resourceVersion": now.to_string()}}});
            if tx.send(Ok(Bytes::from(format!("{bm}\n")))).await.is_err() {
                return;
            }
        }
        loop {
            tokio::select! {
                ev = live.recv() => match ev {
                    // The bookmark-and-close marker: a BOOKMARK at the current version, then
                    // the end of the response (as when the watch's timeout runs out; an
                    // aborted connection could lose the bookmark still in hyper's buffer).
                    Ok(ev) if ev.path.is_empty() => {
                        if bookmarks {
                            let bm = json!({"type": "BOOKMARK", "object": {"kind": kind,
                                "apiVersion": api_version,
                                "metadata": {"resourceVersion": ev.rv.to_string()}}});
                            let _ = tx.send(Ok(Bytes::from(format!("{bm}\n")))).await;
                        }
                        return;
                    }
                    Ok(ev) if ev.path == rpath && ev.rv > now => {
                        if tx.send(Ok(Bytes::from(format!("{}\n", ev.line)))).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                },
                _ = cut.changed() => {
                    // Abort the connection mid-body, as a broken network would.
                    let _ = tx.send(Err(std::io::Error::other("connection cut"))).await;
                    return;
                }
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .expect("response")
}

struct Cluster {
    fake: Fake,
    _dir: tempfile::TempDir,
    handle: SourceHandle,
    state: Arc<State>,
    _shutdown: watch::Sender<bool>,
}

impl Cluster {
    async fn start(fake: Fake) -> Cluster {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new().fallback(handle).with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: http://{addr}
users:
- name: tester
  user: {{}}
contexts:
- name: fake
  context:
    cluster: fake
    user: tester
current-context: fake
"
            ),
        )
        .expect("write kubeconfig");
        let state = Arc::new(State::default());
        let (tx, rx) = watch::channel(false);
        let handle = spawn(SourceConfig::Kubeconfig(kubeconfig), state.clone(), rx)
            .await
            .expect("spawn");
        Cluster {
            fake,
            _dir: dir,
            handle,
            state,
            _shutdown: tx,
        }
    }

    async fn model(&mut self, what: &str, ok: impl Fn(&Model) -> bool) -> Arc<Model> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let m = self.handle.models.borrow_and_update().clone();
            if ok(&m) {
                return m;
            }
            match tokio::time::timeout_at(deadline, self.handle.models.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => panic!("model channel closed waiting for {what}"),
                Err(_) => panic!("timed out waiting for {what}; last model: {m:#?}"),
            }
        }
    }

    /// Waits until every kind has made at least `n` watch requests.
    async fn watching(&self, n: usize) {
        for r in RESOURCES {
            self.watching_kind(r.2, n).await;
        }
    }

    /// Waits until `kind` has made at least `n` watch requests.
    async fn watching_kind(&self, kind: &str, n: usize) {
        let start = std::time::Instant::now();
        while self.fake.watches(kind) < n {
            assert!(start.elapsed() < DEADLINE, "watches not established");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn status_until(&self, what: &str, ok: impl Fn(&SourceStatus) -> bool) -> SourceStatus {
        let start = std::time::Instant::now();
        loop {
            let s = self.state.snapshot().source.unwrap_or_default();
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

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn pod(ns: &str, name: &str, app: &str, ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"namespace": ns, "name": name, "labels": {"app": app}},
           "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
           "status": {"podIP": ip, "podIPs": [{"ip": ip}]}})
}

fn policy(ns: &str, name: &str, from_app: &str) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"namespace": ns, "name": name},
           "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": from_app}}}],
                                 "ports": [{"port": 80}]}]}})
}

fn app_of(m: &Model, ns: &str, name: &str) -> Option<String> {
    m.pods
        .get(&ObjectKey::new(ns, name))
        .and_then(|p| p.labels.get("app").cloned())
}

fn seeded() -> Fake {
    let fake = Fake::new();
    fake.put(namespace("web"));
    fake.put(json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "n1"}, "spec": {"podCIDR": "10.1.0.0/24"},
        "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.1"}]}}));
    fake.put(pod("web", "a", "web", "10.1.0.2"));
    fake.put(policy("web", "allow", "client"));
    fake.put(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": "web", "name": "web"},
        "spec": {"clusterIP": "10.96.0.10", "selector": {"app": "web"}, "ports": [{"port": 80}]}}));
    fake.put(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": "web", "name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4", "endpoints": [{"addresses": ["10.1.0.2"]}], "ports": [{"port": 80}]}));
    fake
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_then_watch_follows_adds_changes_and_deletes() {
    let mut c = Cluster::start(seeded()).await;
    let m = c.model("synced model", |m| m.synced).await;
    assert_eq!(app_of(&m, "web", "a").as_deref(), Some("web"));
    assert_eq!(m.policies.len(), 1);
    assert_eq!(m.nodes["n1"].internal_ips.len(), 1);
    assert_eq!(m.services.len(), 1);
    assert_eq!(m.endpoint_slices.len(), 1);
    let st = c
        .status_until("synced status", |s| {
            s.synced && s.generation >= m.generation
        })
        .await;
    assert_eq!(st.kind, "kubernetes");
    assert!(st.errors.is_empty(), "{:?}", st.errors);

    c.fake.put(pod("web", "b", "client", "10.1.0.3"));
    c.model("pod b added", |m| app_of(m, "web", "b").is_some())
        .await;
    c.fake.put(pod("web", "a", "web2", "10.1.0.2"));
    c.model("pod a relabelled", |m| {
        app_of(m, "web", "a").as_deref() == Some("web2")
    })
    .await;
    c.fake.delete("Pod", "web", "b");
    c.model("pod b deleted", |m| app_of(m, "web", "b").is_none())
        .await;
    c.fake.put(policy("web", "allow", "other"));
    c.model("policy changed", |m| {
        m.policies
            .values()
            .any(|p| format!("{:?}", p.ingress).contains("other"))
    })
    .await;
    c.fake.delete("NetworkPolicy", "web", "allow");
    c.model("policy deleted", |m| m.policies.is_empty()).await;
    // One list per kind so far: everything came through the watches.
    assert_eq!(c.fake.lists("Pod"), 1);

    c._shutdown.send(true).expect("send");
    tokio::time::timeout(DEADLINE, &mut c.handle.task)
        .await
        .expect("task ended")
        .expect("task did not panic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_and_cut_watches_resume_without_a_relist() {
    let mut c = Cluster::start(seeded()).await;
    c.model("synced", |m| m.synced).await;
    c.watching(1).await;
    let watches = c.fake.watches("Pod");
    // A change to another kind moves the global version on; the pod watch learns it only
    // from a bookmark.
    c.fake.put(namespace("other"));
    c.model("namespace added", |m| m.namespaces.contains_key("other"))
        .await;
    let bookmark_rv = c.fake.lock().rv;
    c.fake.bookmark_and_close();
    c.fake.put(pod("web", "c", "client", "10.1.0.4"));
    c.model("pod added after the close", |m| {
        app_of(m, "web", "c").is_some()
    })
    .await;
    assert!(c.fake.watches("Pod") > watches, "the pod watch reconnected");
    assert_eq!(c.fake.lists("Pod"), 1, "a resumed watch does not re-list");
    // The pod watch resumed from the bookmark's version (the namespace change), not from
    // its own last event or the list.
    let rv = c.fake.lock().watch_rvs.get("/api/v1/pods").copied();
    assert_eq!(rv, Some(bookmark_rv));
    let st = c
        .status_until("errors cleared", |s| s.errors.is_empty())
        .await;
    assert!(st.synced);

    // A connection aborted mid-stream: the watch comes back, silently, and goes on.
    let w = c.fake.watches("Pod");
    c.fake.cut_watches();
    c.watching_kind("Pod", w + 1).await;
    c.fake.delete("Pod", "web", "c");
    c.model("pod deleted after the cut", |m| {
        app_of(m, "web", "c").is_none()
    })
    .await;
    assert_eq!(c.fake.lists("Pod"), 1, "still no re-list");
    assert!(
        c.state
            .snapshot()
            .source
            .unwrap_or_default()
            .errors
            .is_empty()
    );

    // A line that does not decode is a watch error; it shows until the watch has been
    // quiet for a while, with no event needed to clear it.
    c.fake.send_raw("Pod", "{not json");
    c.status_until("the bad line reported", |s| {
        s.errors
            .iter()
            .any(|e| e.starts_with("watch Pod at http://"))
    })
    .await;
    c.status_until("errors cleared without any event", |s| s.errors.is_empty())
        .await;
}

async fn gone_forces_a_relist(as_http: bool) {
    let mut c = Cluster::start(seeded()).await;
    c.model("synced", |m| m.synced).await;
    c.fake.put(pod("web", "d", "client", "10.1.0.5"));
    c.model("pod d", |m| app_of(m, "web", "d").is_some()).await;
    let lists = c.fake.lists("Pod");
    // The delete of d is lost with the history: only a re-list can notice it.
    c.fake.lose_history_of_delete("Pod", "web", "d", as_http);
    let m = c
        .model("pod d gone after the re-list", |m| {
            app_of(m, "web", "d").is_none()
        })
        .await;
    assert!(c.fake.lists("Pod") > lists, "re-listed");
    assert_eq!(app_of(&m, "web", "a").as_deref(), Some("web"));
    assert!(m.synced);
    // And the watch goes on after the re-list.
    c.fake.put(pod("web", "e", "client", "10.1.0.6"));
    c.model("pod e", |m| app_of(m, "web", "e").is_some()).await;
    c.status_until("errors cleared", |s| s.errors.is_empty())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_as_an_error_event_forces_a_relist() {
    gone_forces_a_relist(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_as_http_410_forces_a_relist() {
    gone_forces_a_relist(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_objects_and_missing_namespaces_are_reported() {
    let mut c = Cluster::start(seeded()).await;
    c.model("synced", |m| m.synced).await;
    c.fake.put(pod("web", "bad", "x", "10.1.0.300"));
    c.fake.put(policy("nowhere", "p", "x"));
    let st = c
        .status_until("both problems reported", |s| s.errors.len() == 2)
        .await;
    assert!(
        st.errors.contains(
            &"Pod web/bad: status.podIPs[0].ip: \"10.1.0.300\" is not an IP address".to_owned()
        ),
        "{:?}",
        st.errors
    );
    assert!(
        st.errors
            .contains(&"NetworkPolicy nowhere/p: namespace \"nowhere\" does not exist".to_owned()),
        "{:?}",
        st.errors
    );
    {
        let m = c.handle.models.borrow();
        assert!(app_of(&m, "web", "bad").is_none());
        assert!(!m.policies.contains_key(&ObjectKey::new("nowhere", "p")));
    }
    c.fake.put(pod("web", "bad", "x", "10.1.0.30"));
    c.fake.put(namespace("nowhere"));
    c.model("both fixed", |m| {
        app_of(m, "web", "bad").is_some()
            && m.policies.contains_key(&ObjectKey::new("nowhere", "p"))
    })
    .await;
    c.status_until("errors cleared", |s| s.errors.is_empty())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_api_server_is_reported_and_not_synced() {
    // A port nothing listens on (bound, then closed), over TLS: the rustls client builds.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: x, cluster: {{server: \"https://{addr}\", insecure-skip-tls-verify: true}}}}]\nusers: [{{name: u, user: {{}}}}]\ncontexts: [{{name: x, context: {{cluster: x, user: u}}}}]\ncurrent-context: x\n"
        ),
    )
    .expect("write");
    let state = Arc::new(State::default());
    let (_tx, rx) = watch::channel(false);
    let handle = spawn(SourceConfig::Kubeconfig(kubeconfig), state.clone(), rx)
        .await
        .expect("spawn succeeds; connecting is retried");
    let start = std::time::Instant::now();
    loop {
        let s = state.snapshot().source.unwrap_or_default();
        if s.errors.len() == 6 {
            assert!(!s.synced);
            assert!(
                s.errors.iter().all(|e| e.starts_with("watch ")),
                "{:?}",
                s.errors
            );
            break;
        }
        assert!(start.elapsed() < DEADLINE, "{s:#?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!handle.models.borrow().synced);

    let err = spawn(
        SourceConfig::Kubeconfig(dir.path().join("missing")),
        state,
        watch::channel(false).1,
    )
    .await
    .err()
    .expect("missing kubeconfig refused");
    assert!(err.to_string().starts_with("kubeconfig "), "{err}");
}

#[tokio::test]
async fn in_cluster_without_a_service_account_is_an_error_at_start() {
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return; // really in a pod
    }
    let err = spawn(
        SourceConfig::InCluster,
        Arc::new(State::default()),
        watch::channel(false).1,
    )
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().starts_with("in-cluster config: "), "{err}");
}
