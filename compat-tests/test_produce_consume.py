"""Produce a large keyed stream with headers and timestamps, read every record back."""

import pytest

import helpers
from helpers import Out

PARTITIONS = 3


def make_records(n: int, source: bytes, base_ts: int) -> list[Out]:
    out = []
    for i in range(n):
        if i % 1000 == 7:
            value = b""  # empty, not null
        elif i % 1000 == 13:
            value = None  # a tombstone-like null value
        else:
            value = b"value-%d-" % i + source + b"-" + bytes([i % 251]) * (i % 97)
        headers = [("seq", str(i).encode()), ("src", source)]
        if i % 10 == 0:
            headers.append(("empty", b""))
        out.append(Out(key=b"key-%d" % i, value=value, headers=headers,
                       timestamp=base_ts + i, partition=i % PARTITIONS))
    return out


def check_round_trip(records: list[Out], consumed: list[helpers.Msg]):
    assert len(consumed) == len(records), "record count"
    got = helpers.by_partition(consumed)
    assert sorted(got) == list(range(PARTITIONS))
    for p in range(PARTITIONS):
        expected = [r for r in records if r.partition == p]
        msgs = got[p]
        assert [m.offset for m in msgs] == list(range(len(expected))), f"offsets of partition {p}"
        for i, (m, r) in enumerate(zip(msgs, expected)):
            if (m.key, m.value, m.headers, m.timestamp) != (r.key, r.value, r.headers, r.timestamp):
                pytest.fail(f"partition {p} offset {i}: got {m!r}, expected {r!r}")


def check_watermarks(bootstrap, topic, records):
    for p in range(PARTITIONS):
        n = sum(1 for r in records if r.partition == p)
        assert helpers.watermarks(bootstrap, topic, p) == (0, n)


@pytest.mark.slow
def test_confluent_100k_keyed_with_headers(broker, topic_name):
    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    records = make_records(100_000, b"confluent", helpers.now_ms() - 3_600_000)

    delivered = helpers.produce(broker.bootstrap, topic, records, acks="all",
                                linger_ms=10, batch_num_messages=5000)
    assert delivered == [(i % PARTITIONS, i // PARTITIONS) for i in range(len(records))]

    consumed = helpers.consume(broker.bootstrap, topic, range(PARTITIONS), len(records))
    check_round_trip(records, consumed)
    check_watermarks(broker.bootstrap, topic, records)


@pytest.mark.slow
def test_kafka_python_20k_keyed_with_headers(broker, topic_name):
    from kafka import KafkaAdminClient

    topic = topic_name()
    adm = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        res = adm.create_topics({topic: {"num_partitions": PARTITIONS, "replication_factor": 1}},
                                wait_for_metadata=True)
        assert [t["error_code"] for t in res["topics"]] == [0]
    finally:
        adm.close()
    records = make_records(20_000, b"kafka-python", helpers.now_ms() - 3_600_000)

    delivered = helpers.kp_produce(broker.bootstrap, topic, records)
    assert delivered == [(i % PARTITIONS, i // PARTITIONS) for i in range(len(records))]

    consumed = helpers.kp_consume(broker.bootstrap, topic, range(PARTITIONS), len(records))
    check_round_trip(records, consumed)
    # The other client reads the same bytes the same way.
    consumed = helpers.consume(broker.bootstrap, topic, range(PARTITIONS), len(records))
    check_round_trip(records, consumed)
    check_watermarks(broker.bootstrap, topic, records)
