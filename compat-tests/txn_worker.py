"""A consume-transform-produce worker (confluent-kafka) in its own process, so a test can
SIGKILL it as a crashed application would die.

    python txn_worker.py BOOTSTRAP SOURCE SINK GROUP TRANSACTIONAL_ID

It reads SOURCE with read_committed in GROUP, writes `t-<value>` to the same partition of
SINK and commits the input offsets in the same transaction, recovering from errors the way
librdkafka's documentation prescribes (retry what is retriable, abort and rewind what needs
an abort, a new producer instance on a fatal error). It writes one JSON line per committed
transaction, {"committed": {partition: next offset}}, and exits 0 once the group's committed
offsets reach the end of every SOURCE partition.
"""

from __future__ import annotations

import json
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

BATCH = 500


def emit(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def retrying(call):
    while True:
        try:
            return call()
        except KafkaException as e:
            if not e.args[0].retriable():
                raise
            emit(retry=str(e.args[0]))


def new_producer(bootstrap: str, transactional_id: str) -> Producer:
    producer = Producer({
        "bootstrap.servers": bootstrap, "transactional.id": transactional_id, "linger.ms": 5,
        "transaction.timeout.ms": 30_000, "message.timeout.ms": 30_000,
        "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500,
    })
    # A new instance fences the previous one and aborts its unfinished transaction.
    retrying(lambda: producer.init_transactions(30))
    return producer


def committed(consumer: Consumer, source: str, partitions: list[int]) -> dict[int, int]:
    tps = retrying(lambda: consumer.committed(
        [TopicPartition(source, p) for p in partitions], timeout=10))
    return {tp.partition: tp.offset for tp in tps}


def rewind(consumer: Consumer, source: str):
    """Back to the committed offsets: what the aborted transaction read is read again."""
    assignment = consumer.assignment()
    if not assignment:
        return  # the next assignment starts from the committed offsets anyway
    for p, offset in committed(consumer, source, [tp.partition for tp in assignment]).items():
        consumer.seek(TopicPartition(source, p, max(offset, 0)))


def main(bootstrap: str, source: str, sink: str, group: str, transactional_id: str) -> int:
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "isolation.level": "read_committed",
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "session.timeout.ms": 10_000, "heartbeat.interval.ms": 1000,
    })
    metadata = retrying(lambda: consumer.list_topics(source, timeout=10))
    partitions = sorted(metadata.topics[source].partitions)
    ends = {}
    for p in partitions:
        _, high = retrying(lambda: consumer.get_watermark_offsets(
            TopicPartition(source, p), timeout=10))
        ends[p] = high
    consumer.subscribe([source])
    producer = new_producer(bootstrap, transactional_id)
    while True:
        msgs = [m for m in consumer.consume(num_messages=BATCH, timeout=1.0) if m.error() is None]
        if not msgs:
            done = committed(consumer, source, partitions)
            if all(done.get(p, -1) >= end for p, end in ends.items()):
                break
            continue
        offsets: dict[int, int] = {}
        for m in msgs:
            offsets[m.partition()] = m.offset() + 1
        try:
            producer.begin_transaction()
            for m in msgs:
                producer.produce(sink, value=b"t-" + m.value(), partition=m.partition())
            retrying(lambda: producer.send_offsets_to_transaction(
                [TopicPartition(source, p, o) for p, o in offsets.items()],
                consumer.consumer_group_metadata(), 30))
            retrying(lambda: producer.commit_transaction(30))
        except KafkaException as e:
            err = e.args[0]
            emit(error=str(err), abortable=err.txn_requires_abort(), fatal=err.fatal())
            if err.txn_requires_abort():
                retrying(lambda: producer.abort_transaction(30))
            else:
                producer = new_producer(bootstrap, transactional_id)
            rewind(consumer, source)
            continue
        emit(committed=offsets, at=time.monotonic())
    consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
