"""Crash and restart: acknowledged writes survive SIGKILL at their offsets, a
corrupt segment tail is truncated at start-up, a clean stop loses nothing."""

import os
import random
import re
import struct
import threading
import time
import urllib.request

import pytest
from confluent_kafka import Producer

import helpers
import wire
from helpers import Out

PARTITIONS = 3


def log_since_last_start(broker, *scrub: str) -> str:
    """The broker's log since its latest start, with paths and names removed
    (so a word inside a directory or topic name cannot match)."""
    text = broker.log_text()
    text = text[text.rfind("===== start #"):]
    text = text.split("\n", 1)[1] if "\n" in text else ""
    for s in (str(broker.data_dir), *scrub):
        text = text.replace(s, "<scrubbed>")
    return text


def read_all(bootstrap, topic, partitions):
    """Every record of each partition from 0 to its high watermark."""
    ends = {p: helpers.watermarks(bootstrap, topic, p) for p in partitions}
    for p, (low, _high) in ends.items():
        assert low == 0
    total = sum(high for _low, high in ends.values())
    msgs = helpers.consume(bootstrap, topic, partitions, total, timeout=90)
    assert len(msgs) == total
    got = helpers.by_partition(msgs)
    for p, (_low, high) in ends.items():
        assert [m.offset for m in got.get(p, [])] == list(range(high)), f"partition {p} has gaps"
    return got


class BackgroundProducer(threading.Thread):
    """Produces keyed messages until stopped and records every acknowledgement."""

    def __init__(self, bootstrap, topic):
        super().__init__(daemon=True)
        self.topic = topic
        self.producer = Producer({
            "bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
            "message.timeout.ms": 120_000, "retry.backoff.ms": 100,
            "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500,
            "socket.connection.setup.timeout.ms": 5000,
        })
        self.acked: list[tuple[str, int, int, bytes]] = []
        self.failed = 0
        self.sent = 0
        self.stop_flag = threading.Event()
        self.error: BaseException | None = None

    def on_delivery(self, err, msg):
        if err is None:
            self.acked.append((msg.topic(), msg.partition(), msg.offset(), msg.value()))
        else:
            self.failed += 1

    def run(self):
        try:
            while not self.stop_flag.is_set():
                for _ in range(200):
                    seq = self.sent
                    try:
                        self.producer.produce(self.topic, key=b"k%d" % seq, value=b"m-%08d" % seq,
                                              partition=seq % PARTITIONS,
                                              on_delivery=self.on_delivery)
                        self.sent += 1
                    except BufferError:
                        break
                self.producer.poll(0.01)
            self.producer.flush(90)
        except BaseException as e:  # surfaced by the test
            self.error = e

    def wait_acked(self, count, timeout):
        deadline = time.monotonic() + timeout
        while len(self.acked) < count:
            assert time.monotonic() < deadline, f"only {len(self.acked)} acks (wanted {count})"
            assert self.is_alive(), f"producer thread ended: {self.error!r}"
            time.sleep(0.02)


@pytest.mark.timeout(300)
def test_sigkill_keeps_acknowledged_messages(own_broker, topic_name):
    topic = topic_name()
    helpers.create_topic(own_broker.bootstrap, topic, partitions=PARTITIONS)
    bg = BackgroundProducer(own_broker.bootstrap, topic)
    bg.start()
    try:
        bg.wait_acked(3000, timeout=60)
        own_broker.kill()
        acked_at_kill = len(bg.acked)
        time.sleep(1.0)  # the producer keeps queueing while the broker is down
        own_broker.start()
        bg.wait_acked(acked_at_kill + 3000, timeout=120)
    finally:
        bg.stop_flag.set()
        bg.join(120)
    assert not bg.is_alive() and bg.error is None, repr(bg.error)
    assert bg.failed == 0, f"{bg.failed} messages failed delivery"

    got = read_all(own_broker.bootstrap, topic, range(PARTITIONS))
    seen = set()
    for _t, p, off, value in bg.acked:
        assert (p, off) not in seen, f"two acks for partition {p} offset {off}"
        seen.add((p, off))
        msgs = got[p]
        assert off < len(msgs), f"acknowledged offset {off} of partition {p} lost"
        assert msgs[off].value == value, f"partition {p} offset {off}: {msgs[off].value!r} != {value!r}"
    # Everything produced was acknowledged in the end (nothing failed), so every
    # sequence number is somewhere in the log (possibly twice after a retry).
    stored = {m.value for msgs in got.values() for m in msgs}
    assert stored >= {b"m-%08d" % s for s in range(bg.sent)}


def test_clean_stop_and_restart(own_broker, topic_name):
    topic = topic_name()
    helpers.create_topic(own_broker.bootstrap, topic, partitions=2)
    recs = [Out(b"k%d" % i, b"v%d" % i, [("n", b"%d" % i)], helpers.now_ms() - 1000 + i, i % 2)
            for i in range(1000)]
    helpers.produce(own_broker.bootstrap, topic, recs)
    code = own_broker.stop()
    assert code in (0, 143), f"exit code {code} after SIGTERM"  # 143: a JVM's SIGTERM exit
    own_broker.start()
    helpers.wait_for_topic(own_broker.bootstrap, topic, 2)
    got = read_all(own_broker.bootstrap, topic, [0, 1])
    for p in (0, 1):
        assert [m.value for m in got[p]] == [r.value for r in recs if r.partition == p]
        assert [m.timestamp for m in got[p]] == [r.timestamp for r in recs if r.partition == p]
    assert helpers.produce(own_broker.bootstrap, topic, [Out(b"k", b"after", [], None, 0)]) == [(0, 500)]


SEGMENT_BYTES = 1024 * 1024  # Kafka's minimum for segment.bytes


def cut_padding(segment):
    """The segment's batches, with the zeros an O_DIRECT write leaves after them cut off."""
    data = segment.read_bytes()
    batches, trailing = wire.parse_batches(data)
    assert trailing < 4096 and not any(data[len(data) - trailing:]), trailing
    os.truncate(segment, len(data) - trailing)
    assert all(b.crc_ok for b in batches)
    return batches


def corrupt(path, variant, last):
    data = bytearray(path.read_bytes())
    if variant == "garbage":
        data += random.Random(7).randbytes(100)
    elif variant == "zeros":
        data += bytes(4096)  # e.g. a preallocated or half-written tail
    elif variant == "cut":
        del data[last.position + last.size // 2:]
    elif variant == "flip":
        data[last.position + last.size - 5] ^= 0xFF  # inside the records: CRC mismatch
    else:
        raise ValueError(variant)
    path.write_bytes(bytes(data))


@pytest.mark.timeout(240)
@pytest.mark.parametrize("variant", ["garbage", "zeros", "cut", "flip"])
def test_corrupt_tail_recovery(own_broker, topic_name, variant):
    topic = topic_name()
    helpers.create_topic(own_broker.bootstrap, topic, partitions=1,
                         config={"segment.bytes": str(SEGMENT_BYTES)})
    payload = os.urandom(1000)
    recs = [Out(b"k%d" % i, b"%06d" % i + payload, [], None, 0) for i in range(3000)]
    helpers.produce(own_broker.bootstrap, topic, recs, batch_num_messages=40, linger_ms=5)
    own_broker.kill()  # no clean-shutdown marker: start-up must check the tail

    segs = own_broker.segment_files(topic, 0)
    assert len(segs) >= 2, f"segment.bytes={SEGMENT_BYTES} did not roll segments: {segs}"
    assert all(re.fullmatch(r"\d{20}\.log", s.name) for s in segs)
    # Each variant damages the bytes right after the last batch.
    batches = cut_padding(segs[-1])
    assert len(batches) >= 2
    assert int(segs[-1].stem) == batches[0].base_offset
    last = batches[-1]
    assert last.last_offset == len(recs) - 1
    expected_end = len(recs) if variant in ("garbage", "zeros") else last.base_offset
    corrupt(segs[-1], variant, last)

    own_broker.start()
    assert own_broker.is_running()
    assert re.search("truncat", log_since_last_start(own_broker, topic), re.IGNORECASE), \
        "no log line about truncating the corrupt tail"
    helpers.wait_for_topic(own_broker.bootstrap, topic, 1)
    assert helpers.watermarks(own_broker.bootstrap, topic, 0) == (0, expected_end)
    got = read_all(own_broker.bootstrap, topic, [0])[0]
    assert [m.value for m in got] == [r.value for r in recs[:expected_end]]

    # The log continues right after the surviving data, and the tail is clean.
    assert helpers.produce(own_broker.bootstrap, topic,
                           [Out(b"k", b"after", [], None, 0)]) == [(0, expected_end)]
    own_broker.kill()
    segs = own_broker.segment_files(topic, 0)
    data = segs[-1].read_bytes()
    batches, trailing = wire.parse_batches(data)
    assert trailing < 4096 and not any(data[len(data) - trailing:]), trailing  # padding only
    assert all(b.crc_ok for b in batches)
    assert batches[-1].base_offset == expected_end


def segments_opened(broker) -> dict[str, float]:
    """weir_log_segments_opened_total by how the start opened them."""
    with urllib.request.urlopen(f"{broker.metrics_url}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(
        r'^weir_log_segments_opened_total\{from="(\w+)"\} (\S+)$', text, re.M)}


@pytest.mark.timeout(240)
def test_a_crash_start_verifies_only_what_came_after_the_last_checkpoint(configured_broker,
                                                                        topic_name):
    """Every checkpoint_interval_ms the newest segment of each partition written since is
    fsynced and summarized. After a SIGKILL the start takes what that summary covers as it is
    and reads, CRC-checks and if need be truncates only the batches appended after it."""
    broker = configured_broker("checkpoint_interval_ms: 10000\n")
    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, partitions=1)
    payload = os.urandom(1000)
    recs = [Out(b"k%d" % i, b"%06d" % i + payload, [], None, 0) for i in range(3000)]
    helpers.produce(broker.bootstrap, topic, recs[:2000], enable_idempotence=True,
                    batch_num_messages=40)
    [active] = broker.segment_files(topic, 0)
    summary = active.with_suffix(".summary")
    deadline = time.monotonic() + 30
    # Its extent is fixed before the file is created; 54 bytes: the shortest whole summary.
    while not (summary.exists() and summary.stat().st_size >= 54):
        assert time.monotonic() < deadline, "no checkpoint within 30 s"
        time.sleep(0.05)
    # The next checkpoint is 10 s away: these batches come after this one.
    helpers.produce(broker.bootstrap, topic, recs[2000:], enable_idempotence=True,
                    batch_num_messages=40)
    broker.kill()

    batches = cut_padding(active)
    last = batches[-1]
    assert last.last_offset == len(recs) - 1
    # The summary's header: magic, version, base offset, bytes covered.
    magic, _version, base, covered = struct.unpack(">4sHqq", summary.read_bytes()[:22])
    assert (magic, base) == (b"WSUM", 0)
    assert 0 < covered <= last.position, "the damaged batch must lie after the checkpoint"
    corrupt(active, "flip", last)
    broker.start()
    helpers.wait_for_topic(broker.bootstrap, topic, 1)
    opened = segments_opened(broker)
    assert opened.get("checkpoint", 0) >= 1, opened
    assert re.search("truncat", log_since_last_start(broker, topic), re.IGNORECASE), \
        "the damaged batch after the checkpoint was not found"
    assert helpers.watermarks(broker.bootstrap, topic, 0) == (0, last.base_offset)
    got = read_all(broker.bootstrap, topic, [0])[0]
    assert [m.value for m in got] == [r.value for r in recs[:last.base_offset]]


@pytest.mark.timeout(240)
def test_a_clean_restart_reads_no_segment(own_broker, topic_name):
    """A rolled segment gets a summary of what a start needs of it (offsets, timestamps,
    idempotent producers, transactions), and the active one gets its own at a clean stop:
    the next start opens every segment from its summary and reads no batch. After a SIGKILL
    only what was appended after the newest summary is read (and verified)."""
    topic = topic_name()
    helpers.create_topic(own_broker.bootstrap, topic, partitions=2,
                         config={"segment.bytes": str(SEGMENT_BYTES)})
    payload = os.urandom(1000)
    recs = [Out(b"k%d" % i, b"%06d" % i + payload, [], None, i % 2) for i in range(4000)]
    helpers.produce(own_broker.bootstrap, topic, recs, enable_idempotence=True,
                    batch_num_messages=40)
    assert own_broker.stop() == 0
    segments = {p: own_broker.segment_files(topic, p) for p in (0, 1)}
    total = sum(len(s) for s in segments.values())
    for p, segs in segments.items():
        assert len(segs) >= 2, f"segment.bytes={SEGMENT_BYTES} did not roll partition {p}"
        missing = [s.name for s in segs if not s.with_suffix(".summary").exists()]
        assert not missing, f"segments without a summary after a clean stop: {missing}"

    own_broker.start()
    helpers.wait_for_topic(own_broker.bootstrap, topic, 2)
    opened = segments_opened(own_broker)
    assert opened.get("scan", 0) == 0, opened
    assert opened.get("summary", 0) >= total, opened
    # Every summary stays: appends leave the bytes it covers alone.
    for p, segs in segments.items():
        assert all(s.with_suffix(".summary").exists() for s in segs)
    got = read_all(own_broker.bootstrap, topic, [0, 1])
    for p in (0, 1):
        assert [m.value for m in got[p]] == [r.value for r in recs if r.partition == p]
    assert helpers.produce(own_broker.bootstrap, topic, [Out(b"k", b"after", [], None, 0)],
                           enable_idempotence=True) == [(0, 2000)]

    own_broker.kill()
    own_broker.start()
    helpers.wait_for_topic(own_broker.bootstrap, topic, 2)
    opened = segments_opened(own_broker)
    # Partition 0's newest segment resumes after its summary (one batch read and verified);
    # every other segment of the topic opens from its summary alone.
    assert opened.get("checkpoint", 0) >= 1, opened
    assert opened.get("summary", 0) >= total - 1, opened
    got = read_all(own_broker.bootstrap, topic, [0, 1])
    assert got[0][-1].value == b"after"
    assert len(got[0]) + len(got[1]) == len(recs) + 1
