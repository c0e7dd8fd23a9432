"""Workloads (a)-(g) of the benchmark, run against one broker session at a time.

A session is one broker process (one configuration, one repetition) from start to stop;
every workload runs inside it in a fixed order, so all brokers see the same sequence."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import parsers, procs, wire
from .brokers import Broker
from .tools import ToolFailed, Tools

GIB = 1024 ** 3
MIB = 1024 ** 2


@dataclass
class Plan:
    mode: str
    reps: int
    produce_bytes: int          # per produce run, (a) and (b)
    backlog_bytes: int          # (c) cold-ish read
    tail_bytes: int             # (c) tailing read
    latency_seconds: int        # (d) duration at the fixed rate
    many_partitions: int        # (e)
    idle_connections: int       # (e)
    many_window_s: int          # (e) each of the idle and the light-load windows
    warmup_bytes: int
    limit_seq_bytes: int
    limit_seconds: int
    limit_sync_size: int
    record_size: int = 1024
    partitions: int = 8
    producer_counts: tuple = (1, 4, 8)
    latency_rate_bytes: int = 20 * MIB
    small_bytes: int = 64 * MIB  # (g) one record per request, 8 producers
    latency_warmup_s: float = 2.0  # (d) the first records of a run are not counted
    many_load_records_per_s: int = 1000
    drop_caches: bool = False
    limit_block_sizes: tuple = ("4k", "16k", "64k", "1M")
    only: tuple | None = None   # the workload keys (or key prefixes) to run; smoke: one per code path
    consumer_settle_s: float = 2.0  # a tailing rdkafka consumer finds the log end meanwhile
    many_load_client: str = "java"  # ProducerPerformance's throttle sleeps; rdkafka's -r spins
    many_settle_s: float = 5.0  # after the topic and connections exist, before "idle" is measured

    def records(self, nbytes: int) -> int:
        return max(1, nbytes // self.record_size)


PLANS = {
    "smoke": dict(reps=1, produce_bytes=2 * MIB, small_bytes=1 * MIB, backlog_bytes=4 * MIB, tail_bytes=2 * MIB,
                  latency_seconds=1, latency_warmup_s=0.0, many_partitions=40, idle_connections=40, many_window_s=1,
                  warmup_bytes=0, limit_seq_bytes=32 * MIB, limit_seconds=1,
                  limit_sync_size=16 * MIB, producer_counts=(1, 2),
                  limit_block_sizes=("16k", "1M"), consumer_settle_s=1.0, many_load_client="rdkafka",
                  many_settle_s=1.0,
                  only=("produce.acksall.java.p1", "produce.acksall.rdkafka.p2",
                        "produce.acks1.rdkafka.p1", "produce.small", "latency.rdkafka", "latency.java",
                        "consume.backlog_write", "consume.cold.java", "consume.cold.rdkafka",
                        "consume.tail.rdkafka", "many")),
    "quick": dict(reps=1, produce_bytes=256 * MIB, small_bytes=32 * MIB, backlog_bytes=512 * MIB, tail_bytes=256 * MIB,
                  latency_seconds=10, many_partitions=1000, idle_connections=1000,
                  many_window_s=5, warmup_bytes=64 * MIB, limit_seq_bytes=1 * GIB,
                  limit_seconds=3, limit_sync_size=256 * MIB),
    "full": dict(reps=3, produce_bytes=1 * GIB, small_bytes=128 * MIB, backlog_bytes=2 * GIB, tail_bytes=1 * GIB,
                 latency_seconds=30, many_partitions=1000, idle_connections=1000,
                 many_window_s=20, warmup_bytes=256 * MIB, limit_seq_bytes=4 * GIB,
                 limit_seconds=10, limit_sync_size=1 * GIB),
}


@dataclass
class SessionSpec:
    name: str                   # weir-fsync, weir-page_cache, kafka, weir-fsync-inline, ...
    kind: str                   # weir | kafka
    config: dict = field(default_factory=dict)
    workloads: tuple = ("produce", "latency", "consume", "many")
    label: str = ""


# One record per produce request and no waiting for more.
SMALL_REQUESTS_CONF = ["-X", "linger.ms=0", "-X", "batch.num.messages=1"]


def measured(broker: Broker, fn) -> dict:
    before = broker.wal_counters()
    with procs.Window(broker.pid) as w:
        r = fn()
    r.update(w.result())
    after = broker.wal_counters()
    if before is not None and after is not None:
        r.update(wal_groups(before, after))
    return r


def wal_groups(before: dict, after: dict) -> dict:
    """Weir's group commit during a workload: mean bytes and appends per partition write
    (one fdatasync each in fsync mode), and the fsyncs' count and mean duration."""
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    writes = d.get("weir_wal_group_bytes_count", 0.0)
    fsyncs = d.get("weir_wal_fsync_duration_seconds_count", 0.0)
    out: dict = {"wal_writes": int(writes), "wal_fsyncs": int(fsyncs)}
    if writes > 0:
        out["wal_group_bytes_mean"] = round(d.get("weir_wal_group_bytes_sum", 0.0) / writes)
        out["wal_group_appends_mean"] = round(d.get("weir_wal_group_requests_sum", 0.0) / writes, 2)
    if fsyncs > 0:
        out["wal_fsync_ms_mean"] = round(
            d.get("weir_wal_fsync_duration_seconds_sum", 0.0) / fsyncs * 1000, 3)
    for short in ("produce_s", "fsync_s"):
        for q, name in ((0.5, "p50"), (0.99, "p99"), (0.999, "p999")):
            v = histogram_quantile(d, short, q)
            if v is not None:
                out[f"broker_{short[:-2]}_{name}_ms"] = round(v * 1000, 3)
    return out


def histogram_quantile(d: dict, short: str, q: float) -> float | None:
    """The q-quantile of the samples a cumulative histogram gained (bucket counts already
    differenced), interpolated linearly inside its bucket as Prometheus's histogram_quantile
    does; in the +Inf bucket, the highest finite bound."""
    buckets = sorted((float(k.split(":", 1)[1]), v) for k, v in d.items()
                     if k.startswith(short + ":"))
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = upper, count
    return lower


def _per_gib(r: dict, nbytes: float) -> None:
    if r.get("broker_cpu_s") is not None and nbytes > 0:
        r["broker_cpu_s_per_gib"] = round(r["broker_cpu_s"] / (nbytes / GIB), 3)
    if r.get("others_cpu_s") is not None and nbytes > 0:
        r["others_cpu_s_per_gib"] = round(r["others_cpu_s"] / (nbytes / GIB), 3)


class Session:
    def __init__(self, spec: SessionSpec, broker: Broker, plan: Plan, tools: Tools, log):
        self.spec = spec
        self.broker = broker
        self.plan = plan
        self.tools = tools
        self.log = log
        self.results: dict = {}
        self.errors: list[str] = []

    @property
    def clients(self) -> list[str]:
        out = []
        if self.tools.have_java:
            out.append("java")
        if self.tools.have_rdkafka:
            out.append("rdkafka")
        return out

    def _run(self, key: str, fn) -> None:
        # The warm-up runs whatever `only` selects: without it the Java broker's and tools'
        # first measured workloads run before the JIT has compiled their hot paths.
        if (key != "warmup" and self.plan.only is not None
                and not any(key.startswith(o) for o in self.plan.only)):
            return
        self.log(f"    {self.spec.name}: {key}")
        try:
            r = fn()
        except ToolFailed as e:
            r = {"error": str(e)}
        except (RuntimeError, OSError, wire.WireError, subprocess.SubprocessError) as e:
            r = {"error": f"{type(e).__name__}: {e}"}
        if "error" in r:
            self.errors.append(f"{self.spec.name} {key}: {r['error']}")
            self.log(f"      ERROR {r['error'][:400]}")
            if not self.broker.alive():
                self.log("      broker died; restarting it for the remaining workloads")
                self.broker.start()
        elif "skipped" in r:
            self.log(f"      skipped: {r['skipped']}")
        self.results[key] = r

    def java_groups_reason(self) -> str | None:
        """ConsumerPerformance subscribes with a consumer group; without JoinGroup it cannot run."""
        if not self.broker.supports(wire.API_JOIN_GROUP):
            return (f"{self.spec.label or self.spec.name} does not serve JoinGroup (consumer "
                    "groups), which ConsumerPerformance needs")
        return None

    # ---- the session ------------------------------------------------------------------

    def run(self) -> dict:
        self.results["start"] = {"startup_s": round(self.broker.start(), 2)}
        self.results["start"]["rss_after_start_kb"] = procs.status_kb(self.broker.pid, "VmRSS")
        if self.plan.warmup_bytes:
            self._run("warmup", self.warmup)
        acks_list = (("all", "1") if "produce" in self.spec.workloads
                     else ("all",) if "produce_all" in self.spec.workloads else ())
        for acks in acks_list:
            for client in self.clients:
                for n in self.plan.producer_counts:
                    self._run(f"produce.acks{acks}.{client}.p{n}",
                              lambda c=client, n=n, a=acks: self.produce(c, n, a))
        if acks_list and self.tools.have_rdkafka:
            n = max(self.plan.producer_counts)
            self._run(f"produce.small.rdkafka.p{n}", lambda: self.produce_small(n))
        if "latency" in self.spec.workloads:
            if self.tools.have_rdkafka:
                self._run("latency.rdkafka", self.latency_rdkafka)
                self._run("latency.rdkafka-linger1", lambda: self.latency_rdkafka(linger_ms=1))
            if self.tools.have_java:
                self._run("latency.java", self.latency_java)
        if "consume" in self.spec.workloads:
            self.consume_all()
        if "many" in self.spec.workloads:
            self._run("many", self.many)
        self.results["end"] = {"rss_hwm_kb": procs.status_kb(self.broker.pid, "VmHWM")}
        return self.results

    def warmup(self) -> dict:
        """Not measured: warms the JIT of the Java broker and tools, and the page cache."""
        topic = "warmup"
        self.broker.create_topic(topic, self.plan.partitions)
        for client in self.clients:
            self.tools.produce(client, self.broker.bootstrap, topic,
                               self.plan.records(self.plan.warmup_bytes), "1")
        return {"bytes": self.plan.warmup_bytes * len(self.clients)}

    # ---- (a), (b) produce throughput --------------------------------------------------------

    def produce(self, client: str, producers: int, acks: str) -> dict:
        topic = f"produce-acks{acks}-{client}-p{producers}"
        self.broker.create_topic(topic, self.plan.partitions)
        r = measured(self.broker, lambda: self.tools.produce(
            client, self.broker.bootstrap, topic, self.plan.records(self.plan.produce_bytes),
            acks, producers=producers))
        _per_gib(r, r["bytes"])
        return r

    def produce_small(self, producers: int) -> dict:
        """acks=all with one record per request (`linger.ms=0`, one record per batch): the
        many small concurrent writes group commit exists for, unlike the client-batched runs
        above, where each request already carries hundreds of KiB."""
        topic = f"produce-small-p{producers}"
        self.broker.create_topic(topic, self.plan.partitions)
        r = measured(self.broker, lambda: self.tools.produce(
            "rdkafka", self.broker.bootstrap, topic, self.plan.records(self.plan.small_bytes),
            "all", producers=producers, rdkafka_conf=SMALL_REQUESTS_CONF))
        _per_gib(r, r["bytes"])
        return r

    # ---- (c) consume: cold-ish backlog, then tailing ---------------------------------------

    def consume_all(self) -> None:
        topic = "backlog"
        count = self.plan.records(self.plan.backlog_bytes)
        writer = "rdkafka" if self.tools.have_rdkafka else "java"

        def write_backlog():
            self.broker.create_topic(topic, self.plan.partitions)
            r = measured(self.broker, lambda: self.tools.produce(
                writer, self.broker.bootstrap, topic, count, "all"))
            _per_gib(r, r["bytes"])
            return r

        self._run("consume.backlog_write", write_backlog)
        if "error" in self.results.get("consume.backlog_write", {"error": "not run (--only)"}):
            return
        # Cold-ish: a fresh broker process (nothing of the backlog in its own memory); the
        # OS page cache keeps what the write left unless --drop-caches.
        restart_s = self.broker.restart()
        self.results["consume.restart"] = {"restart_s": round(restart_s, 2)}
        for client in self.clients:
            self._run(f"consume.cold.{client}", lambda c=client: self.consume_backlog(c, topic, count))
        for client in self.clients:
            self._run(f"consume.tail.{client}", lambda c=client: self.tail(c))

    def _drop_caches(self) -> None:
        if self.plan.drop_caches:
            os.sync()
            Path("/proc/sys/vm/drop_caches").write_text("1\n")

    def consume_backlog(self, client: str, topic: str, count: int) -> dict:
        if client == "java" and (why := self.java_groups_reason()):
            return {"skipped": why}
        self._drop_caches()
        r = measured(self.broker, lambda: self.tools.consume(
            client, self.broker.bootstrap, topic, self.plan.partitions, count))
        _per_gib(r, r["bytes"])
        if r["records"] < count:
            r["warning"] = f"read {r['records']} of {count} records"
        return r

    def tail(self, client: str) -> dict:
        """A consumer waits at the log end while one producer (same client, acks=all,
        unthrottled) writes; reports what the consumer read per second."""
        if client == "java" and (why := self.java_groups_reason()):
            return {"skipped": why}
        topic = f"tail-{client}"
        self.broker.create_topic(topic, self.plan.partitions)
        count = self.plan.records(self.plan.tail_bytes)
        proc, log = self.tools.start_tailing_consumer(client, self.broker.bootstrap, topic,
                                                      self.plan.partitions, count)
        # group join (java) or offset lookup (rdkafka) before data flows
        time.sleep(6 if client == "java" else self.plan.consumer_settle_s)

        def both():
            prod = self.tools.produce(client, self.broker.bootstrap, topic, count, "all")
            t_prod_end = time.monotonic()
            cons = self.tools.finish_consumer(client, proc, log, grace=60)
            return {"consumer": cons, "producer": prod,
                    "catch_up_s": round(time.monotonic() - t_prod_end, 3)}

        r = measured(self.broker, both)
        cons, prod = r["consumer"], r["producer"]
        # What the consumer saw per second: the records over the producer's own active time
        # plus how long the consumer needed after the producer finished (includes the
        # consumer's exit). The tools' own consumer rates would count the producer's start.
        pipeline_s = prod["per_producer"][0]["seconds"] + r["catch_up_s"]
        r.update({"bytes_per_s": cons["bytes"] / pipeline_s, "records": cons["records"],
                  "bytes": cons["bytes"], "producer_bytes_per_s": prod["bytes_per_s"],
                  "consumer_tool_bytes_per_s": cons["bytes_per_s"]})
        if cons["records"] < count:
            r["warning"] = f"tailing consumer read {cons['records']} of {count} records"
        return r

    # ---- (d) end-to-end latency at a fixed rate --------------------------------------------

    def latency_rdkafka(self, linger_ms: int | None = None) -> dict:
        """rdkafka_performance pair in latency mode: the producer stamps each record with its
        send time and sends at a fixed rate (acks=all); the consumer, tailing all partitions,
        writes per-record end-to-end latency (us); the producer writes per-record ack latency.
        `linger_ms` 0 takes the client's batching delay (librdkafka's default 5 ms, which every
        record waits up to) out, so what remains is the broker's own latency."""
        topic = "latency-rdkafka" if linger_ms is None else f"latency-rdkafka-linger{linger_ms}"
        self.broker.create_topic(topic, self.plan.partitions)
        rate = self.plan.latency_rate_bytes // self.plan.record_size
        count = rate * self.plan.latency_seconds
        logs = self.tools.run_dir / "latency"
        logs.mkdir(exist_ok=True)
        e2e_file = logs / f"{self.spec.name}-{id(self)}-{topic}-e2e.us"
        ack_file = logs / f"{self.spec.name}-{id(self)}-{topic}-ack.us"
        cproc, clog = self.tools.start_tailing_consumer("rdkafka", self.broker.bootstrap, topic,
                                                        self.plan.partitions, count, latency_file=e2e_file)
        time.sleep(self.plan.consumer_settle_s)

        def run_pair():
            plog = self.tools._log("rdkafka-latency-producer")
            cmd = self.tools.rdkafka_producer_cmd(self.broker.bootstrap, topic, count, "all",
                                                  rate=rate, latency_file=ack_file,
                                                  linger_ms=linger_ms)
            rc, text = procs.run(cmd, plog, timeout=self.plan.latency_seconds * 4 + 120)
            try:
                prod = parsers.rdkafka_producer(text)
            except parsers.ParseError as e:
                raise ToolFailed("rdkafka latency producer", plog, f"exit {rc}: {e}: {text[-600:]}")
            cons = self.tools.finish_consumer("rdkafka", cproc, clog, grace=15)
            return {"producer": prod, "consumer": cons}

        r = measured(self.broker, run_pair)
        r["target_bytes_per_s"] = self.plan.latency_rate_bytes
        r["achieved_bytes_per_s"] = r["producer"]["bytes_per_s"]
        warmup = int(rate * self.plan.latency_warmup_s)
        r["e2e"] = parsers.latency_file(e2e_file.read_text(), warmup)
        r["ack"] = parsers.latency_file(ack_file.read_text(), warmup)
        r["e2e_file"], r["ack_file"] = str(e2e_file), str(ack_file)
        return r

    def latency_java(self) -> dict:
        """Kafka's tools: ProducerPerformance holds the fixed rate (acks=all) on one topic and
        reports its ack latency; meanwhile EndToEndLatency sends one record at a time
        (acks=all) through a one-partition topic and times produce -> consume."""
        load_topic, probe_topic = "latency-java-load", "latency-java-probe"
        self.broker.create_topic(load_topic, self.plan.partitions)
        self.broker.create_topic(probe_topic, 1)
        rate = self.plan.latency_rate_bytes // self.plan.record_size
        count = rate * self.plan.latency_seconds
        probes = max(50, self.plan.latency_seconds * 40)

        def run_pair():
            llog = self.tools._log("java-latency-load")
            lproc = procs.spawn(self.tools.java_producer_cmd(
                self.broker.bootstrap, load_topic, count, "all", rate, llog), llog)
            time.sleep(2)  # JVM start, so the probe runs under load
            plog = self.tools._log("java-latency-probe")
            t0 = time.monotonic()
            prc, ptext = procs.run(self.tools.java_e2e_cmd(self.broker.bootstrap, probe_topic,
                                                           probes, "all", plog), plog,
                                   timeout=self.plan.latency_seconds * 10 + 120)
            probe_s = time.monotonic() - t0
            lrc = procs.finish(lproc, self.plan.latency_seconds * 4 + 120)
            ltext = llog.read_text(errors="replace")
            try:
                load = parsers.producer_performance(ltext, self.plan.record_size)
            except parsers.ParseError as e:
                raise ToolFailed("java latency load", llog, f"exit {lrc}: {e}: {ltext[-600:]}")
            try:
                probe = parsers.end_to_end_latency(ptext)
            except parsers.ParseError as e:
                raise ToolFailed("java EndToEndLatency", plog, f"exit {prc}: {e}: {ptext[-600:]}")
            probe["exit"] = prc
            if prc != 0:
                last = [ln for ln in ptext.splitlines() if ln.strip()][-1:]
                probe["exit_note"] = ("exited non-zero after printing its results: "
                                      + (last[0][:200] if last else ""))
            return {"load": load, "e2e": probe, "probe_seconds": round(probe_s, 2),
                    "load_seconds": load["seconds"], "probes": probes}

        r = measured(self.broker, run_pair)
        r["target_bytes_per_s"] = self.plan.latency_rate_bytes
        r["achieved_bytes_per_s"] = r["load"]["bytes_per_s"]
        r["ack"] = {k: v for k, v in r["load"].items() if k.startswith("lat_")}
        # The probe started 2 s after the load; it ran entirely under load if it ended first.
        r["probe_under_load"] = r["probe_seconds"] + 2 <= r["load_seconds"] + 1
        return r

    # ---- (e) many partitions, many idle connections ---------------------------------------

    def many(self) -> dict:
        n, conns, window = self.plan.many_partitions, self.plan.idle_connections, self.plan.many_window_s
        pid = self.broker.pid
        out = {"partitions": n, "connections": conns,
               "rss_before_kb": procs.status_kb(pid, "VmRSS")}
        t0 = time.monotonic()
        self.broker.create_topic("many", n)
        out["create_topic_s"] = round(time.monotonic() - t0, 2)
        out["rss_after_topic_kb"] = procs.status_kb(pid, "VmRSS")
        clients = wire.IdleClients(self.broker.bootstrap, conns, "many")
        try:
            out["connect_s"] = round(clients.open(), 2)
            time.sleep(self.plan.many_settle_s)
            with procs.Window(pid) as w:
                time.sleep(window)
            out["idle"] = w.result()
            if self.tools.have_java or self.tools.have_rdkafka:
                rate = self.plan.many_load_records_per_s
                count = rate * window
                client = self.plan.many_load_client
                if client not in self.clients:
                    client = self.clients[0]
                log = self.tools._log(f"{client}-many-load")
                if client == "java":
                    cmd = self.tools.java_producer_cmd(self.broker.bootstrap, "many", count, "all", rate, log)
                else:
                    cmd = self.tools.rdkafka_producer_cmd(self.broker.bootstrap, "many", count, "all", rate=rate)
                with procs.Window(pid) as w:
                    rc, _ = procs.run(cmd, log, timeout=window * 4 + 120)
                out["light_load"] = dict(w.result(), client=client, exit=rc,
                                         records_per_s=rate, bytes_per_s=rate * self.plan.record_size)
            out["connections_open_at_end"] = clients.still_open()
        finally:
            clients.close()
        out["rss_hwm_kb"] = procs.status_kb(pid, "VmHWM")
        return out
