"""`keyturn rotation set --filter`, `keyturn schedule set --filter`, `keyturn status` (accounts),
`keyturn rotation list` and the shared JSON schema, with Typer's CliRunner against a real vault in
tmp_path (exact output where it is short). Profiles are noop ones with a script that does the change."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from keyturn.cli.main import app
from keyturn.config import Settings
from keyturn.engine.journal import rotations
from keyturn.vault import Vault
from keyturn.vault.storage import RecordRow


class Cli:
    def __init__(self, home: Path) -> None:
        self.runner = CliRunner()
        self.home = home
        self.env: dict[str, str | None] = {
            "KEYTURN_HOME": str(home), "KEYTURN_MASTER_KEY": None, "KEYTURN_PASSPHRASE": None,
            "KEYTURN_DATABASE_URL": None, "KEYTURN_KEY_FILE": None, "KEYTURN_CONFIG": None,
            "KEYTURN_SITES": "dc-east", "KEYTURN_BROKER_URL": None}

    def __call__(self, *args: str, code: int = 0, input: str | None = None) -> Any:
        result = self.runner.invoke(app, list(args), env=self.env, input=input)
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)

    def profile(self, ref: str) -> dict[str, Any] | None:
        meta: dict[str, Any] = self.json("record", "show", ref)["meta"]
        return meta.get("rotation")


@pytest.fixture
def run(tmp_path: Path) -> Cli:
    cli = Cli(tmp_path / "home")
    cli("init")
    for i, title in enumerate(("sw1 netops", "sw2 netops", "sw3 netops", "core admin")):
        cli("record", "add", "--type", "pamUser", "--title", title, "--login", f"netops{i}")
    for title in ("sw1 netops", "sw2 netops", "sw3 netops"):
        cli("script", "attach", title, "/bin/true")
    cli("record", "add", "--type", "pamNetworkDevice", "--title", "sw-device")   # not a user record
    return cli


def test_rotation_set_filter_asks_then_sets_every_match_in_one_go(run: Cli) -> None:
    r = run("rotation", "set", "--filter", "title~netops", "--target", "noop", code=2)
    assert r.stdout == "3 records match --filter 'title~netops': sw1 netops, sw2 netops, sw3 netops\n"
    assert r.stderr == ("error: refusing to set the rotation profile of 3 records without confirmation; run "
                        "again with --yes\n")
    assert run.profile("sw1 netops") is None
    r = run("rotation", "set", "--filter", "title~netops", "--target", "noop", "--max-attempts", "5",
            "--every", "30d", "--yes")
    assert r.stdout.splitlines() == [
        "3 records match --filter 'title~netops': sw1 netops, sw2 netops, sw3 netops",
        "rotation profile set on 3 records (target noop 3)", "schedule: every 30d"]
    for title in ("sw1 netops", "sw2 netops", "sw3 netops"):
        profile = run.profile(title)
        assert profile is not None and (profile["target"], profile["max_attempts"]) == ("noop", 5)
    audit = run.json("audit", "list")
    assert sum(1 for e in audit if e["action"] == "rotation.profile_set") == 3

    # Options left out keep each record's current values; given ones replace them.
    run("rotation", "set", "sw2 netops", "--target", "noop", "--policy", "24,1,1,1,1", "--max-attempts", "9")
    run("rotation", "set", "--filter", "target=noop", "--site", "dc-east", "--yes")
    sw1, sw2 = run.profile("sw1 netops"), run.profile("sw2 netops")
    assert sw1 is not None and sw2 is not None
    assert (sw1["max_attempts"], sw1["policy"], sw1["options"]) == (5, None, {"site": "dc-east"})
    assert (sw2["max_attempts"], sw2["options"]) == (9, {"site": "dc-east"})
    assert sw2["policy"] is not None and sw2["policy"]["length"] == 24


def test_a_filter_matching_nothing_changes_nothing(run: Cli) -> None:
    r = run("rotation", "set", "--filter", "title~nowhere", "--target", "noop", "--yes", code=2)
    assert (r.stdout, r.stderr) == ("", "error: no record matches --filter 'title~nowhere'; nothing was "
                                        "changed\n")
    r = run("schedule", "set", "--filter", "title~netops", "--every", "30d", "--yes", code=2)
    # none of them has a profile yet
    assert r.stderr == ("error: no record matches --filter 'title~netops' (no record has a rotation profile "
                        "yet); nothing was changed\n")
    assert run("rotation", "set", "--filter", "colour=red", "--target", "noop", code=2).stderr.startswith(
        "error: bad filter term 'colour=red': use KEY=VALUE or KEY~TEXT")
    assert not any(e["action"] in ("rotation.profile_set", "schedule.set") for e in run.json("audit", "list"))


def test_one_refused_record_refuses_the_whole_batch(run: Cli) -> None:
    # "core admin" has no script: a noop profile on it would change nothing, so set_profile refuses it.
    r = run("rotation", "set", "--filter", "type=pamUser", "--target", "noop", "--yes", code=1)
    assert r.stdout.startswith("4 records match --filter 'type=pamUser': core admin, sw1 netops")
    assert r.stderr.startswith("error: record 'core admin': record 'core admin': a noop profile changes "
                               "nothing itself")
    assert r.stderr.rstrip().endswith("; nothing was changed")
    assert all(run.profile(t) is None for t in ("sw1 netops", "sw2 netops", "sw3 netops"))
    assert not any(e["action"] == "rotation.profile_set" for e in run.json("audit", "list"))
    # A record without a profile and no --target: named, nothing changed.
    run("rotation", "set", "sw1 netops", "--target", "noop")
    r = run("rotation", "set", "--filter", "title~netops", "--max-attempts", "4", "--yes", code=2)
    assert r.stderr == ("error: record 'sw2 netops': it has no rotation profile yet: give --target KIND; "
                        "nothing was changed\n")
    assert run.profile("sw1 netops")["max_attempts"] == 3    # type: ignore[index]


def test_schedule_set_filter(run: Cli) -> None:
    run("rotation", "set", "--filter", "title~netops", "--target", "noop", "--yes")
    r = run("schedule", "set", "--filter", "title~sw", "--schedule", "0 25 * * *", "--yes", code=2)
    assert r.stdout == "" and r.stderr.startswith("error: invalid cron expression '0 25 * * *'")
    r = run("schedule", "set", "--filter", "title~sw", "--schedule", "0 2 * * *", code=2)
    assert r.stderr.startswith("error: refusing to set the schedule of 3 records without confirmation")
    assert run.json("schedule", "list") == []
    r = run("schedule", "set", "--filter", "title~sw", "--schedule", "0 2 * * *", "--tz", "Europe/Berlin",
            "--yes")
    assert r.stdout.splitlines()[-1] == "schedule set on 3 records: 0 2 * * * · Europe/Berlin"
    rows = run.json("schedule", "list")
    assert sorted(r["title"] for r in rows) == ["sw1 netops", "sw2 netops", "sw3 netops"]
    assert all(r["record_uid"] == r["record"] and r["next_due"].endswith("Z") for r in rows)
    assert run("schedule", "set", "--every", "1d", code=2).stderr == (
        "error: give RECORD, or --filter EXPR to set the schedule of many records\n")


def test_status_lists_accounts_and_keeps_the_sites_view(run: Cli) -> None:
    assert run("status").stdout.startswith("no managed accounts yet; attach a rotation profile")
    run("rotation", "set", "--filter", "title~netops", "--target", "noop", "--yes")
    run("schedule", "set", "sw1 netops", "--every", "30d")
    run("rotate", "sw1 netops", "sw2 netops")
    data = run.json("status")
    assert list(data) == ["broker", "accounts", "sites", "workers", "stuck_sites"]
    assert [(a["title"], a["last_outcome"], a["site"]) for a in data["accounts"]] == [
        ("sw1 netops", "rotated_unverifiable", "default"), ("sw2 netops", "rotated_unverifiable", "default"),
        ("sw3 netops", None, "default")]
    sw1 = data["accounts"][0]
    assert sw1["schedule"] == "every 30d" and sw1["next_due"].endswith("Z") and sw1["flags"] == []
    assert set(sw1) == {"record_uid", "title", "type", "target", "resource_uid", "site", "schedule",
                        "next_due", "last_rotation_id", "last_outcome", "last_at", "last_reason", "flags",
                        "attention", "tags"}
    lines = run("status").stdout.splitlines()
    assert lines[0] == "accounts"
    assert lines[1].split() == ["account", "target", "site", "last", "outcome", "at", "next", "due", "flags"]
    assert lines[4].split()[:5] == ["sw3", "netops", "noop", "default", "never"]
    assert lines[5] == "3 accounts: 1 never, 2 rotated_unverifiable"
    assert [a["title"] for a in run.json("status", "--outcome", "never")["accounts"]] == ["sw3 netops"]
    assert [a["title"] for a in run.json("status", "--filter", "title~sw2")["accounts"]] == ["sw2 netops"]
    assert run.json("status", "--site", "dc-east")["accounts"] == []
    assert run("status", "--outcome", "great", code=2).stderr.startswith("error: unknown outcome 'great'")
    assert list(run.json("status", "--sites")) == ["broker", "sites", "workers", "stuck_sites"]
    assert run("status", "--sites").stdout.splitlines()[0].startswith("no broker configured")


def test_rotation_list_history_and_log_share_the_schema(run: Cli) -> None:
    run("rotation", "set", "--filter", "title~netops", "--target", "noop", "--yes")
    run("rotate", "--all")
    run("rotate", "sw1 netops")
    page = run.json("rotation", "list", "--limit", "2")
    assert (page["total"], page["limit"], page["offset"], len(page["rotations"])) == (4, 2, 0, 2)
    newest = page["rotations"][0]
    assert (newest["title"], newest["outcome"]) == ("sw1 netops", "rotated_unverifiable")
    assert newest["started_at"].endswith("Z") and newest["record_uid"]
    rest = run.json("rotation", "list", "--limit", "2", "--offset", "2")
    assert {r["id"] for r in rest["rotations"]}.isdisjoint(r["id"] for r in page["rotations"])
    assert run.json("rotation", "list", "--record", "sw1 netops")["total"] == 2
    assert run.json("rotation", "list", "--outcome", "failed")["total"] == 0
    assert run.json("rotation", "list", "--since", "2999-01-01")["total"] == 0
    assert run("rotation", "list", "--since", "yesterday", code=2).stderr.startswith(
        "error: --since 'yesterday': expected an ISO 8601 time")
    r = run("rotation", "list", "--limit", "1")
    assert r.stdout.splitlines()[0].split()[:3] == ["rotation", "started", "record"]
    assert r.stderr == "rotations 1-1 of 4; next page: --offset 1\n"
    history = run.json("history", "sw1 netops")
    assert history["record_uid"] == history["record"] and list(history["rotations"][0]) == list(newest)
    assert history["rotations"][0] == newest
    log = run.json("rotation", "log", newest["id"])
    assert {k: v for k, v in log.items() if k != "steps"} == newest
    assert all(s["at"].endswith("Z") for s in log["steps"])
    shown = run.json("rotation", "show", "sw1 netops")
    assert shown["record_uid"] == shown["record"] == newest["record_uid"]


def test_status_of_ten_thousand_accounts_runs_a_bounded_number_of_statements(run: Cli) -> None:
    run("rotation", "set", "sw1 netops", "--target", "noop")
    with Vault.open(Settings(home=run.home)) as vault, vault.engine.begin() as conn:
        query = sa.select(RecordRow.__table__).where(RecordRow.title == "sw1 netops")
        row = conn.execute(query).mappings().one()
        uids = [uuid.uuid4().hex[:22] for _ in range(10_000)]
        conn.execute(RecordRow.__table__.insert(), [
            dict(row, uid=uid, title=f"fleet {i:05d}", title_key=f"fleet {i:05d}")
            for i, uid in enumerate(uids)])
        when = row["updated_at"]
        conn.execute(rotations.insert(), [
            {"id": uuid.uuid4().hex, "record_uid": uid, "title": f"fleet {i:05d}", "target": "noop",
             "state": "done", "outcome": "failed" if i % 2 else "rotated", "reason": "", "last_step": "audit",
             "scripts": "[]", "started_at": when, "updated_at": when, "finished_at": when}
            for i, uid in enumerate(uids)])
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not statement.startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            seen.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", count)
    try:
        data = run.json("status")
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", count)
    assert len(data["accounts"]) == 10_001
    assert sum(1 for a in data["accounts"] if a["last_outcome"] == "failed") == 5_000
    assert len(seen) <= 10, seen          # opening the vault, the sites view, and three for the accounts
    assert sum(1 for s in seen if "FROM kt_records" in s) == 1
    assert sum(1 for s in seen if "FROM rotations" in s) == 1
