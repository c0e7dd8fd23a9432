"""Topics are auto-created by producers' metadata requests (1 partition by
default), but not by metadata requests that disallow it (consumers)."""

import time

from confluent_kafka import KafkaError

import helpers
from helpers import Out


def test_confluent_producer_auto_creates(broker, topic_name):
    topic = topic_name()
    delivered = helpers.produce(broker.bootstrap, topic, [Out(b"k", b"first", [], None, None)])
    assert delivered == [(0, 0)]
    t = helpers.wait_for_topic(broker.bootstrap, topic, 1)
    assert list(t.partitions) == [0]
    (m,) = helpers.consume(broker.bootstrap, topic, [0], 1)
    assert (m.offset, m.key, m.value) == (0, b"k", b"first")


def test_kafka_python_producer_auto_creates(broker, topic_name):
    topic = topic_name()
    delivered = helpers.kp_produce(broker.bootstrap, topic,
                                   [Out(b"k", b"v%d" % i, [], None, None) for i in range(3)])
    assert delivered == [(0, 0), (0, 1), (0, 2)]
    helpers.wait_for_topic(broker.bootstrap, topic, 1)
    assert helpers.watermarks(broker.bootstrap, topic, 0) == (0, 3)


def test_consumer_metadata_does_not_create(broker, topic_name):
    topic = topic_name()
    c = helpers.consumer(broker.bootstrap)  # allow.auto.create.topics=false by default
    try:
        md = c.list_topics(topic=topic, timeout=10)
        assert md.topics[topic].error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    finally:
        c.close()
    time.sleep(0.5)
    assert topic not in helpers.admin(broker.bootstrap).list_topics(timeout=10).topics
