//! The one table of APIs this broker serves: it answers ApiVersions and decides which request
//! versions are accepted. Maximums come from the request structs' `Message::VERSIONS` (the
//! versions `kafka-protocol` can really decode), minimums from Kafka 4.x.

use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, AlterConfigsRequest, ApiKey,
    ApiVersionsRequest, ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest,
    CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest, DeleteTopicsRequest,
    DescribeClusterRequest, DescribeConfigsRequest, DescribeGroupsRequest,
    DescribeProducersRequest, DescribeTransactionsRequest, EndTxnRequest, FetchRequest,
    FindCoordinatorRequest, HeartbeatRequest, IncrementalAlterConfigsRequest,
    InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest,
    ListOffsetsRequest, ListTransactionsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetDeleteRequest, OffsetFetchRequest, ProduceRequest, SyncGroupRequest,
    TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::Message;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    pub key: ApiKey,
    /// Lowest version advertised.
    pub min: i16,
    /// Lowest version actually decoded; advertised-but-older requests close the connection
    /// (Produce v0-2: advertised so older librdkafka keeps compression on, KAFKA-18659).
    pub min_served: i16,
    pub max: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> ApiRange {
    ApiRange {
        key,
        min,
        min_served: min,
        max,
    }
}

pub const APIS: &[ApiRange] = &[
    ApiRange {
        key: ApiKey::Produce,
        min: 0,
        min_served: ProduceRequest::VERSIONS.min,
        max: ProduceRequest::VERSIONS.max,
    },
    api(ApiKey::Fetch, 4, FetchRequest::VERSIONS.max),
    api(ApiKey::ListOffsets, 1, ListOffsetsRequest::VERSIONS.max),
    api(ApiKey::Metadata, 0, MetadataRequest::VERSIONS.max),
    // Kafka 4 removed OffsetCommit v0-1 and OffsetFetch v0 (KIP-896).
    api(ApiKey::OffsetCommit, 2, OffsetCommitRequest::VERSIONS.max),
    api(ApiKey::OffsetFetch, 1, OffsetFetchRequest::VERSIONS.max),
    api(
        ApiKey::FindCoordinator,
        0,
        FindCoordinatorRequest::VERSIONS.max,
    ),
    api(ApiKey::JoinGroup, 0, JoinGroupRequest::VERSIONS.max),
    api(ApiKey::Heartbeat, 0, HeartbeatRequest::VERSIONS.max),
    api(ApiKey::LeaveGroup, 0, LeaveGroupRequest::VERSIONS.max),
    api(ApiKey::SyncGroup, 0, SyncGroupRequest::VERSIONS.max),
    api(
        ApiKey::DescribeGroups,
        0,
        DescribeGroupsRequest::VERSIONS.max,
    ),
    api(ApiKey::ListGroups, 0, ListGroupsRequest::VERSIONS.max),
    api(ApiKey::ApiVersions, 0, ApiVersionsRequest::VERSIONS.max),
    api(ApiKey::CreateTopics, 2, CreateTopicsRequest::VERSIONS.max),
    api(ApiKey::DeleteTopics, 1, DeleteTopicsRequest::VERSIONS.max),
    api(
        ApiKey::DescribeConfigs,
        1,
        DescribeConfigsRequest::VERSIONS.max,
    ),
    // Kafka 4 serves AlterConfigs v0-2 and IncrementalAlterConfigs v0-1.
    api(ApiKey::AlterConfigs, 0, AlterConfigsRequest::VERSIONS.max),
    api(
        ApiKey::IncrementalAlterConfigs,
        0,
        IncrementalAlterConfigsRequest::VERSIONS.max,
    ),
    api(
        ApiKey::CreatePartitions,
        0,
        CreatePartitionsRequest::VERSIONS.max,
    ),
    // The crate decodes up to v5 although ApiKey::valid_versions() says 6.
    api(
        ApiKey::InitProducerId,
        0,
        InitProducerIdRequest::VERSIONS.max,
    ),
    api(ApiKey::DeleteGroups, 0, DeleteGroupsRequest::VERSIONS.max),
    api(
        ApiKey::DescribeProducers,
        0,
        DescribeProducersRequest::VERSIONS.max,
    ),
    api(ApiKey::OffsetDelete, 0, OffsetDeleteRequest::VERSIONS.max),
    api(
        ApiKey::DescribeCluster,
        0,
        DescribeClusterRequest::VERSIONS.max,
    ),
    api(
        ApiKey::ConsumerGroupHeartbeat,
        0,
        ConsumerGroupHeartbeatRequest::VERSIONS.max,
    ),
    api(
        ApiKey::ConsumerGroupDescribe,
        0,
        ConsumerGroupDescribeRequest::VERSIONS.max,
    ),
    // Transactions: Kafka 4 keeps every version from 0 (aiokafka speaks only v0).
    api(
        ApiKey::AddPartitionsToTxn,
        0,
        AddPartitionsToTxnRequest::VERSIONS.max,
    ),
    api(
        ApiKey::AddOffsetsToTxn,
        0,
        AddOffsetsToTxnRequest::VERSIONS.max,
    ),
    api(ApiKey::EndTxn, 0, EndTxnRequest::VERSIONS.max),
    api(
        ApiKey::TxnOffsetCommit,
        0,
        TxnOffsetCommitRequest::VERSIONS.max,
    ),
    api(
        ApiKey::DescribeTransactions,
        0,
        DescribeTransactionsRequest::VERSIONS.max,
    ),
    api(
        ApiKey::ListTransactions,
        0,
        ListTransactionsRequest::VERSIONS.max,
    ),
];

pub fn lookup(key: ApiKey) -> Option<&'static ApiRange> {
    APIS.iter().find(|api| api.key == key)
}

/// Whether a request of this key and version is decoded and served.
pub fn is_served(key: ApiKey, version: i16) -> bool {
    lookup(key).is_some_and(|api| version >= api.min_served && version <= api.max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_kafka_4_minimums_and_crate_maximums() {
        let produce = lookup(ApiKey::Produce).unwrap();
        assert_eq!((produce.min, produce.min_served, produce.max), (0, 3, 13));
        assert!(!is_served(ApiKey::Produce, 2));
        assert!(is_served(ApiKey::Produce, 3));
        assert_eq!(lookup(ApiKey::Fetch).unwrap().max, 18);
        assert!(!is_served(ApiKey::Fetch, 3));
        assert!(is_served(ApiKey::ApiVersions, 0));
        assert!(!is_served(ApiKey::ApiVersions, 5));
        assert!(is_served(ApiKey::JoinGroup, 0));
        assert_eq!(lookup(ApiKey::OffsetCommit).unwrap().max, 9);
        assert_eq!(lookup(ApiKey::OffsetFetch).unwrap().max, 9);
        assert!(!is_served(ApiKey::OffsetCommit, 1));
        assert!(is_served(ApiKey::ConsumerGroupHeartbeat, 1));
        assert_eq!(lookup(ApiKey::InitProducerId).unwrap().max, 5);
        assert_eq!(lookup(ApiKey::AddPartitionsToTxn).unwrap().max, 5);
        assert_eq!(lookup(ApiKey::AddOffsetsToTxn).unwrap().max, 4);
        assert_eq!(lookup(ApiKey::EndTxn).unwrap().max, 5);
        assert_eq!(lookup(ApiKey::TxnOffsetCommit).unwrap().max, 5);
        assert!(is_served(ApiKey::EndTxn, 0));
        for api in APIS {
            assert!(
                api.min <= api.min_served && api.min_served <= api.max,
                "{api:?}"
            );
        }
    }
}

#[cfg(test)]
mod doc_tests {
    use super::*;

    /// `docs/compatibility.md` lists exactly the advertised APIs with their ranges.
    #[test]
    fn compatibility_doc_matches_the_table() {
        let doc = include_str!("../../docs/compatibility.md");
        let mut documented = Vec::new();
        for line in doc.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if cells.len() < 5 {
                continue;
            }
            if let (Ok(key), Ok(min), Ok(max)) = (
                cells[1].parse::<i16>(),
                cells[3].parse::<i16>(),
                cells[4].parse::<i16>(),
            ) {
                documented.push((key, min, max));
            }
        }
        let mut advertised: Vec<_> = APIS
            .iter()
            .map(|api| (api.key as i16, api.min, api.max))
            .collect();
        advertised.sort_unstable();
        documented.sort_unstable();
        assert_eq!(documented, advertised);
    }
}
