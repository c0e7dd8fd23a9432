"""Several listeners, as in a container set-up (an internal one for the Docker network, an
external one for the host): each client is told the advertised address of the listener it
connected through, in Metadata, FindCoordinator and DescribeCluster, and real clients work
through either one."""

from __future__ import annotations

import time

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

import helpers
from conftest import free_port


@pytest.fixture
def two_listeners(configured_broker):
    port = free_port()
    # `localhost` rather than 127.0.0.1: a different advertised host, still reachable here.
    broker = configured_broker("extra_listeners:\n"
                               "  - name: INTERNAL\n"
                               f"    listen: 127.0.0.1:{port}\n"
                               f"    advertised: localhost:{port}\n")
    return broker, f"localhost:{port}"


def advertised_via(bootstrap: str) -> set[tuple[str, int]]:
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    return {(b.host, b.port) for b in md.brokers.values()}


def test_each_listener_advertises_its_own_address(two_listeners, topic_name):
    broker, internal = two_listeners
    assert advertised_via(broker.bootstrap) == {("127.0.0.1", broker.port)}
    host, port = internal.split(":")
    assert advertised_via(internal) == {(host, int(port))}

    # Produce, then consume in a group (FindCoordinator) through the extra listener.
    topic = topic_name()
    helpers.create_topic(internal, topic, 2)
    records = [helpers.Out(f"k{i}".encode(), f"v{i}".encode(), [], None, None) for i in range(200)]
    acked = helpers.produce(internal, topic, records)
    assert len(acked) == 200
    consumer = helpers.consumer(internal, **{"group.id": f"{topic}-g"})
    consumer.subscribe([topic])
    got = 0
    deadline = time.monotonic() + 30
    while got < 200 and time.monotonic() < deadline:
        got += sum(1 for m in consumer.consume(100, timeout=1.0) if m.error() is None)
    consumer.close()
    assert got == 200


def test_describe_configs_lists_every_listener(two_listeners):
    broker, internal = two_listeners
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    resource = ConfigResource(ConfigResource.Type.BROKER, "0")
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    assert configs["advertised.listeners"].value == (
        f"PLAINTEXT://127.0.0.1:{broker.port},INTERNAL://{internal}")
    assert "INTERNAL://127.0.0.1:" in configs["listeners"].value
