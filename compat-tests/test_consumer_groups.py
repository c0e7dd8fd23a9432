"""Consumer groups with real clients: members share a topic's partitions through
rebalances (a member joins, one leaves, one is killed and evicted after its
session timeout), nothing committed is lost, static members come back without a
rebalance, and committed offsets survive a broker SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

import helpers

MEMBER_SCRIPT = Path(__file__).resolve().parent / "group_member.py"
CLIENTS = ["confluent", "kafka-python", "aiokafka"]
PARTITIONS = 6


class Member:
    """A group member process (group_member.py) and what it reported."""

    def __init__(self, client: str, bootstrap: str, topic: str, group: str, log_dir: Path,
                 instance: str | None = None):
        self.name = f"{client}-{uuid.uuid4().hex[:6]}"
        args = [sys.executable, str(MEMBER_SCRIPT), client, bootstrap, topic, group]
        if instance:
            args.append(instance)
        self.stderr = open(log_dir / f"{self.name}.stderr", "wb")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        self.lock = threading.Lock()
        self.assigned: list[int] | None = None
        self.assign_events = 0
        self.consumed: set[str] = set()
        self.first_offsets: dict[int, int] = {}
        self.stopped = False
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                kind = event.get("event")
                if kind == "assigned":
                    self.assigned = event["partitions"]
                    self.assign_events += 1
                elif kind == "revoked":
                    self.assigned = event["partitions"]
                elif kind == "consumed":
                    for partition, offset, value in event["records"]:
                        self.consumed.add(value)
                        self.first_offsets.setdefault(partition, offset)
                elif kind == "stopped":
                    self.stopped = True

    def alive(self) -> bool:
        return self.proc.poll() is None

    def partitions(self) -> list[int] | None:
        with self.lock:
            return None if self.assigned is None else list(self.assigned)

    def terminate(self):
        """A clean stop: the client closes (and leaves the group unless static)."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self.reader.join(timeout=10)
        assert self.stopped, f"{self.name} did not stop cleanly"

    def kill(self):
        """A crash: no LeaveGroup, no last commit."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def close(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.stderr.close()


def wait_shared(members: list[Member], partitions: int, timeout: float = 60.0):
    """Until the live members' assignments split the partitions exactly: each
    partition owned by one member, none twice, every member owning some."""
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = [m.partitions() for m in members]
        if all(s for s in state):
            owned = [p for s in state for p in s]
            if sorted(owned) == list(range(partitions)):
                return state
        time.sleep(0.1)
    raise AssertionError(f"assignments never settled: {state}")


class Load:
    """Produces numbered records round-robin over the partitions until stopped;
    remembers every record the broker acknowledged."""

    def __init__(self, bootstrap: str, topic: str):
        self.producer = helpers.producer(bootstrap, **{"linger.ms": 5})
        self.topic = topic
        self.acked: set[str] = set()
        self.errors: list[str] = []
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _delivered(self, err, msg):
        if err is None:
            self.acked.add(msg.value().decode())
        else:
            self.errors.append(str(err))

    def _run(self):
        i = 0
        while not self.stop_flag.is_set():
            self.producer.produce(self.topic, value=f"v-{i}".encode(), partition=i % PARTITIONS,
                                  on_delivery=self._delivered)
            i += 1
            if i % 50 == 0:
                self.producer.poll(0)
                time.sleep(0.05)
        self.producer.flush(30)

    def stop(self) -> set[str]:
        self.stop_flag.set()
        self.thread.join(timeout=60)
        assert not self.errors, self.errors[:5]
        return set(self.acked)


def committed_offsets(bootstrap: str, group: str) -> dict[int, int]:
    adm = helpers.admin(bootstrap)
    result = adm.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
    return {tp.partition: tp.offset for tp in result.result(timeout=30).topic_partitions}


@pytest.mark.parametrize("client", CLIENTS)
def test_members_share_partitions_through_rebalances_and_nothing_is_lost(
        client, broker, topic_name, tmp_path):
    share_through_rebalances(client, broker.bootstrap, topic_name(), tmp_path)


def test_kip848_consumer_protocol_members_share_partitions_and_nothing_is_lost(
        configured_broker, topic_name, tmp_path):
    """librdkafka with group.protocol=consumer: ConsumerGroupHeartbeat, broker-side
    assignment, incremental revocation. The broker's consumer session timeout is set to
    6 s here (default 45 s) so the crashed member is evicted as quickly as in the classic
    test."""
    broker = configured_broker("group_consumer_session_timeout_ms: 6000\n"
                               "group_consumer_heartbeat_interval_ms: 500\n")
    share_through_rebalances("confluent-848", broker.bootstrap, topic_name(), tmp_path)
    adm = helpers.admin(broker.bootstrap)
    groups = adm.list_consumer_groups().result(timeout=30).valid
    assert any(str(g.type).endswith("CONSUMER") for g in groups), groups


def share_through_rebalances(client: str, bootstrap: str, topic: str, tmp_path: Path):
    """Three members share six partitions; a fourth joins; one leaves; one is killed and
    evicted after its session timeout; a producer writes throughout. Every acknowledged
    record is consumed, and the committed offsets reach the end of every partition."""
    group = f"group-{uuid.uuid4().hex[:8]}"
    helpers.create_topic(bootstrap, topic, PARTITIONS)
    load = Load(bootstrap, topic)
    members = [Member(client, bootstrap, topic, group, tmp_path) for _ in range(3)]
    timings = {}
    try:
        # Three members share six partitions.
        started = time.monotonic()
        wait_shared(members, PARTITIONS)
        timings["3 members formed"] = time.monotonic() - started
        # A fourth joins: the group rebalances over four.
        started = time.monotonic()
        members.append(Member(client, bootstrap, topic, group, tmp_path))
        wait_shared(members, PARTITIONS)
        timings["4th joined"] = time.monotonic() - started
        # One leaves cleanly (LeaveGroup): three remain.
        leaving = members.pop(0)
        started = time.monotonic()
        leaving.terminate()
        wait_shared(members, PARTITIONS)
        timings["one left"] = time.monotonic() - started
        # One crashes: it is evicted after its 6 s session timeout, two remain.
        crashed = members.pop(0)
        started = time.monotonic()
        crashed.kill()
        wait_shared(members, PARTITIONS, timeout=60)
        timings["one killed, evicted"] = time.monotonic() - started
        assert timings["one killed, evicted"] < 45
        produced = load.stop()
        print(f"{client}: " + ", ".join(f"{k} in {v:.1f} s" for k, v in timings.items())
              + f"; {len(produced)} records produced meanwhile")
        # Every acknowledged record is consumed at least once...
        everyone = members + [leaving, crashed]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            consumed = set().union(*(m.consumed for m in everyone))
            if produced <= consumed:
                break
            time.sleep(0.2)
        missing = produced - set().union(*(m.consumed for m in everyone))
        assert not missing, f"{len(missing)} of {len(produced)} records never consumed"
        for m in members:
            m.terminate()
        # ...and, committing after processing, the group's committed offsets reach the end
        # of every partition: a restarted group would lose nothing.
        committed = committed_offsets(bootstrap, group)
        for p in range(PARTITIONS):
            _, high = helpers.watermarks(bootstrap, topic, p)
            assert committed.get(p) == high, (p, committed, high)
    finally:
        load.stop_flag.set()
        for m in members:
            m.close()


@pytest.mark.parametrize("client", ["confluent", "kafka-python", "aiokafka"])
def test_static_member_gets_its_partitions_back_without_a_rebalance(
        client, broker, topic_name, tmp_path):
    topic = topic_name()
    group = f"static-{uuid.uuid4().hex[:8]}"
    helpers.create_topic(broker.bootstrap, topic, PARTITIONS)
    # a joins first and stays the group leader; b, the follower, is the one restarted
    # (a restarted leader may legitimately rejoin: kafka-python's leader re-checks the
    # metadata it assigned from).
    a = Member(client, broker.bootstrap, topic, group, tmp_path, instance="member-a")
    b = None
    restarted = None
    try:
        wait_shared([a], PARTITIONS)
        b = Member(client, broker.bootstrap, topic, group, tmp_path, instance="member-b")
        before = wait_shared([a, b], PARTITIONS)
        time.sleep(1.5)  # let any trailing rebalance of the formation settle
        a_events = a.assign_events
        described = _described(broker.bootstrap, group)
        # Member b crashes and comes back as a new process with the same instance id,
        # well within its 6 s session timeout.
        b.kill()
        restarted = Member(client, broker.bootstrap, topic, group, tmp_path,
                           instance="member-b")
        after = wait_shared([a, restarted], PARTITIONS, timeout=30)
        assert after[1] == before[1], "the static member got different partitions"
        time.sleep(2)
        assert a.assign_events == a_events, "the other member went through a rebalance"
        assert _described(broker.bootstrap, group) == described
    finally:
        for m in (a, b, restarted):
            if m is not None:
                m.close()


def _described(bootstrap: str, group: str) -> tuple[str, list[str]]:
    """What DescribeGroups shows of the group: state and member client ids, sorted.
    Member ids change on a static rejoin; a rebalance would pass through other states."""
    adm = helpers.admin(bootstrap)
    described = adm.describe_consumer_groups([group])[group].result(timeout=30)
    return str(described.state), sorted(m.client_id for m in described.members)


def test_committed_offsets_survive_a_broker_sigkill(own_broker, topic_name):
    topic = topic_name()
    group = f"durable-{uuid.uuid4().hex[:8]}"
    helpers.create_topic(own_broker.bootstrap, topic, 3)
    helpers.produce(own_broker.bootstrap, topic,
                    [helpers.Out(None, f"r-{i}".encode(), [], None, i % 3) for i in range(300)])
    consumer = helpers.consumer(own_broker.bootstrap, **{
        "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    wanted = {0: 17, 1: 42, 2: 99}
    consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in wanted.items()],
                    asynchronous=False)
    consumer.close()
    # The commit was acknowledged: a crash right now must not take it back.
    own_broker.kill()
    own_broker.start()
    assert committed_offsets(own_broker.bootstrap, group) == wanted
    resumed = helpers.consumer(own_broker.bootstrap, **{
        "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    resumed.subscribe([topic])
    first: dict[int, int] = {}
    deadline = time.monotonic() + 60
    while len(first) < 3 and time.monotonic() < deadline:
        m = resumed.poll(0.5)
        if m is not None and m.error() is None:
            first.setdefault(m.partition(), m.offset())
    resumed.close()
    assert first == wanted


def test_standalone_commit_and_admin_views_with_kafka_python(broker, topic_name):
    from kafka import KafkaAdminClient, KafkaConsumer
    from kafka import TopicPartition as KTP
    from kafka.structs import OffsetAndMetadata

    topic = topic_name()
    group = f"admin-{uuid.uuid4().hex[:8]}"
    helpers.create_topic(broker.bootstrap, topic, 2)
    # A consumer without subscription (assign) committing: generation -1, no member id.
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group,
                             enable_auto_commit=False)
    consumer.assign([KTP(topic, 0), KTP(topic, 1)])
    consumer.commit({KTP(topic, 0): OffsetAndMetadata(5, "meta-0", -1),
                     KTP(topic, 1): OffsetAndMetadata(9, "", -1)})
    assert consumer.committed(KTP(topic, 0)) == 5
    consumer.close()
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        listed = {g["group_id"]: g for g in admin.list_groups()}
        assert listed[group]["group_state"] == "Empty"
        assert group in {g["group_id"] for g in admin.list_groups(states_filter=["Empty"])}
        assert group not in {g["group_id"] for g in admin.list_groups(states_filter=["Stable"])}
        described = admin.describe_groups([group])[group]
        assert described["group_state"] == "Empty" and described["members"] == []
        offsets = admin.list_group_offsets(group)[group]
        assert {tp.partition: om.offset for tp, om in offsets.items()} == {0: 5, 1: 9}
        assert offsets[KTP(topic, 0)].metadata == "meta-0"
        # OffsetDelete, then DeleteGroups (an unknown group is reported as such).
        admin.delete_group_offsets(group, [KTP(topic, 1)])
        assert list(admin.list_group_offsets(group)[group]) == [KTP(topic, 0)]
        deleted = admin.delete_groups([group, f"{group}-unknown"])
        assert deleted[group] == "OK"
        assert deleted[f"{group}-unknown"] == "GroupIdNotFoundError"
        assert group not in {g["group_id"] for g in admin.list_groups()}
    finally:
        admin.close()


def test_aiokafka_manual_commit_with_explicit_offsets(broker, topic_name):
    import asyncio

    from aiokafka import AIOKafkaConsumer
    from aiokafka import TopicPartition as ATP

    topic = topic_name()
    group = f"aio-{uuid.uuid4().hex[:8]}"
    helpers.create_topic(broker.bootstrap, topic, 2)
    helpers.produce(broker.bootstrap, topic,
                    [helpers.Out(None, f"a-{i}".encode(), [], None, i % 2) for i in range(20)])

    async def run():
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    session_timeout_ms=6000, heartbeat_interval_ms=500)
        await consumer.start()
        try:
            seen = 0
            while seen < 20:
                batches = await consumer.getmany(timeout_ms=1000)
                seen += sum(len(b) for b in batches.values())
            await consumer.commit({ATP(topic, 0): 4, ATP(topic, 1): 10})
            return (await consumer.committed(ATP(topic, 0)),
                    await consumer.committed(ATP(topic, 1)))
        finally:
            await consumer.stop()

    assert asyncio.run(run()) == (4, 10)
    assert committed_offsets(broker.bootstrap, group) == {0: 4, 1: 10}
