"""kill -9 loop: real clients (confluent-kafka/librdkafka) produce with acks=all
(a plain and an idempotent producer), read in assign mode and in a committing
consumer group, while the broker is SIGKILLed at random moments and restarted,
again and again. The history checker (history.py) then judges everything that
was sent, acknowledged, read and committed.

`WEIR_KILL_CYCLES` sets the number of crashes (default 20: the PR tier;
scripts/reliability runs the long tier). Figures go to
target/reliability/kill9-<mode>.json and the test output."""

from __future__ import annotations

import os
import random
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

import helpers
from conftest import api_versions_ok
from history import History

PARTITIONS = 4
CYCLES = int(os.environ.get("WEIR_KILL_CYCLES", "20"))
# Progress each producer must make after a restart before the next kill.
ACKS_PER_CYCLE = 100
# Records above the topic's max.message.bytes: the broker refuses their batch.
MAX_MESSAGE_BYTES = 4096
OVERSIZED = b"x" * (2 * MAX_MESSAGE_BYTES)
# Client errors that mean the broker refused the batch: its records are never stored.
DEFINITE = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG, KafkaError.INVALID_RECORD,
            KafkaError.INVALID_MSG_SIZE}
RECONNECT = {"reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 200,
             "socket.connection.setup.timeout.ms": 3000, "retry.backoff.ms": 50,
             "retry.backoff.max.ms": 200, "topic.metadata.refresh.interval.ms": 1000,
             "log_level": 2}  # connection-refused noise while the broker is down


class ProducerWorker(threading.Thread):
    """Sends unique values round-robin over the partitions of `topic` and
    records every outcome. With `refused`, every 997th record is oversized and
    goes to that topic, which only ever gets oversized records: the broker must
    refuse each one (a definite failure). They get a topic of their own because
    a retried record that the client re-batches with a refused one fails with
    it although its first attempt may have been stored."""

    def __init__(self, name: str, bootstrap: str, topic: str, history: History,
                 idempotent: bool, refused: str | None = None):
        super().__init__(name=name, daemon=True)
        self.topic, self.history, self.idempotent = topic, history, idempotent
        self.refused = refused
        self.producer = Producer({
            "bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2,
            "enable.idempotence": idempotent, "message.timeout.ms": 90_000,
            "error_cb": self.on_error, **RECONNECT,
        })
        self.acked = 0
        self.fatal: list[str] = []
        self.stop_flag = threading.Event()
        self.error: BaseException | None = None

    def on_error(self, err):
        if err.fatal():
            self.fatal.append(str(err))

    def on_delivery(self, err, msg):
        value = msg.value() if msg.value() != OVERSIZED else msg.key()
        if err is None:
            self.history.ok(value, msg.partition(), msg.offset())
            self.acked += 1
        else:
            definite = msg.topic() == self.refused and err.code() in DEFINITE
            self.history.failed(value, err.name(), definite=definite)

    def send(self, seq: int):
        value = b"%s-%09d" % (self.name.encode(), seq)
        partition = seq % PARTITIONS
        oversized = self.refused is not None and seq % 997 == 500
        topic = self.refused if oversized else self.topic
        # An oversized record is identified by its key (its value is the padding). Delivery
        # callbacks run in poll(), on this thread, so recording after produce() is in time.
        self.producer.produce(topic, key=value, value=OVERSIZED if oversized else value,
                              partition=partition, on_delivery=self.on_delivery)
        self.history.invoke(self.name, topic, partition, value, self.idempotent)

    def run(self):
        seq = 0
        try:
            while not self.stop_flag.is_set():
                for _ in range(20):
                    try:
                        self.send(seq)
                    except BufferError:
                        break  # the client's queue is full: not sent, try again later
                    seq += 1
                self.producer.poll(0.01)
            self.producer.flush(120)
        except BaseException as e:  # surfaced by the test
            self.error = e


class Reader(threading.Thread):
    """Polls and records every record. Assign mode reads every partition from
    0 in one session; group mode subscribes, commits synchronously every
    `commit_every` records and starts a new session on every assignment."""

    def __init__(self, name: str, bootstrap: str, topics: list[str], history: History,
                 group: str | None = None, commit_every: int = 500):
        super().__init__(name=name, daemon=True)
        self.topics, self.history, self.group = topics, history, group
        self.commit_every = commit_every
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": group or f"assign-{name}",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "session.timeout.ms": 10_000, "heartbeat.interval.ms": 500, **RECONNECT,
        })
        self.session = 0
        self.positions: dict[tuple[str, int], int] = {}
        self.stop_flag = threading.Event()
        self.error: BaseException | None = None

    def on_assign(self, consumer, partitions):
        self.session += 1

    def run(self):
        try:
            if self.group is None:
                self.consumer.assign([TopicPartition(t, p, 0) for t in self.topics
                                      for p in range(PARTITIONS)])
            else:
                self.consumer.subscribe(self.topics, on_assign=self.on_assign)
            since_commit = 0
            while not self.stop_flag.is_set():
                for m in self.consumer.consume(num_messages=1000, timeout=0.1):
                    if m.error() is not None:
                        continue  # transport errors while the broker is down
                    self.history.poll(self.name, self.session, m.topic(), m.partition(),
                                      m.offset(), m.value())
                    self.positions[(m.topic(), m.partition())] = m.offset() + 1
                    since_commit += 1
                if self.group is not None and since_commit >= self.commit_every:
                    since_commit = 0
                    self.commit()
            if self.group is not None:
                self.commit()
            self.consumer.close()
        except BaseException as e:  # surfaced by the test
            self.error = e

    def commit(self):
        try:
            done = self.consumer.commit(asynchronous=False)
        except KafkaException:
            return  # the broker is down: outcome unknown, nothing to record
        for tp in done or []:
            if tp.error is None and tp.offset >= 0:
                self.history.commit_acked(self.group, tp.topic, tp.partition, tp.offset)


def restart_to_ready(broker) -> float:
    """Starts the broker and returns seconds until it answers ApiVersions."""
    t0 = time.monotonic()
    broker.start(poll_interval=0.005)
    return time.monotonic() - t0


def read_committed_offsets(bootstrap, group, topics, history):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        for tp in c.committed(tps, timeout=30):
            assert tp.error is None, f"OffsetFetch after restart: {tp.error}"
            history.committed_read(group, tp.topic, tp.partition, tp.offset)
    finally:
        c.close()


def drain(bootstrap, topics, history):
    """Every record of every partition from its log start to its high watermark."""
    for topic in topics:
        for p in range(PARTITIONS):
            low, high = helpers.watermarks(bootstrap, topic, p)
            msgs = helpers.consume(bootstrap, topic, [p], high - low, timeout=120, settle=0.2)
            history.final_drain(topic, p, low, [(m.offset, m.value) for m in msgs])


def wait_until(what, predicate, timeout, workers):
    deadline = time.monotonic() + timeout
    while not predicate():
        for w in workers:
            assert w.is_alive(), f"{w.name} ended early: {w.error!r}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("durability", ["fsync", "page_cache", "page_cache-direct"])
def test_kill9_loop(configured_broker, topic_name, durability):
    cycles = CYCLES if durability == "fsync" else max(1, CYCLES // 2)
    # page_cache mode writes buffered by default (the handler writes, the page cache holds
    # what was acknowledged); with O_DIRECT its appends go through the background writer.
    mode, _, io = durability.partition("-")
    io_line = f"log_write_io: {io}\n" if io else ""
    # Small segments so that kills land around segment rolls too.
    broker = configured_broker(f"durability: {mode}\n{io_line}log_segment_bytes: 16384\n")
    bootstrap = broker.bootstrap
    plain, idem, refused = topic_name("plain"), topic_name("idem"), topic_name("refused")
    for t in (plain, idem):
        helpers.create_topic(bootstrap, t, partitions=PARTITIONS)
    # The limit applies to whole batches: only the refused topic gets it.
    helpers.create_topic(bootstrap, refused, partitions=PARTITIONS,
                         config={"max.message.bytes": str(MAX_MESSAGE_BYTES)})
    history = History()
    history.plain_topics.update({plain, idem, refused})
    history.monotonic_readers.add("assign")
    history.complete_readers.update({"assign", "group"})
    group = f"kill9-{durability}"
    producers = [ProducerWorker("plain", bootstrap, plain, history, idempotent=False,
                                refused=refused),
                 ProducerWorker("idem", bootstrap, idem, history, idempotent=True)]
    readers = [Reader("assign", bootstrap, [plain, idem], history),
               Reader("group", bootstrap, [plain, idem], history, group=group)]
    workers = producers + readers
    for w in workers:
        w.start()
    rng = random.Random(int(os.environ.get("WEIR_KILL_SEED", time.time_ns())))
    try:
        for _cycle in range(cycles):
            marks = [p.acked for p in producers]
            wait_until("producer progress", lambda: all(
                p.acked >= m + ACKS_PER_CYCLE for p, m in zip(producers, marks)), 120, workers)
            time.sleep(rng.uniform(0.05, 1.0))
            broker.kill()
            history.crash()
            history.ready(restart_to_ready(broker))
            read_committed_offsets(bootstrap, group, [plain, idem], history)
        wait_until("producer progress", lambda: all(p.acked >= ACKS_PER_CYCLE
                                                    for p in producers), 120, workers)
    finally:
        for p in producers:
            p.stop_flag.set()
        for p in producers:
            p.join(150)
    for p in producers:
        assert not p.is_alive() and p.error is None, f"{p.name}: {p.error!r}"
        assert not p.fatal, f"{p.name} hit fatal errors: {p.fatal}"

    drain(bootstrap, [plain, idem, refused], history)
    ends = {tp: (records[-1][0] + 1 if records else 0) for tp, records in history.final.items()}

    def caught_up():
        return all(all(r.positions.get(tp, 0) >= end for tp, end in ends.items())
                   for r in readers)
    try:
        wait_until("readers to reach the high watermarks", caught_up, 120, readers)
    finally:
        for r in readers:
            r.stop_flag.set()
        for r in readers:
            r.join(60)
    for r in readers:
        assert r.error is None, f"{r.name}: {r.error!r}"

    report = history.check()
    helpers.save_figures(f"kill9-{durability}", {"durability": durability, **report.figures})
    assert not report.anomalies, report.summary()
    f = report.figures
    assert f["crashes"] == cycles and f["acked"] >= (cycles + 1) * ACKS_PER_CYCLE
    assert f["failed_definitely"] > 0, "no oversized record was refused: the check is idle"
    # Every other record was acknowledged in the end (the clients retry through restarts).
    assert f["unknown"] == 0 and f["pending"] == 0, f
    assert f["committed_reads"] == cycles * 2 * PARTITIONS
