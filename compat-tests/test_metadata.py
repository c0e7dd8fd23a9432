"""Metadata: brokers, topics and partitions as both clients see them."""

import helpers


def test_confluent_lists_single_broker(broker):
    md = helpers.admin(broker.bootstrap).list_topics(timeout=10)
    assert len(md.brokers) == 1
    (b,) = md.brokers.values()
    assert (b.host, b.port) == (broker.host, broker.port)
    if not broker.external:
        assert b.id == 0, "Weir is node 0"
    assert md.controller_id == b.id


def test_confluent_topic_partitions(broker, topic_name):
    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, partitions=3)
    md = helpers.admin(broker.bootstrap).list_topics(timeout=10)
    (node_id,) = md.brokers.keys()
    t = md.topics[topic]
    assert t.error is None
    assert sorted(t.partitions) == [0, 1, 2]
    for pid, p in t.partitions.items():
        assert p.id == pid
        assert p.leader == node_id
        assert p.replicas == [node_id]
        assert p.isrs == [node_id]
        assert p.error is None
    # Asking for one topic returns just that topic.
    one = helpers.admin(broker.bootstrap).list_topics(topic=topic, timeout=10)
    assert list(one.topics) == [topic]


def test_kafka_python_metadata(broker, topic_name):
    from kafka import KafkaAdminClient

    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, partitions=3)
    adm = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        assert topic in adm.list_topics()
        (desc,) = adm.describe_topics([topic])
        assert desc["name"] == topic
        assert desc["error_code"] == 0
        assert desc["is_internal"] is False
        parts = sorted(desc["partitions"], key=lambda p: p["partition_index"])
        assert [p["partition_index"] for p in parts] == [0, 1, 2]
        cluster = adm.describe_cluster()
        (b,) = cluster["brokers"]
        assert (b["host"], b["port"]) == (broker.host, broker.port)
        for p in parts:
            assert p["error_code"] == 0
            assert p["leader_id"] == b["broker_id"]
            assert p["replica_nodes"] == [b["broker_id"]]
            assert p["isr_nodes"] == [b["broker_id"]]
            assert p["leader_epoch"] >= 0
        if not broker.external:
            assert b["broker_id"] == 0
    finally:
        adm.close()

    c = helpers.kp_consumer(broker.bootstrap)
    try:
        assert c.partitions_for_topic(topic) == {0, 1, 2}
        assert topic in c.topics()
    finally:
        c.close()


def test_unknown_topic_not_listed(broker, topic_name):
    """A plain metadata listing must not invent topics."""
    topic = topic_name()
    md = helpers.admin(broker.bootstrap).list_topics(timeout=10)
    assert topic not in md.topics
