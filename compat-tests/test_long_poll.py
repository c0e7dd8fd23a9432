"""Long-poll fetch: an idle fetch waits about max_wait, and new data wakes it early."""

import threading
import time

from confluent_kafka import TopicPartition

import helpers
import wire

MAX_WAIT_MS = 5000
# Data produced while a consumer waits must arrive well before max wait.
WAKE_LIMIT_S = 2.5


def warm_producer(bootstrap, topic):
    """A producer that already has a connection and metadata for `topic`."""
    p = helpers.producer(bootstrap, linger_ms=0)
    p.list_topics(topic=topic, timeout=10)
    return p


def produce_one(p, topic, value):
    t0 = time.monotonic()
    p.produce(topic, value=value, partition=0)
    p.poll(0)
    return t0


def test_confluent_consumer_woken_by_produce(broker, topic_name):
    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, partitions=1)
    p = warm_producer(broker.bootstrap, topic)
    c = helpers.consumer(broker.bootstrap, fetch_wait_max_ms=MAX_WAIT_MS)
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        assert c.poll(1.5) is None  # the consumer is now parked in a long poll
        t0 = produce_one(p, topic, b"wake-up")
        msg = None
        while msg is None and time.monotonic() - t0 < MAX_WAIT_MS / 1000 + 5:
            msg = c.poll(0.05)
        latency = time.monotonic() - t0
        assert msg is not None and msg.error() is None
        assert (msg.offset(), msg.value()) == (0, b"wake-up")
        assert latency < WAKE_LIMIT_S, f"fetch not woken by new data: {latency:.2f}s"
    finally:
        c.close()
        assert p.flush(10) == 0


def test_kafka_python_consumer_woken_by_produce(broker, topic_name):
    from kafka import TopicPartition as KTP

    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, partitions=1)
    p = warm_producer(broker.bootstrap, topic)
    c = helpers.kp_consumer(broker.bootstrap, fetch_max_wait_ms=MAX_WAIT_MS,
                            request_timeout_ms=MAX_WAIT_MS + 10_000)
    try:
        tp = KTP(topic, 0)
        c.assign([tp])
        c.seek(tp, 0)
        assert c.poll(timeout_ms=1500) == {}
        t0 = produce_one(p, topic, b"wake-up")
        got = []
        while not got and time.monotonic() - t0 < MAX_WAIT_MS / 1000 + 5:
            got = c.poll(timeout_ms=50).get(tp, [])
        latency = time.monotonic() - t0
        assert [(r.offset, r.value) for r in got] == [(0, b"wake-up")]
        assert latency < WAKE_LIMIT_S, f"fetch not woken by new data: {latency:.2f}s"
    finally:
        c.close()
        assert p.flush(10) == 0


def test_raw_idle_fetch_waits_max_wait(broker, topic_name):
    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, partitions=1)
    with wire.Conn.to(broker.bootstrap) as conn:
        for max_wait_ms in (1000, 0):
            t0 = time.monotonic()
            r = conn.request(wire.FETCH, 4, wire.fetch_v4_body(topic, 0, 0, max_wait_ms))
            elapsed = time.monotonic() - t0
            (part,) = wire.parse_fetch_v4(r)
            assert (part.error_code, part.high_watermark) == (0, 0)
            assert not part.records
            if max_wait_ms:
                assert 0.8 <= elapsed < 2.5, f"idle fetch returned after {elapsed:.2f}s"
            else:
                assert elapsed < 0.5, f"max_wait 0 took {elapsed:.2f}s"
        # The connection is still usable after the wait.
        assert wire.api_versions_v0(conn).error_code == 0


def test_raw_fetch_returns_when_data_arrives(broker, topic_name):
    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, partitions=1)
    result = {}

    def long_poll():
        with wire.Conn.to(broker.bootstrap, timeout=30) as conn:
            r = conn.request(wire.FETCH, 4, wire.fetch_v4_body(topic, 0, 0, MAX_WAIT_MS))
            result["at"] = time.monotonic()
            result["parts"] = wire.parse_fetch_v4(r)

    t = threading.Thread(target=long_poll)
    t.start()
    time.sleep(1.0)
    batch = wire.build_batch([wire.Rec(b"k", b"v")], helpers.now_ms())
    with wire.Conn.to(broker.bootstrap) as conn:
        t0 = time.monotonic()
        (res,) = wire.produce_v3(conn, topic, 0, batch)
        assert (res.error_code, res.base_offset) == (0, 0)
    t.join(timeout=MAX_WAIT_MS / 1000 + 10)
    assert "at" in result, "fetch never returned"
    (part,) = result["parts"]
    assert (part.error_code, part.high_watermark) == (0, 1)
    batches, trailing = wire.parse_batches(part.records)
    assert (len(batches), trailing) == (1, 0)
    assert batches[0].record_count == 1 and batches[0].crc_ok
    assert result["at"] - t0 < WAKE_LIMIT_S, f"woken after {result['at'] - t0:.2f}s"
