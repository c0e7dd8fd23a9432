"""Parsers for the load generators' and limit tools' output. Pure functions on text, so
`scripts/bench --smoke` can check them against recorded samples (bench/tests/).

Units: every throughput is returned in bytes/s (the tools disagree: Kafka's tools print
MiB as "MB", rdkafka_performance prints 10^6 bytes as "MB"); latencies in milliseconds.
"""

from __future__ import annotations

import json
import math
import re

MIB = 1024 * 1024

_NUM = r"(-?[\d.]+(?:[eE][-+]?\d+)?|NaN|Infinity)"


def _f(s: str) -> float:
    return float(s)  # float() reads NaN and Infinity too


class ParseError(ValueError):
    pass


def producer_performance(text: str, record_size: int) -> dict:
    """Kafka's ProducerPerformance: the final summary line, the one with percentiles:
    'N records sent, X records/sec (Y MB/sec), A ms avg latency, M ms max latency,
     P50 ms 50th, P95 ms 95th, P99 ms 99th, P999 ms 99.9th.'"""
    pat = re.compile(
        r"(\d+) records sent, " + _NUM + r" records/sec \(" + _NUM + r" MB/sec\), "
        + _NUM + r" ms avg latency, " + _NUM + r" ms max latency, "
        + _NUM + r" ms 50th, " + _NUM + r" ms 95th, " + _NUM + r" ms 99th, "
        + _NUM + r" ms 99\.9th")
    matches = pat.findall(text)
    if not matches:
        raise ParseError("ProducerPerformance: no summary line with percentiles")
    n, rps, _mbs, avg, mx, p50, p95, p99, p999 = matches[-1]
    records = int(n)
    rate = _f(rps)
    return {
        "records": records,
        "bytes": records * record_size,
        "records_per_s": rate,
        "bytes_per_s": rate * record_size,
        "seconds": records / rate if rate > 0 else math.nan,
        "lat_avg_ms": _f(avg), "lat_max_ms": _f(mx),
        "lat_p50_ms": _f(p50), "lat_p95_ms": _f(p95),
        "lat_p99_ms": _f(p99), "lat_p999_ms": _f(p999),
    }


_CP_DEFAULT_HEADER = ["start.time", "end.time", "data.consumed.in.MB", "MB.sec",
                      "data.consumed.in.nMsg", "nMsg.sec", "rebalance.time.ms",
                      "fetch.time.ms", "fetch.MB.sec", "fetch.nMsg.sec"]


def consumer_performance(text: str) -> dict:
    """Kafka's ConsumerPerformance: one CSV line (after an optional header)
    'start, end, MB, MB.sec, nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec,
    fetch.nMsg.sec'. MB here is MiB. The fetch.* columns exclude the group rebalance."""
    header = _CP_DEFAULT_HEADER
    row = None
    for line in text.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if cells and cells[0] == "start.time":
            header = cells
        elif len(cells) == len(header) and re.match(r"\d{4}-\d\d-\d\d", cells[0]):
            row = dict(zip(header, cells))
    if row is None:
        raise ParseError("ConsumerPerformance: no result line")
    mib = _f(row["data.consumed.in.MB"])
    fetch_ms = _f(row.get("fetch.time.ms", "nan"))
    out = {
        "records": int(_f(row["data.consumed.in.nMsg"])),
        "bytes": mib * MIB,
        "bytes_per_s_incl_rebalance": _f(row["MB.sec"]) * MIB,
        "rebalance_ms": _f(row.get("rebalance.time.ms", "nan")),
        "seconds": fetch_ms / 1000.0,
        "bytes_per_s": _f(row.get("fetch.MB.sec", row["MB.sec"])) * MIB,
    }
    m = re.search(r"WARNING: Exiting before consuming the expected number of messages[^\n]*", text)
    if m:
        out["warning"] = m.group(0)
    return out


def end_to_end_latency(text: str) -> dict:
    """Kafka's EndToEndLatency: 'Avg latency: X ms' (exact) and
    'Percentiles: 50th = A, 99th = B, 99.9th = C' (whole milliseconds, truncated by the tool)."""
    avg = re.search(r"Avg latency: " + _NUM + r" ms", text)
    pct = re.search(r"Percentiles: 50th = (\d+), 99th = (\d+), 99\.9th = (\d+)", text)
    if not avg or not pct:
        raise ParseError("EndToEndLatency: no 'Avg latency' / 'Percentiles' lines")
    return {"lat_avg_ms": _f(avg.group(1)), "lat_p50_ms": float(pct.group(1)),
            "lat_p99_ms": float(pct.group(2)), "lat_p999_ms": float(pct.group(3)),
            "percentile_resolution_ms": 1.0}


def rdkafka_producer(text: str) -> dict:
    """rdkafka_performance -P summary:
    '% N messages produced (B bytes), D delivered (offset O, F failed) in T ms: R msgs/s and
     M MB/s, ...'"""
    pat = re.compile(r"% (\d+) messages produced \((\d+) bytes\), (\d+) delivered "
                     r"\(offset -?\d+, (\d+) failed\) in (\d+)ms: (\d+) msgs/s")
    matches = pat.findall(text)
    if not matches:
        raise ParseError("rdkafka_performance: no producer summary line")
    msgs, nbytes, delivered, failed, ms, _rate = (int(x) for x in matches[-1])
    seconds = max(ms, 1) / 1000.0
    size = nbytes / msgs if msgs else 0
    return {"records": delivered, "bytes": delivered * size, "failed": failed,
            "records_produced": msgs, "seconds": seconds,
            "records_per_s": delivered / seconds, "bytes_per_s": delivered * size / seconds}


def rdkafka_consumer(text: str) -> dict:
    """rdkafka_performance -C summary:
    '% N messages (B bytes) consumed in T ms: R msgs/s (M MB/s)[, latency ...]'"""
    pat = re.compile(r"% (\d+) messages \((\d+) bytes\) consumed in (\d+)ms")
    matches = pat.findall(text)
    if not matches:
        raise ParseError("rdkafka_performance: no consumer summary line")
    msgs, nbytes, ms = (int(x) for x in matches[-1])
    seconds = max(ms, 1) / 1000.0
    return {"records": msgs, "bytes": nbytes, "seconds": seconds,
            "records_per_s": msgs / seconds, "bytes_per_s": nbytes / seconds}


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (p in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p * len(sorted_values) / 100.0 - 1e-9))  # float noise: 99.9% of 1000 is 999
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_file(text: str, warmup: int = 0) -> dict:
    """rdkafka_performance -A output: one latency in microseconds per line, in the order the
    records were acknowledged or consumed. The first `warmup` records are left out (the
    client connecting and fetching metadata while its rate limiter already sends)."""
    lines = [int(x) / 1000.0 for x in text.split() if x.strip().isdigit()]
    values = sorted(lines[warmup:] if len(lines) > 2 * warmup else lines)
    if not values:
        raise ParseError("latency file is empty")
    return {"samples": len(values), "warmup_skipped": len(lines) - len(values),
            "lat_avg_ms": sum(values) / len(values),
            "lat_p50_ms": percentile(values, 50), "lat_p99_ms": percentile(values, 99),
            "lat_p999_ms": percentile(values, 99.9), "lat_max_ms": values[-1]}


def fio(text: str) -> dict:
    """fio --output-format=json: write bandwidth and, with --fdatasync, sync latencies."""
    try:
        j = json.loads(text[text.index("{"):])
        w = j["jobs"][0]["write"]
    except (ValueError, KeyError, IndexError) as e:
        raise ParseError(f"fio: {e}") from e
    out = {"bytes_per_s": float(w["bw_bytes"]), "iops": float(w["iops"])}
    sync = j["jobs"][0].get("sync", {}).get("lat_ns", {})
    if sync.get("N") and sync.get("percentile"):
        p = sync["percentile"]
        out.update({"fdatasync_p50_ms": p["50.000000"] / 1e6,
                    "fdatasync_p99_ms": p["99.000000"] / 1e6,
                    "fdatasync_p999_ms": p["99.900000"] / 1e6})
    return out


def iperf3(text: str) -> dict:
    try:
        j = json.loads(text)
        bps = j["end"]["sum_received"]["bits_per_second"]
    except (ValueError, KeyError) as e:
        raise ParseError(f"iperf3: {e}") from e
    return {"bytes_per_s": bps / 8.0}
