"""ListOffsets: earliest, latest (= log end offset), by timestamp, max timestamp."""

import pytest
from confluent_kafka import TopicPartition

import helpers
import wire
from helpers import Out

# Three batches; the last one has out-of-order timestamps.
DELTAS = [[0, 10, 20, 30, 40], [50, 60, 70, 80, 90], [1000, 500, 95]]
TOTAL = sum(len(b) for b in DELTAS)

# target timestamp delta -> (expected offset, timestamp delta of that record), None = no match
BY_TIME = {
    -5: (0, 0),        # before everything: the first record
    0: (0, 0),
    25: (3, 30),       # inside the first batch
    41: (5, 50),       # first record of the second batch
    90: (9, 90),
    91: (10, 1000),    # first in offset order whose timestamp >= target
    600: (10, 1000),
    1000: (10, 1000),
    1001: None,        # later than every record
}


@pytest.fixture
def timed_topic(broker, topic_name):
    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, partitions=1)
    base = helpers.now_ms() - 600_000
    offset = 0
    for deltas in DELTAS:
        recs = [Out(b"k%d" % (offset + i), b"v", [], base + d, 0) for i, d in enumerate(deltas)]
        delivered = helpers.produce(broker.bootstrap, topic, recs, linger_ms=50)
        assert delivered == [(0, offset + i) for i in range(len(deltas))]
        offset += len(deltas)
    return topic, base


def test_confluent_watermarks_and_times(broker, timed_topic):
    topic, base = timed_topic
    assert helpers.watermarks(broker.bootstrap, topic, 0) == (0, TOTAL)
    c = helpers.consumer(broker.bootstrap)
    try:
        for delta, want in BY_TIME.items():
            (tp,) = c.offsets_for_times([TopicPartition(topic, 0, base + delta)], timeout=10)
            assert tp.error is None
            assert tp.offset == (want[0] if want else -1), f"timestamp base{delta:+d}"
    finally:
        c.close()


def test_kafka_python_offsets(broker, timed_topic):
    from kafka import TopicPartition as KTP

    topic, base = timed_topic
    tp = KTP(topic, 0)
    c = helpers.kp_consumer(broker.bootstrap)
    try:
        assert c.beginning_offsets([tp]) == {tp: 0}
        assert c.end_offsets([tp]) == {tp: TOTAL}
        for delta, want in BY_TIME.items():
            found = c.offsets_for_times({tp: base + delta})[tp]
            if want is None:
                assert found is None, f"timestamp base{delta:+d}"
            else:
                assert (found.offset, found.timestamp) == (want[0], base + want[1]), \
                    f"timestamp base{delta:+d}"
    finally:
        c.close()


def test_raw_special_timestamps(broker, timed_topic):
    """-1 latest, -2 earliest, -3 max timestamp (ListOffsets v7+)."""
    topic, base = timed_topic
    with wire.Conn.to(broker.bootstrap) as conn:
        versions = wire.api_versions_v0(conn).versions
        assert versions[wire.LIST_OFFSETS][1] >= 7
        latest = wire.list_offsets_v7(conn, topic, 0, -1)
        assert (latest.error_code, latest.offset) == (0, TOTAL)
        earliest = wire.list_offsets_v7(conn, topic, 0, -2)
        assert (earliest.error_code, earliest.offset) == (0, 0)
        max_ts = wire.list_offsets_v7(conn, topic, 0, -3)
        assert (max_ts.error_code, max_ts.offset, max_ts.timestamp) == (0, 10, base + 1000)
        by_time = wire.list_offsets_v7(conn, topic, 0, base + 25)
        assert (by_time.error_code, by_time.offset, by_time.timestamp) == (0, 3, base + 30)
        missing = wire.list_offsets_v7(conn, topic, 7, -1)
        assert missing.error_code == 3  # UNKNOWN_TOPIC_OR_PARTITION


def test_empty_partition(broker, topic_name):
    from kafka import TopicPartition as KTP

    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, partitions=1)
    assert helpers.watermarks(broker.bootstrap, topic, 0) == (0, 0)
    c = helpers.consumer(broker.bootstrap)
    try:
        (tp,) = c.offsets_for_times([TopicPartition(topic, 0, 0)], timeout=10)
        assert tp.offset == -1
    finally:
        c.close()
    kc = helpers.kp_consumer(broker.bootstrap)
    try:
        ktp = KTP(topic, 0)
        assert kc.end_offsets([ktp]) == {ktp: 0}
        assert kc.offsets_for_times({ktp: 0}) == {ktp: None}
    finally:
        kc.close()
