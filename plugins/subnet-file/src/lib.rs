//! The node subnet file: the one contract between `twilld` and the `twill` CNI plugin.
//!
//! Env-style lines like flannel's `subnet.env`, so operators can `cat` it and scripts can
//! `source` it:
//!
//! ```text
//! TWILL_NETWORK=10.244.0.0/16
//! TWILL_SUBNET=10.244.5.1/24
//! TWILL_MTU=1450
//! TWILL_IPMASQ=true
//! ```
//!
//! `TWILL_SUBNET` is the node's gateway address inside its subnet, with the subnet's prefix.
//! The daemon writes the file only once it holds the lease, atomically (temp file in the same
//! directory, fsync, rename) so the plugin never reads half a file. Unknown keys are ignored
//! so a newer daemon can add keys without breaking an older plugin; missing or malformed keys
//! are errors that name the key and the file.

use ipnetwork::{IpNetwork, Ipv4Network};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The default location, shared by the daemon flag and the plugin config.
pub const DEFAULT_PATH: &str = "/run/twill/subnet.env";

/// What the daemon tells the plugin about this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetFile {
    /// The whole cluster pod network.
    pub network: Ipv4Network,
    /// The node's gateway address with the node subnet's prefix, e.g. `10.244.5.1/24`.
    pub subnet: Ipv4Network,
    /// MTU for pod interfaces.
    pub mtu: u32,
    /// Whether the daemon masquerades pod traffic leaving the cluster network.
    pub ipmasq: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SubnetFileError {
    #[error("read subnet file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("write subnet file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("subnet file {path}: {key}: {problem}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        problem: String,
    },
}

impl SubnetFile {
    /// The node subnet itself (network address), e.g. `10.244.5.0/24`.
    pub fn node_subnet(&self) -> Ipv4Network {
        // Same prefix as a valid network: cannot fail.
        Ipv4Network::new(self.subnet.network(), self.subnet.prefix()).unwrap_or(self.subnet)
    }

    /// The file's text.
    pub fn render(&self) -> String {
        format!(
            "TWILL_NETWORK={}\nTWILL_SUBNET={}\nTWILL_MTU={}\nTWILL_IPMASQ={}\n",
            self.network, self.subnet, self.mtu, self.ipmasq
        )
    }

    /// Parses the file's text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<SubnetFile, SubnetFileError> {
        let invalid = |key: &'static str, problem: String| SubnetFileError::Invalid {
            path: path.to_path_buf(),
            key,
            problem,
        };
        let get = |key: &'static str| -> Result<&str, SubnetFileError> {
            text.lines()
                .map(str::trim)
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split_once('='))
                .filter(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim().trim_matches('"'))
                .next_back()
                .ok_or_else(|| invalid(key, "missing".into()))
        };
        let v4 = |key: &'static str| -> Result<Ipv4Network, SubnetFileError> {
            let v = get(key)?;
            match v.parse::<IpNetwork>() {
                Ok(IpNetwork::V4(n)) => Ok(n),
                Ok(IpNetwork::V6(_)) => Err(invalid(key, format!("{v:?} is IPv6; IPv4 expected"))),
                Err(e) => Err(invalid(key, format!("{v:?} is not a CIDR: {e}"))),
            }
        };
        let network = v4("TWILL_NETWORK")?;
        let subnet = v4("TWILL_SUBNET")?;
        if !network.contains(subnet.ip()) {
            return Err(invalid(
                "TWILL_SUBNET",
                format!("{subnet} is not inside TWILL_NETWORK {network}"),
            ));
        }
        let mtu_text = get("TWILL_MTU")?;
        let mtu: u32 = mtu_text
            .parse()
            .map_err(|e| invalid("TWILL_MTU", format!("{mtu_text:?}: {e}")))?;
        if !(576..=65535).contains(&mtu) {
            return Err(invalid(
                "TWILL_MTU",
                format!("{mtu} is outside 576..=65535"),
            ));
        }
        let ipmasq = match get("TWILL_IPMASQ")? {
            "true" => true,
            "false" => false,
            other => {
                return Err(invalid(
                    "TWILL_IPMASQ",
                    format!("{other:?} is not true or false"),
                ));
            }
        };
        Ok(SubnetFile {
            network,
            subnet,
            mtu,
            ipmasq,
        })
    }

    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<SubnetFile, SubnetFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| SubnetFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Writes `path` atomically: a reader sees the old file or the new one, never a mix.
    pub fn write_atomic(&self, path: &Path) -> Result<(), SubnetFileError> {
        write_file_atomic(path, self.render().as_bytes()).map_err(|source| SubnetFileError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Writes `bytes` to `path` so a concurrent reader sees the old content or the new, never a
/// mix: a temporary file named after `path` and this process (`.<name>.<pid>.tmp`, so two
/// writers of different files never share one), fsync, rename. Creates the directory.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SubnetFile {
        SubnetFile {
            network: "10.244.0.0/16".parse().unwrap(),
            subnet: "10.244.5.1/24".parse().unwrap(),
            mtu: 1450,
            ipmasq: true,
        }
    }

    #[test]
    fn renders_flannel_style_lines() {
        assert_eq!(
            sample().render(),
            "TWILL_NETWORK=10.244.0.0/16\nTWILL_SUBNET=10.244.5.1/24\nTWILL_MTU=1450\nTWILL_IPMASQ=true\n"
        );
        assert_eq!(sample().node_subnet().to_string(), "10.244.5.0/24");
    }

    #[test]
    fn round_trips_through_disk_atomically() {
        let dir = std::env::temp_dir().join(format!("twill-subnet-{}", std::process::id()));
        let path = dir.join("subnet.env");
        sample().write_atomic(&path).unwrap();
        assert_eq!(SubnetFile::read(&path).unwrap(), sample());
        let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tolerates_comments_quotes_and_unknown_keys() {
        let t = "# written by twilld\nTWILL_NETWORK=\"10.244.0.0/16\"\nTWILL_SUBNET=10.244.5.1/24\nTWILL_MTU=1450\nTWILL_IPMASQ=false\nTWILL_FUTURE=1\n";
        let f = SubnetFile::parse(t, Path::new("x")).unwrap();
        assert!(!f.ipmasq);
    }

    #[test]
    fn errors_name_the_key() {
        let p = Path::new("/run/twill/subnet.env");
        let cases = [
            (
                "TWILL_SUBNET=10.244.5.1/24\nTWILL_MTU=1450\nTWILL_IPMASQ=true",
                "TWILL_NETWORK",
            ),
            (
                "TWILL_NETWORK=10.244.0.0/16\nTWILL_SUBNET=10.9.5.1/24\nTWILL_MTU=1450\nTWILL_IPMASQ=true",
                "TWILL_SUBNET",
            ),
            (
                "TWILL_NETWORK=10.244.0.0/16\nTWILL_SUBNET=10.244.5.1/24\nTWILL_MTU=12\nTWILL_IPMASQ=true",
                "TWILL_MTU",
            ),
            (
                "TWILL_NETWORK=10.244.0.0/16\nTWILL_SUBNET=10.244.5.1/24\nTWILL_MTU=1450\nTWILL_IPMASQ=yes",
                "TWILL_IPMASQ",
            ),
            (
                "TWILL_NETWORK=fd00::/64\nTWILL_SUBNET=10.244.5.1/24\nTWILL_MTU=1450\nTWILL_IPMASQ=true",
                "TWILL_NETWORK",
            ),
        ];
        for (text, key) in cases {
            match SubnetFile::parse(text, p) {
                Err(SubnetFileError::Invalid { key: k, .. }) => assert_eq!(k, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        let e = SubnetFile::read(Path::new("/nonexistent/subnet.env")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/subnet.env"));
    }
}
