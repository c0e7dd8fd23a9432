"""scripts/bench: measure Weir against Apache Kafka and the machine's physical limits in one
run, and write docs/benchmarks.md + docs/benchmarks.json (see bench/README.md)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shlex
import shutil
import signal
import sys
import tempfile
import time
import unittest
from dataclasses import asdict
from pathlib import Path

from . import limits, machine, report, setup
from .brokers import BrokerRejected, KafkaBroker, WeirBroker
from .tools import Tools
from .workloads import PLANS, Plan, Session, SessionSpec

REPO = setup.REPO


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true",
                      help="seconds, tiny sizes; report to a temporary directory (the test suite runs this)")
    mode.add_argument("--quick", action="store_true", help="a few minutes, smaller sizes, one repetition")
    ap.add_argument("--reps", type=int, help="repetitions (default: full 3, quick and smoke 1)")
    ap.add_argument("--out", help="directory for benchmarks.md/.json (default: docs/; smoke: a temp dir)")
    ap.add_argument("--data-root", help="where brokers and fio write (default: a new temp dir under "
                    "$WEIR_BENCH_DATA_ROOT or $TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep the data directories")
    ap.add_argument("--no-build", action="store_true", help="use target/release/weir as it is")
    ap.add_argument("--weir-bin", help="Weir binary to measure (default: $WEIR_BIN or target/release/weir)")
    ap.add_argument("--drop-caches", action="store_true",
                    help="drop the OS page cache before each backlog read (root; affects the whole machine)")
    ap.add_argument("--no-limits", action="store_true", help="skip fio/iperf3")
    ap.add_argument("--no-kafka", action="store_true", help="skip Apache Kafka (Weir only)")
    ap.add_argument("--no-rdkafka", action="store_true", help="skip librdkafka's rdkafka_performance")
    ap.add_argument("--sessions", help="comma-separated subset of sessions, e.g. weir-fsync,kafka")
    ap.add_argument("--only", help="comma-separated workload keys or key prefixes to run, "
                                   "e.g. produce.acksall (the report covers only those; the "
                                   "unmeasured warm-up always runs)")
    ap.add_argument("--report-only", metavar="JSON", help="only render the report from a results JSON")
    a = ap.parse_args(argv)
    a.mode = "smoke" if a.smoke else "quick" if a.quick else "full"
    a.build = not (a.no_build or a.smoke)
    return a


class Log:
    def __init__(self, path: Path):
        self.path = path
        self.t0 = time.monotonic()

    def __call__(self, msg: str) -> None:
        line = f"[{time.monotonic() - self.t0:7.1f}s] {msg}"
        print(line, flush=True)
        with open(self.path, "a") as f:
            f.write(line + "\n")


def self_test(say) -> None:
    """The parsers against recorded tool output (bench/tests), so they cannot rot."""
    suite = unittest.defaultTestLoader.discover(str(REPO / "bench" / "tests"), top_level_dir=str(REPO / "bench"))
    res = unittest.TextTestRunner(stream=open(os.devnull, "w"), verbosity=0).run(suite)
    say(f"parser self-test: {res.testsRun} tests, {len(res.failures) + len(res.errors)} failed")
    if not res.wasSuccessful():
        for _, tb in res.failures + res.errors:
            print(tb, file=sys.stderr)
        raise SystemExit(1)


def session_specs(args, have_kafka: bool) -> list[SessionSpec]:
    specs = [SessionSpec("weir-fsync", "weir", {"durability": "fsync"}, label="Weir"),
             SessionSpec("weir-page_cache", "weir", {"durability": "page_cache"}, label="Weir")]
    if have_kafka:
        specs.append(SessionSpec("kafka", "kafka", label="Kafka"))
    ab = ("produce_all", "latency")
    # The design's A/Bs, in fsync mode: the group-commit writer against writes and fsyncs in
    # the request path, and O_DIRECT segment writes (the default) against buffered ones.
    specs.append(SessionSpec("weir-fsync-inline", "weir", {"durability": "fsync", "write_path": "inline"},
                             workloads=ab, label="Weir"))
    specs.append(SessionSpec("weir-fsync-buffered", "weir",
                             {"durability": "fsync", "log_write_io": "buffered"},
                             workloads=ab, label="Weir"))
    # page_cache mode acknowledging after the O_DIRECT write reached the device, against its
    # default of acknowledging from the page cache (buffered writes).
    specs.append(SessionSpec("weir-page_cache-direct", "weir",
                             {"durability": "page_cache", "log_write_io": "direct"},
                             workloads=ab, label="Weir"))
    if args.mode == "smoke":
        # Seconds, not minutes: one Weir mode end to end, a tiny Kafka, the A/B switch once.
        keep = {"weir-fsync": None, "kafka": ("produce_all", "consume"),
                "weir-fsync-inline": ("produce_all",)}
        specs = [s for s in specs if s.name in keep]
        for s in specs:
            if keep[s.name]:
                s.workloads = keep[s.name]
    if args.sessions:
        wanted = set(args.sessions.split(","))
        specs = [s for s in specs if s.name in wanted]
    return specs


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # A run started in the background by a script inherits SIGINT ignored; Ctrl-C, `kill -INT`
    # and `kill -TERM` must still stop it, with the brokers stopped and what it measured written.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    if args.report_only:
        results = json.loads(Path(args.report_only).read_text())
        out = Path(args.out) if args.out else Path(args.report_only).parent
        (out / "benchmarks.md").write_text(report.render(results))
        print(out / "benchmarks.md")
        return 0

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < want:  # 1,000 partitions + 1,000 connections, for us and the brokers we start
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    started = dt.datetime.now()
    run_dir = setup.cache_dir() / "runs" / f"{started:%Y%m%d-%H%M%S}-{args.mode}"
    run_dir.mkdir(parents=True, exist_ok=True)
    say = Log(run_dir / "runner.log")
    command = "scripts/bench" + ("" if not sys.argv[1:] else " " + shlex.join(sys.argv[1:]))
    say(f"{command}  (mode {args.mode}; logs in {run_dir})")
    if args.mode == "smoke":
        self_test(say)

    st = setup.prepare(args, run_dir / "setup.log", say)
    run_kafka = st.kafka_lib is not None and not args.no_kafka
    if args.no_kafka:
        st.notes.append("Kafka not measured: --no-kafka (its tools are still used)")
    elif st.kafka_lib is None and args.mode != "smoke":
        say("Kafka is required outside --smoke (or pass --no-kafka)")
        return 2
    # A snapshot of the binary: a rebuild during the run cannot change what is measured.
    weir_bin = run_dir / "weir"
    shutil.copy2(st.weir_bin, weir_bin)

    plan = Plan(mode=args.mode, **PLANS[args.mode])
    if args.only:
        plan.only = tuple(args.only.split(","))
    if args.reps:
        plan.reps = args.reps
    plan.drop_caches = args.drop_caches

    root_parent = os.environ.get("WEIR_BENCH_DATA_ROOT") or tempfile.gettempdir()
    data_root = Path(args.data_root) if args.data_root else Path(tempfile.mkdtemp(prefix="weir-bench-", dir=root_parent))
    data_root.mkdir(parents=True, exist_ok=True)
    out_dir = Path(args.out) if args.out else (run_dir / "report" if args.mode == "smoke" else REPO / "docs")
    out_dir.mkdir(parents=True, exist_ok=True)

    tools = Tools(run_dir=run_dir, record_size=plan.record_size, kafka_lib=st.kafka_lib,
                  log4j_conf=REPO / "bench" / "log4j2.properties", rdkafka_bin=st.rdkafka_bin)
    specs = session_specs(args, run_kafka)
    results = {"meta": {"command": command, "mode": args.mode, "plan": asdict(plan),
                        "notes": list(st.notes), "started": f"{started:%Y-%m-%d %H:%M}",
                        "machine": machine.describe(REPO, data_root, weir_bin,
                                                    setup.KAFKA_VERSION if run_kafka else None,
                                                    st.rdkafka_bin),
                        "sessions": [asdict(s) for s in specs], "logs": str(run_dir)},
               "limits": [], "sessions": []}
    errors: list[str] = []
    rejected: dict[str, str] = {}
    try:
        for rep in range(1, plan.reps + 1):
            if st.have_fio and st.have_iperf3:
                say(f"rep {rep}: physical limits")
                try:
                    lim = limits.measure(data_root / "fio", run_dir / "limits", plan.limit_seq_bytes,
                                         plan.limit_seconds, plan.limit_sync_size,
                                         plan.limit_block_sizes)
                    results["limits"].append(dict(lim, rep=rep))
                except RuntimeError as e:
                    errors.append(f"limits: {e}")
                    say(f"  ERROR {e}")
            for spec in specs:
                rec = {"name": spec.name, "kind": spec.kind, "config": spec.config, "rep": rep, "workloads": {}}
                if spec.name in rejected:
                    rec["rejected"] = rejected[spec.name]
                    results["sessions"].append(rec)
                    continue
                say(f"rep {rep}: session {spec.name} {spec.config or ''}")
                wdir = run_dir / f"{spec.name}-r{rep}"
                ddir = data_root / f"{spec.name}-r{rep}"
                if spec.kind == "kafka":
                    broker = KafkaBroker(spec.name, st.kafka_lib, tools.log4j_conf, wdir, ddir)
                else:
                    broker = WeirBroker(spec.name, weir_bin, wdir, ddir, spec.config)
                session = Session(spec, broker, plan, tools, say)
                try:
                    session.run()
                except BrokerRejected as e:
                    rejected[spec.name] = str(e)
                    rec["rejected"] = str(e)
                    say(f"  skipped: Weir rejected {spec.config}: {e}")
                except (RuntimeError, OSError) as e:
                    session.errors.append(f"{spec.name}: {e}")
                    say(f"  ERROR {e}")
                finally:
                    if not args.keep:
                        broker.cleanup()
                    else:
                        broker.stop()
                rec["workloads"] = session.results
                rec["startup_s"] = session.results.get("start", {}).get("startup_s")
                rec["errors"] = session.errors
                errors += session.errors
                results["sessions"].append(rec)
    finally:
        finished = dt.datetime.now()
        results["meta"]["finished"] = f"{finished:%Y-%m-%d %H:%M}"
        results["meta"]["duration_min"] = (finished - started).total_seconds() / 60
        results["meta"]["errors"] = errors
        for f in (run_dir / "latency").glob("*.us") if (run_dir / "latency").exists() else []:
            f.unlink()  # summarised in the JSON; per-record files are large
        weir_bin.unlink(missing_ok=True)
        if not args.keep and not args.data_root:
            shutil.rmtree(data_root, ignore_errors=True)
        (out_dir / "benchmarks.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
        (out_dir / "benchmarks.md").write_text(report.render(results))
    say(f"report: {out_dir / 'benchmarks.md'}")
    say(f"results: {out_dir / 'benchmarks.json'}")
    if errors:
        say(f"{len(errors)} workload error(s):")
        for e in errors:
            say("  " + e[:300])
        return 1
    return 0
