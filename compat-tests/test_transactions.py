"""Transactions with real clients (confluent-kafka / librdkafka and aiokafka): commit makes
records visible to read_committed consumers, abort hides them there (read_uncommitted still
sees them), an open transaction holds read_committed consumers at its first offset, a zombie
producer is fenced by a new instance of its transactional id, and a consume-transform-produce
loop processes 50,000 records exactly once although the broker is SIGKILLed mid-run."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

import helpers


def txn_producer(bootstrap: str, transactional_id: str, **conf) -> Producer:
    base = {
        "bootstrap.servers": bootstrap, "transactional.id": transactional_id, "linger.ms": 5,
        "transaction.timeout.ms": 60_000, "message.timeout.ms": 60_000,
        "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500,
    }
    base.update(conf)
    return Producer(base)


def values(msgs) -> list[bytes]:
    return sorted(m.value for m in msgs)


def test_commit_is_visible_and_abort_is_hidden_from_read_committed(bootstrap, topic_name):
    topic = topic_name()
    helpers.create_topic(bootstrap, topic, partitions=2)
    producer = txn_producer(bootstrap, f"txn-{uuid.uuid4().hex[:8]}")
    producer.init_transactions(30)
    plain = helpers.producer(bootstrap)
    expected_committed = []
    for round_ in range(3):
        producer.begin_transaction()
        for i in range(100):
            producer.produce(topic, value=b"r%d-%03d" % (round_, i), partition=i % 2)
        # Non-transactional records interleave with the open transaction.
        plain.produce(topic, value=b"plain-%d" % round_, partition=round_ % 2)
        plain.flush(30)
        expected_committed.append(b"plain-%d" % round_)
        if round_ == 1:
            # Written first, so the abort has records in the log to hide (librdkafka would
            # otherwise just drop what it has not sent yet).
            producer.flush(30)
            producer.abort_transaction(30)
        else:
            producer.commit_transaction(30)
            expected_committed += [b"r%d-%03d" % (round_, i) for i in range(100)]
    committed = helpers.consume(bootstrap, topic, [0, 1], len(expected_committed),
                                isolation_level="read_committed", settle=1.0)
    assert values(committed) == sorted(expected_committed)
    everything = helpers.consume(bootstrap, topic, [0, 1], 303,
                                 isolation_level="read_uncommitted", settle=1.0)
    assert len(everything) == 303
    assert b"r1-000" in {m.value for m in everything}


def test_an_open_transaction_holds_read_committed_consumers(bootstrap, topic_name):
    topic = topic_name()
    helpers.create_topic(bootstrap, topic, partitions=1)
    producer = txn_producer(bootstrap, f"open-{uuid.uuid4().hex[:8]}")
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"in-txn", partition=0)
    producer.flush(30)
    plain = helpers.producer(bootstrap)
    plain.produce(topic, value=b"after", partition=0)
    plain.flush(30)
    # Both records are written (read_uncommitted sees them) but the open transaction holds
    # the last stable offset at its first record.
    assert len(helpers.consume(bootstrap, topic, [0], 2, isolation_level="read_uncommitted")) == 2
    held = helpers.consume(bootstrap, topic, [0], 1, timeout=3.0,
                           isolation_level="read_committed")
    assert held == []
    producer.commit_transaction(30)
    released = helpers.consume(bootstrap, topic, [0], 2, isolation_level="read_committed")
    assert values(released) == [b"after", b"in-txn"]


def test_a_zombie_producer_is_fenced(bootstrap, topic_name):
    topic = topic_name()
    helpers.create_topic(bootstrap, topic, partitions=1)
    transactional_id = f"zombie-{uuid.uuid4().hex[:8]}"
    zombie = txn_producer(bootstrap, transactional_id)
    zombie.init_transactions(30)
    zombie.begin_transaction()
    zombie.produce(topic, value=b"zombie-1", partition=0)
    zombie.flush(30)
    # A new instance of the same transactional id fences the old one and aborts its
    # unfinished transaction.
    successor = txn_producer(bootstrap, transactional_id)
    successor.init_transactions(30)
    successor.begin_transaction()
    successor.produce(topic, value=b"successor", partition=0)
    successor.commit_transaction(30)
    with pytest.raises(KafkaException) as raised:
        zombie.produce(topic, value=b"zombie-2", partition=0)
        zombie.commit_transaction(30)
    error = raised.value.args[0]
    assert error.fatal() or error.code() in (
        KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH
    ), error
    committed = helpers.consume(bootstrap, topic, [0], 1, isolation_level="read_committed",
                                settle=1.0)
    assert values(committed) == [b"successor"]


def test_aiokafka_transactions_commit_and_abort(bootstrap, topic_name):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.structs import TopicPartition as AioTopicPartition

    topic = topic_name()
    helpers.create_topic(bootstrap, topic, partitions=1)

    async def run() -> tuple[list[bytes], list[bytes]]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap,
                                    transactional_id=f"aio-{uuid.uuid4().hex[:8]}")
        await producer.start()
        try:
            async with producer.transaction():
                for i in range(20):
                    await producer.send(topic, b"commit-%02d" % i, partition=0)
            await producer.begin_transaction()
            for i in range(10):
                await producer.send(topic, b"abort-%02d" % i, partition=0)
            await producer.abort_transaction()
            async with producer.transaction():
                await producer.send_and_wait(topic, b"last", partition=0)
        finally:
            await producer.stop()

        async def read(isolation: str, expected: int) -> list[bytes]:
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation,
                                        enable_auto_commit=False, auto_offset_reset="earliest")
            await consumer.start()
            try:
                tp = AioTopicPartition(topic, 0)
                consumer.assign([tp])
                consumer.seek(tp, 0)
                got: list[bytes] = []
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    batches = await consumer.getmany(timeout_ms=300)
                    got += [m.value for msgs in batches.values() for m in msgs]
                    if len(got) >= expected:
                        await asyncio.sleep(0.5)
                        batches = await consumer.getmany(timeout_ms=300)
                        got += [m.value for msgs in batches.values() for m in msgs]
                        break
                return got
            finally:
                await consumer.stop()

        return await read("read_committed", 21), await read("read_uncommitted", 31)

    committed, uncommitted = asyncio.run(run())
    assert sorted(committed) == sorted([b"commit-%02d" % i for i in range(20)] + [b"last"])
    assert len(uncommitted) == 31


# ---- consume-transform-produce across a broker SIGKILL --------------------------------------

INPUT_PARTITIONS = 3
TOTAL = 50_000
WORKER_SCRIPT = Path(__file__).with_name("txn_worker.py")
# librdkafka's send_offsets_to_transaction can block forever when it caches a group
# coordinator whose connection was lost (confluentinc/librdkafka#5511, and #5456: its timeout
# is not checked). A worker without progress for this long is treated as hung, SIGKILLed and
# replaced, as a supervisor would; exactly-once must hold across that too.
STALL_S = 30.0


class Worker:
    """txn_worker.py in its own process; its progress is read from its stdout."""

    def __init__(self, args: list[str], log: Path):
        self.log = open(log, "a")
        self.proc = subprocess.Popen([sys.executable, str(WORKER_SCRIPT), *args],
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.committed: dict[int, int] = {}
        self.errors: list[str] = []
        self.progress_at = time.monotonic()
        threading.Thread(target=self.read, daemon=True).start()

    def read(self):
        for line in self.proc.stdout:
            event = json.loads(line)
            if "committed" in event:
                self.committed.update({int(p): o for p, o in event["committed"].items()})
                self.progress_at = time.monotonic()
            elif "error" in event:
                self.errors.append(event["error"])

    def processed(self) -> int:
        return sum(self.committed.values())

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.log.close()


@pytest.mark.timeout(420)
def test_consume_transform_produce_is_exactly_once_across_a_broker_sigkill(
        configured_broker, topic_name, tmp_path):
    broker = configured_broker("group_initial_rebalance_delay_ms: 0\n")
    source, sink = topic_name("in"), topic_name("out")
    helpers.create_topic(broker.bootstrap, source, partitions=INPUT_PARTITIONS)
    helpers.create_topic(broker.bootstrap, sink, partitions=INPUT_PARTITIONS)
    feeder = helpers.producer(broker.bootstrap, **{"enable.idempotence": True})
    for i in range(TOTAL):
        while True:
            try:
                feeder.produce(source, value=b"m-%05d" % i, partition=i % INPUT_PARTITIONS)
                break
            except BufferError:
                feeder.poll(0.05)
    assert feeder.flush(60) == 0

    args = [broker.bootstrap, source, sink, f"ctp-{uuid.uuid4().hex[:8]}",
            f"ctp-{uuid.uuid4().hex[:8]}"]
    workers = [Worker(args, tmp_path / "worker.log")]
    try:
        deadline = time.monotonic() + 120
        while workers[-1].processed() < TOTAL * 2 // 5:
            assert workers[-1].proc.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"only {workers[-1].processed()} processed"
            time.sleep(0.01)
        broker.kill()
        time.sleep(0.5)
        broker.start()
        deadline = time.monotonic() + 300
        while workers[-1].proc.poll() is None:
            assert time.monotonic() < deadline, [w.errors[-5:] for w in workers]
            if time.monotonic() - workers[-1].progress_at > STALL_S:
                assert len(workers) < 4, [w.errors[-5:] for w in workers]
                workers[-1].kill()
                workers.append(Worker(args, tmp_path / "worker.log"))
            time.sleep(0.1)
        assert workers[-1].proc.returncode == 0, (tmp_path / "worker.log").read_text()[-3000:]
    finally:
        for w in workers:
            w.kill()

    print(f"workers: {len(workers)}; errors seen: {[w.errors[-3:] for w in workers]}")
    out = helpers.consume(broker.bootstrap, sink, range(INPUT_PARTITIONS), TOTAL,
                          timeout=120, settle=2.0, isolation_level="read_committed")
    seen = [m.value for m in out]
    assert len(seen) == TOTAL, (len(seen), len(set(seen)), [w.errors[-5:] for w in workers])
    assert set(seen) == {b"t-m-%05d" % i for i in range(TOTAL)}
    # Within each partition the output keeps the input's order.
    for p, msgs in helpers.by_partition(out).items():
        numbers = [int(m.value[4:]) for m in msgs]
        assert numbers == sorted(numbers), p
