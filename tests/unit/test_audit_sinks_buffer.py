"""Bounded disk-backed spool: cursor + FIFO in one transaction, keep-oldest, drops counted, durable."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyturn.audit.sinks.buffer import Spool
from keyturn.errors import AuditError


def test_take_is_bounded_keeps_oldest_and_moves_cursor_only_past_accepted(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.sqlite", capacity=3)
    assert sp.take([(i, f"m{i}".encode()) for i in range(1, 6)]) == 3
    assert sp.cursor == 3  # entries 4 and 5 stay in the audit table: nothing dropped
    assert sp.free() == 0
    assert sp.take([(4, b"m4")]) == 0
    st = sp.stats()
    assert (st.spooled, st.drops, st.cursor) == (3, 0, 3)
    assert [p for _, p in sp.peek(10)] == [b"m1", b"m2", b"m3"]


def test_put_when_full_refuses_newest_and_counts_drops(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.sqlite", capacity=2)
    assert sp.put([b"a", b"b", b"c", b"d"]) == 2
    assert sp.put([b"e"]) == 0
    assert sp.stats().drops == 3
    assert [p for _, p in sp.peek(10)] == [b"a", b"b"]


def test_ack_partial_and_failures_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "spool" / "s.sqlite"
    sp = Spool(path, capacity=10)
    sp.take([(10, b"x"), (11, b"y"), (12, b"z")])
    seqs = [s for s, _ in sp.peek(10)]
    sp.ack(seqs[0])
    assert sp.failed("down") == 1
    assert sp.failed("still down") == 2
    sp.close()
    assert path.stat().st_mode & 0o777 == 0o600
    again = Spool(path, capacity=10)
    st = again.stats()
    assert (st.cursor, st.spooled, st.delivered, st.failures, st.last_error) == (12, 2, 1, 2, "still down")
    assert [p for _, p in again.peek(10)] == [b"y", b"z"]
    again.ack(seqs[-1])
    st = again.stats()
    assert (st.spooled, st.delivered, st.failures, st.last_error) == (0, 3, 0, None)


def test_take_refuses_ids_at_or_before_the_cursor(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.sqlite", capacity=10)
    sp.take([(5, b"a")])
    with pytest.raises(AuditError, match="not after the cursor"):
        sp.take([(6, b"b"), (5, b"a again")])
    assert sp.stats().spooled == 1 and sp.cursor == 5  # rolled back whole
