"""Physical limits measured beside the brokers, in the same directory the brokers write to:
sequential buffered write bandwidth, write+fdatasync at the block sizes a broker's writer
issues, and loopback TCP bandwidth."""

from __future__ import annotations

import time
from pathlib import Path

from . import parsers, procs

# Weir's writer issues one vectored write per group of batches, so the size of a write is
# the size of what producers sent meanwhile: one Java batch (batch.size 16 KiB), a few
# batches (64 KiB), a librdkafka batch (up to 1 MB). 4 KiB is the floor (one page).
FDATASYNC_BLOCK_SIZES = ["4k", "16k", "64k", "1M"]


def _fio(name: str, test_dir: Path, log_dir: Path, args: list[str], timeout: float) -> dict:
    target = test_dir / "fio.dat"
    cmd = ["fio", "--output-format=json", "--ioengine=psync", f"--filename={target}",
           f"--name={name}", "--rw=write", *args]
    with procs.Window(None) as w:
        rc, out = procs.run(cmd, log_dir / f"fio-{name}.json", timeout)
    target.unlink(missing_ok=True)
    if rc != 0:
        raise RuntimeError(f"fio {name} exit {rc}: {out[-500:]}")
    r = parsers.fio(out)
    r.update(w.result())
    return r


def _iperf(name: str, log_dir: Path, streams: int, seconds: float) -> dict:
    port = procs.free_port()
    server = procs.spawn(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(port), "-1"],
                         log_dir / f"iperf-{name}-server.log")
    try:
        time.sleep(0.3)
        cmd = ["iperf3", "-c", "127.0.0.1", "-B", "127.0.0.1", "-p", str(port), "-J",
               "-t", str(seconds), "-P", str(streams)]
        with procs.Window(None) as w:
            rc, out = procs.run(cmd, log_dir / f"iperf-{name}.json", seconds + 30)
        if rc != 0:
            raise RuntimeError(f"iperf3 {name} exit {rc}: {out[-500:]}")
        r = parsers.iperf3(out)
        r.update(w.result())
        return r
    finally:
        procs.stop(server, grace=5)


def measure(test_dir: Path, log_dir: Path, seq_bytes: int, seconds: float, sync_size: int,
            block_sizes=tuple(FDATASYNC_BLOCK_SIZES)) -> dict:
    """All limits once. seq_bytes: size of the buffered sequential write (ends with one
    fsync, so the page cache cannot flatter it); seconds: duration of each timed test."""
    test_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    # Twice: on this kind of VM the first write into freshly freed guest memory pays host
    # page faults (the second reuses the pages the first freed). The limit is the better one.
    for run in ("first", "second"):
        out[f"buffered_seq_write_1M_{run}"] = _fio(
            f"buffered_seq_write_1M_{run}", test_dir, log_dir,
            ["--bs=1M", f"--size={seq_bytes}", "--end_fsync=1"], timeout=600)
    out["buffered_seq_write_1M"] = max(
        (out["buffered_seq_write_1M_first"], out["buffered_seq_write_1M_second"]),
        key=lambda r: r["bytes_per_s"])
    for bs in block_sizes:
        out[f"fdatasync_{bs}"] = _fio(
            f"fdatasync_{bs}", test_dir, log_dir,
            [f"--bs={bs}", f"--size={sync_size}", "--fdatasync=1", f"--runtime={seconds}",
             "--time_based"], timeout=seconds + 120)
    for streams in (1, 4):
        out[f"tcp_loopback_P{streams}"] = _iperf(f"P{streams}", log_dir, streams, seconds)
    return out
