"""Every compression codec round-trips through the broker, produced by either
client and read by both; on Weir the stored batches keep the producer's codec."""

import os
import random

import pytest

import helpers
import wire
from helpers import Out

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
COUNT = 600


def make_records(codec: str, base_ts: int) -> list[Out]:
    rnd = random.Random(codec)
    out = []
    for i in range(COUNT):
        if i % 3 == 0:
            value = os.urandom(200)  # incompressible
        else:
            value = (b"%s compressible payload %d " % (codec.encode(), i)) * rnd.randint(1, 40)
        out.append(Out(key=b"k%d" % i, value=value, headers=[("codec", codec.encode())],
                       timestamp=base_ts + i, partition=0))
    return out


def check(records, msgs):
    assert len(msgs) == len(records)
    assert [m.offset for m in msgs] == list(range(len(records)))
    for m, r in zip(msgs, records):
        assert (m.key, m.value, m.headers, m.timestamp) == (r.key, r.value, r.headers, r.timestamp)


def check_stored_codec(broker, topic, codec, plain_allowed=False):
    """The log keeps the client's batches: same codec, valid CRC, all records.

    plain_allowed: librdkafka sends a batch uncompressed when compressing it did not make
    it smaller (a lone 200-byte random value under snappy), so such a batch may be stored
    plain; the others must still carry the codec."""
    if broker.data_dir is None:
        return  # an external broker whose log directory we were not told
    batches = []
    for seg in broker.segment_files(topic, 0):
        data = seg.read_bytes()
        found, trailing = wire.parse_batches(data)
        # Only the zero padding O_DIRECT writes leave in the last block (log_write_io: direct).
        assert trailing < 4096 and not any(data[len(data) - trailing:]), \
            f"{seg} has {trailing} trailing bytes"
        batches += found
    assert batches, "no batches on disk"
    assert all(b.crc_ok for b in batches)
    codes = [b.compression for b in batches]
    expected = wire.COMPRESSION_CODES[codec]
    if plain_allowed:
        assert set(codes) <= {expected, wire.COMPRESSION_CODES["none"]}, codes
        assert expected in codes, codes
    else:
        assert set(codes) == {expected}, codes
    assert sum(b.record_count for b in batches) == COUNT
    assert batches[0].base_offset == 0
    for prev, nxt in zip(batches, batches[1:]):
        assert nxt.base_offset == prev.last_offset + 1


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_codec(broker, topic_name, codec):
    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, partitions=1)
    records = make_records(codec, helpers.now_ms() - 60_000)
    delivered = helpers.produce(broker.bootstrap, topic, records, compression_type=codec,
                                linger_ms=20)
    assert delivered == [(0, i) for i in range(COUNT)]
    check(records, helpers.consume(broker.bootstrap, topic, [0], COUNT))
    check(records, helpers.kp_consume(broker.bootstrap, topic, [0], COUNT))
    check_stored_codec(broker, topic, codec, plain_allowed=True)


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_codec(broker, topic_name, codec):
    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, partitions=1)
    records = make_records(codec, helpers.now_ms() - 60_000)
    delivered = helpers.kp_produce(broker.bootstrap, topic, records,
                                   compression_type=None if codec == "none" else codec)
    assert delivered == [(0, i) for i in range(COUNT)]
    check(records, helpers.kp_consume(broker.bootstrap, topic, [0], COUNT))
    check(records, helpers.consume(broker.bootstrap, topic, [0], COUNT))
    check_stored_codec(broker, topic, codec)
