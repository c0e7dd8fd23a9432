"""The real Apache Kafka Java client (kafka-clients 4.1) against the broker.

Drives compat-tests/java (JavaClientCompat, built into one fat jar by
`mvn -q -B -f compat-tests/java/pom.xml package -DskipTests`) as a subprocess:
every subcommand prints JSON lines on stdout, the last being a summary with
"ok". Records are a pure function of their index i (key "k-<i>", value
"v-<i>-" + padding to 100 bytes, headers idx=<i> and src=weir-java-compat,
timestamp base+i), so the Java consumer verifies content, per-partition order
and gapless offsets itself and the tests assert on its summary.

Skips (with the reason) when `java` or the jar is missing. WEIR_JAVA_COMPAT_JAR
points at another jar; WEIR_JAVA_OPTS adds JVM options (for example
-Dorg.slf4j.simpleLogger.log.org.apache.kafka.clients.NetworkClient=debug to
log every request header the client sends, on stderr).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
JAR = Path(os.environ.get("WEIR_JAVA_COMPAT_JAR", HERE / "java" / "target" / "weir-java-compat.jar"))
JAVA = shutil.which("java")
BUILD_HINT = "mvn -q -B -f compat-tests/java/pom.xml package -DskipTests"

# Keep each client JVM small and light on the 2 cores.
JVM_OPTS = ["-Xmx512m", "-XX:+UseSerialGC", "-XX:ActiveProcessorCount=2",
            *shlex.split(os.environ.get("WEIR_JAVA_OPTS", ""))]

BIG_COUNT = 100_000
SMALL_COUNT = 2_000
VALUE_SIZE = 100  # the jar's default --value-size
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
# The Java client's default partitioner is murmur2(key) % partitions, so the
# split of keys "k-0".."k-99999" over 3 partitions is fixed.
BIG_SPLIT = {"0": 33138, "1": 33394, "2": 33468}


def _skip_reason() -> str | None:
    if JAVA is None:
        return "java not found on PATH (install a JDK 17+ to run the Java client tests)"
    if not JAR.is_file():
        return f"Java compat jar not built: {JAR} is missing (build it with: {BUILD_HINT})"
    return None


_SKIP = _skip_reason()
if _SKIP:
    print(f"test_java_client.py: skipping: {_SKIP}", file=sys.stderr)

_marks = [pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]
if importlib.util.find_spec("pytest_timeout") is not None:
    # JVM start-up per call plus 100k records both ways on a slow broker.
    _marks.append(pytest.mark.timeout(600))
pytestmark = _marks


class JavaFailed(AssertionError):
    pass


def run_java(cmd: str, *args: str, bootstrap: str | None = None, check: bool = True,
             timeout: float = 300) -> dict:
    """Runs one subcommand; returns its summary (last JSON line) with rc/stderr attached."""
    argv = [JAVA, *JVM_OPTS, "-jar", str(JAR), cmd]
    if bootstrap is not None:
        argv += ["--bootstrap", bootstrap]
    argv += list(args)
    t0 = time.monotonic()
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    summary = dict(lines[-1]) if lines else {"ok": False, "error": "no JSON output"}
    summary["_rc"] = proc.returncode
    summary["_stderr"] = proc.stderr
    summary["_seconds"] = round(time.monotonic() - t0, 2)
    if check and (proc.returncode != 0 or not summary.get("ok")):
        raise JavaFailed(
            f"java {cmd} failed (rc={proc.returncode}): {summary.get('error') or summary.get('errors')}\n"
            f"argv: {' '.join(argv)}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}")
    return summary


def unique(name: str) -> str:
    return f"java-{name}-{uuid.uuid4().hex[:8]}"


def create_topic(bootstrap: str, topic: str, partitions: int, *configs: str) -> dict:
    args = ["--topic", topic, "--partitions", str(partitions)]
    for c in configs:
        args += ["--config", c]
    out = run_java("create-topic", *args, bootstrap=bootstrap)
    assert out["topic"] == topic
    assert out["already_existed"] is False
    assert out["partitions"] == partitions
    assert out["replication_factor"] == 1
    assert sorted(out["leaders"]) == [str(p) for p in range(partitions)]
    assert all(isinstance(l, int) and l >= 0 for l in out["leaders"].values()), out["leaders"]
    return out


def delete_quietly(bootstrap: str, topic: str):
    try:
        run_java("delete-topic", "--topic", topic, "--if-exists", bootstrap=bootstrap,
                 check=False, timeout=60)
    except subprocess.TimeoutExpired:
        pass


def check_produce(out: dict, count: int, partitions: int, acks: str = "all"):
    assert out["count"] == count, out
    assert out["failed"] == 0 and out["errors"] == []
    parts = out["partitions"]
    assert set(parts) <= {str(p) for p in range(partitions)}
    assert sum(p["count"] for p in parts.values()) == count
    for p, s in parts.items():
        if acks == "0":
            # No response, so no offsets.
            assert s["first_offset"] is None and s["last_offset"] is None, (p, s)
        else:
            # Fresh topic, one producer: offsets are 0..n-1 in every partition.
            assert s["first_offset"] == 0, (p, s)
            assert s["last_offset"] == s["count"] - 1, (p, s)
    if acks != "0":
        assert out["offsets_contiguous"] is True


def check_consume(out: dict, count: int, per_partition: dict[str, int]):
    assert out["errors"] == [], out["errors"]
    assert out["error_count"] == 0
    assert out["count"] == count
    assert out["distinct"] == count
    for p, s in out["partitions"].items():
        n = per_partition.get(p, 0)
        assert s["count"] == n, (p, s)
        assert s["beginning_offset"] == 0, (p, s)
        assert s["end_offset"] == n, (p, s)
        assert s["position"] == n, (p, s)
        if n:
            assert (s["first_offset"], s["last_offset"]) == (0, n - 1), (p, s)
    assert out["bytes"] == sum(len(f"k-{i}") + VALUE_SIZE for i in range(count))


def check_end_offsets(out: dict, per_partition: dict[str, int], partitions: int):
    assert sorted(out["partitions"]) == [str(p) for p in range(partitions)]
    for p, s in out["partitions"].items():
        assert s == {"beginning": 0, "end": per_partition.get(p, 0)}, (p, s)
    assert out["total"] == sum(per_partition.values())


# ---------------------------------------------------------------------------
# metadata


def test_java_metadata(broker):
    out = run_java("metadata", bootstrap=broker.bootstrap)
    print("java client metadata:", json.dumps({k: v for k, v in out.items() if not k.startswith("_")}))
    assert out["client_version"].startswith("4.")
    assert isinstance(out["cluster_id"], str) and out["cluster_id"], out["cluster_id"]
    nodes = out["nodes"]
    assert len(nodes) >= 1
    ids = {n["id"] for n in nodes}
    assert len(ids) == len(nodes)
    assert all(n["id"] >= 0 and n["host"] and n["port"] > 0 for n in nodes), nodes
    # The broker advertises the port we dialled.
    assert broker.port in {n["port"] for n in nodes}, nodes
    assert out["controller"] is not None and out["controller"]["id"] in ids, out["controller"]
    assert isinstance(out["topics"], list)
    assert not any(t.startswith("__") for t in out["topics"]), "internal topics listed without --internal"


# ---------------------------------------------------------------------------
# 100k records, acks=all, 3 partitions


@pytest.fixture(scope="module")
def big(broker):
    """A 3-partition topic holding BIG_COUNT records produced with acks=all."""
    topic = unique("big")
    created = create_topic(broker.bootstrap, topic, 3)
    base_ts = int(time.time() * 1000) - BIG_COUNT - 60_000
    produced = run_java("produce", "--topic", topic, "--count", str(BIG_COUNT), "--acks", "all",
                        "--base-timestamp", str(base_ts), bootstrap=broker.bootstrap, check=False)
    yield {"topic": topic, "created": created, "produced": produced, "base_ts": base_ts}
    delete_quietly(broker.bootstrap, topic)


@pytest.mark.slow
def test_java_create_and_describe_topic(broker, big):
    assert big["created"]["topic_id"] not in ("", "AAAAAAAAAAAAAAAAAAAAAA")
    out = run_java("describe-topic", "--topic", big["topic"], bootstrap=broker.bootstrap)
    assert out["topic"] == big["topic"]
    assert out["topic_id"] == big["created"]["topic_id"]
    assert out["internal"] is False
    assert out["partition_count"] == 3
    node_ids = {n["id"] for n in run_java("metadata", bootstrap=broker.bootstrap)["nodes"]}
    assert [p["partition"] for p in out["partitions"]] == [0, 1, 2]
    for p in out["partitions"]:
        assert p["leader"] in node_ids, p
        assert p["replicas"] == [p["leader"]], p
        assert p["isr"] == [p["leader"]], p
    listed = run_java("metadata", bootstrap=broker.bootstrap)["topics"]
    assert big["topic"] in listed


@pytest.mark.slow
def test_java_produce_100k_acks_all(big):
    out = big["produced"]
    assert out["_rc"] == 0 and out["ok"] is True, (out.get("errors"), out["_stderr"][-3000:])
    check_produce(out, BIG_COUNT, 3)
    assert {p: s["count"] for p, s in out["partitions"].items()} == BIG_SPLIT
    assert out["base_timestamp"] == big["base_ts"]
    print(f"produced {BIG_COUNT} in {out['elapsed_ms']} ms ({out['records_per_sec']} rec/s)")


@pytest.mark.slow
def test_java_consume_100k(broker, big):
    assert big["produced"]["ok"], "produce failed; see test_java_produce_100k_acks_all"
    out = run_java("consume", "--topic", big["topic"], "--expect", str(BIG_COUNT),
                   "--timeout-ms", "240000", "--base-timestamp", str(big["base_ts"]),
                   bootstrap=broker.bootstrap, timeout=400)
    check_consume(out, BIG_COUNT, BIG_SPLIT)
    print(f"consumed {BIG_COUNT} in {out['elapsed_ms']} ms")


@pytest.mark.slow
def test_java_end_offsets_100k(broker, big):
    assert big["produced"]["ok"], "produce failed; see test_java_produce_100k_acks_all"
    out = run_java("end-offsets", "--topic", big["topic"], bootstrap=broker.bootstrap)
    check_end_offsets(out, BIG_SPLIT, 3)


@pytest.mark.slow
def test_java_offsets_for_times_multi_partition(broker, big):
    assert big["produced"]["ok"], "produce failed; see test_java_produce_100k_acks_all"
    base = big["base_ts"]
    # Before everything: the first record of each partition.
    out = run_java("offsets-for-times", "--topic", big["topic"], "--timestamp", str(base - 1000),
                   bootstrap=broker.bootstrap)
    for p, s in out["partitions"].items():
        assert s is not None and s["offset"] == 0, (p, s)
        assert base <= s["timestamp"] < base + 100, (p, s)
    # Middle: per partition, the first record whose timestamp is >= the target.
    target = base + BIG_COUNT // 2
    out = run_java("offsets-for-times", "--topic", big["topic"], "--timestamp", str(target),
                   bootstrap=broker.bootstrap)
    for p, s in out["partitions"].items():
        assert s is not None, p
        assert 0 < s["offset"] < BIG_SPLIT[p], (p, s)
        assert target <= s["timestamp"] < target + 100, (p, s)
    # After the newest record: no offset.
    out = run_java("offsets-for-times", "--topic", big["topic"], "--timestamp",
                   str(base + BIG_COUNT + 1000), bootstrap=broker.bootstrap)
    assert out["partitions"] == {"0": None, "1": None, "2": None}


# ---------------------------------------------------------------------------
# smaller round trips


@pytest.mark.parametrize("codec", CODECS)
def test_java_compression_round_trip(broker, codec):
    topic = unique(f"codec-{codec}")
    create_topic(broker.bootstrap, topic, 3)
    try:
        base_ts = int(time.time() * 1000) - SMALL_COUNT
        out = run_java("produce", "--topic", topic, "--count", str(SMALL_COUNT), "--acks", "all",
                       "--compression", codec, "--base-timestamp", str(base_ts),
                       bootstrap=broker.bootstrap)
        assert out["compression"] == codec
        check_produce(out, SMALL_COUNT, 3)
        split = {p: s["count"] for p, s in out["partitions"].items()}
        assert len(split) == 3, split
        got = run_java("consume", "--topic", topic, "--expect", str(SMALL_COUNT),
                       "--base-timestamp", str(base_ts), bootstrap=broker.bootstrap)
        check_consume(got, SMALL_COUNT, split)
        ends = run_java("end-offsets", "--topic", topic, bootstrap=broker.bootstrap)
        check_end_offsets(ends, split, 3)
    finally:
        delete_quietly(broker.bootstrap, topic)


@pytest.mark.parametrize("acks", ["1", "0"])
def test_java_acks_round_trip(broker, acks):
    topic = unique(f"acks{acks}")
    create_topic(broker.bootstrap, topic, 2)
    try:
        out = run_java("produce", "--topic", topic, "--count", "1000", "--acks", acks,
                       bootstrap=broker.bootstrap)
        check_produce(out, 1000, 2, acks=acks)
        split = {p: s["count"] for p, s in out["partitions"].items()}
        # acks=0 is fire-and-forget: the close() flush sent everything, but the
        # broker may still be appending, so let the consumer wait for it.
        got = run_java("consume", "--topic", topic, "--expect", "1000", "--timeout-ms", "60000",
                       bootstrap=broker.bootstrap)
        check_consume(got, 1000, split)
    finally:
        delete_quietly(broker.bootstrap, topic)


def test_java_offsets_for_times_exact(broker):
    """One partition: record i sits at offset i with timestamp base+i."""
    topic = unique("times")
    create_topic(broker.bootstrap, topic, 1)
    try:
        base = int(time.time() * 1000) - 100_000
        run_java("produce", "--topic", topic, "--count", str(SMALL_COUNT), "--base-timestamp", str(base),
                 bootstrap=broker.bootstrap)

        def lookup(ts):
            out = run_java("offsets-for-times", "--topic", topic, "--timestamp", str(ts),
                           bootstrap=broker.bootstrap)
            assert out["timestamp"] == ts
            return out["partitions"]["0"]

        hit = lookup(base + 1234)
        assert (hit["offset"], hit["timestamp"]) == (1234, base + 1234)
        first = lookup(base - 5000)
        assert (first["offset"], first["timestamp"]) == (0, base)
        last = lookup(base + SMALL_COUNT - 1)
        assert (last["offset"], last["timestamp"]) == (SMALL_COUNT - 1, base + SMALL_COUNT - 1)
        assert lookup(base + SMALL_COUNT) is None
        ends = run_java("end-offsets", "--topic", topic, bootstrap=broker.bootstrap)
        check_end_offsets(ends, {"0": SMALL_COUNT}, 1)
    finally:
        delete_quietly(broker.bootstrap, topic)


def test_java_describe_configs(broker):
    topic = unique("configs")
    create_topic(broker.bootstrap, topic, 1, "retention.ms=3600000")
    try:
        out = run_java("describe-configs", "--topic", topic, bootstrap=broker.bootstrap)
        assert out["resource_type"] == "TOPIC" and out["resource"] == topic
        entries = {e["name"]: e for e in out["configs"]}
        print("describe-configs:", {n: (e["value"], e["source"]) for n, e in sorted(entries.items())})
        for name in ("retention.ms", "segment.bytes", "cleanup.policy"):
            assert name in entries, f"{name} missing from {sorted(entries)}"
        # Set at creation: reported as a per-topic override.
        assert entries["retention.ms"]["value"] == "3600000"
        assert entries["retention.ms"]["source"] == "DYNAMIC_TOPIC_CONFIG"
        assert entries["retention.ms"]["default"] is False
        # Not set: Kafka's defaults, from the broker's defaults or config.
        assert entries["cleanup.policy"]["value"] == "delete"
        assert entries["segment.bytes"]["value"] == "1073741824"
        for name in ("segment.bytes", "cleanup.policy"):
            assert entries[name]["source"] in ("DEFAULT_CONFIG", "STATIC_BROKER_CONFIG",
                                               "DYNAMIC_DEFAULT_BROKER_CONFIG"), entries[name]
            assert entries[name]["sensitive"] is False
        assert out["values"]["retention.ms"] == "3600000"
    finally:
        delete_quietly(broker.bootstrap, topic)


def test_java_delete_topic(broker):
    topic = unique("delete")
    create_topic(broker.bootstrap, topic, 2)
    run_java("produce", "--topic", topic, "--count", "10", bootstrap=broker.bootstrap)
    assert topic in run_java("metadata", bootstrap=broker.bootstrap)["topics"]
    out = run_java("delete-topic", "--topic", topic, bootstrap=broker.bootstrap)
    assert out["existed"] is True and out["gone"] is True
    assert topic not in run_java("metadata", bootstrap=broker.bootstrap)["topics"]
    gone = run_java("describe-topic", "--topic", topic, bootstrap=broker.bootstrap, check=False)
    assert gone["_rc"] == 1 and gone["ok"] is False
    assert gone["exception"].endswith("UnknownTopicOrPartitionException"), gone
    # Deleting again is an error the client reports as such.
    again = run_java("delete-topic", "--topic", topic, bootstrap=broker.bootstrap, check=False)
    assert again["_rc"] == 1
    assert again["exception"].endswith("UnknownTopicOrPartitionException"), again


# ---------------------------------------------------------------------------
# consumer groups


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_java_group_consumer_commits_its_offsets(broker, protocol):
    """A Java consumer in a group, with the classic protocol and with KIP-848's
    `group.protocol=consumer`: it is assigned every partition, reads everything, and its
    auto-commit leaves the group's committed offsets at the end of each partition."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    import helpers

    topic = unique(f"group-{protocol}")
    group = f"java-{protocol}-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, 3)
    try:
        out = run_java("produce", "--topic", topic, "--count", str(SMALL_COUNT), "--acks", "all",
                       bootstrap=broker.bootstrap)
        split = {p: s["count"] for p, s in out["partitions"].items()}
        got = run_java("consume", "--topic", topic, "--expect", str(SMALL_COUNT),
                       "--group", group, "--group-protocol", protocol,
                       "--prop", "enable.auto.commit=true", bootstrap=broker.bootstrap)
        check_consume(got, SMALL_COUNT, split)
        adm = helpers.admin(broker.bootstrap)
        listed = adm.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
        committed = {tp.partition: tp.offset
                     for tp in listed.result(timeout=30).topic_partitions}
        assert committed == {int(p): n for p, n in split.items()}
    finally:
        delete_quietly(broker.bootstrap, topic)


# ---------------------------------------------------------------------------
# transactions


def test_java_transactions_commit_and_abort(broker):
    """The Java client's transactional producer: every third transaction aborted. A
    read_committed consumer sees exactly the committed records, read_uncommitted all."""
    import helpers

    topic = unique("txn")
    create_topic(broker.bootstrap, topic, 2)
    try:
        out = run_java("txn-produce", "--topic", topic,
                       "--transactional-id", f"java-{uuid.uuid4().hex[:8]}",
                       "--transactions", "9", "--per-transaction", "50", "--abort-every", "3",
                       bootstrap=broker.bootstrap)
        assert (out["committed"], out["aborted"]) == (300, 150), out
        committed = helpers.consume(broker.bootstrap, topic, [0, 1], 300, settle=1.0,
                                    isolation_level="read_committed")
        assert sorted(m.value for m in committed) == sorted(
            f"c-{t}-{i}".encode() for t in range(9) if (t + 1) % 3 for i in range(50))
        everything = helpers.consume(broker.bootstrap, topic, [0, 1], 450, settle=1.0,
                                     isolation_level="read_uncommitted")
        assert len(everything) == 450
    finally:
        delete_quietly(broker.bootstrap, topic)
