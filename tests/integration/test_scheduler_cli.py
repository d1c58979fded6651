"""`keyturn schedule set|clear|list|reset` with Typer's CliRunner against a real vault in tmp_path."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from keyturn.cli.main import app
from keyturn.config import Settings
from keyturn.scheduler.state import ScheduleState, StateStore
from keyturn.vault import Vault


@pytest.fixture
def run(tmp_path: Path) -> Any:
    runner = CliRunner()
    env = {"KEYTURN_HOME": str(tmp_path / "home"), "KEYTURN_MASTER_KEY": None, "KEYTURN_PASSPHRASE": None,
           "KEYTURN_DATABASE_URL": None, "KEYTURN_KEY_FILE": None}

    def invoke(*args: str, code: int = 0) -> Any:
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        return result

    invoke("init")
    for title in ("sw1 netops", "sw2 netops", "no profile"):
        invoke("record", "add", "--type", "pamUser", "--title", title, "--login", "netops")
    for title in ("sw1 netops", "sw2 netops"):  # a noop profile needs a script that does the change
        invoke("script", "attach", title, "/bin/true")
    invoke("rotation", "set", "sw1 netops", "--target", "noop")
    invoke("rotation", "set", "sw2 netops", "--target", "noop")
    return invoke


def test_set_list_clear(run: Any) -> None:
    out = run("schedule", "set", "sw1 netops", "--schedule", "0 0 2 ? * MON-FRI", "--tz", "Europe/Berlin",
              "--window", "Mon-Fri 01:00-05:00", "--jitter", "10m").stdout
    assert out.startswith("schedule set on sw1 netops: 0 0 2 ? * MON-FRI · Europe/Berlin · window "
                          "Mon-Fri 01:00-05:00 · jitter 10m; next due ")
    run("schedule", "set", "sw2 netops", "--every", "30d")
    rows = json.loads(run("schedule", "list", "--json").stdout)
    assert [r["title"] for r in rows] == ["sw1 netops", "sw2 netops"]  # earliest due first
    assert rows[1]["schedule"] == "every 30d"
    assert all(r["next_due"] and not r["needs_attention"] and r["problem"] == "" for r in rows)
    due = datetime.fromisoformat(rows[1]["next_due"])
    assert 29.9 < (due - datetime.now(UTC)).total_seconds() / 86400 <= 30
    text = run("schedule", "list").stdout.splitlines()
    assert text[0].split() == ["next", "due", "record", "title", "schedule", "last", "run", "outcome",
                              "status"]
    assert len(text) == 3 and text[1].rstrip().endswith("ok")
    assert run("schedule", "clear", "sw2 netops").stdout == "schedule cleared on sw2 netops\n"
    assert run("schedule", "clear", "sw2 netops").stdout == "sw2 netops had no schedule\n"
    assert [r["title"] for r in json.loads(run("schedule", "list", "--json").stdout)] == ["sw1 netops"]


@pytest.mark.parametrize(("args", "message"), [
    (("sw1 netops", "--schedule", "0 25 * * *"), "error: invalid cron expression '0 25 * * *'"),
    (("sw1 netops", "--schedule", "0 2 * * *", "--tz", "Europe/Atlantis"), "error: unknown time zone"),
    (("sw1 netops", "--schedule", "0 2 * * *", "--window", "Sun 3pm"), "error: bad maintenance window"),
    (("sw1 netops", "--schedule", "0 0 2 LW * ?"), "error: Quartz '0 0 2 LW * ?': 'LW' and 'L-n'"),
    (("sw1 netops", "--every", "30d", "--jitter", "soon"), "error: bad jitter 'soon'"),
    (("sw1 netops",), "error: give exactly one of --schedule SPEC or --every DURATION"),
    (("no profile", "--every", "30d"), "error: record 'no profile' has no rotation profile"),
    (("nobody", "--every", "30d"), "error: no record"),
])
def test_invalid_schedules_are_refused_with_the_reason(run: Any, args: tuple[str, ...], message: str) -> None:
    result = run("schedule", "set", *args, code=4 if args[0] == "nobody" else 2)
    assert result.stderr.startswith(message)
    assert len(result.stderr.splitlines()) == 1


def test_flagged_records_show_and_reset(run: Any, tmp_path: Path) -> None:
    run("schedule", "set", "sw1 netops", "--every", "1d")
    with Vault.open(Settings(home=tmp_path / "home")) as vault:
        uid = vault.resolve("sw1 netops")
        StateStore(vault.engine).save([ScheduleState(record_uid=uid, needs_attention=True, attempts=5,
                                                     attention_reason="5 failed attempts; last: refused")])
    [row] = json.loads(run("schedule", "list", "--json").stdout)
    assert row["needs_attention"] and row["next_due"] is None and row["attempts"] == 5
    assert "NEEDS ATTENTION: 5 failed attempts; last: refused" in run("schedule", "list").stdout
    assert run("schedule", "reset", "sw1 netops").stdout == "sw1 netops: needs-attention flag cleared\n"
    [row] = json.loads(run("schedule", "list", "--json").stdout)
    assert not row["needs_attention"] and row["next_due"]
    assert run("schedule", "reset", "sw1 netops").stdout == "sw1 netops was not flagged\n"


def test_rotation_show_lines(run: Any, tmp_path: Path) -> None:
    from keyturn.scheduler.assign import show_rows

    run("schedule", "set", "sw1 netops", "--schedule", '{"type": "DAILY", "utcTime": "02:00"}')
    with Vault.open(Settings(home=tmp_path / "home")) as vault:
        uid, other = vault.resolve("sw1 netops"), vault.resolve("sw2 netops")
        lines = dict(show_rows(vault, uid))
        assert lines["schedule"] == '{"type": "DAILY", "utcTime": "02:00"} · UTC'
        assert lines["next due"].endswith(" 02:00:00Z")
        assert show_rows(vault, other) == [("schedule", "on demand")]
        StateStore(vault.engine).save([ScheduleState(record_uid=uid, needs_attention=True,
                                                     attention_reason="device refused")])
        assert dict(show_rows(vault, uid))["NEEDS ATTENTION"].startswith("device refused; fix, then")


def test_rotation_set_with_schedule_options_and_show(run: Any, tmp_path: Path) -> None:
    out = run("rotation", "set", "sw2 netops", "--target", "noop", "--every", "30d", "--window",
              "Sat 01:00-05:00", "--tz", "Europe/Berlin").stdout.splitlines()
    assert out[0] == "rotation profile set on sw2 netops: target noop"
    assert out[1].startswith("schedule: every 30d · Europe/Berlin · window Sat 01:00-05:00; next due ")
    shown = json.loads(run("rotation", "show", "sw2 netops", "--json").stdout)
    assert shown["schedule"]["schedule"] == "every 30d · Europe/Berlin · window Sat 01:00-05:00"
    assert json.loads(run("rotation", "show", "sw1 netops", "--json").stdout)["schedule"] == {
        "schedule": "on demand"}
    r = run("rotation", "set", "sw1 netops", "--target", "noop", "--window", "Sat 01:00-05:00", code=2)
    assert r.stderr == "error: --tz, --window and --jitter need --schedule SPEC or --every DURATION\n"
    with Vault.open(Settings(home=tmp_path / "home")) as vault:
        flagged = ScheduleState(record_uid=vault.resolve("sw2 netops"), needs_attention=True,
                                attention_reason="5 failed attempts")
        StateStore(vault.engine).save([flagged])
    shown_text = run("rotation", "show", "sw2 netops").stdout
    assert "NEEDS ATTENTION  5 failed attempts; fix, then rotate by hand" in shown_text
