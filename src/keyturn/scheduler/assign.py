"""Schedules on records: set / clear (validated, audited) and the listing `keyturn schedule list` and
the API show. A schedule is stored in the record's meta under "schedule" (`Schedule.to_meta`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from keyturn.errors import ConfigError
from keyturn.scheduler.schedules import META_KEY, Schedule, ScheduleMemo, parse_schedule
from keyturn.scheduler.service import PROFILE_KEY, entry_for
from keyturn.scheduler.state import ScheduleState, StateStore

if TYPE_CHECKING:
    from keyturn.vault import Vault


def set_schedule(
    vault: Vault, ref: str, spec: str | dict[str, Any], *, tz: str | None = None, window: str | None = None,
    jitter: str | None = None, actor: str = "cli", now: datetime | None = None,
) -> Schedule:
    """Validate and store RECORD's schedule; the interval grid / Keeper counting starts at `now`.

    `ConfigError` (saying why) for an invalid spec, zone, window or jitter, or a record without a
    rotation profile; `RecordNotFound` / `AmbiguousRecord` for a bad reference.
    """
    sched = parse_schedule(spec, tz=tz, window=window, jitter=jitter, anchor=now or datetime.now(UTC))
    rec = vault.get(ref)
    if not isinstance(rec.meta.get(PROFILE_KEY), dict):
        raise ConfigError(f"record {rec.title!r} has no rotation profile; set one first with "
                          f"`keyturn rotation set {rec.uid} --target KIND ...`")
    vault.set_meta(rec.uid, META_KEY, sched.to_meta(), actor=actor)
    vault.audit.append("schedule.set", actor=actor, record_uid=rec.uid, details=sched.to_meta())
    return sched


def clear_schedule(vault: Vault, ref: str, *, actor: str = "cli") -> bool:
    """Make RECORD on-demand only; True when it had a schedule."""
    rec = vault.get(ref)
    had = rec.meta.get(META_KEY) is not None
    if had:
        vault.set_meta(rec.uid, META_KEY, None, actor=actor)
        vault.audit.append("schedule.clear", actor=actor, record_uid=rec.uid)
    return had


def reset_attention(vault: Vault, ref: str, *, actor: str = "cli") -> bool:
    """Clear RECORD's needs-attention flag so the scheduler serves it again; True when it was set."""
    uid = vault.resolve(ref)
    done = StateStore(vault.engine).clear_attention(uid)
    if done:
        vault.audit.append("schedule.reset", actor=actor, record_uid=uid)
    return done


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """One line of `keyturn schedule list` (no secrets)."""

    uid: str
    title: str
    schedule: str
    next_due: datetime | None
    last_run_at: datetime | None
    last_outcome: str | None
    attempts: int
    needs_attention: bool
    problem: str            # why it is not served (invalid schedule, no profile), or the flag reason

    def to_json(self) -> dict[str, Any]:
        return {
            "record": self.uid, "title": self.title, "schedule": self.schedule,
            "next_due": self.next_due.isoformat() if self.next_due else None,
            "last_run_at": self.last_run_at.isoformat() if self.last_run_at else None,
            "last_outcome": self.last_outcome, "attempts": self.attempts,
            "needs_attention": self.needs_attention, "problem": self.problem,
        }


def schedule_rows(vault: Vault, *, now: datetime | None = None) -> list[ScheduleRow]:
    """Every scheduled record with its next due time, earliest first (unserved ones last).

    The next due time is the scheduler's durable one when it has served this schedule, else the
    first slot after `now` (what the scheduler will pick up).
    """
    now = now or datetime.now(UTC)
    store = StateStore(vault.engine)
    states = store.load_all()
    memo = ScheduleMemo(now)   # a fleet shares a few schedules: parse each once, not once per record
    rows = []
    for rec in store.scheduled_records(META_KEY):
        st = states.get(rec.uid) or ScheduleState(record_uid=rec.uid)
        try:
            entry = entry_for(rec, parse=memo.parse)
        except ConfigError as exc:
            raw = rec.meta.get(META_KEY)
            spec = str(raw.get("spec") if isinstance(raw, dict) else raw)
            rows.append(ScheduleRow(rec.uid, rec.title, spec, None, st.last_run_at, st.last_outcome,
                                    st.attempts, False, str(exc)))
            continue
        due = st.next_due if st.fingerprint == entry.schedule.fingerprint else None
        if due is None and not st.needs_attention:
            parsed = memo.get(rec.meta.get(META_KEY))
            slot = parsed[1] if isinstance(parsed, tuple) else entry.schedule.next_slot(now)
            due = entry.schedule.due(slot, rec.uid)[0]
        rows.append(ScheduleRow(rec.uid, rec.title, entry.schedule.describe(), due, st.last_run_at,
                                st.last_outcome, st.attempts, st.needs_attention, st.attention_reason))
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(rows, key=lambda r: (r.problem != "" and not r.needs_attention, r.next_due or far, r.title))


def show_rows(vault: Vault, uid: str, *, now: datetime | None = None) -> list[tuple[str, str]]:
    """(label, value) lines about RECORD's schedule for `keyturn rotation show` (empty: on demand)."""
    row = next((r for r in schedule_rows(vault, now=now) if r.uid == uid), None)
    if row is None:
        return [("schedule", "on demand")]
    when = row.next_due.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if row.next_due else "-"
    lines = [("schedule", row.schedule), ("next due", when)]
    if row.needs_attention:
        lines.append(("NEEDS ATTENTION", f"{row.problem}; fix, then rotate by hand or "
                                         f"`keyturn schedule reset {uid}`"))
    elif row.problem:
        lines.append(("NOT SCHEDULED", row.problem))
    return lines
