"""Fixtures that run the Weir binary for the compatibility tests.

By default every test session starts `target/release/weir` (or `$WEIR_BIN`)
on a free port with a fresh data directory. Set `WEIR_BOOTSTRAP=host:port`
to run the same tests against an already running broker (for example a real
Apache Kafka, to check that the tests themselves are right); tests that need
to kill, restart or inspect the data directory skip then.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import wire  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
EXTERNAL_BOOTSTRAP = os.environ.get("WEIR_BOOTSTRAP")
DEFAULT_BIN = REPO_ROOT / "target" / "release" / "weir"

# Every broker process this session started, so none outlives it.
_STARTED: list["Broker"] = []
# The session-wide broker, once started (for failure reports).
_SHARED: list["Broker"] = []


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


try:  # resolved once here so the forked child only makes one libc call
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _PRCTL = None


def _die_with_parent():
    """Runs in the child before exec: SIGKILL the broker if the thread that
    started it dies (PR_SET_PDEATHSIG), so a killed pytest leaves no broker.
    Start brokers from the main thread only."""
    if _PRCTL is not None:
        _PRCTL(1, int(signal.SIGKILL))


def api_versions_ok(bootstrap: str, timeout: float = 2.0) -> bool:
    try:
        with wire.Conn.to(bootstrap, timeout=timeout) as conn:
            return wire.api_versions_v0(conn).error_code == 0
    except (OSError, wire.Closed, ValueError, AssertionError):
        return False


class Broker:
    """One Weir process on a fixed port and data directory, restartable."""

    external = False

    def __init__(self, binary: Path, data_dir: Path, log_path: Path, port: int | None = None,
                 extra_args: tuple[str, ...] = ()):
        self.binary = Path(binary)
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.port = port or free_port()
        self.metrics_port = free_port()
        self.host = "127.0.0.1"
        self.extra_args = tuple(extra_args)
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}"

    def start(self, timeout: float = 30.0, poll_interval: float = 0.05):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [str(self.binary), "--listen", self.bootstrap, "--data-dir", str(self.data_dir),
               "--metrics-listen", f"{self.host}:{self.metrics_port}", *self.extra_args]
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env.setdefault("RUST_BACKTRACE", "1")
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env=env, preexec_fn=_die_with_parent)
        if self not in _STARTED:
            _STARTED.append(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise RuntimeError(f"weir exited with {code} during start-up:\n{self.log_tail()}")
            if api_versions_ok(self.bootstrap, timeout=1.0):
                return
            time.sleep(poll_interval)
        raise RuntimeError(f"weir did not answer ApiVersions within {timeout}s:\n{self.log_tail()}")

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL: a crash, no shutdown work at all."""
        if self.is_running():
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait; returns the exit code (SIGKILLs after timeout)."""
        if self.proc is None:
            return None
        if self.is_running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                raise RuntimeError(f"weir ignored SIGTERM for {timeout}s:\n{self.log_tail()}")
        return self.proc.returncode

    def restart(self):
        self.stop()
        self.start()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def partition_dir(self, topic: str, partition: int) -> Path:
        return self.data_dir / f"{topic}-{partition}"

    def segment_files(self, topic: str, partition: int) -> list[Path]:
        return sorted(self.partition_dir(topic, partition).glob("*.log"))


class ExternalBroker:
    """A broker someone else runs (WEIR_BOOTSTRAP): no process control.
    `WEIR_DATA_DIR` may name its log directory for read-only checks of the
    segment files (a Kafka log.dirs uses the same layout)."""

    external = True

    def __init__(self, bootstrap: str, data_dir: str | None = None):
        self.host, port = bootstrap.rsplit(":", 1)
        self.port = int(port)
        self.data_dir = Path(data_dir) if data_dir else None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def _skip(self, *_a, **_k):
        pytest.skip("needs a broker process this session controls (WEIR_BOOTSTRAP is set)")

    kill = stop = start = restart = _skip

    def partition_dir(self, topic: str, partition: int) -> Path:
        if self.data_dir is None:
            self._skip()
        return self.data_dir / f"{topic}-{partition}"

    def segment_files(self, topic: str, partition: int) -> list[Path]:
        return sorted(self.partition_dir(topic, partition).glob("*.log"))

    def log_text(self) -> str:
        return ""

    def log_tail(self, lines: int = 60) -> str:
        return ""


def _kill_leftovers():
    for b in _STARTED:
        if b.is_running():
            b.proc.kill()


atexit.register(_kill_leftovers)


def _binary() -> Path:
    binary = Path(os.environ.get("WEIR_BIN", DEFAULT_BIN))
    if not binary.is_file():
        pytest.fail(f"weir binary not found at {binary}: run `cargo build --release` "
                    f"or set WEIR_BIN / WEIR_BOOTSTRAP", pytrace=False)
    return binary


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """The broker shared by every test that does not need its own."""
    if EXTERNAL_BOOTSTRAP:
        yield ExternalBroker(EXTERNAL_BOOTSTRAP, os.environ.get("WEIR_DATA_DIR"))
        return
    root = tmp_path_factory.mktemp("weir-shared")
    b = Broker(_binary(), root / "data", root / "weir.log")
    _SHARED.append(b)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def own_broker(request, tmp_path):
    """A private broker for tests that kill, restart or corrupt it."""
    if EXTERNAL_BOOTSTRAP:
        pytest.skip("needs a broker process this session controls (WEIR_BOOTSTRAP is set)")
    b = Broker(_binary(), tmp_path / "data", tmp_path / "weir.log")
    request.node.weir_brokers = [b]
    b.start()
    yield b
    try:
        b.stop()
    finally:
        b.kill()


@pytest.fixture
def configured_broker(request, tmp_path):
    """A private broker on a config file: `configured_broker("key: value\n")` starts it."""
    if EXTERNAL_BOOTSTRAP:
        pytest.skip("needs a broker process this session controls (WEIR_BOOTSTRAP is set)")
    started: list[Broker] = []

    def start(yaml_text: str) -> Broker:
        config = tmp_path / "weir.yaml"
        config.write_text(yaml_text)
        b = Broker(_binary(), tmp_path / "data", tmp_path / "weir.log",
                   extra_args=("--config", str(config)))
        request.node.weir_brokers = [b]
        started.append(b)
        b.start()
        return b

    yield start
    for b in started:
        try:
            b.stop()
        finally:
            b.kill()


@pytest.fixture
def bootstrap(broker) -> str:
    return broker.bootstrap


@pytest.fixture
def topic_name(request):
    """Unique topic names: topic_name() or topic_name('suffix')."""
    base = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")[:60]

    def make(suffix: str = "") -> str:
        return f"{base}{'-' + suffix if suffix else ''}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    brokers = list(getattr(item, "weir_brokers", []))
    if "broker" in item.fixturenames:
        brokers = _SHARED + brokers
    for b in brokers:
        tail = b.log_tail(80)
        if tail:
            report.sections.append((f"weir log tail ({b.log_path})", tail))
