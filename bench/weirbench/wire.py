"""The few Kafka requests the runner sends itself, over plain sockets (stdlib only).

ApiVersions v0 (readiness, and which APIs a broker serves), Metadata v1 (readiness of a
topic's leaders) and CreateTopics v2 (topics with a chosen partition count, without starting
a JVM). All three are non-flexible versions that Kafka 4.x and Weir both serve.
"""

from __future__ import annotations

import socket
import struct
import time

API_CREATE_TOPICS = 19
API_METADATA = 3
API_API_VERSIONS = 18
API_JOIN_GROUP = 11
API_INIT_PRODUCER_ID = 22

CLIENT_ID = b"weir-bench"


class WireError(Exception):
    pass


def _string(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def request_bytes(api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    """A size-prefixed request with a v1 header (api key, version, correlation id, client id)."""
    header = struct.pack(">hhi", api_key, version, correlation_id)
    header += struct.pack(">h", len(CLIENT_ID)) + CLIENT_ID
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


class Reader:
    """Cursor over a response body."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise WireError("response truncated")
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return value

    def i8(self): return self.take(">b")
    def i16(self): return self.take(">h")
    def i32(self): return self.take(">i")

    def string(self):
        n = self.i16()
        if n < 0:
            return None
        s = self.data[self.pos:self.pos + n].decode(errors="replace")
        self.pos += n
        return s


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise WireError("connection closed by broker")
        buf += chunk
    return bytes(buf)


def read_response(sock: socket.socket, correlation_id: int) -> Reader:
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    body = _recv_exact(sock, size)
    r = Reader(body)
    if r.i32() != correlation_id:
        raise WireError("unexpected correlation id")
    return r


def connect(bootstrap: str, timeout: float = 5.0) -> socket.socket:
    host, port = bootstrap.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def call(sock: socket.socket, api_key: int, version: int, body: bytes, correlation_id: int = 1) -> Reader:
    sock.sendall(request_bytes(api_key, version, correlation_id, body))
    return read_response(sock, correlation_id)


def api_versions(bootstrap: str, timeout: float = 3.0) -> dict[int, tuple[int, int]]:
    """{api_key: (min, max)} as the broker advertises it."""
    with connect(bootstrap, timeout) as sock:
        r = call(sock, API_API_VERSIONS, 0, b"")
        err = r.i16()
        if err:
            raise WireError(f"ApiVersions error {err}")
        out = {}
        for _ in range(r.i32()):
            key, lo, hi = r.i16(), r.i16(), r.i16()
            out[key] = (lo, hi)
        return out


def metadata_body(topics: list[str] | None) -> bytes:
    if topics is None:
        return struct.pack(">i", -1)
    return struct.pack(">i", len(topics)) + b"".join(_string(t) for t in topics)


def metadata(bootstrap: str, topics: list[str] | None, timeout: float = 5.0) -> dict:
    """Metadata v1: {"brokers": n, "topics": {name: (error, [leader per partition])}}."""
    with connect(bootstrap, timeout) as sock:
        r = call(sock, API_METADATA, 1, metadata_body(topics))
        brokers = r.i32()
        for _ in range(brokers):
            r.i32(); r.string(); r.i32(); r.string()
        r.i32()  # controller id
        out = {}
        for _ in range(r.i32()):
            err, name, _internal = r.i16(), r.string(), r.i8()
            leaders = []
            for _ in range(r.i32()):
                _perr, _idx, leader = r.i16(), r.i32(), r.i32()
                for _ in range(r.i32()):
                    r.i32()
                for _ in range(r.i32()):
                    r.i32()
                leaders.append(leader)
            out[name] = (err, leaders)
        return {"brokers": brokers, "topics": out}


def create_topic(bootstrap: str, name: str, partitions: int, timeout_s: float = 60.0) -> None:
    """CreateTopics v2, then wait until Metadata shows a leader for every partition."""
    body = struct.pack(">i", 1)
    body += _string(name) + struct.pack(">ih", partitions, 1)
    body += struct.pack(">i", 0) + struct.pack(">i", 0)  # no assignments, no configs
    body += struct.pack(">ib", int(timeout_s * 1000), 0)
    with connect(bootstrap, timeout_s + 5) as sock:
        r = call(sock, API_CREATE_TOPICS, 2, body)
        r.i32()  # throttle
        for _ in range(r.i32()):
            tname, err, msg = r.string(), r.i16(), r.string()
            if err not in (0, 36):  # 36 TOPIC_ALREADY_EXISTS
                raise WireError(f"CreateTopics {tname}: error {err} {msg or ''}")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            md = metadata(bootstrap, [name])
            err, leaders = md["topics"].get(name, (-1, []))
            if err == 0 and len(leaders) == partitions and all(x >= 0 for x in leaders):
                return
        except (OSError, WireError):
            pass
        if time.monotonic() > deadline:
            raise WireError(f"topic {name}: partitions have no leader after {timeout_s}s")
        time.sleep(0.1)


def wait_ready(bootstrap: str, timeout_s: float, alive=lambda: True) -> float:
    """Wait until the broker answers ApiVersions and Metadata lists a broker; seconds waited."""
    start = time.monotonic()
    while True:
        try:
            api_versions(bootstrap, timeout=2.0)
            if metadata(bootstrap, None, timeout=2.0)["brokers"] > 0:
                return time.monotonic() - start
        except (OSError, WireError):
            pass
        if not alive():
            raise WireError("broker exited during start-up")
        if time.monotonic() - start > timeout_s:
            raise WireError(f"broker not ready after {timeout_s}s")
        time.sleep(0.2)


class IdleClients:
    """N client connections that bootstrap like a real client (ApiVersions + Metadata of a
    topic) and then stay open and silent: the 'mostly idle connections' of workload (e)."""

    def __init__(self, bootstrap: str, count: int, topic: str):
        self.bootstrap = bootstrap
        self.count = count
        self.topic = topic
        self.socks: list[socket.socket] = []

    def open(self) -> float:
        start = time.monotonic()
        md_body = metadata_body([self.topic])
        for _ in range(self.count):
            sock = connect(self.bootstrap, timeout=30)
            self.socks.append(sock)
            call(sock, API_API_VERSIONS, 0, b"", correlation_id=1)
            call(sock, API_METADATA, 1, md_body, correlation_id=2)
        return time.monotonic() - start

    def still_open(self) -> int:
        """Connections the broker has not closed (a closed one reads EOF at once)."""
        alive = 0
        for sock in self.socks:
            try:
                sock.setblocking(False)
                data = sock.recv(1)
                alive += 0 if data == b"" else 1
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
        return alive

    def close(self) -> None:
        for sock in self.socks:
            try:
                sock.close()
            except OSError:
                pass
        self.socks.clear()
