"""ApiVersions over a raw socket: v0 and v3 bodies, the KIP-511 downgrade answer."""

import wire

# (api key, lowest max version the suite's clients need)
REQUIRED = {
    wire.PRODUCE: 3, wire.FETCH: 4, wire.LIST_OFFSETS: 1, wire.METADATA: 1,
    wire.API_VERSIONS: 3, 19: 2, 20: 1, 32: 1, 37: 0,  # CreateTopics, DeleteTopics, DescribeConfigs, CreatePartitions
}


def check_required(versions):
    for key, need in REQUIRED.items():
        assert key in versions, f"api key {key} not advertised"
        lo, hi = versions[key]
        assert lo <= hi and hi >= need, f"key {key}: {lo}..{hi}"
    # Produce is advertised from v0 (older librdkafka disables compression otherwise).
    assert versions[wire.PRODUCE][0] == 0
    assert versions[wire.API_VERSIONS] == (0, 4)


def test_api_versions_v0(broker):
    with wire.Conn.to(broker.bootstrap) as conn:
        res = wire.api_versions_v0(conn)
        assert res.error_code == 0
        check_required(res.versions)


def test_api_versions_v3_same_table(broker):
    with wire.Conn.to(broker.bootstrap) as conn:
        v0 = wire.api_versions_v0(conn)
        v3 = wire.api_versions_v3(conn)
        assert v3.error_code == 0
        assert v3.throttle_time_ms == 0
        assert v3.versions == v0.versions
        v4 = wire.api_versions_v3(conn, version=4)
        assert (v4.error_code, v4.versions) == (0, v0.versions)


def test_api_versions_unknown_version_downgrade(broker):
    """A version the broker does not know: error 35 in a v0 body that lists at
    least ApiVersions' own range, on a connection that stays usable."""
    body = wire.compact_string("weir-compat") + wire.compact_string("9.9") + wire.NO_TAGS
    with wire.Conn.to(broker.bootstrap) as conn:
        corr = conn.send(wire.API_VERSIONS, 99, body, flexible=True)
        r = conn.recv_response(corr)  # header v0, whatever the request version
        res = wire.parse_api_versions_v0(r)
        assert r.remaining() == 0, "a v0 body (no throttle time, no tagged fields)"
        assert res.error_code == 35  # UNSUPPORTED_VERSION
        assert res.versions[wire.API_VERSIONS] == (0, 4)
        again = wire.api_versions_v0(conn)
        assert again.error_code == 0


def test_pipelined_requests_answered_in_order(broker):
    with wire.Conn.to(broker.bootstrap) as conn:
        corrs = []
        for i in range(20):
            version = i % 4
            body = b"" if version < 3 else (wire.compact_string("c") + wire.compact_string("1")
                                            + wire.NO_TAGS)
            corrs.append(conn.send(wire.API_VERSIONS, version, body, flexible=version >= 3))
        for corr in corrs:
            r = conn.recv_response(corr)
            assert r.i16() == 0
