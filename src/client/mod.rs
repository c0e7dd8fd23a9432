//! A small Kafka client for the admin CLI (`weir topic`, `weir group`, ...): it speaks the
//! protocol to any broker, Weir or Kafka. One connection per broker, versions negotiated with
//! ApiVersions, typed requests and responses from `kafka-protocol`. Responses are untrusted
//! input: frames are size-checked before anything is allocated and decoded with the same
//! bounded decoders the broker uses.

mod cluster;
mod connection;
pub mod records;

pub use cluster::{Cluster, PartitionInfo, TopicInfo};
pub use connection::KafkaConnection;

use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot resolve `{addr}`: {source}")]
    Resolve {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr}: no answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("{addr}: connection failed: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr} does not serve {api:?} at a version this client speaks ({min}..={max})")]
    Unsupported {
        addr: String,
        api: ApiKey,
        min: i16,
        max: i16,
    },
    #[error("{addr}: cannot encode {api:?} v{version}: {message}")]
    Encode {
        addr: String,
        api: ApiKey,
        version: i16,
        message: String,
    },
    #[error("{addr}: malformed {api:?} v{version} response: {message}")]
    Decode {
        addr: String,
        api: ApiKey,
        version: i16,
        message: String,
    },
    #[error("{addr}: response of {size} bytes is above the client's limit of {max}")]
    TooLarge {
        addr: String,
        size: usize,
        max: usize,
    },
    #[error("{addr}: response for correlation id {got}, expected {expected}")]
    Correlation {
        addr: String,
        got: i32,
        expected: i32,
    },
    /// An error code in a response, with what was asked.
    #[error("{context}: {name}{}", message.as_ref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Broker {
        context: String,
        code: i16,
        name: String,
        message: Option<String>,
    },
    #[error("{0}")]
    Other(String),
}

impl ClientError {
    /// A response's error code as an error, or `Ok` for 0.
    pub fn check(
        code: i16,
        message: Option<&str>,
        context: impl FnOnce() -> String,
    ) -> Result<(), ClientError> {
        if code == 0 {
            return Ok(());
        }
        Err(ClientError::Broker {
            context: context(),
            code,
            name: crate::telemetry::error_name(code),
            message: message.map(str::to_string),
        })
    }
}
