"""What every scale-out failure test proves at the end, read from the vault, the ledger, the journal and
the lab: every account's vault secret logs in on its device, no secret version is left `pending`, every
request has one final outcome (and one `rotation.request` audit entry), and no two rotations of one
record ever ran at the same time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from keyturn.config import Settings
from keyturn.dispatch.ledger import Request, RequestLedger, rotation_requests
from keyturn.engine.journal import Journal, StepRow
from keyturn.engine.outcome import StepStatus
from keyturn.vault import Vault
from keyturn.vault.versions import VersionState
from tests.integration.engine_lab import LabAccount, add_iosxe
from tests.lab_fixtures import RunningLab


def lab_accounts(settings: Settings, lab: RunningLab, site: str) -> list[LabAccount]:
    """A new vault holding the lab's IOS XE accounts (RESTCONF), every device at `site`."""
    vault = Vault.init(settings)
    try:
        accts = add_iosxe(vault, lab.state, "iosxe-restconf")
        for a in accts:
            vault.set_meta(vault.meta(a.uid)[1]["rotation"]["resource"], "site", site)
        return accts
    finally:
        vault.close()


def all_requests(settings: Settings) -> list[Request]:
    """Every request in the ledger (read with a bare engine: no master key needed, works mid-run)."""
    engine = sa.create_engine(settings.effective_database_url)
    try:
        with engine.connect() as conn:
            ids = [r[0] for r in conn.execute(sa.select(rotation_requests.c.id))]
        return RequestLedger(engine).get_many(ids)
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Segment:
    """The steps one process wrote for one rotation: from its first step to its last."""

    rotation_id: str
    worker: str
    start: datetime
    end: datetime


def segments(journal: Journal, record_uid: str) -> list[Segment]:
    """Per (rotation, writer) of a record, the span of its steps; rotations refused at the lock (they
    never held it) are left out."""
    out: list[Segment] = []
    for row in journal.for_record(record_uid, limit=1000):
        steps: list[StepRow] = journal.steps(row.id)
        if any(s.step == "lock" and s.status is StepStatus.FAILED for s in steps):
            continue
        by_writer: dict[str, list[StepRow]] = {}
        for s in steps:
            by_writer.setdefault(s.worker, []).append(s)
        out.extend(Segment(row.id, w, min(s.at for s in ss), max(s.at for s in ss))
                   for w, ss in by_writer.items())
    return sorted(out, key=lambda s: (s.start, s.end))


def overlaps(segs: Sequence[Segment]) -> list[tuple[Segment, Segment]]:
    """Pairs of segments that ran at the same time (sorted input)."""
    bad = []
    for i, later in enumerate(segs):
        bad.extend((earlier, later) for earlier in segs[:i] if later.start < earlier.end)
    return bad


async def assert_settled(settings: Settings, lab: RunningLab, accts: Sequence[LabAccount],
                         ids: Sequence[str] | None = None) -> dict[str, Request]:
    """The end state every failure test proves (see the module docstring); the requests by id (`ids`,
    default every request in the ledger)."""
    vault = Vault.open(settings)
    try:
        async with lab.control() as ctl:
            for a in accts:
                assert await a.current_logs_in(vault, ctl), f"the vault secret of {a.login}@{a.device} " \
                                                            "does not log in"
        for a in accts:
            pending = [v.version for v in vault.versions(a.uid) if v.state == VersionState.PENDING]
            assert not pending, f"{a.login}@{a.device}: pending versions {pending}"
        ledger = RequestLedger(vault.engine)
        reqs = ledger.get_many(list(ids)) if ids is not None else all_requests(settings)
        assert ids is None or len(reqs) == len(ids)
        for r in reqs:
            assert r.final and r.outcome is not None and r.result is not None, r
        told = Counter(e.details.get("request_id") for e in vault.audit.list(action="rotation.request"))
        done = [r for r in reqs if str(r.state) == "done"]
        assert {r.id: told[r.id] for r in done} == {r.id: 1 for r in done}, "one outcome per request"
        journal = Journal(vault.engine)
        for a in accts:
            segs = segments(journal, a.uid)
            assert not overlaps(segs), f"rotations of {a.login}@{a.device} overlapped: {overlaps(segs)}"
        return {r.id: r for r in reqs}
    finally:
        vault.close()
