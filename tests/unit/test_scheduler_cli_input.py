"""Bad input that used to crash (issue 12, item 15): absurd intervals and jitter, and stdout piped to
`head`. Each now ends with one clear line and a usage exit code (2), or quietly for the closed pipe."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from keyturn.cli.main import app
from keyturn.errors import ConfigError
from keyturn.scheduler.schedules import parse_schedule
from keyturn.scheduler.tz import MAX_DURATION, parse_duration

ANCHOR = datetime(2026, 1, 5, tzinfo=UTC)


@pytest.mark.parametrize(("spec", "options", "message"), [
    ("every 99999999d", {}, "longer than the maximum"),
    ("every 999999999999999999999999999999999999999d", {}, "longer than the maximum"),
    ("every " + "9" * 5000 + "d", {}, "longer than the maximum"),
    ("every 1d", {"jitter": "5d"}, "shorter than the schedule's interval"),
    ("every 1d", {"jitter": "1d"}, "shorter than the schedule's interval"),
    ("0 2 * * *", {"jitter": "2d"}, "shorter than the schedule's interval"),
    ("0 2 * * *", {"jitter": "99999999d"}, "longer than the maximum"),
    ("every 1d", {"jitter": "99999999w", "window": "Sat 01:00-05:00"}, "longer than the maximum"),
    ({"type": "DAILY", "utcTime": "02:00", "intervalCount": 10**30}, {}, "no future run time"),
    ("every 1d", {"anchor": "9999-12-31T00:00:00+00:00"}, "no future run time"),
])
def test_absurd_schedules_are_refused_with_the_reason(spec: Any, options: dict[str, Any],
                                                      message: str) -> None:
    options.setdefault("anchor", ANCHOR)
    with pytest.raises(ConfigError, match=message):
        parse_schedule(spec, **options)


def test_limits_that_are_fine_stay_fine() -> None:
    assert parse_duration("3650d") == MAX_DURATION
    assert parse_schedule("every 1d", jitter="23h", anchor=ANCHOR).jitter == timedelta(hours=23)
    assert parse_schedule("every 3650d", anchor=ANCHOR).next_slot(ANCHOR) == ANCHOR + MAX_DURATION
    assert parse_schedule("0 2 * * *", jitter="2h", anchor=ANCHOR).describe().endswith("jitter 2h")


@pytest.fixture
def cli(tmp_path: Path) -> Any:
    runner = CliRunner()
    env = {"KEYTURN_HOME": str(tmp_path / "home"), "KEYTURN_MASTER_KEY": None, "KEYTURN_PASSPHRASE": None,
           "KEYTURN_DATABASE_URL": None, "KEYTURN_KEY_FILE": None}

    def invoke(*args: str) -> Any:
        return runner.invoke(app, list(args), env=env)

    assert invoke("init").exit_code == 0
    assert invoke("record", "add", "--type", "pamUser", "--title", "sw1", "--login", "ops").exit_code == 0
    return invoke


@pytest.mark.parametrize(("args", "message"), [
    (["--every", "99999999d"], "longer than the maximum of 3650d"),
    (["--every", "1d", "--jitter", "2d"], "jitter 2d must be shorter than the schedule's interval (1d)"),
    (["--schedule", "0 2 * * *", "--jitter", "99999999d"], "longer than the maximum"),
])
def test_cli_says_why_and_exits_2(cli: Any, args: list[str], message: str) -> None:
    result = cli("schedule", "set", "sw1", *args)
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


def test_output_piped_to_head_ends_quietly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env["KEYTURN_HOME"] = str(tmp_path / "home")
    keyturn = [sys.executable, "-m", "keyturn.cli.main"]
    subprocess.run([*keyturn, "init"], env=env, check=True, capture_output=True)
    bulk = "x" * 40_000
    fields = [arg for label in "abc" for arg in ("--custom", f"{label}={bulk}")]
    subprocess.run([*keyturn, "record", "add", "--type", "login", "--title", "big", *fields], env=env,
                   check=True, capture_output=True)
    # `keyturn record show big | head -1`: the reader takes one line of 120 kB (more than a pipe holds)
    # and goes away
    proc = subprocess.Popen([*keyturn, "record", "show", "big"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline()
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 141
    assert stderr == ""
