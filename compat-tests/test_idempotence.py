"""Idempotent producers (enable.idempotence=true) with real clients: every message
exactly once and in order although the broker is SIGKILLed and restarted mid-stream
(the producer retries what was in flight; the broker recognises what it already wrote)."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Producer

import helpers

PARTITIONS = 3
COUNT = 20_000


class IdempotentProducer(threading.Thread):
    def __init__(self, bootstrap: str, topic: str):
        super().__init__(daemon=True)
        self.topic = topic
        self.producer = Producer({
            "bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5,
            "message.timeout.ms": 120_000, "retry.backoff.ms": 100,
            "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500,
            "socket.connection.setup.timeout.ms": 5000,
        })
        self.acked = 0
        self.errors: list[str] = []
        self.error: BaseException | None = None

    def on_delivery(self, err, msg):
        if err is None:
            self.acked += 1
        else:
            self.errors.append(str(err))

    def run(self):
        try:
            for i in range(COUNT):
                while True:
                    try:
                        self.producer.produce(self.topic, value=b"m-%08d" % i,
                                              partition=i % PARTITIONS,
                                              on_delivery=self.on_delivery)
                        break
                    except BufferError:
                        self.producer.poll(0.05)
                if i % 100 == 0:
                    self.producer.poll(0)
                    time.sleep(0.002)  # stretch the run so the kill lands mid-stream
            self.producer.flush(120)
        except BaseException as e:  # surfaced by the test
            self.error = e


@pytest.mark.timeout(300)
def test_idempotent_producer_is_exactly_once_across_a_broker_sigkill(own_broker, topic_name):
    topic = topic_name()
    helpers.create_topic(own_broker.bootstrap, topic, partitions=PARTITIONS)
    producer = IdempotentProducer(own_broker.bootstrap, topic)
    producer.start()
    deadline = time.monotonic() + 60
    while producer.acked < COUNT // 4:
        assert time.monotonic() < deadline, f"only {producer.acked} acks"
        time.sleep(0.01)
    own_broker.kill()
    time.sleep(0.5)  # the producer keeps queueing and retrying while the broker is down
    own_broker.start()
    producer.join(180)
    assert not producer.is_alive() and producer.error is None, repr(producer.error)
    assert producer.errors == [], producer.errors[:5]
    assert producer.acked == COUNT
    msgs = helpers.consume(own_broker.bootstrap, topic, range(PARTITIONS), COUNT, timeout=90)
    by_partition: dict[int, list[int]] = {}
    for m in msgs:
        by_partition.setdefault(m.partition, []).append(int(m.value.decode()[2:]))
    for p in range(PARTITIONS):
        values = by_partition.get(p, [])
        # Exactly once, in order: partition p holds p, p+3, p+6, ... with nothing repeated.
        assert values == list(range(p, COUNT, PARTITIONS)), (
            f"partition {p}: {len(values)} records, duplicates "
            f"{len(values) - len(set(values))}, first out of order at "
            f"{next((i for i, (a, b) in enumerate(zip(values, values[1:])) if b <= a), None)}")
    # Nothing beyond the records produced: the log ends where the last one is.
    for p in range(PARTITIONS):
        _, high = helpers.watermarks(own_broker.bootstrap, topic, p)
        assert high == len(range(p, COUNT, PARTITIONS))
