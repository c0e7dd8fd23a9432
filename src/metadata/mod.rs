//! Durable cluster metadata of this node: its identity (`meta.properties`), the topic
//! catalogue (`__weir_meta/topics.json`) and the producer ids handed out
//! (`__weir_meta/producer_ids.json`). This is the seam where a replicated controller
//! will later take over: the rest of the broker only sees `NodeIdentity` and `TopicRecord`s.

mod identity;
mod producer_ids;
mod topics;

pub use identity::NodeIdentity;
pub use producer_ids::ProducerIdAllocator;
pub use topics::{TopicRecord, TopicStore};

use thiserror::Error;

use crate::disk::{Disk, write_atomically};

#[derive(Debug, Error)]
pub enum MetadataError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Corrupt { path: String, message: String },
}

/// Reads a JSON metadata file; `None` when it does not exist yet.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    disk: &dyn Disk,
    path: &std::path::Path,
) -> Result<Option<T>, MetadataError> {
    match disk.read_all(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| MetadataError::Corrupt {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(MetadataError::Io {
            context: format!("reading {}", path.display()),
            source,
        }),
    }
}

/// Writes `value` as JSON to `path` atomically and durably (`write_atomically`).
pub(crate) fn write_json<T: serde::Serialize>(
    disk: &dyn Disk,
    path: &std::path::Path,
    value: &T,
) -> Result<(), MetadataError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| MetadataError::Corrupt {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    write_atomically(disk, path, &bytes).map_err(|source| MetadataError::Io {
        context: format!("writing {}", path.display()),
        source,
    })
}
