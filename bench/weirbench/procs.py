"""Processes and /proc: start children that die with the runner, read a broker's CPU time
and memory, and the machine's own busy time (the machine is shared, so every measurement
records how busy it was)."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")

try:
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # pragma: no cover
    _PRCTL = None


def _die_with_parent():
    # PR_SET_PDEATHSIG: a killed runner leaves no broker or load generator behind.
    if _PRCTL is not None:
        _PRCTL(1, int(signal.SIGKILL))


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, never one this process handed out before: the kernel
    may give the same ephemeral port to two binds in a row once the first socket closed
    (a broker got its metrics port equal to its Kafka port)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def spawn(cmd: list[str], log_path: Path, env: dict | None = None, cwd: Path | None = None,
          stdin=subprocess.DEVNULL) -> subprocess.Popen:
    """Start cmd with stdout+stderr into log_path. Call from the main thread only."""
    log = open(log_path, "wb")
    try:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=stdin,
                                env=env, cwd=cwd, preexec_fn=_die_with_parent)
    finally:
        log.close()


def run(cmd: list[str], log_path: Path, timeout: float, env: dict | None = None) -> tuple[int, str]:
    """Run to completion (or timeout: SIGINT, then SIGKILL); returns (exit code, output)."""
    proc = spawn(cmd, log_path, env=env)
    rc = finish(proc, timeout)
    return rc, log_path.read_text(errors="replace")


def finish(proc: subprocess.Popen, timeout: float) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc, sig=signal.SIGINT, grace=10)
        return -999


def stop(proc: subprocess.Popen, sig=signal.SIGTERM, grace: float = 60.0) -> int | None:
    """Signal one process we started (by its pid) and wait; SIGKILL after `grace` seconds."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def machine_ticks() -> tuple[int, int]:
    """(busy, idle incl. iowait) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v[:8]) - idle, idle


class Window:
    """Broker CPU seconds, machine busy %, and broker RSS (peak of 0.5 s samples) over a
    stretch of time: `with Window(pid) as w: ...` then w.result()."""

    def __init__(self, pid: int | None, sample_s: float = 0.5):
        self.pid = pid
        self.sample_s = sample_s
        self._stop = threading.Event()
        self.rss_peak_kb = 0

    def _sample(self):
        while not self._stop.wait(self.sample_s):
            try:
                self.rss_peak_kb = max(self.rss_peak_kb, status_kb(self.pid, "VmRSS"))
            except OSError:
                return

    def __enter__(self):
        self.t0 = time.monotonic()
        self.m0 = machine_ticks()
        self.load0 = os.getloadavg()[0]
        if self.pid:
            self.c0 = cpu_seconds(self.pid)
            self.rss_peak_kb = status_kb(self.pid, "VmRSS")
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self.wall = time.monotonic() - self.t0
        m1 = machine_ticks()
        busy, idle = m1[0] - self.m0[0], m1[1] - self.m0[1]
        self.machine_busy_pct = 100.0 * busy / max(1, busy + idle)
        self.machine_busy_cpu_s = busy / os.sysconf("SC_CLK_TCK")
        self.load1 = os.getloadavg()[0]
        self.broker_cpu_s = None
        self.rss_end_kb = None
        if self.pid:
            self._stop.set()
            self._thread.join()
            try:
                self.broker_cpu_s = cpu_seconds(self.pid) - self.c0
                self.rss_end_kb = status_kb(self.pid, "VmRSS")
                self.rss_peak_kb = max(self.rss_peak_kb, self.rss_end_kb)
            except OSError:
                pass
        return False

    def result(self) -> dict:
        out = {"wall_s": round(self.wall, 3), "machine_busy_pct": round(self.machine_busy_pct, 1),
               "load1_before": self.load0, "load1_after": self.load1}
        if self.broker_cpu_s is not None:
            out.update({"broker_cpu_s": round(self.broker_cpu_s, 3),
                        "broker_cpu_pct": round(100.0 * self.broker_cpu_s / max(self.wall, 1e-9), 1),
                        "broker_rss_peak_kb": self.rss_peak_kb,
                        "broker_rss_end_kb": self.rss_end_kb,
                        # The load generators, mostly (and anything else on the machine).
                        "others_cpu_s": round(max(0.0, self.machine_busy_cpu_s - self.broker_cpu_s), 3)})
        return out
