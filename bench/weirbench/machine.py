"""What the report says about the machine and the software measured."""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path


def _out(cmd: list[str], timeout: float = 20) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return (p.stdout + p.stderr).strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _mem_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _filesystem(path: Path) -> str:
    out = _out(["df", "-PT", str(path)]).splitlines()
    if len(out) >= 2:
        f = out[1].split()
        return f"{f[1]} on {f[0]} ({int(f[2]) // 1024 // 1024} GiB)"
    return "?"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def describe(repo: Path, data_root: Path, weir_bin: Path, kafka_version: str | None,
             rdkafka_bin: Path | None) -> dict:
    virt = _out(["systemd-detect-virt"]) if shutil.which("systemd-detect-virt") else ""
    commit = _out(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
    dirty = _out(["git", "-C", str(repo), "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"])
    java = _out(["java", "-version"]).splitlines()
    rdk = ""
    if rdkafka_bin:
        m = re.search(r"librdkafka version (\S+)", _out([str(rdkafka_bin), "-h"]))
        rdk = m.group(1) if m else "?"
    fio = _out(["fio", "--version"]) if shutil.which("fio") else ""
    iperf = _out(["iperf3", "--version"]).splitlines()[0] if shutil.which("iperf3") else ""
    return {
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gib": round(_mem_gib(), 1),
        "kernel": platform.release(),
        "os": _os_release(),
        "virtualization": virt or "unknown",
        "data_filesystem": _filesystem(data_root),
        "weir_commit": commit + (" (src modified)" if dirty else ""),
        "weir_binary_sha256": _sha256(weir_bin),
        "kafka_version": kafka_version,
        "java": java[0] if java else "",
        "librdkafka": rdk,
        "fio": fio,
        "iperf3": iperf,
        "python": platform.python_version(),
    }


def _os_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()
