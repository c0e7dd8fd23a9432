"""Hostile connections beside a healthy real client: 1,000 slow-loris sockets and
1,000 idle sockets are closed by their deadlines while a confluent-kafka producer
keeps producing; a client pipelining large requests without reading a single
response stays within the broker's memory budgets. Figures go to
target/reliability/hostile-connections.json and pipelining-budget.json."""

from __future__ import annotations

import selectors
import socket
import struct
import threading
import time
from pathlib import Path

import helpers
import wire

SLOW_LORIS = 1000
IDLE = 1000
REQUEST_READ_TIMEOUT_MS = 8000
IDLE_TIMEOUT_MS = 10000
# Healthy-producer samples per phase (each waits for its acks=all delivery).
SAMPLES = 300


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def produce_latencies(producer, topic: str, samples: int, until: float | None = None) -> list[float]:
    """Sequential acks=all sends, each awaited: the latency a healthy client sees."""
    out = []
    errors = []
    for i in range(samples):
        if until is not None and time.monotonic() > until:
            break
        started = time.monotonic()
        producer.produce(topic, value=b"healthy-%d" % i,
                         on_delivery=lambda err, _m: err and errors.append(err))
        assert producer.flush(30) == 0
        out.append(time.monotonic() - started)
    assert not errors, errors[:3]
    return out


def connect_many(bootstrap: str, n: int) -> list[socket.socket]:
    host, port = bootstrap.split(":")
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, int(port)), timeout=10)
        s.setblocking(False)
        socks.append(s)
    return socks


def is_closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class Trickle(threading.Thread):
    """Sends one byte per slow-loris socket every 200 ms: never idle, never a whole frame."""

    def __init__(self, socks: list[socket.socket]):
        super().__init__(daemon=True)
        self.socks = socks
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(0.2):
            for s in self.socks:
                try:
                    s.send(b"\x00")
                except OSError:
                    pass


def wait_all_closed(socks: list[socket.socket], timeout: float) -> float | None:
    """The monotonic time by which the broker had closed every socket, or None."""
    started = time.monotonic()
    pending = set(socks)
    sel = selectors.DefaultSelector()
    for s in pending:
        sel.register(s, selectors.EVENT_READ)
    while pending and time.monotonic() - started < timeout:
        for key, _ in sel.select(timeout=0.5):
            if is_closed(key.fileobj):
                sel.unregister(key.fileobj)
                pending.discard(key.fileobj)
    sel.close()
    return None if pending else time.monotonic()


def test_slow_loris_and_idle_sockets_beside_a_healthy_producer(configured_broker, topic_name):
    broker = configured_broker(f"request_read_timeout_ms: {REQUEST_READ_TIMEOUT_MS}\n"
                               f"connections_max_idle_ms: {IDLE_TIMEOUT_MS}\n")
    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, partitions=1)
    producer = helpers.producer(broker.bootstrap, linger_ms=0)
    produce_latencies(producer, topic, 20)  # connect and warm up
    pid = broker.proc.pid
    fds_before = open_fds(pid)
    baseline = produce_latencies(producer, topic, SAMPLES)

    attack_started = time.monotonic()
    loris = connect_many(broker.bootstrap, SLOW_LORIS)
    for s in loris:
        s.send(struct.pack(">i", 4096))  # a 4 KiB frame announced, trickled forever
    idle = connect_many(broker.bootstrap, IDLE)
    trickle = Trickle(loris)
    trickle.start()
    try:
        connected_in = time.monotonic() - attack_started
        # Measure while every hostile socket is still open.
        under_attack = produce_latencies(producer, topic, SAMPLES,
                                         until=attack_started + REQUEST_READ_TIMEOUT_MS / 1000 - 1)
        loris_closed = wait_all_closed(loris, REQUEST_READ_TIMEOUT_MS / 1000 + 20)
        assert loris_closed is not None, "slow-loris sockets left open past the request deadline"
        idle_closed = wait_all_closed(idle, IDLE_TIMEOUT_MS / 1000 + 20)
        assert idle_closed is not None, "idle sockets left open past connections_max_idle_ms"
    finally:
        trickle.stop.set()
        trickle.join()
        for s in loris + idle:
            s.close()
    # Only the healthy producer's connections remain.
    deadline = time.monotonic() + 10
    while open_fds(pid) > fds_before and time.monotonic() < deadline:
        time.sleep(0.1)
    fds_after = open_fds(pid)
    assert fds_after <= fds_before, f"broker descriptors {fds_before} -> {fds_after}"
    after = produce_latencies(producer, topic, 20)
    assert len(after) == 20
    p99_base, p99_attack = percentile(baseline, 0.99), percentile(under_attack, 0.99)
    helpers.save_figures("hostile-connections", {
        "slow_loris": SLOW_LORIS,
        "idle": IDLE,
        "request_read_timeout_ms": REQUEST_READ_TIMEOUT_MS,
        "connections_max_idle_ms": IDLE_TIMEOUT_MS,
        "hostile_connected_s": round(connected_in, 2),
        "slow_loris_all_closed_after_s": round(loris_closed - attack_started, 2),
        "idle_all_closed_after_s": round(idle_closed - attack_started, 2),
        "healthy_sends_baseline": len(baseline),
        "healthy_sends_under_attack": len(under_attack),
        "healthy_p50_ms_baseline": round(percentile(baseline, 0.5) * 1000, 2),
        "healthy_p99_ms_baseline": round(p99_base * 1000, 2),
        "healthy_p50_ms_under_attack": round(percentile(under_attack, 0.5) * 1000, 2),
        "healthy_p99_ms_under_attack": round(p99_attack * 1000, 2),
        "p99_ratio": round(p99_attack / p99_base, 2),
        "broker_fds_before": fds_before,
        "broker_fds_after": fds_after,
    })
    assert len(under_attack) >= 50, "the healthy producer barely progressed under attack"


def test_pipelining_without_reading_stays_within_the_budgets(configured_broker, topic_name):
    budget = 8 << 20
    broker = configured_broker(f"queued_max_request_bytes: {budget}\n"
                               f"fetch_queue_max_bytes: {budget}\n"
                               f"write_queue_max_bytes: {budget}\n")
    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, partitions=1)
    value = b"v" * 1000
    helpers.produce(broker.bootstrap, topic,
                    (helpers.Out(None, value, [], None, 0) for _ in range(32 * 1024)),
                    acks=1, linger_ms=20, batch_size=1 << 20)
    pid = broker.proc.pid
    rss_before = rss_bytes(pid)
    host, port = broker.bootstrap.split(":")

    # 300 fetches of up to 4 MiB each (1.2 GiB of responses if nothing bounded them) and
    # 100 produce requests of 1 MiB, on two connections that never read a response.
    fetcher = socket.create_connection((host, int(port)))
    fetch = wire.fetch_v4_body(topic, 0, 0, max_wait_ms=0, max_bytes=4 << 20)
    for corr in range(300):
        fetcher.sendall(wire.frame(wire.request_header(wire.FETCH, 4, corr) + fetch))
    batch = wire.build_batch([wire.Rec(None, b"p" * 1000) for _ in range(1000)], helpers.now_ms())
    produce = (wire.string(None) + wire.i16(1) + wire.i32(10000)
               + wire.array([wire.string(topic) + wire.array([wire.i32(0) + wire.nbytes(batch)])]))
    producer_sock = socket.create_connection((host, int(port)))
    sender = threading.Thread(daemon=True, target=lambda: [
        producer_sock.sendall(wire.frame(wire.request_header(wire.PRODUCE, 3, c) + produce))
        for c in range(100)])
    sender.start()
    peak = rss_before
    started = time.monotonic()
    while time.monotonic() - started < 8:
        peak = max(peak, rss_bytes(pid))
        time.sleep(0.05)
    # Other clients are still served while both connections sit on their budgets.
    with wire.Conn.to(broker.bootstrap) as conn:
        assert wire.api_versions_v0(conn).error_code == 0
    fetcher.close()
    producer_sock.close()
    sender.join(timeout=30)
    growth = peak - rss_before
    helpers.save_figures("pipelining-budget", {
        "budget_bytes_each": budget,
        "fetch_requests_pipelined": 300,
        "fetch_response_bytes_asked": 300 * (4 << 20),
        "produce_bytes_pipelined": 100 * len(batch),
        "rss_before_bytes": rss_before,
        "rss_peak_bytes": peak,
        "rss_growth_bytes": growth,
    })
    # Three 8 MiB budgets plus buffers and allocator slack; unbounded would be ~1 GiB.
    assert growth < 96 << 20, f"broker RSS grew by {growth >> 20} MiB"
