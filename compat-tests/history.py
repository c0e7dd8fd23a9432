"""A history of what clients did against a broker that crashes, and the checker
that judges it (in the spirit of Jepsen's Kafka queue checks).

Workers record every send (value, partition, outcome), every poll (reader,
session, offset, value), every acknowledged group commit, every crash, the
committed offsets read back after each restart, and finally a drain of every
partition from its log start to its high watermark. `check()` then looks for
every way the broker could have broken its promises and returns the anomalies
with the figures of the run.

Values must be unique per send: the checker identifies records by value.
Thread-safe: workers call it from their own threads.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

TP = tuple[str, int]


@dataclass
class Send:
    producer: str
    topic: str
    partition: int
    idempotent: bool
    index: int  # order of this send within its producer
    outcome: str = "pending"  # ok | failed | unknown | pending
    offset: int | None = None
    error: str | None = None


@dataclass
class Poll:
    reader: str
    session: int
    topic: str
    partition: int
    offset: int
    value: bytes
    epoch: int  # crashes before this poll


@dataclass
class CommittedRead:
    group: str
    tp: TP
    offset: int
    epoch: int
    floor: int  # the highest acknowledged commit before the latest crash


@dataclass
class Report:
    anomalies: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)

    def summary(self, limit: int = 20) -> str:
        head = "\n".join(self.anomalies[:limit])
        more = len(self.anomalies) - limit
        return head + (f"\n... and {more} more" if more > 0 else "")


class History:
    def __init__(self):
        self._lock = threading.Lock()
        self.sends: dict[bytes, Send] = {}
        self._send_counts: dict[str, int] = defaultdict(int)
        self.polls: list[Poll] = []
        self.crashes: list[float] = []
        self.ready_seconds: list[float] = []
        # Highest acknowledged commit per (group, tp), and its snapshot at each crash.
        self._acked_commits: dict[tuple[str, TP], int] = {}
        self._commits_at_crash: dict[tuple[str, TP], int] = {}
        self.commits_acked = 0
        self.committed_reads: list[CommittedRead] = []
        self.final: dict[TP, list[tuple[int, bytes]]] = {}
        self.final_log_start: dict[TP, int] = {}
        # Topics written only by plain (non-transactional) batches: offsets are gapless.
        self.plain_topics: set[str] = set()
        # Readers that must have polled every record of the final drain.
        self.complete_readers: set[str] = set()
        # Readers whose offsets must only go up within a session (assign mode).
        self.monotonic_readers: set[str] = set()

    # -- recording ---------------------------------------------------------

    def invoke(self, producer: str, topic: str, partition: int, value: bytes,
               idempotent: bool) -> None:
        with self._lock:
            if value in self.sends:
                raise ValueError(f"value {value!r} sent twice: values must be unique")
            index = self._send_counts[producer]
            self._send_counts[producer] += 1
            self.sends[value] = Send(producer, topic, partition, idempotent, index)

    def ok(self, value: bytes, partition: int, offset: int) -> None:
        with self._lock:
            s = self.sends[value]
            s.outcome, s.partition, s.offset = "ok", partition, offset

    def failed(self, value: bytes, error: str, definite: bool) -> None:
        """`definite`: the broker refused it, so it must never be read. Otherwise
        (a timeout, a lost connection) it may or may not have been written."""
        with self._lock:
            s = self.sends[value]
            s.outcome, s.error = ("failed" if definite else "unknown"), error

    def poll(self, reader: str, session: int, topic: str, partition: int, offset: int,
             value: bytes) -> None:
        with self._lock:
            self.polls.append(Poll(reader, session, topic, partition, offset, value,
                                   len(self.crashes)))

    def commit_acked(self, group: str, topic: str, partition: int, offset: int) -> None:
        with self._lock:
            key = (group, (topic, partition))
            self.commits_acked += 1
            self._acked_commits[key] = max(offset, self._acked_commits.get(key, -1))

    def crash(self) -> None:
        with self._lock:
            self.crashes.append(time.monotonic())
            self._commits_at_crash = dict(self._acked_commits)

    def ready(self, seconds: float) -> None:
        with self._lock:
            self.ready_seconds.append(seconds)

    def committed_read(self, group: str, topic: str, partition: int, offset: int) -> None:
        """A committed offset read back after the latest restart (-1001: none)."""
        with self._lock:
            key = (group, (topic, partition))
            self.committed_reads.append(CommittedRead(
                group, (topic, partition), offset, len(self.crashes),
                self._commits_at_crash.get(key, -1)))

    def final_drain(self, topic: str, partition: int, log_start: int,
                    records: list[tuple[int, bytes]]) -> None:
        with self._lock:
            self.final[(topic, partition)] = list(records)
            self.final_log_start[(topic, partition)] = log_start

    # -- checking ----------------------------------------------------------

    def check(self) -> Report:
        with self._lock:
            return _check(self)


def _check(h: History) -> Report:
    r = Report()
    bad = r.anomalies

    # Where each value sits in the final log, and what each offset holds.
    final_at: dict[TP, dict[int, bytes]] = {}
    where: dict[bytes, list[tuple[TP, int]]] = defaultdict(list)
    for tp, records in h.final.items():
        at = final_at.setdefault(tp, {})
        last = None
        expect = h.final_log_start.get(tp, 0)
        for off, value in records:
            if last is not None and off <= last:
                bad.append(f"{tp}: final log offsets not increasing ({last} then {off})")
            if tp[0] in h.plain_topics and off != expect:
                bad.append(f"{tp}: gap in a plain topic's offsets (expected {expect}, got {off})")
            expect = off + 1
            last = off
            at[off] = value
            where[value].append((tp, off))

    # Every observation of an offset holds one value, across every restart.
    seen: dict[tuple[TP, int], bytes] = {}
    for tp, at in final_at.items():
        for off, value in at.items():
            seen[(tp, off)] = value
    changed = 0
    vanished = 0
    for p in h.polls:
        tp = (p.topic, p.partition)
        key = (tp, p.offset)
        if key in seen and seen[key] != p.value:
            changed += 1
            bad.append(f"{tp} offset {p.offset}: read {p.value!r} by {p.reader} "
                       f"(after {p.epoch} crashes) but it holds {seen[key]!r}")
        elif tp in final_at and p.offset not in final_at[tp] \
                and p.offset >= h.final_log_start.get(tp, 0):
            vanished += 1
            bad.append(f"{tp} offset {p.offset}: {p.value!r} was read by {p.reader} "
                       f"(after {p.epoch} crashes) and is gone from the log")

    # Acknowledged sends are in the log at their offset; failed ones nowhere.
    lost = misplaced = dup = failed_read = copies = 0
    counts = defaultdict(int)
    acked_order: dict[tuple[str, TP], list[tuple[int, int]]] = defaultdict(list)
    polled_values = {p.value for p in h.polls}
    for value, s in h.sends.items():
        counts[s.outcome] += 1
        places = where.get(value, [])
        tp = (s.topic, s.partition)
        if s.outcome == "ok":
            at = final_at.get(tp)
            if at is None:
                bad.append(f"{tp}: never drained, cannot check acknowledged {value!r}")
                continue
            if s.offset < h.final_log_start.get(tp, 0):
                continue  # removed by retention: nothing to check
            if s.offset not in at:
                lost += 1
                bad.append(f"{tp}: acknowledged {value!r} at offset {s.offset} is lost")
            elif at[s.offset] != value:
                misplaced += 1
                bad.append(f"{tp}: acknowledged {value!r} at offset {s.offset}, "
                           f"which holds {at[s.offset]!r}")
        elif s.outcome == "failed" and (places or value in polled_values):
            failed_read += 1
            bad.append(f"{tp}: {value!r} failed definitely ({s.error}) but was read")
        if len(places) > 1:
            copies += len(places) - 1
        if s.idempotent and len(places) > 1:
            dup += 1
            bad.append(f"{value!r} is stored {len(places)} times with idempotence on: {places}")
        if s.idempotent and s.outcome == "ok":
            acked_order[(s.producer, tp)].append((s.index, s.offset))
    # An idempotent producer's acknowledged writes to a partition keep their send order.
    reordered = 0
    for (producer, tp), pairs in acked_order.items():
        pairs.sort()
        for (_, a), (_, b) in zip(pairs, pairs[1:]):
            if b <= a:
                reordered += 1
                bad.append(f"{producer} {tp}: a later send got offset {b}, not after {a}")
    in_log_unknown = sum(1 for v, s in h.sends.items() if s.outcome == "unknown" and v in where)

    # Readers in assign mode never go backwards within a session.
    non_monotonic = 0
    last_polled: dict[tuple[str, int, TP], int] = {}
    for p in h.polls:
        if p.reader not in h.monotonic_readers:
            continue
        key = (p.reader, p.session, (p.topic, p.partition))
        prev = last_polled.get(key)
        if prev is not None and p.offset <= prev:
            non_monotonic += 1
            bad.append(f"{p.reader} session {p.session} {key[2]}: polled offset {p.offset} "
                       f"after {prev}")
        last_polled[key] = p.offset

    # Committed group offsets never fall behind an acknowledged commit across a crash.
    commit_regressions = 0
    for c in h.committed_reads:
        if c.floor >= 0 and c.offset < c.floor:
            commit_regressions += 1
            bad.append(f"group {c.group} {c.tp}: committed offset {c.offset} after crash "
                       f"{c.epoch}, below the acknowledged {c.floor}")

    # Complete readers saw every record that is in the log.
    unseen = 0
    for reader in sorted(h.complete_readers):
        polled = {(p.topic, p.partition, p.offset) for p in h.polls if p.reader == reader}
        missing = [(tp, off) for tp, at in final_at.items() for off in at
                   if (tp[0], tp[1], off) not in polled]
        unseen += len(missing)
        if missing:
            bad.append(f"{reader} never saw {len(missing)} records, e.g. {missing[:5]}")

    r.figures = {
        "crashes": len(h.crashes),
        "sends": len(h.sends),
        "acked": counts["ok"],
        "failed_definitely": counts["failed"],
        "unknown": counts["unknown"],
        "unknown_found_in_log": in_log_unknown,
        "unknown_by_error": dict(sorted(Counter(
            s.error for s in h.sends.values() if s.outcome == "unknown").items())),
        "pending": counts["pending"],
        "records_in_log": sum(len(v) for v in final_at.values()),
        "polls": len(h.polls),
        "commits_acked": h.commits_acked,
        "committed_reads": len(h.committed_reads),
        "lost": lost,
        "misplaced": misplaced,
        "duplicated": dup,
        "reordered": reordered,
        # Extra copies a plain (non-idempotent) producer's retries may store: allowed.
        "retry_copies": copies,
        "failed_but_read": failed_read,
        "changed_after_read": changed,
        "vanished_after_read": vanished,
        "non_monotonic_polls": non_monotonic,
        "commit_regressions": commit_regressions,
        "unseen": unseen,
        "anomalies": len(bad),
    }
    if h.ready_seconds:
        ready = sorted(h.ready_seconds)
        r.figures["restart_to_ready_p50_s"] = round(ready[len(ready) // 2], 3)
        r.figures["restart_to_ready_p99_s"] = round(ready[min(len(ready) - 1,
                                                              int(len(ready) * 0.99))], 3)
        r.figures["restart_to_ready_max_s"] = round(ready[-1], 3)
    return r
