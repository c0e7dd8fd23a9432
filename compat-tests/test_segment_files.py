"""On-disk layout: <data_dir>/<topic>-<partition>/<20-digit base offset>.log
holding concatenated v2 record batches (the client's bytes, offsets assigned)."""

import pytest

import helpers
import wire
from helpers import Out


def test_segment_layout_and_batches(broker, topic_name):
    if broker.data_dir is None:
        pytest.skip("log directory unknown (set WEIR_DATA_DIR with WEIR_BOOTSTRAP)")
    topic = topic_name()
    helpers.create_topic(broker.bootstrap, topic, partitions=2)
    ts = helpers.now_ms() - 10_000
    sizes = [1, 7, 30]
    offset = 0
    for n in sizes:  # one flush per group: at least one batch each
        recs = [Out(b"k", b"v%d" % (offset + i), [("h", b"1")], ts + offset + i, 1)
                for i in range(n)]
        helpers.produce(broker.bootstrap, topic, recs, linger_ms=20)
        offset += n
    total = sum(sizes)

    # Partition 0 got nothing: if its directory exists already, it holds no batch.
    for seg in broker.segment_files(topic, 0):
        assert wire.parse_batches(seg.read_bytes()) == ([], 0), f"{seg} is not empty"

    assert broker.partition_dir(topic, 1).is_dir()
    segs = broker.segment_files(topic, 1)
    assert [s.name for s in segs] == ["00000000000000000000.log"]
    for ext in (".index", ".timeindex"):
        assert segs[0].with_suffix(ext).is_file(), f"missing {ext}"
    data = segs[0].read_bytes()
    batches, trailing = wire.parse_batches(data)
    # With `log_write_io: direct` (the default) the file ends in zeros up to the next 4 KiB
    # block; with buffered writes it ends exactly after the last batch.
    assert trailing < 4096 and not any(data[len(data) - trailing:]), trailing
    assert len(batches) >= len(sizes)
    assert all(b.magic == 2 and b.crc_ok for b in batches)
    assert batches[0].base_offset == 0
    for prev, nxt in zip(batches, batches[1:]):
        assert nxt.base_offset == prev.last_offset + 1
        assert nxt.position == prev.position + prev.size
    assert batches[-1].last_offset == total - 1
    assert sum(b.record_count for b in batches) == total
    assert all(b.record_count == b.last_offset_delta + 1 for b in batches)
    assert batches[-1].max_timestamp == ts + total - 1
    assert helpers.watermarks(broker.bootstrap, topic, 1) == (0, total)
