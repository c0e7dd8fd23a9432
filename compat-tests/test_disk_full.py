"""A data directory that fills up, on a real file system (a tmpfs mounted for the
test) with real clients: produce is refused with KAFKA_STORAGE_ERROR before the
disk is full, nothing acknowledged is lost, consumers keep reading, and a
producer that kept retrying gets through once space is freed, without a restart.
Figures go to target/reliability/disk-full.json."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError

import helpers

TMPFS_BYTES = 64 << 20
MIN_FREE = 16 << 20
# Written before the broker starts and deleted to "free space".
BALLAST = 12 << 20
VALUE = 1024
RESUME_RECORDS = 500


def available(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def value(tag: str, i: int) -> bytes:
    head = f"{tag}-{i:08d}-".encode()
    return head + b"x" * (VALUE - len(head))


@pytest.fixture
def tmpfs_data(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs",
                            str(data)], capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mount.stderr.strip()}); "
                    "tests/storage_faults.rs covers the same behaviour on a simulated disk")
    yield data
    subprocess.run(["umount", "-l", str(data)], check=False)


def test_a_full_disk_refuses_produce_and_resumes_once_space_is_freed(tmpfs_data, configured_broker,
                                                                    topic_name):
    ballast = tmpfs_data / "ballast.bin"
    ballast.write_bytes(b"\0" * BALLAST)
    broker = configured_broker(f"disk_min_free_bytes: {MIN_FREE}\n"
                               f"write_queue_max_bytes: {4 << 20}\n"
                               "log_segment_bytes: 4194304\n")
    assert broker.data_dir == tmpfs_data
    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, 1)

    # Fill: no retries, so the refusal reaches the delivery report.
    acked: dict[int, bytes] = {}
    errors: list[KafkaError] = []

    def report(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked[msg.offset()] = msg.value()

    p = helpers.producer(broker.bootstrap, retries=0, linger_ms=2)
    sent = 0
    while not errors:
        assert sent < TMPFS_BYTES // VALUE, "produce was never refused"
        for _ in range(500):
            p.produce(topic, value=value("fill", sent), partition=0, on_delivery=report)
            sent += 1
        assert p.flush(30) == 0
    free_at_refusal = available(tmpfs_data)
    codes = {e.code() for e in errors}
    assert codes == {KafkaError.KAFKA_STORAGE_ERROR}, codes
    assert free_at_refusal > 0, "the disk filled up: the guard did not refuse in time"
    assert "write to the log failed" not in broker.log_text(), "the writer hit ENOSPC"
    n_acked = len(acked)
    assert sorted(acked) == list(range(n_acked)), "acknowledged offsets are not gapless"

    # Consumers keep reading everything acknowledged.
    msgs = helpers.consume(broker.bootstrap, topic, [0], n_acked, settle=0.2)
    assert [(m.offset, m.value) for m in msgs] == sorted(acked.items())

    # A retrying producer is held off while space is low...
    resumed: dict[int, bytes] = {}
    resume_errors: list = []
    retrying = helpers.producer(broker.bootstrap, message_timeout_ms=120000)
    for i in range(RESUME_RECORDS):
        retrying.produce(topic, value=value("resume", i), partition=0,
                         on_delivery=lambda err, msg: resume_errors.append(err) if err
                         else resumed.__setitem__(msg.offset(), msg.value()))
    held_until = time.monotonic() + 2.0
    while time.monotonic() < held_until:
        retrying.poll(0.1)
    assert not resumed and not resume_errors, "produce was accepted while space was low"

    # ... and gets through once space is freed, without a restart.
    ballast.unlink()
    freed_at = time.monotonic()
    assert retrying.flush(60) == 0
    resume_s = time.monotonic() - freed_at
    assert not resume_errors, resume_errors[:3]
    assert sorted(resumed) == list(range(n_acked, n_acked + RESUME_RECORDS))
    msgs = helpers.consume(broker.bootstrap, topic, [0], n_acked + RESUME_RECORDS, settle=0.2)
    expected = sorted({**acked, **resumed}.items())
    assert [(m.offset, m.value) for m in msgs] == expected

    # And all of it comes back after a kill -9.
    broker.kill()
    broker.start()
    msgs = helpers.consume(broker.bootstrap, topic, [0], len(expected), settle=0.2)
    assert [(m.offset, m.value) for m in msgs] == expected

    helpers.save_figures("disk-full", {
        "file_system_bytes": TMPFS_BYTES,
        "disk_min_free_bytes": MIN_FREE,
        "acked_before_refusal": n_acked,
        "refused_sends": len(errors),
        "free_bytes_at_refusal": free_at_refusal,
        "records_read_back": len(expected),
        "lost": 0,
        "resume_records": RESUME_RECORDS,
        "resume_after_free_s": round(resume_s, 3),
    })
