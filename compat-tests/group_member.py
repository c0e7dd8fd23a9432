"""One consumer-group member in its own process, so a test can SIGKILL it (no
LeaveGroup, no commit) as a crashed consumer would die.

    python group_member.py CLIENT BOOTSTRAP TOPIC GROUP [INSTANCE_ID]

CLIENT is confluent, confluent-848 (librdkafka with group.protocol=consumer,
KIP-848), kafka-python or aiokafka. The member subscribes to TOPIC,
commits after processing every batch it polls, and writes one JSON line to
stdout per event:
    {"event": "assigned", "partitions": [0, 3]}   what it owns after a rebalance
    {"event": "revoked", "partitions": [0]}       what it still owns after a revocation
    {"event": "consumed", "records": [[partition, offset, value], ...]}
    {"event": "committed"}                         after each commit
It stops cleanly (close: LeaveGroup unless static) on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

SESSION_TIMEOUT_MS = 6000
HEARTBEAT_MS = 500

stopping = False


def emit(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def on_term(*_):
    global stopping
    stopping = True


def run_confluent(bootstrap, topic, group, instance, consumer_protocol=False):
    from confluent_kafka import Consumer, TopicPartition

    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    if consumer_protocol:
        # KIP-848: the broker sets session timeout and heartbeat interval, and assigns.
        conf["group.protocol"] = "consumer"
    else:
        conf.update({"session.timeout.ms": SESSION_TIMEOUT_MS,
                     "heartbeat.interval.ms": HEARTBEAT_MS,
                     "partition.assignment.strategy": "range"})
    if instance:
        conf["group.instance.id"] = instance
    consumer = Consumer(conf)

    # Eager protocols hand over the whole assignment; KIP-848 adds and removes increments.
    owned: set[int] = set()

    def assigned(c, partitions):
        if not consumer_protocol:
            owned.clear()
        owned.update(p.partition for p in partitions)
        emit(event="assigned", partitions=sorted(owned))

    def revoked(c, partitions):
        owned.difference_update(p.partition for p in partitions)
        emit(event="revoked", partitions=sorted(owned))

    consumer.subscribe([topic], on_assign=assigned, on_revoke=revoked)
    while not stopping:
        msgs = consumer.consume(num_messages=500, timeout=0.2)
        msgs = [m for m in msgs if m.error() is None]
        if not msgs:
            continue
        emit(event="consumed",
             records=[[m.partition(), m.offset(), m.value().decode()] for m in msgs])
        last = {}
        for m in msgs:
            last[m.partition()] = m.offset() + 1
        try:
            consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in last.items()],
                            asynchronous=False)
            emit(event="committed")
        except Exception as e:  # a rebalance took the partitions: the next owner re-reads
            emit(event="commit_failed", error=str(e))
    consumer.close()


def run_kafka_python(bootstrap, topic, group, instance):
    from kafka import KafkaConsumer, TopicPartition
    from kafka.consumer.subscription_state import ConsumerRebalanceListener
    from kafka.structs import OffsetAndMetadata

    conf = dict(bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                enable_auto_commit=False, session_timeout_ms=SESSION_TIMEOUT_MS,
                heartbeat_interval_ms=HEARTBEAT_MS)
    if instance:
        conf["group_instance_id"] = instance
    consumer = KafkaConsumer(**conf)

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            emit(event="revoked", partitions=[])  # eager: everything goes

        def on_partitions_assigned(self, assigned):
            emit(event="assigned", partitions=sorted(p.partition for p in assigned))

    consumer.subscribe([topic], listener=Listener())
    while not stopping:
        polled = consumer.poll(timeout_ms=200, max_records=500)
        msgs = [m for batch in polled.values() for m in batch]
        if not msgs:
            continue
        emit(event="consumed", records=[[m.partition, m.offset, m.value.decode()] for m in msgs])
        last = {}
        for m in msgs:
            last[m.partition] = m.offset + 1
        try:
            consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "", -1)
                             for p, o in last.items()})
            emit(event="committed")
        except Exception as e:
            emit(event="commit_failed", error=str(e))
    consumer.close()


def run_aiokafka(bootstrap, topic, group, instance):
    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

    class Listener(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked):
            emit(event="revoked", partitions=[])  # eager: everything goes

        async def on_partitions_assigned(self, assigned):
            emit(event="assigned", partitions=sorted(p.partition for p in assigned))

    async def main():
        conf = dict(bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                    enable_auto_commit=False, session_timeout_ms=SESSION_TIMEOUT_MS,
                    heartbeat_interval_ms=HEARTBEAT_MS)
        if instance:
            conf["group_instance_id"] = instance
        consumer = AIOKafkaConsumer(**conf)
        await consumer.start()
        consumer.subscribe([topic], listener=Listener())
        try:
            while not stopping:
                polled = await consumer.getmany(timeout_ms=200, max_records=500)
                msgs = [m for batch in polled.values() for m in batch]
                if not msgs:
                    continue
                emit(event="consumed",
                     records=[[m.partition, m.offset, m.value.decode()] for m in msgs])
                last = {}
                for m in msgs:
                    last[m.partition] = m.offset + 1
                try:
                    # The explicit-offsets form of commit().
                    await consumer.commit({TopicPartition(topic, p): o for p, o in last.items()})
                    emit(event="committed")
                except Exception as e:
                    emit(event="commit_failed", error=str(e))
        finally:
            await consumer.stop()

    asyncio.run(main())


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_term)
    client, bootstrap, topic, group = sys.argv[1:5]
    instance = sys.argv[5] if len(sys.argv) > 5 else None
    runners = {
        "confluent": run_confluent,
        "confluent-848": lambda *a: run_confluent(*a, consumer_protocol=True),
        "kafka-python": run_kafka_python,
        "aiokafka": run_aiokafka,
    }
    runners[client](bootstrap, topic, group, instance)
    emit(event="stopped")
