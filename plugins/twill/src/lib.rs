//! The `twill` meta plugin: the node's pod network as twilld leased it, through `bridge` and
//! `host-local`.
//!
//! Built like flannel's CNI plugin, which operators know: ADD reads the subnet file twilld
//! writes once it holds the node's lease, derives a `bridge` config (gateway on the bridge,
//! default route, MTU from the file, hairpin on, masquerade *off* because the daemon
//! masquerades) with a `host-local` IPAM section for the node subnet, and delegates. The
//! derived config is stored per attachment (`<dataDir>/<containerID>:<ifname>`) before the
//! delegate runs, so DEL and CHECK use exactly what ADD used even after the subnet file changed
//! or disappeared; if the stored file is missing DEL falls back to the current subnet file so
//! an address is never leaked. STATUS says "not ready" (code 50) until the subnet file exists.
//! `delegate` and `ipam` in our config are merged over the derived sections, so tests (and
//! unusual nodes) can change the bridge name or the IPAM data directory.

use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use twill_cni::error::{NOT_AVAILABLE, TRY_AGAIN_LATER};
use twill_cni::{CniError, CniResult, Command, Plugin, Request, invoke};
use twill_subnet_file::{DEFAULT_PATH, SubnetFile, SubnetFileError, write_file_atomic};

/// Where derived delegate configs are kept unless `dataDir` says otherwise.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/twill";

/// Our own config keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TwillConf {
    #[serde(default)]
    pub subnet_file: Option<String>,
    #[serde(default)]
    pub data_dir: Option<String>,
    /// Merged over the derived bridge config.
    #[serde(default)]
    pub delegate: Option<Map<String, Value>>,
    /// Merged over the derived host-local config.
    #[serde(default)]
    pub ipam: Option<Map<String, Value>>,
}

impl TwillConf {
    fn subnet_file(&self) -> PathBuf {
        PathBuf::from(self.subnet_file.as_deref().unwrap_or(DEFAULT_PATH))
    }

    fn data_dir(&self) -> PathBuf {
        PathBuf::from(self.data_dir.as_deref().unwrap_or(DEFAULT_DATA_DIR))
    }
}

/// Derives the delegated `bridge` config from the subnet file. Pure.
pub fn delegate_config(
    name: &str,
    version: &str,
    conf: &TwillConf,
    subnet: &SubnetFile,
    runtime_config: Option<&Value>,
) -> Result<Value, CniError> {
    let mut ipam = Map::new();
    ipam.insert("type".into(), json!("host-local"));
    ipam.insert(
        "ranges".into(),
        json!([[{"subnet": subnet.node_subnet().to_string(), "gateway": subnet.subnet.ip().to_string()}]]),
    );
    ipam.insert(
        "routes".into(),
        json!([{"dst": subnet.network.to_string()}]),
    );
    if let Some(over) = &conf.ipam {
        for (k, v) in over {
            ipam.insert(k.clone(), v.clone());
        }
    }
    let mut d = Map::new();
    d.insert("cniVersion".into(), json!(version));
    d.insert("name".into(), json!(name));
    d.insert("type".into(), json!("bridge"));
    d.insert("bridge".into(), json!("cni0"));
    d.insert("isGateway".into(), json!(true));
    d.insert("isDefaultGateway".into(), json!(true));
    d.insert("ipMasq".into(), json!(false));
    d.insert("hairpinMode".into(), json!(true));
    // The bridge is ours and its gateway must be the node's current subnet: after a re-claimed
    // lease changed the subnet, the old gateway address is replaced rather than refused.
    d.insert("forceAddress".into(), json!(true));
    d.insert("mtu".into(), json!(subnet.mtu));
    if let Some(over) = &conf.delegate {
        for (k, v) in over {
            if matches!(k.as_str(), "cniVersion" | "name" | "ipam") {
                return Err(CniError::config(format!(
                    "delegate.{k}: set by the twill plugin; use the top-level key instead"
                )));
            }
            d.insert(k.clone(), v.clone());
        }
    }
    if d.get("type").and_then(Value::as_str) != Some("bridge") {
        return Err(CniError::config(
            "delegate.type: the twill plugin delegates to bridge only",
        ));
    }
    d.insert("ipam".into(), Value::Object(ipam));
    if let Some(rc) = runtime_config {
        d.insert("runtimeConfig".into(), rc.clone());
    }
    Ok(Value::Object(d))
}

/// The twill plugin.
pub struct Twill;

fn read_subnet(path: &Path) -> Result<SubnetFile, CniError> {
    SubnetFile::read(path).map_err(|e| match e {
        SubnetFileError::Read { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            CniError::with_details(
                TRY_AGAIN_LATER,
                format!("subnet file {} does not exist yet", path.display()),
                "twilld writes it once it holds this node's lease: check that twilld runs on this node (netctl status)",
            )
        }
        other => CniError::internal(other.to_string()),
    })
}

/// `<containerID>:<ifname>`: neither part can contain `:` (CNI's rules), so the name is
/// unambiguous, and it cannot start with `.` like the temporary files.
fn stored_name(container_id: &str, ifname: &str) -> String {
    format!("{container_id}:{ifname}")
}

fn stored_path(conf: &TwillConf, req: &Request) -> PathBuf {
    conf.data_dir()
        .join(stored_name(&req.env.container_id, &req.env.ifname))
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> CniError {
    CniError::internal(format!("{what} {}: {e}", path.display()))
}

fn store(path: &Path, value: &Value) -> Result<(), CniError> {
    let text = serde_json::to_vec(value).map_err(|e| CniError::internal(e.to_string()))?;
    write_file_atomic(path, &text).map_err(|e| io_err("write", path, e))
}

fn load(path: &Path) -> Result<Option<Value>, CniError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            CniError::internal(format!("stored delegate config {}: {e}", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", path, e)),
    }
}

fn bytes(v: &Value) -> Result<Vec<u8>, CniError> {
    serde_json::to_vec(v).map_err(|e| CniError::internal(e.to_string()))
}

impl Twill {
    fn conf(req: &Request) -> Result<TwillConf, CniError> {
        req.config()
    }

    fn current_delegate(req: &Request, conf: &TwillConf) -> Result<Value, CniError> {
        let subnet = read_subnet(&conf.subnet_file())?;
        delegate_config(
            &req.conf.name,
            &req.version,
            conf,
            &subnet,
            req.conf.runtime_config.as_ref(),
        )
    }
}

impl Plugin for Twill {
    fn about(&self) -> String {
        "CNI twill plugin (delegates to bridge + host-local from twilld's subnet file)".into()
    }

    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        let conf = Self::conf(req)?;
        let delegate = Self::current_delegate(req, &conf)?;
        let path = stored_path(&conf, req);
        store(&path, &delegate)?;
        match invoke::delegate_add("bridge", &req.env, &bytes(&delegate)?, &req.version) {
            Ok(r) => Ok(r),
            Err(e) => {
                // bridge released what it took; drop our record of the attempt too.
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }

    fn del(&self, req: &Request) -> Result<(), CniError> {
        let conf = Self::conf(req)?;
        let path = stored_path(&conf, req);
        // Nothing stored (ADD never ran, or the file was lost or damaged): use the current
        // subnet file so the address is released anyway; without it there is nothing we know
        // of. DEL must stay retryable, so a damaged file never fails it by itself.
        let stored = load(&path).unwrap_or_else(|e| {
            eprintln!("twill: {e}; falling back to the current subnet file");
            None
        });
        let delegate = match stored {
            Some(d) => d,
            None => match Self::current_delegate(req, &conf) {
                Ok(d) => d,
                Err(e) if e.code == TRY_AGAIN_LATER => return Ok(()),
                Err(e) => return Err(e),
            },
        };
        invoke::delegate("bridge", Command::Del, &req.env, &bytes(&delegate)?)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &path, e)),
        }
    }

    fn check(&self, req: &Request) -> Result<(), CniError> {
        let conf = Self::conf(req)?;
        let path = stored_path(&conf, req);
        let mut delegate = load(&path)?.ok_or_else(|| {
            CniError::internal(format!(
                "no stored delegate config {} for this attachment: was ADD run?",
                path.display()
            ))
        })?;
        if let (Some(obj), Some(prev)) = (delegate.as_object_mut(), &req.conf.prev_result) {
            obj.insert("prevResult".into(), prev.clone());
        }
        invoke::delegate("bridge", Command::Check, &req.env, &bytes(&delegate)?)
    }

    fn status(&self, req: &Request) -> Result<(), CniError> {
        let conf = Self::conf(req)?;
        let delegate = Self::current_delegate(req, &conf).map_err(|e| {
            if e.code == TRY_AGAIN_LATER {
                CniError::with_details(NOT_AVAILABLE, e.msg, e.details)
            } else {
                e
            }
        })?;
        invoke::delegate("bridge", Command::Status, &req.env, &bytes(&delegate)?)
    }

    fn gc(&self, req: &Request) -> Result<(), CniError> {
        let conf = Self::conf(req)?;
        let valid = req.conf.gc_valid_attachments();
        let mut errors = Vec::new();
        // Forward GC with the valid list, so host-local (and bridge's rules) drop the rest.
        match Self::current_delegate(req, &conf) {
            Ok(mut d) => {
                if let Some(obj) = d.as_object_mut() {
                    obj.insert("cni.dev/valid-attachments".into(), json!(valid));
                }
                if let Err(e) = invoke::delegate("bridge", Command::Gc, &req.env, &bytes(&d)?) {
                    errors.push(e);
                }
            }
            Err(e) if e.code == TRY_AGAIN_LATER => {}
            Err(e) => errors.push(e),
        }
        // Drop stored configs of attachments the runtime no longer has.
        let dir = conf.data_dir();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let keep = valid
                    .iter()
                    .any(|a| name == stored_name(&a.container_id, &a.ifname));
                if !keep && let Err(e) = std::fs::remove_file(entry.path()) {
                    errors.push(io_err("remove", &entry.path(), e));
                }
            }
        }
        twill_cni::error::collect(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet() -> SubnetFile {
        SubnetFile {
            network: "10.244.0.0/16".parse().unwrap(),
            subnet: "10.244.5.1/24".parse().unwrap(),
            mtu: 1450,
            ipmasq: true,
        }
    }

    #[test]
    fn derives_bridge_and_host_local() {
        let d = delegate_config("twill", "1.1.0", &TwillConf::default(), &subnet(), None).unwrap();
        assert_eq!(d["type"], "bridge");
        assert_eq!(d["mtu"], 1450);
        assert_eq!(d["ipMasq"], false);
        assert_eq!(d["isGateway"], true);
        assert_eq!(d["ipam"]["type"], "host-local");
        assert_eq!(d["ipam"]["ranges"][0][0]["subnet"], "10.244.5.0/24");
        assert_eq!(d["ipam"]["ranges"][0][0]["gateway"], "10.244.5.1");
        assert_eq!(d["ipam"]["routes"][0]["dst"], "10.244.0.0/16");
        assert!(d.get("runtimeConfig").is_none());
    }

    #[test]
    fn merges_overrides_and_passes_runtime_config() {
        let conf: TwillConf = serde_json::from_value(json!({
            "delegate": {"bridge": "tw0", "hairpinMode": false},
            "ipam": {"dataDir": "/tmp/x"}
        }))
        .unwrap();
        let rc = json!({"portMappings": []});
        let d = delegate_config("twill", "1.0.0", &conf, &subnet(), Some(&rc)).unwrap();
        assert_eq!(d["bridge"], "tw0");
        assert_eq!(d["hairpinMode"], false);
        assert_eq!(d["ipam"]["dataDir"], "/tmp/x");
        assert_eq!(d["ipam"]["type"], "host-local");
        assert_eq!(d["runtimeConfig"], rc);
    }

    #[test]
    fn refuses_overrides_that_break_delegation() {
        for bad in [
            json!({"type": "macvlan"}),
            json!({"ipam": {}}),
            json!({"name": "x"}),
        ] {
            let conf: TwillConf = serde_json::from_value(json!({ "delegate": bad })).unwrap();
            let e = delegate_config("twill", "1.0.0", &conf, &subnet(), None).unwrap_err();
            assert_eq!(e.code, 7);
            assert!(e.msg.starts_with("delegate."), "{}", e.msg);
        }
    }
}
