"""Rewrites the figures table of docs/reliability.md from target/reliability/*.json
(written by the reliability tests). Run by scripts/reliability."""

import argparse
import datetime
import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- figures:begin -->", "<!-- figures:end -->"


def load(name):
    path = ROOT / "target" / "reliability" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def kill9_row(f):
    if f is None:
        return None
    inconsistent = (f["misplaced"] + f["changed_after_read"] + f["vanished_after_read"]
                    + f["reordered"] + f["non_monotonic_polls"])
    return (f"kill -9 loop, `durability: {f['durability']}` (`test_kill9.py`)",
            f"{f['crashes']} SIGKILLs; {f['acked']:,} acknowledged records (plain and "
            f"idempotent producers, acks=all): **{f['lost']} lost, {f['duplicated']} duplicated "
            f"with idempotence, {inconsistent} inconsistent offsets or reads**; "
            f"{f['failed_definitely']} refused sends, {f['failed_but_read']} of them read; "
            f"{f['polls']:,} polls, {f['unseen']} records unseen after the final drain; "
            f"{f['committed_reads']} committed offsets read back after restarts, "
            f"{f['commit_regressions']} behind an acknowledged commit; "
            f"{f['retry_copies']} extra copies from the plain producer's retries (allowed); "
            f"restart-to-ready p50 {f['restart_to_ready_p50_s']} s, "
            f"p99 {f['restart_to_ready_p99_s']} s")


def power_loss_rows(f):
    if f is None:
        return []
    points = ", ".join(f"{k} {v}" for k, v in sorted(f["crash_points"].items()))
    return [
        ("simulated power loss (`log::power_loss_tests`)",
         f"{f['seeds']:,} seeds, crash at a random file operation ({points}); "
         f"{f['acked_appends_checked']:,} acknowledged appends checked after recovery: "
         f"**{f['acked_appends_lost']} lost**, every partition exactly a prefix of what was "
         f"appended; {f['topics_checked']:,} created topics all present; "
         f"{f['unacked_appends_survived']} unacknowledged appends survived (allowed)"),
        ("fsync failure (`log::power_loss_tests`, `tests/storage_faults.rs`)",
         f"{f['fsync_failure_runs']:,} runs with the k-th fsync failing (EIO, later fsyncs "
         f"of that file report success without effect): {f['unacked_after_fsync_failure']:,} "
         f"appends left unacknowledged, **0 acknowledged appends lost** after a power cut; "
         f"over TCP the producer gets KAFKA_STORAGE_ERROR and the partition refuses writes "
         f"until restart"),
    ]


def torn_rows(cuts, flips):
    rows = []
    if cuts:
        rows.append(("torn tail, every truncation point (`log::segment::tests`)",
                     f"a {cuts['segment_bytes']}-byte segment of 4 batches cut at all "
                     f"{cuts['cuts']} byte positions: {cuts['wrong_recoveries']} recoveries "
                     f"kept anything but the longest valid prefix"))
    if flips:
        rows.append(("torn tail, every bit flip of the last batch (`log::segment::tests`)",
                     f"{flips['flips']} single-bit flips over its {flips['last_batch_bytes']} "
                     f"bytes: {flips['wrong_recoveries']} recoveries kept the flipped batch "
                     f"or lost an earlier one"))
    return rows


def hostile_rows(conns, pipelining):
    rows = []
    if conns:
        c = conns
        rows.append(("slow-loris and idle sockets beside a healthy producer "
                     "(`test_hostile_connections.py`)",
                     f"{c['slow_loris']:,} slow-loris sockets (a byte every 200 ms) all closed "
                     f"{c['slow_loris_all_closed_after_s']} s after they connected "
                     f"(`request_read_timeout_ms: {c['request_read_timeout_ms']}`), "
                     f"{c['idle']:,} idle sockets all closed after {c['idle_all_closed_after_s']} s "
                     f"(`connections_max_idle_ms: {c['connections_max_idle_ms']}`); the healthy "
                     f"acks=all producer's p99 {c['healthy_p99_ms_under_attack']} ms under attack "
                     f"against {c['healthy_p99_ms_baseline']} ms before (**{c['p99_ratio']}x**), "
                     f"p50 {c['healthy_p50_ms_under_attack']} / {c['healthy_p50_ms_baseline']} ms; "
                     f"broker descriptors {c['broker_fds_before']} before, "
                     f"{c['broker_fds_after']} after"))
    if pipelining:
        p = pipelining
        rows.append(("pipelining without reading responses (`test_hostile_connections.py`)",
                     f"{p['fetch_requests_pipelined']} fetches asking for "
                     f"{p['fetch_response_bytes_asked'] / 2**30:.1f} GiB and "
                     f"{p['produce_bytes_pipelined'] / 2**20:.0f} MiB of produce requests, "
                     f"no response read, budgets of {p['budget_bytes_each'] >> 20} MiB: broker "
                     f"RSS grew by **{p['rss_growth_bytes'] / 2**20:.1f} MiB** "
                     f"(to {p['rss_peak_bytes'] / 2**20:.1f} MiB)"))
    return rows


def disk_full_row(d):
    if not d:
        return None
    return ("disk full, real file system and clients (`test_disk_full.py`, "
            "`tests/storage_faults.rs`)",
            f"a {d['file_system_bytes'] >> 20} MiB tmpfs with `disk_min_free_bytes: "
            f"{d['disk_min_free_bytes'] >> 20} MiB`: {d['acked_before_refusal']:,} records "
            f"acknowledged, then KAFKA_STORAGE_ERROR with "
            f"{d['free_bytes_at_refusal'] / 2**20:.1f} MiB still free (the writer never hit "
            f"ENOSPC); {d['records_read_back']:,} records read back after a kill -9, "
            f"**{d['lost']} lost**; a retrying producer's {d['resume_records']} records were "
            f"held off while space was low and all delivered {d['resume_after_free_s']} s "
            f"after space was freed, without a restart")


def fuzz_row(libfuzzer, replay):
    if not libfuzzer and not replay:
        return None
    parts = []
    if libfuzzer:
        t = libfuzzer["targets"]
        runs = ", ".join(f"{name} {v['executions']:,}" for name, v in sorted(t.items()))
        parts.append(f"libFuzzer with AddressSanitizer, {libfuzzer['seconds_per_target']} s per "
                     f"target: {runs} executions, **{sum(v['crashes'] for v in t.values())} "
                     f"crashes**, peak RSS {max(v['peak_rss_mb'] for v in t.values())} MiB")
    if replay:
        t = replay["targets"]
        inputs = sum(v["corpus_inputs"] for v in t.values())
        mutations = sum(v["mutations"] for v in t.values())
        parts.append(f"stable replay: {inputs} corpus inputs and {mutations:,} seeded mutations "
                     f"over {len(t)} targets, peak heap {replay['peak_heap_bytes'] / 2**20:.1f} MiB "
                     f"under a {replay['heap_limit_bytes'] >> 20} MiB cap, 0 failures")
    return ("fuzzing the frame, request, batch, decompression and segment-recovery parsers "
            "(`scripts/fuzz`, `tests/fuzz_replay.rs`)", "; ".join(parts))


def loom_row(ordered, failure):
    if not ordered or not failure:
        return None
    bound = ordered["preemption_bound"]
    return ("group-commit concurrency, loom (`log::commit::loom_tests`)",
            f"every interleaving up to {bound if bound is not None else 'unbounded'} preemptions: "
            f"{ordered['interleavings']:,} of out-of-order writers with concurrent commit steps and "
            f"{failure['interleavings']:,} of a failed fsync racing them: **0 acknowledged before "
            f"durable, 0 high-watermark regressions, 0 waiters left unresolved**")


def connection_cycles_row(c):
    if not c:
        return None
    return ("connect/close cycles (`tests/connections.rs`)",
            f"{c['cycles']:,} cycles (closed at once, half a frame, a response never read, held "
            f"over a per-IP limit of {c['per_ip_limit']}): test process descriptors "
            f"{c['fds_before']} before, **{c['fds_after']} after**")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tier", default="report")
    ap.add_argument("--command", default="scripts/reliability --report")
    args = ap.parse_args()
    rows = [kill9_row(load("kill9-fsync")), kill9_row(load("kill9-page_cache"))]
    rows += power_loss_rows(load("power-loss"))
    rows += torn_rows(load("torn-tail-truncation"), load("torn-tail-bit-flips"))
    rows += hostile_rows(load("hostile-connections"), load("pipelining-budget"))
    rows.append(connection_cycles_row(load("connection-cycles")))
    rows.append(disk_full_row(load("disk-full")))
    rows.append(loom_row(load("loom-out-of-order-commits"), load("loom-failure-racing-commits")))
    rows.append(fuzz_row(load("fuzz"), load("fuzz-replay")))
    rows = [r for r in rows if r]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    load1, load5, _ = os.getloadavg()
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [BEGIN,
             f"Measured by `{args.command.strip()}` ({args.tier} tier) at {commit}, {when}, "
             f"on {os.cpu_count()} cores (load average {load1:.1f} / {load5:.1f} at the end).",
             "", "| test | latest figures |", "|---|---|"]
    lines += [f"| {name} | {figure} |" for name, figure in rows]
    lines.append(END)
    text = DOC.read_text()
    start, stop = text.index(BEGIN), text.index(END) + len(END)
    DOC.write_text(text[:start] + "\n".join(lines) + text[stop:])
    print("\n".join(lines))


if __name__ == "__main__":
    main()
