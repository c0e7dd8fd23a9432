"""Malformed or hostile input over a raw socket: the broker drops or rejects
it, appends nothing, and keeps serving new connections."""

import struct
import time

import pytest

import helpers
import wire


def assert_healthy(broker):
    if not broker.external:
        assert broker.is_running(), "broker process died"
    with wire.Conn.to(broker.bootstrap) as conn:
        assert wire.api_versions_v0(conn).error_code == 0




@pytest.mark.parametrize("declared", [200 * 1024 * 1024, 2**31 - 1])
def test_oversized_frame_closes(broker, declared):
    with wire.Conn.to(broker.bootstrap) as conn:
        conn.send_raw(struct.pack(">i", declared) + b"\x00" * 64)
        assert conn.wait_closed(10), "connection left open after an oversized frame"
    assert_healthy(broker)


@pytest.mark.parametrize("declared", [-1, -5, 0])
def test_negative_or_empty_frame_closes(broker, declared):
    with wire.Conn.to(broker.bootstrap) as conn:
        conn.send_raw(struct.pack(">i", declared) + b"\x00" * 64)
        assert conn.wait_closed(10)
    assert_healthy(broker)


@pytest.mark.parametrize("api_key,version", [(88, 0), (1000, 0), (wire.METADATA, 99)])
def test_unknown_api_or_version(broker, api_key, version):
    with wire.Conn.to(broker.bootstrap) as conn:
        corr = conn.send(api_key, version, b"\x00" * 16)
        try:
            frame = conn.recv()
        except wire.Closed:
            frame = None
        if frame is not None:
            # Answered instead of closing: must be this request's correlation id.
            assert struct.unpack_from(">i", frame)[0] == corr
    assert_healthy(broker)


@pytest.mark.parametrize("version", [0, 1, 2])
def test_produce_below_v3_rejected(broker, topic_name, version):
    """Advertised (for old librdkafka) but not served: closed or error 35."""
    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, partitions=1)
    batch = wire.build_batch([wire.Rec(b"k", b"v")], helpers.now_ms())
    body = (wire.i16(-1) + wire.i32(5000)
            + wire.array([wire.string(topic) + wire.array([wire.i32(0) + wire.nbytes(batch)])]))
    with wire.Conn.to(broker.bootstrap) as conn:
        corr = conn.send(wire.PRODUCE, version, body)
        try:
            r = conn.recv_response(corr)
        except wire.Closed:
            r = None
        if r is not None:
            r.i32()  # topics
            r.string()
            r.i32()  # partitions
            r.i32()  # partition index
            assert r.i16() == 35
    assert helpers.watermarks(broker.bootstrap, topic, 0) == (0, 0)
    assert_healthy(broker)


def test_produce_corrupt_crc(broker, topic_name):
    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, partitions=1)
    ts = helpers.now_ms() - 1000
    good = wire.build_batch([wire.Rec(b"k%d" % i, b"v%d" % i, [("h", b"x")], i) for i in range(5)], ts)
    with wire.Conn.to(broker.bootstrap) as conn:
        (res,) = wire.produce_v3(conn, topic, 0, good)
        assert (res.error_code, res.base_offset) == (0, 0)

        bad = bytearray(good)
        bad[-1] ^= 0xFF  # inside the last record, covered by the CRC
        (res,) = wire.produce_v3(conn, topic, 0, bytes(bad))
        assert res.error_code == 2  # CORRUPT_MESSAGE
        assert res.base_offset == -1

        bad = bytearray(good)
        bad[17] ^= 0x01  # the CRC field itself
        (res,) = wire.produce_v3(conn, topic, 0, bytes(bad))
        assert res.error_code == 2

        (res,) = wire.produce_v3(conn, topic, 0, good[:40])  # cut inside the header
        assert res.error_code == 87  # INVALID_RECORD
        assert wire.list_offsets_v7(conn, topic, 0, -1).offset == 5

        # Still writable, and the next offset follows the good batch.
        (res,) = wire.produce_v3(conn, topic, 0, good)
        assert (res.error_code, res.base_offset) == (0, 5)
    msgs = helpers.consume(broker.bootstrap, topic, [0], 10)
    assert [m.offset for m in msgs] == list(range(10))
    assert [m.value for m in msgs] == [b"v%d" % i for i in range(5)] * 2
    assert_healthy(broker)


def test_disconnect_mid_request(broker, topic_name):
    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, partitions=1)
    # Half a size prefix, half a frame, and a frame cut inside the header.
    for payload in (b"\x00\x00", struct.pack(">i", 100) + b"\x00" * 10,
                    struct.pack(">i", 30) + struct.pack(">hhi", 18, 0, 1)):
        conn = wire.Conn.to(broker.bootstrap)
        conn.send_raw(payload)
        conn.close()
    # Leave while a long-poll fetch is parked.
    conn = wire.Conn.to(broker.bootstrap)
    conn.send(wire.FETCH, 4, wire.fetch_v4_body(topic, 0, 0, 5000))
    time.sleep(0.3)
    conn.close()
    # Leave with a produce in flight.
    batch = wire.build_batch([wire.Rec(b"k", b"v")], helpers.now_ms())
    conn = wire.Conn.to(broker.bootstrap)
    conn.send(wire.PRODUCE, 3, wire.string(None) + wire.i16(-1) + wire.i32(5000)
              + wire.array([wire.string(topic) + wire.array([wire.i32(0) + wire.nbytes(batch)])]))
    conn.close()
    time.sleep(0.5)
    assert_healthy(broker)
    # The partition still takes writes; the abandoned produce may or may not have landed.
    with wire.Conn.to(broker.bootstrap) as conn:
        (res,) = wire.produce_v3(conn, topic, 0, batch)
        assert res.error_code == 0 and res.base_offset in (0, 1)
        assert wire.list_offsets_v7(conn, topic, 0, -1).offset == res.base_offset + 1
