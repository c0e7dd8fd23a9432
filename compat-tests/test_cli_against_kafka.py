"""The admin CLI against Apache Kafka 4.1 (a single KRaft broker from the Maven Central jars
the benchmark runner resolves): the same subcommands work on the broker users would
otherwise run, which is what "speaks the Kafka protocol to any broker" has to mean."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

import helpers
from conftest import _binary

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from weirbench.brokers import KafkaBroker  # noqa: E402
from weirbench.setup import ensure_kafka  # noqa: E402


@dataclass
class Target:
    binary: Path
    bootstrap: str


@pytest.fixture(scope="module")
def kafka(tmp_path_factory):
    if os.environ.get("WEIR_BOOTSTRAP"):
        pytest.skip("starts its own Kafka broker")
    work = tmp_path_factory.mktemp("kafka")
    lib, problem = ensure_kafka(work / "setup.log", lambda _m: None)
    if lib is None:
        if os.environ.get("CI"):
            pytest.fail(f"Apache Kafka not available: {problem}")
        pytest.skip(f"Apache Kafka not available: {problem}")
    broker = KafkaBroker("kafka", lib, REPO / "bench" / "log4j2.properties", work / "run",
                         work / "data")
    broker.start()
    try:
        yield Target(_binary(), broker.bootstrap)
    finally:
        broker.cleanup()


def weir(target: Target, *args: str, stdin: str | None = None,
         check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([str(target.binary), *args, "--bootstrap-server", target.bootstrap],
                         input=stdin, capture_output=True, text=True, timeout=120)
    if check:
        assert out.returncode == 0, f"weir {' '.join(args)}: {out.returncode}\n{out.stderr}"
    return out


def weir_json(target: Target, *args: str, stdin: str | None = None):
    return json.loads(weir(target, *args, "--format", "json", stdin=stdin).stdout)


def test_every_subcommand_against_kafka(kafka):
    topic = "cli-on-kafka"
    weir(kafka, "topic", "create", topic, "--partitions", "3", "--config", "retention.ms=3600000")
    # Kafka elects the new partitions' leaders asynchronously.
    helpers.wait_for_topic(kafka.bootstrap, topic, 3)
    assert topic in [t["name"] for t in weir_json(kafka, "topic", "list")]
    described = weir_json(kafka, "topic", "describe", topic)
    assert len(described["partitions"]) == 3
    assert described["configs"]["retention.ms"] == "3600000"
    altered = weir_json(kafka, "topic", "alter-config", topic, "--set", "segment.bytes=1048576",
                        "--delete", "retention.ms")
    assert altered["configs"].get("segment.bytes") == "1048576"
    assert "retention.ms" not in altered["configs"]

    lines = "".join(f"k{i % 10}:v{i}\n" for i in range(300))
    assert weir_json(kafka, "produce", topic, "--key-separator", ":", stdin=lines)["records"] == 300
    out = weir(kafka, "consume", topic, "--from-beginning", "--max-messages", "300",
               "--format", r"%k=%v\n")
    assert sorted(out.stdout.splitlines()) == sorted(f"k{i % 10}=v{i}" for i in range(300))

    group = "cli-on-kafka-group"
    consumer = helpers.consumer(kafka.bootstrap, **{"group.id": group,
                                                    "enable.auto.commit": False})
    consumer.subscribe([topic])
    deadline = time.monotonic() + 60
    while len(consumer.assignment()) < 3 and time.monotonic() < deadline:
        consumer.poll(0.2)
    ends = {p["partition"]: p["log_end_offset"]
            for p in weir_json(kafka, "topic", "describe", topic)["partitions"]}
    consumer.commit(offsets=[TopicPartition(topic, p, 0) for p in range(3)], asynchronous=False)
    described = weir_json(kafka, "group", "describe", group)
    assert described["total_lag"] == 300 == sum(ends.values())
    assert len(described["members"]) == 1
    consumer.close()
    assert group in [g["group"] for g in weir_json(kafka, "group", "list")]
    weir(kafka, "group", "seek", group, "--topic", topic, "--to", "latest")
    assert weir_json(kafka, "group", "describe", group)["total_lag"] == 0
    weir(kafka, "group", "delete", group)

    info = weir_json(kafka, "cluster", "info")
    assert info["cluster_id"] and info["brokers"][0]["address"] == kafka.bootstrap
    assert weir(kafka, "diagnose-connection").returncode == 0
    weir(kafka, "topic", "delete", topic)
