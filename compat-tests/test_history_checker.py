"""The history checker itself: a clean history passes, and each way a broker can
break its promises is caught (no broker needed)."""

import pytest

from history import History

T = "t"


def clean() -> History:
    """Two producers (one idempotent) on one partition, an assign-mode reader
    and a committing group reader, one crash in the middle; all consistent."""
    h = History()
    h.plain_topics.add(T)
    h.monotonic_readers.add("assign")
    h.complete_readers.update({"assign", "group"})
    values = [b"a0", b"i0", b"a1", b"i1"]
    for v in values:
        h.invoke(v[:1].decode(), T, 0, v, idempotent=v.startswith(b"i"))
    for off, v in enumerate(values):
        h.ok(v, 0, off)
    h.invoke("a", T, 0, b"a2", idempotent=False)
    h.failed(b"a2", "MSG_SIZE_TOO_LARGE", definite=True)
    h.invoke("a", T, 0, b"a3", idempotent=False)
    h.failed(b"a3", "_MSG_TIMED_OUT", definite=False)
    for off, v in enumerate(values[:2]):
        h.poll("assign", 0, T, 0, off, v)
        h.poll("group", 0, T, 0, off, v)
    h.commit_acked("g", T, 0, 2)
    h.crash()
    h.ready(0.2)
    h.committed_read("g", T, 0, 2)
    for off, v in enumerate(values[2:] + [b"a3"], start=2):
        h.poll("assign", 0, T, 0, off, v)
    for off, v in enumerate(values + [b"a3"]):  # the group reader re-reads after a rebalance
        h.poll("group", 1, T, 0, off, v)
    h.final_drain(T, 0, 0, list(enumerate(values)) + [(4, b"a3")])
    return h


def test_a_clean_history_passes():
    report = clean().check()
    assert report.anomalies == []
    f = report.figures
    assert (f["acked"], f["failed_definitely"], f["unknown"], f["unknown_found_in_log"]) == (4, 1, 1, 1)
    assert f["crashes"] == 1 and f["restart_to_ready_max_s"] == 0.2


def lose(h):
    h.final[(T, 0)] = h.final[(T, 0)][:3]


def misplace(h):
    h.final[(T, 0)][3] = (3, b"x")


def gap(h):
    h.final[(T, 0)] = [(o + (o >= 2), v) for o, v in h.final[(T, 0)]]


def duplicate(h):
    h.final[(T, 0)].append((5, b"i1"))


def read_failed(h):
    h.final[(T, 0)].append((5, b"a2"))


def change_after_read(h):
    h.final[(T, 0)][0] = (0, b"other")


def vanish_after_read(h):
    h.final[(T, 0)] = []


def backwards(h):
    h.poll("assign", 0, T, 0, 1, b"i0")


def commit_regression(h):
    h.committed_read("g", T, 0, 1)


def unseen(h):
    h.final[(T, 0)].append((5, b"late"))
    h.poll("assign", 0, T, 0, 5, b"late")


def reorder(h):
    h.invoke("i", T, 0, b"i2", idempotent=True)
    h.ok(b"i2", 0, 1)


@pytest.mark.parametrize("breakage,words", [
    (lose, "is lost"),
    (misplace, "which holds"),
    (gap, "gap"),
    (duplicate, "stored 2 times"),
    (read_failed, "failed definitely"),
    (change_after_read, "but it holds"),
    (vanish_after_read, "gone from the log"),
    (backwards, "polled offset 1 after 4"),
    (commit_regression, "below the acknowledged 2"),
    (unseen, "group never saw 1"),
    (reorder, "later send"),
])
def test_each_violation_is_caught(breakage, words):
    h = clean()
    breakage(h)
    report = h.check()
    assert any(words in a for a in report.anomalies), report.anomalies
