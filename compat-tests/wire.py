"""A tiny hand-rolled Kafka wire-protocol toolkit for raw-socket tests.

Only what the tests need: framing, the primitive types (classic and
"compact"/flexible), a few requests built by hand, and a v2 record batch
builder/parser. Kept independent of any Kafka client so that the tests can
send bytes a well-behaved client never would.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

try:  # C implementation when installed (it is pinned in requirements.txt)
    from crc32c import crc32c as _crc32c_fast
except ImportError:  # pragma: no cover - fallback keeps the module usable
    _crc32c_fast = None


# ---------------------------------------------------------------------------
# CRC-32C (Castagnoli), as used by record batch v2
# ---------------------------------------------------------------------------

def _make_crc_table():
    poly = 0x82F63B78
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _make_crc_table()


def crc32c(data: bytes) -> int:
    if _crc32c_fast is not None:
        return _crc32c_fast(bytes(data))
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# ---------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------

def i8(v): return struct.pack(">b", v)
def i16(v): return struct.pack(">h", v)
def i32(v): return struct.pack(">i", v)
def i64(v): return struct.pack(">q", v)
def u32(v): return struct.pack(">I", v)


def string(s: str | None) -> bytes:
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def nbytes(b: bytes | None) -> bytes:
    if b is None:
        return i32(-1)
    return i32(len(b)) + b


def array(items: list[bytes]) -> bytes:
    return i32(len(items)) + b"".join(items)


def uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint(v: int) -> bytes:
    """Zig-zag signed varint (record fields)."""
    return uvarint((v << 1) ^ (v >> 63))


def compact_string(s: str | None) -> bytes:
    if s is None:
        return uvarint(0)
    b = s.encode()
    return uvarint(len(b) + 1) + b


def compact_array(items: list[bytes]) -> bytes:
    return uvarint(len(items) + 1) + b"".join(items)


NO_TAGS = uvarint(0)


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------

class Reader:
    def __init__(self, data: bytes, pos: int = 0):
        self.data = data
        self.pos = pos

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"read past end: need {n} at {self.pos}/{len(self.data)}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def i8(self): return struct.unpack(">b", self._take(1))[0]
    def i16(self): return struct.unpack(">h", self._take(2))[0]
    def i32(self): return struct.unpack(">i", self._take(4))[0]
    def i64(self): return struct.unpack(">q", self._take(8))[0]
    def u32(self): return struct.unpack(">I", self._take(4))[0]

    def uvarint(self) -> int:
        shift = 0
        result = 0
        while True:
            b = self._take(1)[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def varint(self) -> int:
        v = self.uvarint()
        return (v >> 1) ^ -(v & 1)

    def string(self):
        n = self.i16()
        return None if n < 0 else self._take(n).decode()

    def nbytes(self):
        n = self.i32()
        return None if n < 0 else self._take(n)

    def compact_string(self):
        n = self.uvarint()
        return None if n == 0 else self._take(n - 1).decode()

    def compact_bytes(self):
        n = self.uvarint()
        return None if n == 0 else self._take(n - 1)

    def array(self, item):
        n = self.i32()
        return None if n < 0 else [item(self) for _ in range(n)]

    def compact_array(self, item):
        n = self.uvarint()
        return None if n == 0 else [item(self) for _ in range(n - 1)]

    def tags(self):
        for _ in range(self.uvarint()):
            self.uvarint()
            self._take(self.uvarint())

    def remaining(self) -> int:
        return len(self.data) - self.pos


# ---------------------------------------------------------------------------
# Framing and a blocking connection
# ---------------------------------------------------------------------------

def request_header(api_key: int, version: int, correlation_id: int,
                   client_id: str | None = "weir-compat", flexible: bool = False) -> bytes:
    """Request header v1 (classic) or v2 (flexible: adds empty tagged fields)."""
    h = i16(api_key) + i16(version) + i32(correlation_id) + string(client_id)
    if flexible:
        h += NO_TAGS
    return h


def frame(payload: bytes) -> bytes:
    return i32(len(payload)) + payload


class Closed(Exception):
    """The broker closed the connection."""


class Conn:
    def __init__(self, host: str, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.next_corr = 1

    @classmethod
    def to(cls, bootstrap: str, timeout: float = 10.0) -> "Conn":
        host, port = bootstrap.rsplit(":", 1)
        return cls(host, int(port), timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def send(self, api_key: int, version: int, body: bytes, flexible: bool = False,
             correlation_id: int | None = None) -> int:
        corr = self.next_corr if correlation_id is None else correlation_id
        self.next_corr = corr + 1
        self.send_raw(frame(request_header(api_key, version, corr, flexible=flexible) + body))
        return corr

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except ConnectionResetError as e:
                raise Closed(str(e)) from e
            if not chunk:
                raise Closed(f"EOF after {len(buf)}/{n} bytes")
            buf += chunk
        return bytes(buf)

    def recv(self) -> bytes:
        """One response frame (without the size prefix)."""
        (size,) = struct.unpack(">i", self._recv_exact(4))
        return self._recv_exact(size)

    def recv_response(self, expected_corr: int, flexible_header: bool = False) -> Reader:
        r = Reader(self.recv())
        corr = r.i32()
        assert corr == expected_corr, f"correlation id {corr} != {expected_corr}"
        if flexible_header:
            r.tags()
        return r

    def request(self, api_key: int, version: int, body: bytes, flexible: bool = False) -> Reader:
        corr = self.send(api_key, version, body, flexible=flexible)
        # ApiVersions responses always use header v0, whatever the version.
        return self.recv_response(corr, flexible_header=flexible and api_key != API_VERSIONS)

    def wait_closed(self, timeout: float = 10.0) -> bool:
        """True if the peer closes the connection (EOF/reset) within timeout
        without sending anything; raises AssertionError if it sends data."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not chunk:
                return True
            raise AssertionError(f"expected the connection to close, got {len(chunk)} bytes")
        return False


# ---------------------------------------------------------------------------
# API keys and a few hand-built requests
# ---------------------------------------------------------------------------

PRODUCE, FETCH, LIST_OFFSETS, METADATA, API_VERSIONS = 0, 1, 2, 3, 18


@dataclass
class ApiVersionsResult:
    error_code: int
    versions: dict[int, tuple[int, int]]
    throttle_time_ms: int | None = None


def parse_api_versions_v0(r: Reader) -> ApiVersionsResult:
    error = r.i16()
    keys = r.array(lambda rr: (rr.i16(), rr.i16(), rr.i16()))
    return ApiVersionsResult(error, {k: (lo, hi) for k, lo, hi in keys or []})


def api_versions_v0(conn: Conn) -> ApiVersionsResult:
    return parse_api_versions_v0(conn.request(API_VERSIONS, 0, b""))


def api_versions_v3(conn: Conn, version: int = 3) -> ApiVersionsResult:
    body = compact_string("weir-compat") + compact_string("1.0") + NO_TAGS
    r = conn.request(API_VERSIONS, version, body, flexible=True)
    error = r.i16()

    def key(rr):
        k, lo, hi = rr.i16(), rr.i16(), rr.i16()
        rr.tags()
        return k, lo, hi

    keys = r.compact_array(key)
    throttle = r.i32()
    r.tags()
    return ApiVersionsResult(error, {k: (lo, hi) for k, lo, hi in keys or []}, throttle)


@dataclass
class PartitionProduceResult:
    partition: int
    error_code: int
    base_offset: int


def produce_v3(conn: Conn, topic: str, partition: int, records: bytes, acks: int = -1,
               timeout_ms: int = 10000) -> list[PartitionProduceResult] | None:
    body = (string(None) + i16(acks) + i32(timeout_ms)
            + array([string(topic) + array([i32(partition) + nbytes(records)])]))
    corr = conn.send(PRODUCE, 3, body)
    if acks == 0:
        return None
    r = conn.recv_response(corr)
    out = []
    for _ in range(r.i32()):
        r.string()
        for _ in range(r.i32()):
            p, err, base = r.i32(), r.i16(), r.i64()
            r.i64()  # log_append_time
            out.append(PartitionProduceResult(p, err, base))
    return out


@dataclass
class FetchPartition:
    partition: int
    error_code: int
    high_watermark: int
    records: bytes | None


def fetch_v4_body(topic: str, partition: int, offset: int, max_wait_ms: int,
                  min_bytes: int = 1, max_bytes: int = 1 << 20) -> bytes:
    return (i32(-1) + i32(max_wait_ms) + i32(min_bytes) + i32(max_bytes) + i8(0)
            + array([string(topic) + array([i32(partition) + i64(offset) + i32(max_bytes)])]))


def parse_fetch_v4(r: Reader) -> list[FetchPartition]:
    r.i32()  # throttle
    out = []
    for _ in range(r.i32()):
        r.string()
        for _ in range(r.i32()):
            p, err, hw = r.i32(), r.i16(), r.i64()
            r.i64()  # last stable offset
            r.array(lambda rr: (rr.i64(), rr.i64()))
            out.append(FetchPartition(p, err, hw, r.nbytes()))
    return out


@dataclass
class ListOffsetsPartition:
    partition: int
    error_code: int
    timestamp: int
    offset: int


def list_offsets_v7(conn: Conn, topic: str, partition: int, timestamp: int) -> ListOffsetsPartition:
    body = (i32(-1) + i8(0)
            + compact_array([compact_string(topic)
                             + compact_array([i32(partition) + i32(-1) + i64(timestamp) + NO_TAGS])
                             + NO_TAGS])
            + NO_TAGS)
    r = conn.request(LIST_OFFSETS, 7, body, flexible=True)
    r.i32()  # throttle

    def part(rr):
        p = ListOffsetsPartition(rr.i32(), rr.i16(), rr.i64(), rr.i64())
        rr.i32()  # leader epoch
        rr.tags()
        return p

    def top(rr):
        rr.compact_string()
        parts = rr.compact_array(part)
        rr.tags()
        return parts

    topics = r.compact_array(top)
    return topics[0][0]


# ---------------------------------------------------------------------------
# Record batch v2
# ---------------------------------------------------------------------------

BATCH_HEADER_LEN = 61  # baseOffset .. recordsCount


@dataclass
class Rec:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    timestamp_delta: int = 0


def _encode_record(offset_delta: int, rec: Rec) -> bytes:
    body = bytearray()
    body += i8(0)  # attributes
    body += varint(rec.timestamp_delta)
    body += varint(offset_delta)
    for part in (rec.key, rec.value):
        if part is None:
            body += varint(-1)
        else:
            body += varint(len(part)) + part
    body += varint(len(rec.headers))
    for hk, hv in rec.headers:
        kb = hk.encode()
        body += varint(len(kb)) + kb
        body += varint(-1) if hv is None else varint(len(hv)) + hv
    return varint(len(body)) + bytes(body)


def build_batch(records: list[Rec], base_timestamp: int, base_offset: int = 0) -> bytes:
    """An uncompressed v2 record batch with a correct CRC-32C."""
    payload = b"".join(_encode_record(i, r) for i, r in enumerate(records))
    max_ts = base_timestamp + max(r.timestamp_delta for r in records)
    after_crc = (i16(0)                       # attributes: no compression, CreateTime
                 + i32(len(records) - 1)      # lastOffsetDelta
                 + i64(base_timestamp) + i64(max_ts)
                 + i64(-1) + i16(-1) + i32(-1)  # producerId, producerEpoch, baseSequence
                 + i32(len(records)) + payload)
    crc = crc32c(after_crc)
    # batchLength counts from partitionLeaderEpoch to the end.
    rest = i32(-1) + i8(2) + u32(crc) + after_crc
    return i64(base_offset) + i32(len(rest)) + rest


@dataclass
class BatchInfo:
    position: int
    base_offset: int
    batch_length: int
    magic: int
    crc: int
    crc_ok: bool
    attributes: int
    last_offset_delta: int
    first_timestamp: int
    max_timestamp: int
    record_count: int

    @property
    def compression(self) -> int:
        return self.attributes & 0x07

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def size(self) -> int:
        return 12 + self.batch_length


def parse_batches(data: bytes) -> tuple[list[BatchInfo], int]:
    """Walk concatenated v2 batches. Returns the batches that are complete
    and the number of trailing bytes that do not form a complete batch."""
    batches = []
    pos = 0
    while pos + BATCH_HEADER_LEN <= len(data):
        base_offset, batch_length = struct.unpack_from(">qi", data, pos)
        end = pos + 12 + batch_length
        if batch_length < BATCH_HEADER_LEN - 12 or end > len(data):
            break
        _epoch, magic, crc, attrs, lod, first_ts, max_ts = struct.unpack_from(">ibIhiqq", data, pos + 12)
        (count,) = struct.unpack_from(">i", data, pos + 57)
        ok = crc32c(data[pos + 21:end]) == crc
        batches.append(BatchInfo(pos, base_offset, batch_length, magic, crc, ok, attrs, lod,
                                 first_ts, max_ts, count))
        pos = end
    return batches, len(data) - pos


COMPRESSION_CODES = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
