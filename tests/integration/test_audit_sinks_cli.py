"""`keyturn audit export` and `keyturn audit sinks` through Typer's CliRunner on a real vault."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keyturn.cli.main import app


@pytest.fixture
def run(tmp_path: Path):  # type: ignore[no-untyped-def]
    runner = CliRunner()
    env = {"KEYTURN_HOME": str(tmp_path / "home"), "KEYTURN_MASTER_KEY": None, "KEYTURN_PASSPHRASE": None,
           "KEYTURN_DATABASE_URL": None, "KEYTURN_KEY_FILE": None, "KEYTURN_CONFIG": None,
           "KEYTURN_AUDIT_SINKS": None}

    def invoke(*args: str, input: str | None = None, code: int = 0):  # type: ignore[no-untyped-def]
        result = runner.invoke(app, list(args), input=input, env=env)
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        return result

    invoke("init")
    invoke("record", "add", "--type", "login", "--title", "a|b=c", "--login", "x=y", "--password", "-",
           input="pw-never-exported\n")
    return invoke


def test_export_since_jsonl_is_the_whole_chain_in_order(run) -> None:  # type: ignore[no-untyped-def]
    lines = run("audit", "export", "--since", "7d").stdout.splitlines()
    entries = [json.loads(line) for line in lines]
    assert [e["action"] for e in entries] == ["vault.init", "record.add", "record.add"]
    assert [e["id"] for e in entries] == [1, 2, 3]
    assert entries[0]["prev_hash"] == "0" * 64
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(entries))
    assert "pw-never-exported" not in "".join(lines)
    # The export itself is audited.
    listed = json.loads(run("audit", "list", "--limit", "1", "--json").stdout)
    assert listed[0]["action"] == "audit.export" and listed[0]["details"]["count"] == 3


def test_export_window_and_cef_to_file(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    future = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert run("audit", "export", "--since", future).stdout == ""
    assert run("audit", "export", "--since", "2000-01-01", "--until", "2000-01-02").stdout == ""
    out = tmp_path / "audit.cef"
    r = run("audit", "export", "--since", "1h", "--format", "cef", "--output", str(out))
    assert r.stderr == f"exported 5 audit entries to {out}\n"  # incl. the two empty exports above
    lines = out.read_text().splitlines()
    assert out.stat().st_mode & 0o777 == 0o600
    assert [line.split("|")[4] for line in lines] == [
        "vault.init", "record.add", "record.add", "audit.export", "audit.export"]
    assert lines[0].startswith("CEF:0|keyturn|keyturn|0.1.0|vault.init|Vault created|5|rt=")
    assert " externalId=1 " in lines[0]


def test_export_refuses_bad_times(run) -> None:  # type: ignore[no-untyped-def]
    r = run("audit", "export", "--since", "last tuesday", code=2)
    assert r.stderr.startswith("error: --since 'last tuesday': expected an ISO 8601 time")
    r = run("audit", "export", "--since", "1d", "--until", "2d", code=2)
    assert r.stderr == "error: --until must be after --since\n"


def test_sinks_list_and_deliver_to_a_jsonl_file(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert run("audit", "sinks").stdout.startswith("no audit sinks configured")
    target = tmp_path / "out" / "audit.jsonl"
    (tmp_path / "home" / "keyturn.toml").write_text(
        f'[[keyturn.audit_sinks]]\nname = "file"\ntype = "jsonl"\npath = "{target.as_posix()}"\n'
    )
    before = json.loads(run("audit", "sinks", "--json").stdout)
    assert [(s["name"], s["cursor"], s["spooled"], s["backlog"]) for s in before] == [("file", 0, 0, 3)]
    r = run("audit", "sinks", "--deliver")
    assert r.stdout.splitlines()[0] == "delivered 3 messages"
    assert r.stdout.splitlines()[1].split() == ["NAME", "TYPE", "DESTINATION", "FORMAT", "CURSOR", "SPOOLED",
                                                "BACKLOG", "DELIVERED", "DROPS", "FAILURES", "LAST", "ERROR"]
    assert r.stdout.splitlines()[2].split() == [
        "file", "jsonl", str(target), "jsonl", "3", "0", "0", "3", "0", "0"]
    assert [json.loads(line)["id"] for line in target.read_text().splitlines()] == [1, 2, 3]
    run("audit", "export", "--since", "1d")  # appends audit.export (id 4)
    run("audit", "sinks", "--deliver")
    assert [json.loads(line)["id"] for line in target.read_text().splitlines()] == [1, 2, 3, 4]
    assert (tmp_path / "home" / "spool" / "file.sqlite").exists()


def test_sinks_deliver_exits_1_when_a_sink_is_down(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    (tmp_path / "home" / "keyturn.toml").write_text(
        '[[keyturn.audit_sinks]]\nname = "file"\ntype = "jsonl"\n'
        f'path = "{(blocker / "x.jsonl").as_posix()}"\n'
    )
    rows = json.loads(run("audit", "sinks", "--deliver", "--json", code=1).stdout)
    assert rows[0]["failures"] == 1 and rows[0]["spooled"] == 3
    assert rows[0]["last_error"].startswith("audit sink file: cannot append to ")
