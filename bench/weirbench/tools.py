"""The load generators: Kafka's ProducerPerformance, ConsumerPerformance and
EndToEndLatency (kafka-tools, run with the Maven-resolved class path) and librdkafka's
rdkafka_performance. Every run writes its output under the run directory and returns the
parsed numbers plus the log path."""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from . import parsers, procs

# Same client settings against both brokers: the Java client's defaults (idempotent with
# acks=all, linger.ms 5, batch.size 16 KiB). rdkafka_performance forces linger.ms=1000 unless
# told otherwise, so it gets librdkafka's own default back.
JAVA_PRODUCER_PROPS: list[str] = []
RDKAFKA_PRODUCER_CONF = ["-X", "linger.ms=5"]
TOOL_HEAP = ["-Xmx512M"]  # what kafka-producer-perf-test.sh / kafka-consumer-perf-test.sh use


class ToolFailed(RuntimeError):
    def __init__(self, what: str, log: Path, detail: str):
        super().__init__(f"{what} failed ({log}): {detail}")
        self.log = log


@dataclass
class Tools:
    run_dir: Path
    record_size: int
    kafka_lib: Path | None
    log4j_conf: Path
    rdkafka_bin: Path | None
    java: str = "java"
    counter: int = 0

    @property
    def have_java(self) -> bool:
        return self.kafka_lib is not None

    @property
    def have_rdkafka(self) -> bool:
        return self.rdkafka_bin is not None

    def _log(self, tag: str) -> Path:
        self.counter += 1
        d = self.run_dir / "tools"
        d.mkdir(parents=True, exist_ok=True)
        return d / f"{self.counter:04d}-{tag}.log"

    def _java_cmd(self, main: str, args: list[str], log: Path) -> list[str]:
        return [self.java, *TOOL_HEAP, "-Duser.language=en", "-Duser.country=US",
                f"-Dlog4j2.configurationFile={self.log4j_conf}",
                f"-Dweir.bench.log={log.with_suffix('.log4j')}",
                "-cp", str(self.kafka_lib / "*"), main, *args]

    # ---- producers --------------------------------------------------------------------

    def java_producer_cmd(self, bootstrap: str, topic: str, records: int, acks: str,
                          throughput: float, log: Path) -> list[str]:
        return self._java_cmd("org.apache.kafka.tools.ProducerPerformance", [
            "--topic", topic, "--num-records", str(records), "--record-size", str(self.record_size),
            "--throughput", str(throughput), "--producer-props", f"bootstrap.servers={bootstrap}",
            f"acks={acks}", *JAVA_PRODUCER_PROPS], log)

    def rdkafka_producer_cmd(self, bootstrap: str, topic: str, records: int, acks: str,
                             rate: float | None = None, latency_file: Path | None = None,
                             linger_ms: int | None = None,
                             conf: list[str] | None = None) -> list[str]:
        if conf is None:
            conf = RDKAFKA_PRODUCER_CONF if linger_ms is None else ["-X", f"linger.ms={linger_ms}"]
        cmd = [str(self.rdkafka_bin), "-P", "-t", topic, "-b", bootstrap, "-s", str(self.record_size),
               "-c", str(records), "-a", "-1" if acks == "all" else acks, "-q", *conf]
        if rate:
            cmd += ["-r", str(rate)]
        if latency_file:
            cmd += ["-l", "-A", str(latency_file)]
        return cmd

    def produce(self, client: str, bootstrap: str, topic: str, records: int, acks: str,
                producers: int = 1, throughput: float = -1, timeout: float = 1800,
                rdkafka_conf: list[str] | None = None) -> dict:
        """`producers` concurrent processes share `records`; throughput is their sum."""
        share = max(1, records // producers)
        runs = []
        for i in range(producers):
            log = self._log(f"{client}-produce-{topic}-{i}")
            if client == "java":
                cmd = self.java_producer_cmd(bootstrap, topic, share, acks, throughput, log)
            else:
                cmd = self.rdkafka_producer_cmd(bootstrap, topic, share, acks, conf=rdkafka_conf)
            runs.append((procs.spawn(cmd, log), log))
        results = []
        for proc, log in runs:
            rc = procs.finish(proc, timeout)
            text = log.read_text(errors="replace")
            try:
                r = (parsers.producer_performance(text, self.record_size) if client == "java"
                     else parsers.rdkafka_producer(text))
            except parsers.ParseError as e:
                raise ToolFailed(f"{client} producer", log, f"exit {rc}: {e}: {text[-600:]}")
            r.update({"exit": rc, "log": str(log)})
            results.append(r)
        out = {
            "client": client, "producers": producers, "acks": acks,
            "records": sum(r["records"] for r in results),
            "bytes": sum(r["bytes"] for r in results),
            "bytes_per_s": sum(r["bytes_per_s"] for r in results),
            "records_per_s": sum(r["records_per_s"] for r in results),
            "per_producer": results,
        }
        if producers == 1:
            for k, v in results[0].items():
                if k.startswith("lat_"):
                    out[k] = v
        return out

    # ---- consumers --------------------------------------------------------------------

    def rdkafka_consumer_cmd(self, bootstrap: str, topic: str, partitions: int, count: int,
                             offset: str, latency_file: Path | None = None,
                             exit_at_eof: bool = False) -> list[str]:
        cmd = [str(self.rdkafka_bin), "-C", "-t", topic, "-b", bootstrap, "-o", offset,
               "-c", str(count), "-q"]
        for p in range(partitions):
            cmd += ["-p", str(p)]
        if exit_at_eof:
            cmd.append("-e")
        if latency_file:
            cmd += ["-l", "-A", str(latency_file)]
        return cmd

    def java_consumer_cmd(self, bootstrap: str, topic: str, count: int, from_latest: bool,
                          log: Path, timeout_ms: int = 20000) -> list[str]:
        args = ["--bootstrap-server", bootstrap, "--topic", topic, "--messages", str(count),
                "--timeout", str(timeout_ms), "--group", f"weir-bench-{int(time.time() * 1000)}"]
        if from_latest:
            args.append("--from-latest")
        return self._java_cmd("org.apache.kafka.tools.ConsumerPerformance", args, log)

    def consume(self, client: str, bootstrap: str, topic: str, partitions: int, count: int,
                timeout: float = 1800) -> dict:
        """Read `count` records of a backlog from the beginning."""
        log = self._log(f"{client}-consume-{topic}")
        if client == "java":
            cmd = self.java_consumer_cmd(bootstrap, topic, count, False, log)
        else:
            cmd = self.rdkafka_consumer_cmd(bootstrap, topic, partitions, count, "beginning",
                                            exit_at_eof=True)
        rc, text = procs.run(cmd, log, timeout)
        return self._consumer_result(client, "consumer", rc, text, log)

    def start_tailing_consumer(self, client: str, bootstrap: str, topic: str, partitions: int,
                               count: int, latency_file: Path | None = None):
        log = self._log(f"{client}-tail-{topic}")
        if client == "java":
            cmd = self.java_consumer_cmd(bootstrap, topic, count, True, log, timeout_ms=10000)
        else:
            cmd = self.rdkafka_consumer_cmd(bootstrap, topic, partitions, count, "end",
                                            latency_file=latency_file)
        return procs.spawn(cmd, log), log

    def finish_consumer(self, client: str, proc: subprocess.Popen, log: Path, grace: float) -> dict:
        """Wait up to `grace` s for the consumer to reach its count; then interrupt it (both
        tools print their summary on SIGINT / timeout) and parse what it read."""
        try:
            rc = proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            rc = procs.stop(proc, sig=signal.SIGINT, grace=15)
        text = log.read_text(errors="replace")
        return self._consumer_result(client, "tailing consumer", rc, text, log)

    @staticmethod
    def _consumer_result(client: str, what: str, rc: int, text: str, log: Path) -> dict:
        """Parse a consumer tool's summary (ConsumerPerformance or rdkafka_performance)."""
        try:
            r = (parsers.consumer_performance(text) if client == "java"
                 else parsers.rdkafka_consumer(text))
        except parsers.ParseError as e:
            raise ToolFailed(f"{client} {what}", log, f"exit {rc}: {e}: {text[-600:]}")
        r.update({"client": client, "exit": rc, "log": str(log)})
        return r

    # ---- end-to-end latency -------------------------------------------------------------

    def java_e2e_cmd(self, bootstrap: str, topic: str, count: int, acks: str, log: Path) -> list[str]:
        props = log.with_suffix(".properties")
        props.write_text("".join(p + "\n" for p in JAVA_PRODUCER_PROPS))
        return self._java_cmd("org.apache.kafka.tools.EndToEndLatency",
                              [bootstrap, topic, str(count), acks, str(self.record_size), str(props)], log)
