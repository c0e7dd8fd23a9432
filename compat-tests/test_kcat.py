"""Debian's kcat (librdkafka 2.0.2, which cannot skip unknown tagged fields and
disables compression when Produce's minimum version is above 0)."""

import json
import shutil
import subprocess

import pytest

import helpers
import wire

KCAT = shutil.which("kcat")
pytestmark = pytest.mark.skipif(KCAT is None, reason="kcat not installed")


def kcat(broker, *args, stdin: bytes | None = None, timeout: float = 30) -> str:
    proc = subprocess.run([KCAT, "-b", broker.bootstrap, *args], input=stdin,
                          capture_output=True, timeout=timeout)
    assert proc.returncode == 0, (f"kcat {' '.join(args)} exited {proc.returncode}:\n"
                                  f"{proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode()


def test_kcat_metadata(broker, topic_name):
    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, partitions=3)
    md = json.loads(kcat(broker, "-L", "-J", "-t", topic))
    (b,) = md["brokers"]
    assert b["name"] == broker.bootstrap
    assert md["controllerid"] == b["id"]
    (t,) = md["topics"]
    assert t["topic"] == topic
    assert [p["partition"] for p in t["partitions"]] == [0, 1, 2]
    for p in t["partitions"]:
        assert p["leader"] == b["id"]
        assert p["replicas"] == [{"id": b["id"]}]
        assert p["isrs"] == [{"id": b["id"]}]
        assert "error" not in p
    # Plain-text listing of everything works too.
    text = kcat(broker, "-L")
    assert " 1 brokers:" in text
    assert f'topic "{topic}" with 3 partitions:' in text


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_kcat_produce_consume(broker, topic_name, codec):
    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, partitions=1)
    lines = [f"key{i}:value-{i}-" + "x" * (i % 50) for i in range(200)]
    kcat(broker, "-P", "-t", topic, "-p", "0", "-K:", "-z", codec,
         "-X", "linger.ms=50", stdin=("\n".join(lines) + "\n").encode())
    out = kcat(broker, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q",
               "-f", "%o|%k|%s\\n")
    got = out.splitlines()
    assert got == [f"{i}|{line.replace(':', '|', 1)}" for i, line in enumerate(lines)]
    assert helpers.watermarks(broker.bootstrap, topic, 0) == (0, 200)
    if broker.data_dir is not None:
        # librdkafka < 2.11.1 silently stops compressing if Produce's
        # advertised minimum is above 0: the stored batches tell.
        batches = []
        for seg in broker.segment_files(topic, 0):
            batches += wire.parse_batches(seg.read_bytes())[0]
        assert {b.compression for b in batches} == {wire.COMPRESSION_CODES[codec]}
        assert sum(b.record_count for b in batches) == 200


def test_kcat_consume_with_headers_and_keys(broker, topic_name):
    """Records produced by another client, read by kcat with keys, headers, timestamps."""
    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, partitions=1)
    ts = helpers.now_ms() - 5000
    recs = [helpers.Out(b"k%d" % i, b"v%d" % i, [("h", b"hv%d" % i)], ts + i, 0) for i in range(5)]
    helpers.produce(broker.bootstrap, topic, recs, compression_type="lz4")
    out = kcat(broker, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q",
               "-f", "%o %k %s %T %h\\n")
    assert out.splitlines() == [f"{i} k{i} v{i} {ts + i} h=hv{i}" for i in range(5)]
