"""`log_write_io: direct` (O_DIRECT segment writes) with real clients: a tailing consumer
reads every record while they are written (the partial last block is served from memory),
segments roll, a SIGKILL loses nothing acknowledged, and the zero padding past the data is
dropped quietly at restart."""

from __future__ import annotations

import threading
import time

import helpers
from helpers import Out

PARTITIONS = 2
RECORDS = 12_000


def values(start: int, count: int) -> list[Out]:
    # Sizes from 1 byte to ~3 KiB, so appends end at every position within a 4 KiB block.
    return [Out(f"k{i}".encode(), bytes([65 + i % 26]) * (1 + (i * 37) % 3000), [], None,
                i % PARTITIONS) for i in range(start, start + count)]


def check(msgs, expected: list[Out]):
    by_key = {m.key: m for m in msgs}
    assert len(by_key) == len(expected)
    for out in expected:
        m = by_key[out.key]
        assert m.value == out.value and m.partition == out.partition


def test_direct_writes_tail_reads_and_sigkill(configured_broker, topic_name):
    broker = configured_broker("log_write_io: direct\nlog_segment_bytes: 2097152\n")
    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, PARTITIONS)

    # A consumer tails the topic while a producer writes it.
    tailed = []
    stop = threading.Event()

    def tail():
        c = helpers.consumer(broker.bootstrap)
        c.assign([helpers.TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        while not stop.is_set() or len(tailed) < RECORDS:
            for m in c.consume(num_messages=1000, timeout=0.2):
                assert m.error() is None, m.error()
                tailed.append(helpers._to_msg(m))
            if stop.is_set() and time.monotonic() > deadline:
                break
        c.close()

    deadline = time.monotonic() + 120
    reader = threading.Thread(target=tail)
    reader.start()
    first = values(0, RECORDS)
    for i in range(0, RECORDS, 500):
        helpers.produce(broker.bootstrap, topic, first[i:i + 500])
    stop.set()
    reader.join(timeout=150)
    check(tailed, first)
    segments = list(broker.data_dir.glob(f"{topic}-0/*.log"))
    assert len(segments) > 1, "expected the small segments to roll"

    broker.kill()
    broker.start()
    assert "truncated a torn" not in broker.log_text().rsplit("===== start #", 1)[-1]
    more = values(RECORDS, 2000)
    helpers.produce(broker.bootstrap, topic, more)
    total = RECORDS + 2000
    msgs = helpers.consume(broker.bootstrap, topic, range(PARTITIONS), total, timeout=90)
    check(msgs, first + more)
    # Offsets stay gapless per partition across the restart.
    for p, ms in helpers.by_partition(msgs).items():
        assert [m.offset for m in sorted(ms, key=lambda m: m.offset)] == list(range(len(ms)))
