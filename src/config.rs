//! Broker configuration: `config/weir.yaml` is embedded as the defaults, a user file overrides
//! any subset of its keys, and every value is validated at start-up with an error naming the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// The documented default configuration, embedded so `weir` runs with no file at all.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("../config/weir.yaml");

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not a YAML mapping: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    fn invalid(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

/// What an acknowledged acks=all write survives, and how far consumers may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// acks=all is answered after fsync; the high watermark is the fsynced offset.
    Fsync,
    /// acks=all is answered once written to the page cache; a background flush fsyncs.
    PageCache,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Fsync => "fsync",
            Durability::PageCache => "page_cache",
        }
    }
}

/// Where produce data is written (`inline` exists as the benchmark baseline only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WritePath {
    /// The partition's background writer task, with group commit.
    Background,
    /// The request handler itself, one write and fsync per request.
    Inline,
}

/// How segment log files are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogWriteIo {
    Buffered,
    Direct,
    /// `direct` in `fsync` mode, `buffered` in `page_cache` mode: a page_cache ack means the
    /// batch is in the page cache, not that an O_DIRECT write reached the device. Resolved
    /// when the configuration loads; nothing else sees it.
    Auto,
}

/// Which clock a topic's record timestamps come from (Kafka's `message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

impl TimestampType {
    pub fn as_str(self) -> &'static str {
        match self {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "CreateTime" => Some(TimestampType::CreateTime),
            "LogAppendTime" => Some(TimestampType::LogAppendTime),
            _ => None,
        }
    }
}

/// A listener besides the main one, with the address its clients are told to use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraListener {
    pub name: String,
    pub listen: SocketAddr,
    pub advertised: String,
}

/// Name of the main listener (`listen` / `advertised_listener`), as Kafka's default.
pub const MAIN_LISTENER: &str = "PLAINTEXT";

/// The broker configuration; field docs live in `config/weir.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub advertised_listener: Option<String>,
    pub extra_listeners: Vec<ExtraListener>,
    pub metrics_listen: Option<SocketAddr>,
    pub metrics_per_partition: bool,
    pub data_dir: PathBuf,
    pub node_id: i32,
    pub durability: Durability,
    pub write_path: WritePath,
    pub log_write_io: LogWriteIo,
    pub tail_cache_bytes: u64,
    pub flush_interval_ms: u64,
    pub checkpoint_interval_ms: u64,
    pub write_queue_max_bytes: u64,
    pub disk_min_free_bytes: u64,
    pub auto_create_topics: bool,
    pub num_partitions: i32,
    pub max_partitions_per_topic: i32,
    pub socket_request_max_bytes: u32,
    pub queued_max_request_bytes: u64,
    pub fetch_max_bytes: i32,
    pub fetch_queue_max_bytes: u64,
    pub max_connections: u32,
    pub max_connections_per_ip: u32,
    pub connections_max_idle_ms: u64,
    pub request_read_timeout_ms: u64,
    pub shutdown_timeout_ms: u64,
    pub log_segment_bytes: i64,
    pub log_segment_ms: i64,
    pub log_retention_ms: i64,
    pub log_retention_bytes: i64,
    pub log_index_interval_bytes: i32,
    pub message_max_bytes: i32,
    pub log_message_timestamp_type: TimestampType,
    pub log_cleanup_policy: String,
    pub log_retention_check_interval_ms: u64,
    pub producer_id_expiration_ms: i64,
    pub group_min_session_timeout_ms: u64,
    pub group_max_session_timeout_ms: u64,
    pub group_initial_rebalance_delay_ms: u64,
    pub group_max_size: u32,
    pub group_consumer_session_timeout_ms: u64,
    pub group_consumer_heartbeat_interval_ms: u64,
    pub offsets_retention_minutes: u64,
    pub offset_metadata_max_bytes: u32,
    pub offsets_log_segment_bytes: i64,
    pub transaction_max_timeout_ms: i32,
    pub transactional_id_expiration_ms: i64,
    pub transaction_abort_timed_out_check_interval_ms: u64,
    pub transaction_log_segment_bytes: i64,
}

impl Config {
    /// The embedded defaults.
    pub fn embedded() -> Result<Config, ConfigError> {
        Config::from_layers(None)
    }

    /// The embedded defaults overridden by the YAML file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let overrides: serde_yaml::Value =
            serde_yaml::from_str(&text).map_err(|e| ConfigError::Syntax {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let overrides = match overrides {
            serde_yaml::Value::Mapping(map) => map,
            serde_yaml::Value::Null => serde_yaml::Mapping::new(),
            _ => {
                return Err(ConfigError::Syntax {
                    path: path.to_path_buf(),
                    message: "expected `key: value` lines".into(),
                });
            }
        };
        Config::from_layers(Some(overrides))
    }

    /// Parses a YAML document of overrides (used by tests and `load`).
    pub fn from_yaml_overrides(text: &str) -> Result<Config, ConfigError> {
        let value: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| ConfigError::Syntax {
                path: PathBuf::from("<inline>"),
                message: e.to_string(),
            })?;
        match value {
            serde_yaml::Value::Mapping(map) => Config::from_layers(Some(map)),
            _ => Config::from_layers(None),
        }
    }

    fn from_layers(overrides: Option<serde_yaml::Mapping>) -> Result<Config, ConfigError> {
        let mut merged: serde_yaml::Mapping = serde_yaml::from_str(DEFAULT_CONFIG_YAML)
            .map_err(|e| ConfigError::invalid("<embedded default>", e.to_string()))?;
        for (key, value) in overrides.into_iter().flatten() {
            if let Some(name) = key.as_str()
                && !merged.contains_key(name)
            {
                return Err(ConfigError::invalid(name, "unknown key"));
            }
            merged.insert(key, value);
        }
        let mut config: Config =
            serde_path_to_error::deserialize(serde_yaml::Value::Mapping(merged))
                .map_err(|e| ConfigError::invalid(&e.path().to_string(), e.inner().to_string()))?;
        if config.log_write_io == LogWriteIo::Auto {
            config.log_write_io = match config.durability {
                Durability::Fsync => LogWriteIo::Direct,
                Durability::PageCache => LogWriteIo::Buffered,
            };
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        fn at_least<T: PartialOrd + std::fmt::Display>(
            key: &str,
            value: T,
            min: T,
        ) -> Result<(), ConfigError> {
            if value < min {
                return Err(ConfigError::invalid(
                    key,
                    format!("{value} is below the minimum {min}"),
                ));
            }
            Ok(())
        }
        at_least("node_id", self.node_id, 0)?;
        at_least("flush_interval_ms", self.flush_interval_ms, 1)?;
        at_least("checkpoint_interval_ms", self.checkpoint_interval_ms, 100)?;
        at_least("write_queue_max_bytes", self.write_queue_max_bytes, 1 << 20)?;
        at_least("num_partitions", self.num_partitions, 1)?;
        at_least("max_partitions_per_topic", self.max_partitions_per_topic, 1)?;
        if self.num_partitions > self.max_partitions_per_topic {
            return Err(ConfigError::invalid(
                "num_partitions",
                "above max_partitions_per_topic",
            ));
        }
        at_least(
            "socket_request_max_bytes",
            self.socket_request_max_bytes,
            1024,
        )?;
        at_least(
            "queued_max_request_bytes",
            self.queued_max_request_bytes,
            1 << 20,
        )?;
        at_least("fetch_max_bytes", self.fetch_max_bytes, 1024)?;
        at_least("fetch_queue_max_bytes", self.fetch_queue_max_bytes, 1 << 20)?;
        at_least("max_connections", self.max_connections, 1)?;
        at_least("max_connections_per_ip", self.max_connections_per_ip, 1)?;
        at_least("request_read_timeout_ms", self.request_read_timeout_ms, 100)?;
        at_least(
            "connections_max_idle_ms",
            self.connections_max_idle_ms,
            1000,
        )?;
        at_least("log_segment_bytes", self.log_segment_bytes, 1024)?;
        if self.log_segment_bytes > i64::from(i32::MAX) {
            return Err(ConfigError::invalid(
                "log_segment_bytes",
                "above the maximum 2147483647",
            ));
        }
        at_least("log_segment_ms", self.log_segment_ms, 1)?;
        at_least("log_retention_ms", self.log_retention_ms, -1)?;
        at_least("log_retention_bytes", self.log_retention_bytes, -1)?;
        at_least("log_index_interval_bytes", self.log_index_interval_bytes, 0)?;
        at_least("message_max_bytes", self.message_max_bytes, 0)?;
        at_least(
            "log_retention_check_interval_ms",
            self.log_retention_check_interval_ms,
            100,
        )?;
        at_least(
            "producer_id_expiration_ms",
            self.producer_id_expiration_ms,
            1000,
        )?;
        at_least(
            "group_max_session_timeout_ms",
            self.group_max_session_timeout_ms,
            self.group_min_session_timeout_ms,
        )?;
        at_least("group_max_size", self.group_max_size, 1)?;
        at_least(
            "group_consumer_heartbeat_interval_ms",
            self.group_consumer_heartbeat_interval_ms,
            100,
        )?;
        at_least(
            "group_consumer_session_timeout_ms",
            self.group_consumer_session_timeout_ms,
            self.group_consumer_heartbeat_interval_ms + 1,
        )?;
        at_least(
            "offsets_retention_minutes",
            self.offsets_retention_minutes,
            1,
        )?;
        at_least(
            "offsets_log_segment_bytes",
            self.offsets_log_segment_bytes,
            1 << 20,
        )?;
        if self.offsets_log_segment_bytes > i64::from(i32::MAX) {
            return Err(ConfigError::invalid(
                "offsets_log_segment_bytes",
                "above the maximum 2147483647",
            ));
        }
        at_least(
            "transaction_max_timeout_ms",
            self.transaction_max_timeout_ms,
            1,
        )?;
        at_least(
            "transactional_id_expiration_ms",
            self.transactional_id_expiration_ms,
            1000,
        )?;
        at_least(
            "transaction_abort_timed_out_check_interval_ms",
            self.transaction_abort_timed_out_check_interval_ms,
            100,
        )?;
        at_least(
            "transaction_log_segment_bytes",
            self.transaction_log_segment_bytes,
            1 << 20,
        )?;
        if self.transaction_log_segment_bytes > i64::from(i32::MAX) {
            return Err(ConfigError::invalid(
                "transaction_log_segment_bytes",
                "above the maximum 2147483647",
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("data_dir", "must not be empty"));
        }
        if let Some(advertised) = &self.advertised_listener {
            parse_host_port(advertised)
                .ok_or_else(|| ConfigError::invalid("advertised_listener", "expected host:port"))?;
        }
        let mut names = vec![MAIN_LISTENER.to_string()];
        for extra in &self.extra_listeners {
            let valid = !extra.name.is_empty()
                && extra
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !valid {
                return Err(ConfigError::invalid(
                    "extra_listeners",
                    format!(
                        "listener name `{}`: use letters, digits, _ and -",
                        extra.name
                    ),
                ));
            }
            if names.iter().any(|n| n.eq_ignore_ascii_case(&extra.name)) {
                return Err(ConfigError::invalid(
                    "extra_listeners",
                    format!("listener name `{}` is used twice", extra.name),
                ));
            }
            names.push(extra.name.clone());
            parse_host_port(&extra.advertised).ok_or_else(|| {
                ConfigError::invalid(
                    "extra_listeners",
                    format!(
                        "{}: advertised `{}`: expected host:port",
                        extra.name, extra.advertised
                    ),
                )
            })?;
        }
        if crate::log::topic_config::CleanupPolicy::parse(&self.log_cleanup_policy).is_none() {
            return Err(ConfigError::invalid(
                "log_cleanup_policy",
                "expected delete, compact or compact,delete",
            ));
        }
        Ok(())
    }

    /// The host and port clients are told to connect to.
    pub fn advertised(&self) -> (String, i32) {
        self.advertised_listener
            .as_deref()
            .and_then(parse_host_port)
            .unwrap_or_else(|| (self.listen.ip().to_string(), i32::from(self.listen.port())))
    }
}

/// Splits `host:port` (IPv6 hosts in brackets) into its parts.
pub fn parse_host_port(value: &str) -> Option<(String, i32)> {
    let (host, port) = value.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), i32::from(port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_doc_lists_every_key() {
        let doc = include_str!("../docs/operations.md");
        let yaml: serde_yaml::Mapping =
            serde_yaml::from_str(DEFAULT_CONFIG_YAML).expect("embedded config is YAML");
        for key in yaml.keys() {
            let key = key.as_str().expect("string keys");
            assert!(
                doc.contains(&format!("| `{key}` |")),
                "docs/operations.md does not list `{key}`"
            );
        }
    }

    #[test]
    fn embedded_defaults_parse() {
        let config = Config::embedded().unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:9092");
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.durability, Durability::Fsync);
        assert_eq!(config.log_write_io, LogWriteIo::Direct);
        assert_eq!(config.socket_request_max_bytes, 100 * 1024 * 1024);
        assert_eq!(config.advertised(), ("127.0.0.1".to_string(), 9092));
    }

    #[test]
    fn overrides_apply() {
        let config = Config::from_yaml_overrides(
            "durability: page_cache\nnum_partitions: 3\nadvertised_listener: broker:19092\n",
        )
        .unwrap();
        assert_eq!(config.durability, Durability::PageCache);
        assert_eq!(config.log_write_io, LogWriteIo::Buffered);
        assert_eq!(config.num_partitions, 3);
        assert_eq!(config.advertised(), ("broker".to_string(), 19092));
    }

    #[test]
    fn errors_name_the_key() {
        let err = Config::from_yaml_overrides("num_partitions: many\n").unwrap_err();
        assert!(err.to_string().contains("num_partitions"), "{err}");
        let err = Config::from_yaml_overrides("no_such_key: 1\n").unwrap_err();
        assert!(err.to_string().contains("no_such_key"), "{err}");
        let err = Config::from_yaml_overrides("log_segment_bytes: 10\n").unwrap_err();
        assert!(err.to_string().contains("log_segment_bytes"), "{err}");
        let err = Config::from_yaml_overrides("durability: maybe\n").unwrap_err();
        assert!(err.to_string().contains("durability"), "{err}");
        let err = Config::from_yaml_overrides("advertised_listener: nohost\n").unwrap_err();
        assert!(err.to_string().contains("advertised_listener"), "{err}");
    }
}
