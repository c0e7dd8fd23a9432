"""The admin CLI (`weir topic|produce|consume|group|cluster|diagnose-connection`) against a
running broker over TCP, every subcommand, with its answers checked against real clients
(confluent-kafka, kafka-python) and against offsets the test knows."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import ConfigResource
from kafka.partitioner.default import murmur2

import helpers
from conftest import free_port


def weir(broker, *args: str, stdin: str | None = None, check: bool = True,
         timeout: float = 60) -> subprocess.CompletedProcess:
    out = subprocess.run([str(broker.binary), *args, "--bootstrap-server", broker.bootstrap],
                         input=stdin, capture_output=True, text=True, timeout=timeout)
    if check:
        assert out.returncode == 0, f"weir {' '.join(args)}: {out.returncode}\n{out.stderr}"
    return out


def weir_json(broker, *args: str, stdin: str | None = None):
    return json.loads(weir(broker, *args, "--format", "json", stdin=stdin).stdout)


def test_topic_subcommands(broker, topic_name):
    topic = topic_name()
    created = weir_json(broker, "topic", "create", topic, "--partitions", "3",
                        "--config", "retention.ms=3600000")
    assert created["created"] == topic
    listed = weir_json(broker, "topic", "list")
    assert {"name": topic, "partitions": 3} in [
        {"name": t["name"], "partitions": t["partitions"]} for t in listed]
    assert topic in weir(broker, "topic", "list").stdout

    described = weir_json(broker, "topic", "describe", topic)
    assert [p["partition"] for p in described["partitions"]] == [0, 1, 2]
    assert all(p["log_start_offset"] == 0 and p["log_end_offset"] == 0
               for p in described["partitions"])
    assert described["configs"] == {"retention.ms": "3600000"}
    text = weir(broker, "topic", "describe", topic).stdout
    assert "LOG-END-OFFSET" in text and "retention.ms=3600000" in text

    altered = weir_json(broker, "topic", "alter-config", topic, "--set", "segment.bytes=1048576",
                        "--set", "cleanup.policy=delete", "--delete", "retention.ms")
    assert altered["configs"] == {"segment.bytes": "1048576", "cleanup.policy": "delete"}
    # A real client sees the change.
    admin = helpers.admin(broker.bootstrap)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    assert configs["segment.bytes"].value == "1048576"
    assert configs["retention.ms"].is_default
    bad = weir(broker, "topic", "alter-config", topic, "--set", "retention.ms=soon", check=False)
    assert bad.returncode == 1 and "INVALID_CONFIG" in bad.stderr

    duplicate = weir(broker, "topic", "create", topic, check=False)
    assert duplicate.returncode == 1 and "TOPIC_ALREADY_EXISTS" in duplicate.stderr
    assert weir_json(broker, "topic", "delete", topic) == {"deleted": topic}
    helpers.wait_topic_gone(broker.bootstrap, topic)
    missing = weir(broker, "topic", "describe", topic, check=False)
    assert missing.returncode == 1


def test_produce_then_consume(broker, topic_name):
    topic = topic_name()
    weir(broker, "topic", "create", topic, "--partitions", "4")
    lines = "".join(f"key-{i % 50}:value-{i}\n" for i in range(2000))
    summary = weir_json(broker, "produce", topic, "--key-separator", ":", "--header", "src=cli",
                        stdin=lines)
    assert summary["records"] == 2000
    assert sum(p["records"] for p in summary["partitions"]) == 2000

    # Keyed records land where Kafka's default (murmur2) partitioner puts them.
    msgs = helpers.consume(broker.bootstrap, topic, range(4), 2000)
    for m in msgs:
        key = m.key
        assert m.partition == (murmur2(key) & 0x7FFFFFFF) % 4, key
        assert m.value.decode().startswith("value-")
        assert dict(m.headers) == {"src": b"cli"}
    assert sorted(int(m.value.decode()[6:]) for m in msgs) == list(range(2000))

    out = weir(broker, "consume", topic, "--from-beginning", "--max-messages", "2000",
               "--format", r"%p|%o|%k|%v|%h\n")
    rows = [line.split("|") for line in out.stdout.splitlines()]
    assert len(rows) == 2000
    by_offset = {(m.partition, m.offset): (m.key.decode(), m.value.decode()) for m in msgs}
    for p, o, k, v, h in rows:
        assert by_offset[(int(p), int(o))] == (k, v)
        assert h == "src=cli"
    assert "consumed 2000 records" in out.stderr

    # JSON lines, one partition from an offset; and stopping when idle.
    out = weir(broker, "consume", topic, "--partition", "1", "--offset", "3", "--format", "json",
               "--timeout-ms", "1500")
    records = [json.loads(line) for line in out.stdout.splitlines()]
    expected = sorted(o for (p, o) in by_offset if p == 1 and o >= 3)
    assert [r["offset"] for r in records] == expected
    assert all(r["partition"] == 1 and r["headers"] == {"src": "cli"} for r in records)

    # From the end: nothing old, then stops after the idle timeout.
    out = weir(broker, "consume", topic, "--timeout-ms", "1000")
    assert out.stdout == ""


def test_consume_with_a_group_commits_and_resumes(broker, topic_name):
    topic = topic_name()
    weir(broker, "topic", "create", topic, "--partitions", "2")
    weir(broker, "produce", topic, "--partition", "0", stdin="".join(f"a{i}\n" for i in range(30)))
    weir(broker, "produce", topic, "--partition", "1", stdin="".join(f"b{i}\n" for i in range(10)))
    group = f"{topic}-cli"
    first = weir(broker, "consume", topic, "--group", group, "--from-beginning",
                 "--max-messages", "25", "--timeout-ms", "5000")
    assert len(first.stdout.splitlines()) == 25
    second = weir(broker, "consume", topic, "--group", group, "--timeout-ms", "1500")
    assert len(second.stdout.splitlines()) == 15
    assert set(first.stdout.splitlines()).isdisjoint(second.stdout.splitlines())
    described = weir_json(broker, "group", "describe", group)
    assert described["total_lag"] == 0
    assert {(p["partition"], p["current_offset"]) for p in described["partitions"]} == {
        (0, 30), (1, 10)}


def test_group_describe_lag_list_seek_delete(broker, topic_name):
    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, 2)
    counts = {0: 40, 1: 25}
    for p, n in counts.items():
        helpers.produce(broker.bootstrap, topic, [helpers.Out(None, f"{p}-{i}".encode(), [], None, p)
                                                  for i in range(n)])
    group = f"{topic}-group"
    consumer = helpers.consumer(broker.bootstrap, **{"group.id": group,
                                                     "enable.auto.commit": False})
    consumer.subscribe([topic])
    # Wait for the assignment, then commit known offsets while the member is active.
    deadline = time.monotonic() + 30
    while len(consumer.assignment()) < 2 and time.monotonic() < deadline:
        consumer.poll(0.2)
    assert len(consumer.assignment()) == 2
    consumer.commit(offsets=[TopicPartition(topic, 0, 30), TopicPartition(topic, 1, 5)],
                    asynchronous=False)

    described = weir_json(broker, "group", "describe", group)
    assert described["state"] == "Stable" and len(described["members"]) == 1
    rows = {p["partition"]: p for p in described["partitions"]}
    assert (rows[0]["current_offset"], rows[0]["log_end_offset"], rows[0]["lag"]) == (30, 40, 10)
    assert (rows[1]["current_offset"], rows[1]["log_end_offset"], rows[1]["lag"]) == (5, 25, 20)
    assert described["total_lag"] == 30
    assert rows[0]["consumer_id"] == described["members"][0]["member_id"]
    text = weir(broker, "group", "describe", group).stdout
    header = text.splitlines()[1].split()
    assert header[:5] == ["TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"]
    line = next(l.split() for l in text.splitlines()[2:] if l.split()[1] == "0")
    assert line[2:5] == ["30", "40", "10"]

    listed = weir_json(broker, "group", "list")
    assert {"group": group, "state": "Stable"}.items() <= next(
        g for g in listed if g["group"] == group).items()

    # Seek needs an empty group, as Kafka's reset-offsets does.
    refused = weir(broker, "group", "seek", group, "--topic", topic, "--to", "earliest",
                   check=False)
    assert refused.returncode == 1
    consumer.close()
    dry = weir_json(broker, "group", "seek", group, "--topic", topic, "--to", "earliest",
                    "--dry-run")
    assert {p["partition"]: p["new_offset"] for p in dry["partitions"]} == {0: 0, 1: 0}
    assert weir_json(broker, "group", "describe", group)["total_lag"] == 30  # unchanged
    weir(broker, "group", "seek", group, "--topic", topic, "--to", "earliest")
    assert weir_json(broker, "group", "describe", group)["total_lag"] == 65
    weir(broker, "group", "seek", group, "--topic", topic, "--partition", "1", "--to", "7")
    weir(broker, "group", "seek", group, "--topic", topic, "--partition", "0", "--to", "latest")
    rows = {p["partition"]: p for p in weir_json(broker, "group", "describe", group)["partitions"]}
    assert (rows[0]["current_offset"], rows[1]["current_offset"]) == (40, 7)
    # What a real client reads back.
    check = helpers.consumer(broker.bootstrap, **{"group.id": group})
    got = check.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
    check.close()
    assert [tp.offset for tp in got] == [40, 7]

    assert weir_json(broker, "group", "delete", group) == {"deleted": group}
    assert group not in [g["group"] for g in weir_json(broker, "group", "list")]


def test_cluster_info(broker):
    info = weir_json(broker, "cluster", "info")
    md = helpers.admin(broker.bootstrap).list_topics(timeout=10)
    assert info["cluster_id"] == md.cluster_id
    assert info["brokers"] == [{"node_id": b.id, "address": f"{b.host}:{b.port}"}
                               for b in md.brokers.values()]
    assert "Cluster id: " + md.cluster_id in weir(broker, "cluster", "info").stdout


def test_diagnose_connection_finds_a_wrong_advertised_listener(broker, configured_broker):
    ok = weir(broker, "diagnose-connection")
    assert "[ok] broker 0 advertised as" in ok.stdout

    # A broker that advertises an address nobody listens on: bootstrap works, clients fail.
    dead = f"127.0.0.1:{free_port()}"
    wrong = configured_broker(f"advertised_listener: {dead}\n")
    out = weir(wrong, "diagnose-connection", check=False)
    assert out.returncode == 1, out.stdout
    assert f"[FAIL] broker 0 advertised as {dead}: UNREACHABLE" in out.stdout
    assert "advertised_listener" in out.stdout
    report = json.loads(weir(wrong, "diagnose-connection", "--format", "json",
                             check=False).stdout)
    assert report["ok"] is False and report["unreachable"] == [dead]

    nobody = subprocess.run([str(broker.binary), "diagnose-connection", "--bootstrap-server",
                             f"127.0.0.1:{free_port()}", "--request-timeout-ms", "2000"],
                            capture_output=True, text=True, timeout=30)
    assert nobody.returncode == 1 and "[FAIL] bootstrap" in nobody.stdout


def test_bad_usage_exits_2(broker):
    out = weir(broker, "group", "seek", "g", "--topic", "t", "--to", "yesterday", check=False)
    assert out.returncode == 2 and "--to yesterday" in out.stderr
    out = weir(broker, "consume", "t", "--format", "%x", check=False)
    assert out.returncode == 2
