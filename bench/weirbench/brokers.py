"""The two brokers under test, started one at a time on free ports with their data under
the same directory (same filesystem, same placement)."""

from __future__ import annotations

import base64
import os
import shutil
import time
import urllib.request
from pathlib import Path

from . import procs, wire

# Kafka's start script (bin/kafka-server-start.sh + kafka-run-class.sh) defaults: 1 GiB heap
# and these JVM flags. The broker runs as the distribution would run it.
KAFKA_HEAP = ["-Xmx1G", "-Xms1G"]
KAFKA_JVM_PERF = ["-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                  "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
                  "-XX:MaxInlineLevel=15", "-Djava.awt.headless=true"]
# What the distribution's config/server.properties sets beyond the KRaft wiring: only the
# single-node replication factors (internal topics default to 3 replicas) and the group
# rebalance delay (0 in the shipped file, so a consumer does not wait 3 s to join).
KAFKA_STOCK_SINGLE_NODE = {
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
}


class BrokerRejected(Exception):
    """The broker refused its configuration (for instance a key it does not know)."""


class Broker:
    kind = "?"

    def __init__(self, name: str, workdir: Path, data_dir: Path):
        self.name = name
        self.workdir = workdir
        self.data_dir = data_dir
        self.proc = None
        self.port = None
        self.starts = 0
        self._apis: dict | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def supports(self, api_key: int) -> bool:
        if self._apis is None:
            self._apis = wire.api_versions(self.bootstrap)
        return api_key in self._apis

    def create_topic(self, name: str, partitions: int) -> None:
        wire.create_topic(self.bootstrap, name, partitions)

    def wal_counters(self) -> dict | None:
        """Weir's write-path counters (sums and counts of its WAL histograms), None elsewhere."""
        return None

    def restart(self) -> float:
        self.stop()
        return self.start()

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop(self.proc, grace=120)
            self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def log_tail(self, n: int = 20) -> str:
        logs = sorted(self.workdir.glob("*.log"), key=lambda p: p.stat().st_mtime)
        if not logs:
            return ""
        return "\n".join(logs[-1].read_text(errors="replace").splitlines()[-n:])


class WeirBroker(Broker):
    kind = "weir"

    def __init__(self, name: str, binary: Path, workdir: Path, data_dir: Path, config: dict):
        super().__init__(name, workdir, data_dir)
        self.binary = binary
        self.config = dict(config)
        self.metrics_port: int | None = None
        self.config_file = workdir / "weir.yaml"
        self.config_file.write_text(
            "# written by scripts/bench; every other key keeps its default\n"
            + "".join(f"{k}: {v}\n" for k, v in self.config.items()))

    def start(self) -> float:
        self.port = self.port or procs.free_port()
        self.starts += 1
        log = self.workdir / f"weir.{self.starts}.log"
        env = dict(os.environ)  # Weir's own default log level unless RUST_LOG is set
        self.metrics_port = procs.free_port()
        cmd = [str(self.binary), "--listen", self.bootstrap, "--data-dir", str(self.data_dir),
               "--config", str(self.config_file),
               "--metrics-listen", f"127.0.0.1:{self.metrics_port}"]
        self.proc = procs.spawn(cmd, log, env=env)
        try:
            # A start over many GiB reads every batch header first (tens of seconds here).
            return wire.wait_ready(self.bootstrap, 300, alive=self.alive)
        except wire.WireError as e:
            text = log.read_text(errors="replace").strip()
            self.stop()
            if "config key" in text or "unknown" in text:
                raise BrokerRejected(text.splitlines()[-1] if text else str(e)) from e
            raise RuntimeError(f"weir did not start: {e}\n{text[-2000:]}") from e

    WAL_SERIES = ("weir_wal_group_bytes_sum", "weir_wal_group_bytes_count",
                  "weir_wal_group_requests_sum", "weir_wal_fsync_duration_seconds_sum",
                  "weir_wal_fsync_duration_seconds_count")
    # Histograms whose buckets are kept, as "<short name>:<le>": Weir's own time for a
    # Produce request (decoded -> response ready, the ack wait included) and for an fsync.
    HISTOGRAMS = {"weir_request_duration_seconds_bucket": ("produce_s", 'api="Produce"'),
                  "weir_wal_fsync_duration_seconds_bucket": ("fsync_s", None)}

    def wal_counters(self) -> dict | None:
        if not self.alive() or self.metrics_port is None:
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                        timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            return None
        return parse_counters(text, self.WAL_SERIES, self.HISTOGRAMS)


def parse_counters(text: str, series: tuple, histograms: dict) -> dict:
    """The named series of a Prometheus text exposition, plus the buckets of the named
    histograms (filtered on one label) as "<short>:<le>" keys."""
    out = {}
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        name, _, labels = head.partition("{")
        try:
            number = float(value)
        except ValueError:
            continue
        if name in series and not labels:
            out[name] = number
        elif name in histograms:
            short, want = histograms[name]
            parts = labels.rstrip("}").split(",")
            le = next((x[4:-1] for x in parts if x.startswith('le="')), None)
            if le is not None and (want is None or want in parts):
                out[f"{short}:{le}"] = number
    return out


def kafka_cluster_id() -> str:
    # Kafka's Uuid in its text form: 16 random bytes, URL-safe base64 without padding. Ids
    # starting with '-' are avoided, as Kafka's own generator does (they read as options).
    while True:
        cid = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


class KafkaBroker(Broker):
    kind = "kafka"

    def __init__(self, name: str, lib_dir: Path, log4j_conf: Path, workdir: Path, data_dir: Path,
                 java: str = "java"):
        super().__init__(name, workdir, data_dir)
        self.lib_dir = lib_dir
        self.log4j_conf = log4j_conf
        self.java = java
        self.controller_port = None
        self.props_file = workdir / "server.properties"
        self.formatted = False

    def classpath(self) -> str:
        return str(self.lib_dir / "*")

    def _write_props(self) -> None:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://{self.bootstrap},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.bootstrap}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            **KAFKA_STOCK_SINGLE_NODE,
        }
        self.props_file.write_text(
            "# written by scripts/bench: KRaft combined mode, otherwise Kafka's defaults\n"
            + "".join(f"{k}={v}\n" for k, v in props.items()))

    def _java(self, main: str, args: list[str], log_name: str, heap: list[str]) -> list[str]:
        return [self.java, *heap, f"-Dlog4j2.configurationFile={self.log4j_conf}",
                f"-Dweir.bench.log={self.workdir / log_name}", "-cp", self.classpath(),
                main, *args]

    def start(self) -> float:
        if self.port is None:
            self.port = procs.free_port()
            self.controller_port = procs.free_port()
        self._write_props()
        self.starts += 1
        if not self.formatted:
            cmd = self._java("kafka.tools.StorageTool",
                             ["format", "-t", kafka_cluster_id(), "-c", str(self.props_file)],
                             "storage-tool.log", ["-Xmx256M"])
            rc, out = procs.run(cmd, self.workdir / "format.out", timeout=120)
            if rc != 0:
                raise RuntimeError(f"kafka StorageTool format failed:\n{out[-2000:]}")
            self.formatted = True
        cmd = self._java("kafka.Kafka", [str(self.props_file)], f"server.{self.starts}.log",
                         KAFKA_HEAP + KAFKA_JVM_PERF)
        self.proc = procs.spawn(cmd, self.workdir / f"kafka.{self.starts}.out")
        t0 = time.monotonic()
        try:
            wire.wait_ready(self.bootstrap, 180, alive=self.alive)
        except wire.WireError as e:
            self.stop()
            raise RuntimeError(f"kafka did not start: {e}\n{self.log_tail(40)}") from e
        return time.monotonic() - t0

    def log_tail(self, n: int = 20) -> str:
        p = self.workdir / f"server.{self.starts}.log"
        if not p.exists():
            return super().log_tail(n)
        return "\n".join(p.read_text(errors="replace").splitlines()[-n:])
