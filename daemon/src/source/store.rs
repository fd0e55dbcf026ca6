//! The objects a source holds, by origin, and the [`Model`] snapshots built from them, pure.
//!
//! An origin is a manifest file (by file name) or one watched kind of the Kubernetes API.
//! Keeping objects by origin makes the manifest source's rules simple: a file is replaced
//! or removed as a whole, and an object defined in two files is resolved by file name order
//! (the first wins; the other is reported), whatever order the files were read in.
//!
//! Cross-object checks live here because only the whole set can answer them: a namespaced
//! object whose namespace does not exist is reported and left out of the model until the
//! namespace appears (the API server would have refused to create it). `default`,
//! `kube-system`, `kube-public` and `kube-node-lease` always exist, as in every cluster.
//!
//! [`Store::build`] rebuilds the model from scratch (O(objects)); it is called once per
//! batch of changes, not per event. It returns a new snapshot only when the content or the
//! `synced` flag changed, with the generation increased by one, so a controller never
//! recompiles for nothing.

use super::convert::{Kind, Object, ObjectId, implicit_namespace};
use super::model::{Model, ObjectKey};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Namespaces that exist without being declared.
pub const IMPLICIT_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// What one origin contributes.
pub type Objects = BTreeMap<ObjectId, Object>;

#[derive(Debug, Default)]
pub struct Store {
    origins: BTreeMap<String, Objects>,
    synced: bool,
    last: Arc<Model>,
}

/// The result of [`Store::build`].
#[derive(Debug, Default)]
pub struct Build {
    /// The new snapshot, if anything changed since the last one.
    pub changed: Option<Arc<Model>>,
    /// Objects in the model, by origin.
    pub in_force: BTreeMap<String, usize>,
    /// Cross-object problems (duplicates, missing namespaces), each naming the object and,
    /// when `origin_names` was set, its origin.
    pub problems: Vec<String>,
}

impl Store {
    pub fn new() -> Store {
        Store::default()
    }

    /// Replaces everything `origin` contributes.
    pub fn set_origin(&mut self, origin: &str, objects: Objects) {
        self.origins.insert(origin.to_owned(), objects);
    }

    pub fn remove_origin(&mut self, origin: &str) {
        self.origins.remove(origin);
    }

    /// Adds or replaces one object of `origin`.
    pub fn upsert(&mut self, origin: &str, object: Object) {
        self.origins
            .entry(origin.to_owned())
            .or_default()
            .insert(object.id(), object);
    }

    pub fn delete(&mut self, origin: &str, id: &ObjectId) {
        if let Some(o) = self.origins.get_mut(origin) {
            o.remove(id);
        }
    }

    /// Every origin's name, in order.
    pub fn origins(&self) -> impl Iterator<Item = &String> {
        self.origins.keys()
    }

    pub fn origin(&self, origin: &str) -> Option<&Objects> {
        self.origins.get(origin)
    }

    /// Marks every input as read once; a model built after this says `synced`.
    pub fn set_synced(&mut self) {
        self.synced = true;
    }

    /// The last snapshot built.
    pub fn current(&self) -> Arc<Model> {
        self.last.clone()
    }

    /// Builds the model from every origin. `origin_names`: prefix problems with the origin
    /// (manifest files), or not (API kinds, where the origin says nothing).
    pub fn build(&mut self, origin_names: bool) -> Build {
        let mut out = Build::default();
        let mut chosen: BTreeMap<&ObjectId, (&str, &Object)> = BTreeMap::new();
        for (origin, objects) in &self.origins {
            for (id, obj) in objects {
                match chosen.get(id) {
                    Some((first, _)) => out.problems.push(format!(
                        "{origin}: {id}: also defined in {first}; the definition in {first} is used"
                    )),
                    None => {
                        chosen.insert(id, (origin.as_str(), obj));
                    }
                }
            }
        }
        let mut model = Model {
            generation: self.last.generation,
            synced: self.synced,
            ..Model::default()
        };
        for name in IMPLICIT_NAMESPACES {
            model
                .namespaces
                .insert(name.to_owned(), implicit_namespace(name));
        }
        for (origin, obj) in chosen.values() {
            if let Object::Namespace(ns) = obj {
                model.namespaces.insert(ns.name.clone(), ns.clone());
                *out.in_force.entry((*origin).to_owned()).or_default() += 1;
            }
        }
        for (id, (origin, obj)) in &chosen {
            if id.kind == Kind::Namespace {
                continue;
            }
            if id.kind.namespaced() && !model.namespaces.contains_key(&id.namespace) {
                let prefix = if origin_names {
                    format!("{origin}: ")
                } else {
                    String::new()
                };
                out.problems.push(format!(
                    "{prefix}{id}: namespace {:?} does not exist",
                    id.namespace
                ));
                continue;
            }
            let key = || ObjectKey::new(&id.namespace, &id.name);
            match obj {
                Object::Namespace(_) => {}
                Object::Node(n) => {
                    model.nodes.insert(n.name.clone(), n.clone());
                }
                Object::Pod(p) => {
                    model.pods.insert(key(), p.clone());
                }
                Object::NetworkPolicy(p) => {
                    model.policies.insert(key(), p.clone());
                }
                Object::Service(s) => {
                    model.services.insert(key(), s.clone());
                }
                Object::EndpointSlice(s) => {
                    model.endpoint_slices.insert(key(), s.clone());
                }
            }
            *out.in_force.entry((*origin).to_owned()).or_default() += 1;
        }
        if model != *self.last {
            model.generation = self.last.generation + 1;
            let model = Arc::new(model);
            self.last = model.clone();
            out.changed = Some(model);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::model::{Labels, NetworkPolicy, Pod, Selector};

    fn pod(ns: &str, name: &str, app: &str) -> Object {
        Object::Pod(Pod {
            namespace: ns.into(),
            name: name.into(),
            labels: Labels::from([("app".to_owned(), app.to_owned())]),
            node_name: None,
            ips: vec![],
            ports: vec![],
            host_network: false,
        })
    }

    fn policy(ns: &str, name: &str) -> Object {
        Object::NetworkPolicy(NetworkPolicy {
            namespace: ns.into(),
            name: name.into(),
            pod_selector: Selector::default(),
            ingress_isolation: true,
            egress_isolation: false,
            ingress: vec![],
            egress: vec![],
        })
    }

    fn objects(list: Vec<Object>) -> Objects {
        list.into_iter().map(|o| (o.id(), o)).collect()
    }

    #[test]
    fn generation_moves_only_on_change() {
        let mut s = Store::new();
        let b = s.build(true);
        let m = b
            .changed
            .expect("first build differs from the empty default");
        assert_eq!(m.generation, 1);
        assert!(m.namespaces.contains_key("default"));
        assert!(s.build(true).changed.is_none());
        s.set_origin("a.yaml", objects(vec![pod("default", "p", "web")]));
        assert_eq!(s.build(true).changed.expect("pod added").generation, 2);
        s.set_origin("a.yaml", objects(vec![pod("default", "p", "web")]));
        assert!(
            s.build(true).changed.is_none(),
            "same content, no new generation"
        );
        s.set_synced();
        let m = s.build(true).changed.expect("synced flips");
        assert!(m.synced);
        assert_eq!(m.generation, 3);
        s.upsert("a.yaml", pod("default", "p", "db"));
        let m = s.build(true).changed.expect("relabel");
        assert_eq!(m.pods[&ObjectKey::new("default", "p")].labels["app"], "db");
        s.remove_origin("a.yaml");
        assert!(s.build(true).changed.expect("removed").pods.is_empty());
    }

    #[test]
    fn missing_namespace_is_reported_until_it_exists() {
        let mut s = Store::new();
        s.set_origin(
            "b.yaml",
            objects(vec![policy("q", "p"), pod("q", "x", "a")]),
        );
        let b = s.build(true);
        assert!(b.changed.expect("first").policies.is_empty());
        assert!(
            b.problems
                .contains(&"b.yaml: NetworkPolicy q/p: namespace \"q\" does not exist".to_owned()),
            "{:?}",
            b.problems
        );
        assert_eq!(b.in_force.get("b.yaml"), None);
        let ns = crate::source::convert::implicit_namespace("q");
        s.set_origin("a.yaml", objects(vec![Object::Namespace(ns)]));
        let b = s.build(true);
        let m = b.changed.expect("namespace arrived");
        assert_eq!(m.policies.len(), 1);
        assert_eq!(m.pods.len(), 1);
        assert!(b.problems.is_empty());
        assert_eq!(b.in_force["b.yaml"], 2);
        // kube-system exists implicitly.
        s.set_origin("c.yaml", objects(vec![policy("kube-system", "p")]));
        assert_eq!(s.build(false).changed.expect("added").policies.len(), 2);
    }

    #[test]
    fn duplicates_keep_the_first_origin() {
        let mut s = Store::new();
        s.set_origin("b.yaml", objects(vec![pod("default", "p", "second")]));
        s.set_origin("a.yaml", objects(vec![pod("default", "p", "first")]));
        let b = s.build(true);
        let m = b.changed.expect("first");
        assert_eq!(
            m.pods[&ObjectKey::new("default", "p")].labels["app"],
            "first"
        );
        assert_eq!(
            b.problems,
            vec!["b.yaml: Pod default/p: also defined in a.yaml; the definition in a.yaml is used"]
        );
        assert_eq!(b.in_force.get("b.yaml"), None);
        assert_eq!(b.in_force["a.yaml"], 1);
    }
}
