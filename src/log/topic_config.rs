//! Topic-level configuration under Kafka's exact names (`retention.ms`, `segment.bytes`, ...):
//! broker defaults from `Config`, per-topic overrides validated as Kafka validates them.

use std::collections::BTreeMap;

use crate::config::{Config, TimestampType};

/// Kafka's `cleanup.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    Delete,
    Compact,
    CompactDelete,
}

impl CleanupPolicy {
    pub fn parse(value: &str) -> Option<CleanupPolicy> {
        let mut parts: Vec<&str> = value.split(',').map(str::trim).collect();
        parts.sort_unstable();
        parts.dedup();
        match parts.as_slice() {
            ["delete"] => Some(CleanupPolicy::Delete),
            ["compact"] => Some(CleanupPolicy::Compact),
            ["compact", "delete"] => Some(CleanupPolicy::CompactDelete),
            _ => None,
        }
    }

    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }
}

/// Kafka's DescribeConfigs `config_type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    List = 7,
}

/// One topic config the broker honours: its Kafka name, the broker config it defaults from,
/// its type and documentation.
#[derive(Debug, Clone, Copy)]
pub struct TopicConfigKey {
    pub name: &'static str,
    pub broker_name: &'static str,
    pub config_type: ConfigType,
    pub doc: &'static str,
}

pub const TOPIC_CONFIG_KEYS: &[TopicConfigKey] = &[
    TopicConfigKey {
        name: "cleanup.policy",
        broker_name: "log.cleanup.policy",
        config_type: ConfigType::List,
        doc: "delete, compact or both (compaction is not implemented yet: data is kept).",
    },
    TopicConfigKey {
        name: "retention.ms",
        broker_name: "log.retention.ms",
        config_type: ConfigType::Long,
        doc: "Age after which whole segments are deleted; -1 keeps data forever.",
    },
    TopicConfigKey {
        name: "retention.bytes",
        broker_name: "log.retention.bytes",
        config_type: ConfigType::Long,
        doc: "Partition size beyond which the oldest segments are deleted; -1 is unlimited.",
    },
    TopicConfigKey {
        name: "segment.bytes",
        broker_name: "log.segment.bytes",
        config_type: ConfigType::Int,
        doc: "Segment file size at which a new segment is rolled.",
    },
    TopicConfigKey {
        name: "segment.ms",
        broker_name: "log.roll.ms",
        config_type: ConfigType::Long,
        doc: "Segment age at which a new segment is rolled.",
    },
    TopicConfigKey {
        name: "max.message.bytes",
        broker_name: "message.max.bytes",
        config_type: ConfigType::Int,
        doc: "Largest record batch accepted.",
    },
    TopicConfigKey {
        name: "message.timestamp.type",
        broker_name: "log.message.timestamp.type",
        config_type: ConfigType::String,
        doc: "CreateTime keeps producer timestamps; LogAppendTime stamps the broker's clock.",
    },
    TopicConfigKey {
        name: "index.interval.bytes",
        broker_name: "log.index.interval.bytes",
        config_type: ConfigType::Int,
        doc: "Bytes between two sparse index entries.",
    },
];

/// Why a topic config override was refused (Kafka: INVALID_CONFIG).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopicConfigError {
    #[error("unknown topic config `{0}`")]
    Unknown(String),
    #[error("invalid value `{value}` for topic config `{name}`: {reason}")]
    InvalidValue {
        name: String,
        value: String,
        reason: &'static str,
    },
}

/// A topic's effective configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    pub cleanup_policy: CleanupPolicy,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: i64,
    pub segment_ms: i64,
    pub max_message_bytes: i32,
    pub message_timestamp_type: TimestampType,
    pub index_interval_bytes: i32,
    /// The overrides as given (name -> value), kept for DescribeConfigs and persistence.
    pub overrides: BTreeMap<String, String>,
}

impl TopicConfig {
    /// Broker defaults with `overrides` applied; any unknown name or bad value is refused.
    pub fn resolve(
        broker: &Config,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicConfig, TopicConfigError> {
        let mut config = TopicConfig {
            cleanup_policy: CleanupPolicy::parse(&broker.log_cleanup_policy)
                .unwrap_or(CleanupPolicy::Delete),
            retention_ms: broker.log_retention_ms,
            retention_bytes: broker.log_retention_bytes,
            segment_bytes: broker.log_segment_bytes,
            segment_ms: broker.log_segment_ms,
            max_message_bytes: broker.message_max_bytes,
            message_timestamp_type: broker.log_message_timestamp_type,
            index_interval_bytes: broker.log_index_interval_bytes,
            overrides: overrides.clone(),
        };
        for (name, value) in overrides {
            config.apply(name, value)?;
        }
        Ok(config)
    }

    fn apply(&mut self, name: &str, value: &str) -> Result<(), TopicConfigError> {
        let invalid = |reason| TopicConfigError::InvalidValue {
            name: name.to_string(),
            value: value.to_string(),
            reason,
        };
        let long = |min: i64| -> Result<i64, TopicConfigError> {
            let v: i64 = value.trim().parse().map_err(|_| invalid("not a number"))?;
            if v < min {
                return Err(invalid("below the minimum"));
            }
            Ok(v)
        };
        match name {
            "cleanup.policy" => {
                self.cleanup_policy = CleanupPolicy::parse(value)
                    .ok_or_else(|| invalid("expected delete, compact or compact,delete"))?
            }
            "retention.ms" => self.retention_ms = long(-1)?,
            "retention.bytes" => self.retention_bytes = long(-1)?,
            "segment.bytes" => {
                let v = long(1024)?;
                if v > i64::from(i32::MAX) {
                    return Err(invalid("above the maximum 2147483647"));
                }
                self.segment_bytes = v;
            }
            "segment.ms" => self.segment_ms = long(1)?,
            "max.message.bytes" => {
                self.max_message_bytes =
                    i32::try_from(long(0)?).map_err(|_| invalid("above the maximum"))?
            }
            "index.interval.bytes" => {
                self.index_interval_bytes =
                    i32::try_from(long(0)?).map_err(|_| invalid("above the maximum"))?
            }
            "message.timestamp.type" => {
                self.message_timestamp_type = TimestampType::parse(value.trim())
                    .ok_or_else(|| invalid("expected CreateTime or LogAppendTime"))?
            }
            _ => return Err(TopicConfigError::Unknown(name.to_string())),
        }
        Ok(())
    }

    /// The effective value of a topic config, as DescribeConfigs shows it.
    pub fn value_of(&self, name: &str) -> Option<String> {
        Some(match name {
            "cleanup.policy" => match self.cleanup_policy {
                CleanupPolicy::Delete => "delete".into(),
                CleanupPolicy::Compact => "compact".into(),
                CleanupPolicy::CompactDelete => "compact,delete".into(),
            },
            "retention.ms" => self.retention_ms.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "message.timestamp.type" => self.message_timestamp_type.as_str().into(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            _ => return None,
        })
    }

    pub fn is_override(&self, name: &str) -> bool {
        self.overrides.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_come_from_the_broker() {
        let broker = Config::embedded().unwrap();
        let config = TopicConfig::resolve(&broker, &BTreeMap::new()).unwrap();
        assert_eq!(config.retention_ms, 604_800_000);
        assert_eq!(config.segment_bytes, 1 << 30);
        assert_eq!(config.value_of("cleanup.policy").unwrap(), "delete");
        assert!(!config.is_override("retention.ms"));
    }

    #[test]
    fn overrides_are_validated() {
        let broker = Config::embedded().unwrap();
        let config = TopicConfig::resolve(
            &broker,
            &overrides(&[
                ("retention.ms", "1000"),
                ("message.timestamp.type", "LogAppendTime"),
                ("cleanup.policy", "delete,compact"),
            ]),
        )
        .unwrap();
        assert_eq!(config.retention_ms, 1000);
        assert_eq!(config.message_timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(config.cleanup_policy, CleanupPolicy::CompactDelete);
        assert!(config.is_override("retention.ms"));

        assert_eq!(
            TopicConfig::resolve(&broker, &overrides(&[("no.such", "1")])).unwrap_err(),
            TopicConfigError::Unknown("no.such".into())
        );
        for (name, value) in [
            ("segment.bytes", "10"),
            ("segment.bytes", "9999999999"),
            ("retention.ms", "soon"),
            ("cleanup.policy", "forever"),
        ] {
            assert!(TopicConfig::resolve(&broker, &overrides(&[(name, value)])).is_err());
        }
    }
}
