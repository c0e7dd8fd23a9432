"""Topic administration: create (with configs, validate_only), describe configs,
add partitions, delete and recreate."""

import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import ConfigResource, ConfigSource, NewPartitions, NewTopic

import helpers
from helpers import Out

# Kafka's defaults for a topic without overrides.
KAFKA_TOPIC_DEFAULTS = {
    "cleanup.policy": "delete",
    "retention.ms": "604800000",
    "retention.bytes": "-1",
    "segment.bytes": "1073741824",
}


def error_of(fut) -> KafkaError:
    with pytest.raises(KafkaException) as exc:
        fut.result(timeout=30)
    return exc.value.args[0]


def create_retrying(adm, topic, partitions, timeout=20.0):
    """Create; a just-deleted name may be briefly unavailable (Kafka deletes
    asynchronously), so retry TOPIC_ALREADY_EXISTS for a while."""
    deadline = time.monotonic() + timeout
    while True:
        fut = adm.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=20)[topic]
        try:
            fut.result(timeout=30)
            return
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# --- CreateTopics ----------------------------------------------------------

def test_create_with_config_and_describe(broker, topic_name):
    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, partitions=2, config={"retention.ms": "123456"})
    adm = helpers.admin(broker.bootstrap)
    res = adm.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])
    (entries,) = [f.result(timeout=30) for f in res.values()]
    retention = entries["retention.ms"]
    assert retention.value == "123456"
    assert retention.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert retention.is_default is False
    for name in ("cleanup.policy", "segment.bytes", "retention.bytes"):
        e = entries[name]
        assert e.value == KAFKA_TOPIC_DEFAULTS[name], name
        assert e.is_default is True, name
        assert e.is_sensitive is False, name


def test_describe_defaults_kafka_python(broker, topic_name):
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource as KConfigResource, ConfigResourceType

    topic = topic_name()
    adm = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        res = adm.create_topics({topic: {"num_partitions": 1, "replication_factor": 1,
                                         "configs": {"cleanup.policy": "delete",
                                                     "retention.ms": "3600000"}}},
                                wait_for_metadata=True)
        assert [t["error_code"] for t in res["topics"]] == [0]
        described = adm.describe_configs([KConfigResource(ConfigResourceType.TOPIC, topic)],
                                         config_filter="all")
        entries = described["topic"][topic]
        assert entries["retention.ms"]["value"] == "3600000"
        assert entries["cleanup.policy"]["value"] == "delete"
        assert entries["segment.bytes"]["value"] == KAFKA_TOPIC_DEFAULTS["segment.bytes"]
        assert entries["retention.bytes"]["value"] == KAFKA_TOPIC_DEFAULTS["retention.bytes"]
    finally:
        adm.close()


def test_describe_configs_unknown_topic(broker, topic_name):
    adm = helpers.admin(broker.bootstrap)
    res = adm.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic_name())])
    (fut,) = res.values()
    assert error_of(fut).code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_create_validate_only(broker, topic_name):
    topic = topic_name()
    adm = helpers.admin(broker.bootstrap)
    fut = adm.create_topics([NewTopic(topic, 3, 1, config={"retention.ms": "60000"})],
                            validate_only=True)[topic]
    assert fut.result(timeout=30) is None
    time.sleep(0.5)
    assert topic not in adm.list_topics(timeout=10).topics
    # Creating it for real afterwards works and gives the requested layout.
    helpers.create_topic(broker.bootstrap, topic, partitions=3)


def test_create_errors(broker, topic_name):
    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, partitions=1)
    adm = helpers.admin(broker.bootstrap)
    again = adm.create_topics([NewTopic(topic, 1, 1)])[topic]
    assert error_of(again).code() == KafkaError.TOPIC_ALREADY_EXISTS  # 36
    bad = topic_name("bad")
    bad_value = adm.create_topics([NewTopic(bad, 1, 1, config={"retention.ms": "abc"})])[bad]
    assert error_of(bad_value).code() == KafkaError.INVALID_CONFIG  # 40
    assert bad not in adm.list_topics(timeout=10).topics


# --- CreatePartitions ------------------------------------------------------

def test_create_partitions_confluent(broker, topic_name):
    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, partitions=1)
    adm = helpers.admin(broker.bootstrap)
    adm.create_partitions([NewPartitions(topic, 3)])[topic].result(timeout=30)
    helpers.wait_for_topic(broker.bootstrap, topic, 3)
    delivered = helpers.produce(broker.bootstrap, topic,
                                [Out(b"k", b"to-p2", [], None, 2), Out(b"k", b"to-p0", [], None, 0)])
    assert delivered == [(2, 0), (0, 0)]
    msgs = helpers.consume(broker.bootstrap, topic, [0, 1, 2], 2)
    assert sorted((m.partition, m.offset, m.value) for m in msgs) == [(0, 0, b"to-p0"),
                                                                      (2, 0, b"to-p2")]
    shrink = adm.create_partitions([NewPartitions(topic, 2)])[topic]
    assert error_of(shrink).code() == KafkaError.INVALID_PARTITIONS  # 37


def test_create_partitions_kafka_python(broker, topic_name):
    from kafka import KafkaAdminClient
    from kafka.errors import InvalidPartitionsError

    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, partitions=2)
    adm = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        res = adm.create_partitions({topic: 5})
        assert [r.error_code for r in res.results] == [0]
        helpers.wait_for_topic(broker.bootstrap, topic, 5)
        with pytest.raises(InvalidPartitionsError):
            adm.create_partitions({topic: 5})
    finally:
        adm.close()


# --- DeleteTopics ----------------------------------------------------------

def test_delete_and_recreate(broker, topic_name):
    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, partitions=2)
    old = [Out(b"old", b"old-%d" % i, [], None, i % 2) for i in range(10)]
    helpers.produce(broker.bootstrap, topic, old)
    assert helpers.watermarks(broker.bootstrap, topic, 0) == (0, 5)

    adm = helpers.admin(broker.bootstrap)
    assert adm.delete_topics([topic], operation_timeout=20)[topic].result(timeout=30) is None
    helpers.wait_topic_gone(broker.bootstrap, topic)

    create_retrying(adm, topic, 1)
    helpers.wait_for_topic(broker.bootstrap, topic, 1)
    new = [Out(b"new", b"new-%d" % i, [], None, 0) for i in range(3)]
    assert helpers.produce(broker.bootstrap, topic, new) == [(0, 0), (0, 1), (0, 2)]
    msgs = helpers.consume(broker.bootstrap, topic, [0], 3, settle=1.0)
    assert [(m.offset, m.value) for m in msgs] == [(0, b"new-0"), (1, b"new-1"), (2, b"new-2")]
    assert helpers.watermarks(broker.bootstrap, topic, 0) == (0, 3)


def test_delete_unknown_topic_confluent(broker, topic_name):
    topic = topic_name()
    adm = helpers.admin(broker.bootstrap)  # must outlive the future
    fut = adm.delete_topics([topic], operation_timeout=20)[topic]
    assert error_of(fut).code() == KafkaError.UNKNOWN_TOPIC_OR_PART  # 3


def test_delete_kafka_python(broker, topic_name):
    from kafka import KafkaAdminClient
    from kafka.errors import UnknownTopicOrPartitionError

    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, partitions=1)
    adm = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        res = adm.delete_topics([topic])
        assert [(t["name"], t["error_code"]) for t in res["topics"]] == [(topic, 0)]
        helpers.wait_topic_gone(broker.bootstrap, topic)
        with pytest.raises(UnknownTopicOrPartitionError):
            adm.delete_topics([topic_name("never")])
    finally:
        adm.close()
