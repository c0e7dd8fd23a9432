//! Node identity: the cluster id and node id a data directory belongs to, in Kafka's
//! `meta.properties` format. Created on first start; a node id that disagrees with the
//! configuration stops start-up rather than serving someone else's data.

use std::path::Path;

use super::MetadataError;
use crate::disk::{Disk, write_atomically};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub cluster_id: String,
    pub node_id: i32,
}

const FILE_NAME: &str = "meta.properties";

impl NodeIdentity {
    /// Loads the identity of `data_dir`, creating it for a new directory.
    pub fn load_or_create(
        disk: &dyn Disk,
        data_dir: &Path,
        node_id: i32,
    ) -> Result<NodeIdentity, MetadataError> {
        let path = data_dir.join(FILE_NAME);
        let io = |source| MetadataError::Io {
            context: format!("reading {}", path.display()),
            source,
        };
        match disk.read_all(&path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let identity = parse(&text).ok_or_else(|| MetadataError::Corrupt {
                    path: path.display().to_string(),
                    message: "expected cluster.id and node.id".into(),
                })?;
                if identity.node_id != node_id {
                    return Err(MetadataError::Corrupt {
                        path: path.display().to_string(),
                        message: format!(
                            "data directory belongs to node.id {} but node_id is {node_id}",
                            identity.node_id
                        ),
                    });
                }
                Ok(identity)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let identity = NodeIdentity {
                    cluster_id: new_cluster_id(),
                    node_id,
                };
                let text = format!(
                    "#Written by Weir on first start\nversion=1\ncluster.id={}\nnode.id={}\n",
                    identity.cluster_id, identity.node_id
                );
                write_atomically(disk, &path, text.as_bytes()).map_err(io)?;
                Ok(identity)
            }
            Err(e) => Err(io(e)),
        }
    }
}

fn parse(text: &str) -> Option<NodeIdentity> {
    let mut cluster_id = None;
    let mut node_id = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some(("cluster.id", value)) => cluster_id = Some(value.trim().to_string()),
            Some(("node.id", value)) => node_id = value.trim().parse().ok(),
            _ => {}
        }
    }
    Some(NodeIdentity {
        cluster_id: cluster_id?,
        node_id: node_id?,
    })
}

/// A Kafka-style cluster id: 16 random bytes in URL-safe base64 without padding.
fn new_cluster_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut out = String::with_capacity(22);
    let mut bits: u32 = 0;
    let mut nbits = 0;
    for byte in bytes {
        bits = (bits << 8) | u32::from(byte);
        nbits += 8;
        while nbits >= 6 {
            nbits -= 6;
            out.push(ALPHABET[((bits >> nbits) & 0x3f) as usize] as char);
        }
    }
    if nbits > 0 {
        out.push(ALPHABET[((bits << (6 - nbits)) & 0x3f) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let first =
            NodeIdentity::load_or_create(&crate::disk::OsDisk::default(), dir.path(), 0).unwrap();
        assert_eq!(first.cluster_id.len(), 22);
        let again =
            NodeIdentity::load_or_create(&crate::disk::OsDisk::default(), dir.path(), 0).unwrap();
        assert_eq!(first, again);
        assert!(
            NodeIdentity::load_or_create(&crate::disk::OsDisk::default(), dir.path(), 1).is_err()
        );
    }
}
