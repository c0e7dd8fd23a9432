"""Client-side helpers shared by the tests (confluent-kafka and kafka-python)."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Iterable, NamedTuple

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

REPO_ROOT = Path(__file__).resolve().parent.parent


class Msg(NamedTuple):
    """A consumed record, normalised across clients."""
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    timestamp: int


class Out(NamedTuple):
    """A record to produce."""
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    timestamp: int | None
    partition: int | None


def now_ms() -> int:
    return int(time.time() * 1000)


# ---------------------------------------------------------------------------
# confluent-kafka
# ---------------------------------------------------------------------------

def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def wait_for_topic(bootstrap: str, topic: str, partitions: int, timeout: float = 20.0):
    """Until Metadata shows the topic with `partitions` partitions, each led."""
    adm = admin(bootstrap)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        md = adm.list_topics(timeout=5)
        t = md.topics.get(topic)
        last = t
        if (t is not None and t.error is None and len(t.partitions) == partitions
                and all(p.leader >= 0 and p.error is None for p in t.partitions.values())):
            return t
        time.sleep(0.1)
    raise AssertionError(f"topic {topic} not ready with {partitions} partitions: {last}")


def wait_topic_gone(bootstrap: str, topic: str, timeout: float = 20.0):
    adm = admin(bootstrap)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if topic not in adm.list_topics(timeout=5).topics:
            return
        time.sleep(0.1)
    raise AssertionError(f"topic {topic} still listed after delete")


def create_topic(bootstrap: str, topic: str, partitions: int = 1,
                 config: dict[str, str] | None = None):
    adm = admin(bootstrap)  # must outlive the future
    fut = adm.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=20)[topic]
    fut.result(timeout=30)
    return wait_for_topic(bootstrap, topic, partitions)


def producer(bootstrap: str, **conf) -> Producer:
    base = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5}
    base.update({k.replace("_", "."): v for k, v in conf.items()})
    return Producer(base)


def produce(bootstrap: str, topic: str, records: Iterable[Out], flush_every: int | None = None,
            **conf) -> list[tuple[int, int]]:
    """Produce with confluent-kafka; returns (partition, offset) per record in
    input order. Fails on any delivery error."""
    p = producer(bootstrap, **conf)
    results: dict[int, tuple[int, int]] = {}
    errors: list = []

    def report(idx):
        def cb(err, msg):
            if err is not None:
                errors.append((idx, err))
            else:
                results[idx] = (msg.partition(), msg.offset())
        return cb

    n = 0
    for n, rec in enumerate(records, 1):
        kwargs = dict(value=rec.value, key=rec.key, headers=rec.headers or None,
                      on_delivery=report(n - 1))
        if rec.timestamp is not None:
            kwargs["timestamp"] = rec.timestamp
        if rec.partition is not None:
            kwargs["partition"] = rec.partition
        while True:
            try:
                p.produce(topic, **kwargs)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
        if flush_every and n % flush_every == 0:
            assert p.flush(30) == 0
    remaining = p.flush(60)
    assert remaining == 0, f"{remaining} messages not delivered"
    assert not errors, f"delivery errors: {errors[:5]}"
    assert len(results) == n
    return [results[i] for i in range(n)]


def consumer(bootstrap: str, **conf) -> Consumer:
    base = {
        "bootstrap.servers": bootstrap,
        "group.id": f"compat-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
    }
    base.update({k.replace("_", "."): v for k, v in conf.items()})
    return Consumer(base)


def _to_msg(m) -> Msg:
    return Msg(m.partition(), m.offset(), m.key(), m.value(), list(m.headers() or []),
               m.timestamp()[1])


def consume(bootstrap: str, topic: str, partitions: Iterable[int], expected: int,
            timeout: float = 60.0, settle: float = 0.5, **conf) -> list[Msg]:
    """Assign the partitions from offset 0 and read until `expected` records
    arrived, then keep polling `settle` seconds to catch any extra."""
    c = consumer(bootstrap, **conf)
    try:
        c.assign([TopicPartition(topic, p, 0) for p in partitions])
        out: list[Msg] = []
        deadline = time.monotonic() + timeout
        settle_until = None
        while time.monotonic() < deadline:
            batch = c.consume(num_messages=10000, timeout=0.2)
            for m in batch:
                if m.error() is not None:
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(m.error())
                out.append(_to_msg(m))
            if len(out) >= expected:
                if settle_until is None:
                    settle_until = time.monotonic() + settle
                elif time.monotonic() >= settle_until:
                    break
        return out
    finally:
        c.close()


def watermarks(bootstrap: str, topic: str, partition: int) -> tuple[int, int]:
    c = consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
    finally:
        c.close()


# ---------------------------------------------------------------------------
# kafka-python
# ---------------------------------------------------------------------------

def kp_producer(bootstrap: str, **conf):
    from kafka import KafkaProducer
    # kafka-python 3.x's default: idempotent with acks=all.
    base = dict(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                linger_ms=5, batch_size=64 * 1024, request_timeout_ms=30000)
    base.update(conf)
    return KafkaProducer(**base)


def kp_produce(bootstrap: str, topic: str, records: Iterable[Out], **conf) -> list[tuple[int, int]]:
    p = kp_producer(bootstrap, **conf)
    try:
        futures = []
        for rec in records:
            futures.append(p.send(topic, value=rec.value, key=rec.key, headers=rec.headers or None,
                                  partition=rec.partition, timestamp_ms=rec.timestamp))
        p.flush(timeout=60)
        out = []
        for f in futures:
            md = f.get(timeout=30)
            out.append((md.partition, md.offset))
        return out
    finally:
        p.close(timeout=10)


def kp_consumer(bootstrap: str, **conf):
    from kafka import KafkaConsumer
    base = dict(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest")
    base.update(conf)
    return KafkaConsumer(**base)


def kp_consume(bootstrap: str, topic: str, partitions: Iterable[int], expected: int,
               timeout: float = 60.0, settle: float = 0.5, **conf) -> list[Msg]:
    from kafka import TopicPartition as KTP
    c = kp_consumer(bootstrap, **conf)
    try:
        tps = [KTP(topic, p) for p in partitions]
        c.assign(tps)
        for tp in tps:
            c.seek(tp, 0)
        out: list[Msg] = []
        deadline = time.monotonic() + timeout
        settle_until = None
        while time.monotonic() < deadline:
            polled = c.poll(timeout_ms=200, max_records=10000)
            for recs in polled.values():
                for r in recs:
                    out.append(Msg(r.partition, r.offset, r.key, r.value,
                                   [(k, v) for k, v in (r.headers or [])], r.timestamp))
            if len(out) >= expected:
                if settle_until is None:
                    settle_until = time.monotonic() + settle
                elif time.monotonic() >= settle_until:
                    break
        return out
    finally:
        c.close()


def by_partition(msgs: Iterable[Msg]) -> dict[int, list[Msg]]:
    out: dict[int, list[Msg]] = {}
    for m in msgs:
        out.setdefault(m.partition, []).append(m)
    return out


def save_figures(name: str, figures: dict):
    """Writes a reliability figure set to target/reliability/<name>.json (or
    $WEIR_FIGURES_DIR) for scripts/reliability_report.py, and prints it."""
    out = Path(os.environ.get("WEIR_FIGURES_DIR", REPO_ROOT / "target" / "reliability"))
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(f"\n{name}: {json.dumps(figures, sort_keys=True)}")
