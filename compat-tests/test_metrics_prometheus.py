"""Metrics as an operator sees them: a real Prometheus server (Debian's `prometheus`,
installed by scripts/test) scrapes a running broker while real clients produce, consume
and commit, and every check goes through Prometheus's HTTP query API. The values must
match the traffic exactly where the traffic is known (records produced, committed lag)
and be sane where it is not (latency quantiles, fsync times, group commit sizes).
Also: /health, /ready and `weir healthcheck`, and every exported family is documented."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

import helpers
from conftest import _die_with_parent, free_port

PARTITIONS = 4
PRODUCED = 20_000
CONSUMED = 12_000
ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "metrics.md"
DASHBOARD = ROOT / "config" / "grafana" / "weir-dashboard.json"


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Prometheus:
    def __init__(self, workdir: Path, target: str):
        self.binary = shutil.which("prometheus")
        if self.binary is None:
            if os.environ.get("CI"):
                pytest.fail("prometheus is not installed; scripts/test installs it with apt-get")
            pytest.skip("prometheus not installed (scripts/test installs it)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: weir\n"
            f"    static_configs:\n      - targets: ['{target}']\n")
        self.log = workdir / "prometheus.log"
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdin=subprocess.DEVNULL, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if http_get(f"{self.url}/-/ready", timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready:\n{self.log.read_text()[-3000:]}")

    def query(self, promql: str) -> list[dict]:
        status, body = http_get(f"{self.url}/api/v1/query?"
                                + urllib.parse.urlencode({"query": promql}))
        assert status == 200, body
        data = json.loads(body)
        assert data["status"] == "success", data
        return data["data"]["result"]

    def scalar(self, promql: str) -> float | None:
        result = self.query(promql)
        if not result:
            return None
        assert len(result) == 1, (promql, result)
        return float(result[0]["value"][1])

    def wait_for(self, promql: str, ok, timeout: float = 30.0) -> float:
        """Polls until `ok(value)`: Prometheus scrapes every second."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.scalar(promql)
            if value is not None and ok(value):
                return value
            time.sleep(0.5)
        raise AssertionError(f"{promql} = {value} after {timeout}s")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def prometheus_for(tmp_path):
    started: list[Prometheus] = []

    def start(target: str) -> Prometheus:
        p = Prometheus(tmp_path, target)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def test_prometheus_scrapes_metrics_that_match_the_traffic(configured_broker, prometheus_for,
                                                           topic_name):
    broker = configured_broker("metrics_per_partition: true\n")
    target = f"{broker.host}:{broker.metrics_port}"
    prom = prometheus_for(target)
    prom.wait_for('up{job="weir"}', lambda v: v == 1)

    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, PARTITIONS)
    # A known error: creating the topic again.
    admin = helpers.admin(broker.bootstrap)  # must outlive its futures
    futures = admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    with pytest.raises(KafkaException, match="TOPIC_ALREADY_EXISTS"):
        futures[topic].result(timeout=20)

    producer = helpers.producer(broker.bootstrap, acks="all", linger_ms=5)
    value = b"v" * 200
    # In rounds across several 1 s scrapes, so rates and histogram increases have samples
    # before, during and after the traffic.
    rounds = 5
    for r in range(rounds):
        for i in range(r * PRODUCED // rounds, (r + 1) * PRODUCED // rounds):
            producer.produce(topic, value=value, key=str(i).encode())
            if i % 1000 == 0:
                producer.poll(0)
        assert producer.flush(60) == 0
        time.sleep(1.5)

    group = f"{topic}-group"
    consumer = helpers.consumer(broker.bootstrap, **{"group.id": group,
                                                     "enable.auto.commit": False})
    consumer.subscribe([topic])
    next_offsets: dict[int, int] = {}
    seen = 0
    deadline = time.monotonic() + 60
    while seen < CONSUMED and time.monotonic() < deadline:
        for m in consumer.consume(num_messages=min(500, CONSUMED - seen), timeout=1.0):
            assert m.error() is None, m.error()
            next_offsets[m.partition()] = m.offset() + 1
            seen += 1
    assert seen == CONSUMED
    # Lag counts committed partitions (as Kafka's tools do): commit every partition, 0 for
    # one not read from yet.
    assert len(consumer.assignment()) == PARTITIONS
    consumer.commit(offsets=[TopicPartition(topic, p, next_offsets.get(p, 0))
                             for p in range(PARTITIONS)], asynchronous=False)
    lag = PRODUCED - CONSUMED

    # Exact where the traffic is known (a scrape after the traffic).
    produced = prom.wait_for(f'sum(weir_produced_records_total{{topic="{topic}"}})',
                             lambda v: v >= PRODUCED)
    assert produced == PRODUCED
    prom.wait_for(f'weir_consumer_group_lag_sum{{group="{group}"}}', lambda v: v == lag)
    assert prom.scalar(f'sum(weir_consumer_group_committed_offset{{group="{group}"}})') == CONSUMED
    assert prom.scalar(f'sum(weir_consumer_group_partition_lag{{group="{group}"}})') == lag
    assert prom.scalar(f'weir_consumer_group_lag_max{{group="{group}"}}') == prom.scalar(
        f'max(weir_consumer_group_partition_lag{{group="{group}"}})')
    assert prom.scalar(f'weir_topic_high_watermark_sum{{topic="{topic}"}}') == PRODUCED
    assert prom.scalar(f'sum(weir_partition_high_watermark{{topic="{topic}"}})') == PRODUCED
    assert prom.scalar(f'weir_consumer_group_members{{group="{group}"}}') == 1
    assert prom.scalar(f'sum(weir_fetched_records_total{{topic="{topic}"}})') >= CONSUMED
    # The consumer read a backlog nobody tailed: large spans went out of the segment files
    # with sendfile, a part of what was fetched (read first: the counters only grow).
    sent_from_files = prom.scalar("weir_fetch_sendfile_bytes_total")
    assert 0 < sent_from_files <= prom.scalar(
        f'sum(weir_fetched_bytes_total{{topic="{topic}"}})')
    assert prom.scalar(
        'weir_request_errors_total{api="CreateTopics",error="TOPIC_ALREADY_EXISTS"}') == 1, \
        prom.query("weir_request_errors_total")
    assert prom.scalar('weir_consumer_group_rebalances_total{protocol="classic"}') >= 1
    assert prom.scalar("weir_offset_commits_total") >= PARTITIONS
    produced_bytes = prom.scalar(f'weir_produced_bytes_total{{topic="{topic}"}}')
    assert produced_bytes > PRODUCED * len(value)
    assert prom.scalar(f'weir_log_size_bytes{{topic="{topic}"}}') == produced_bytes
    # Everything produced went through group commits, each fsynced (durability: fsync).
    assert prom.scalar("weir_wal_group_bytes_sum") >= produced_bytes
    assert prom.scalar("weir_wal_fsync_duration_seconds_count") >= prom.scalar(
        "weir_wal_group_requests_count")

    # Rates and quantiles over the traffic: non-zero and sane.
    window = "[2m]"
    assert prom.scalar(f'sum(rate(weir_requests_total{{api="Produce"}}{window}))') > 0
    assert prom.scalar(f'sum(rate(weir_produced_records_total{{topic="{topic}"}}{window}))') > 0
    quantiles = {}
    for name, metric, api in [
        ("produce_p50_s", "weir_request_duration_seconds_bucket", 'api="Produce"'),
        ("produce_p99_s", "weir_request_duration_seconds_bucket", 'api="Produce"'),
        ("fsync_p50_s", "weir_wal_fsync_duration_seconds_bucket", ""),
        ("fsync_p99_s", "weir_wal_fsync_duration_seconds_bucket", ""),
        ("write_p99_s", "weir_wal_write_duration_seconds_bucket", ""),
    ]:
        q = 0.5 if "p50" in name else 0.99
        value_s = prom.scalar(
            f"histogram_quantile({q}, sum by (le) (increase({metric}{{{api}}}{window})))")
        assert value_s is not None and 0 < value_s < 5, (name, value_s)
        quantiles[name] = value_s
    # An acks=all produce waits for its fsync: its median is not below the fsync's floor.
    assert quantiles["produce_p99_s"] >= quantiles["fsync_p50_s"] / 2
    group_requests = prom.scalar(
        f"increase(weir_wal_group_requests_sum{window}) / increase(weir_wal_group_requests_count{window})")
    assert group_requests >= 1
    assert prom.scalar("weir_partitions") >= PARTITIONS
    assert prom.scalar("weir_disk_total_bytes") >= prom.scalar("weir_disk_free_bytes") > 0
    assert prom.scalar("weir_ready") == 1
    assert prom.scalar("weir_connections_active") >= 1
    assert prom.scalar("weir_network_received_bytes_total") > PRODUCED * len(value)

    # Every family the broker exports is documented, with its type.
    status, text = http_get(f"{broker.metrics_url}/metrics")
    assert status == 200
    documented = dict(re.findall(r"^\| `(weir_\w+)` \| (\w+) \|", DOCS.read_text(), re.M))
    exported = dict(re.findall(r"^# TYPE (weir_\w+) (\w+)$", text, re.M))
    assert exported, text[:2000]
    for family, kind in exported.items():
        assert documented.get(family) == kind, f"{family} ({kind}) is not in docs/metrics.md"

    # Every query of the Grafana dashboard runs on Prometheus, and the panels that show this
    # traffic have data.
    dashboard = json.loads(DASHBOARD.read_text())
    time.sleep(2.5)  # rate() needs two samples of the counters the consumer just created
    empty = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = (target["expr"].replace("$__rate_interval", "1m")
                    .replace("$job", ".*").replace("$instance", ".*"))
            if not prom.query(expr):
                empty.append(f"{panel['title']}: {expr}")
    # Nothing was deleted by retention, no disk alarm: only those may be empty.
    assert all("Retention" in e for e in empty), empty

    consumer.close()
    # A deleted topic's gauges disappear from the next scrapes.
    admin.delete_topics([topic])[topic].result(timeout=20)
    prom.wait_for(f'count(weir_log_size_bytes{{topic="{topic}"}}) or vector(0)', lambda v: v == 0)

    helpers.save_figures("metrics-prometheus", {
        "produced_records": int(produced),
        "consumer_lag": lag,
        "mean_appends_per_group_commit": round(group_requests, 2),
        **{k: round(v, 6) for k, v in quantiles.items()},
    })


def test_health_ready_and_healthcheck(own_broker, tmp_path):
    url = own_broker.metrics_url
    assert http_get(f"{url}/health") == (200, "ok\n")
    assert http_get(f"{url}/ready") == (200, "ready\n")
    assert http_get(f"{url}/nothing-here")[0] == 404
    check = [str(own_broker.binary), "healthcheck", "--metrics-listen",
             f"{own_broker.host}:{own_broker.metrics_port}"]
    assert subprocess.run(check, capture_output=True, timeout=30).returncode == 0
    own_broker.stop()
    failed = subprocess.run(check, capture_output=True, text=True, timeout=30)
    assert failed.returncode == 1
    assert "healthcheck" in failed.stderr


def test_metrics_listener_taken_fails_start_up(own_broker, tmp_path):
    """A broker whose metrics address is taken refuses to start, naming it, rather than
    running unobservable."""
    taken = f"{own_broker.host}:{own_broker.metrics_port}"
    other = subprocess.run(
        [str(own_broker.binary), "--listen", f"127.0.0.1:{free_port()}",
         "--data-dir", str(tmp_path / "other"), "--metrics-listen", taken],
        capture_output=True, text=True, timeout=60)
    assert other.returncode != 0
    assert "metrics" in other.stderr and taken in other.stderr, other.stderr
