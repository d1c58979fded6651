"""CLI polish (issue 15): an empty secret on stdin is refused, titles get a did-you-mean, --version."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from keyturn.cli.main import app


@pytest.fixture
def run(tmp_path: Path):  # type: ignore[no-untyped-def]
    runner = CliRunner()
    env = {"KEYTURN_HOME": str(tmp_path / "home"), "KEYTURN_MASTER_KEY": None, "KEYTURN_PASSPHRASE": None,
           "KEYTURN_DATABASE_URL": None, "KEYTURN_KEY_FILE": None}

    def invoke(*args: str, input: str | None = None, code: int = 0):  # type: ignore[no-untyped-def]
        result = runner.invoke(app, list(args), input=input, env=env)
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        return result

    invoke("init")
    return invoke


@pytest.mark.parametrize("line", ["\n", "\r\n", ""])
def test_empty_secret_on_stdin_is_refused(run, line: str) -> None:  # type: ignore[no-untyped-def]
    r = run("record", "add", "--type", "login", "--title", "sw1 admin", "--login", "admin",
            "--password", "-", input=line, code=2)
    assert r.stdout == ""
    assert r.stderr.startswith("error: --password -: ")
    assert len(r.stderr.splitlines()) == 1
    assert "sw1 admin" not in run("record", "list").stdout   # nothing was stored
    r = run("record", "add", "--type", "login", "--title", "t", "--secret-custom", "enable_secret=-",
            input="\n", code=2)
    assert "the line on stdin is empty" in r.stderr


def test_a_secret_of_spaces_is_kept_as_given(run) -> None:  # type: ignore[no-untyped-def]
    run("record", "add", "--type", "login", "--title", "t", "--password", "-", input="  \n")
    assert run("reveal", "t").stdout == "  \n"


def test_record_titles_get_a_did_you_mean(run) -> None:  # type: ignore[no-untyped-def]
    for title in ("netops @ sw0001", "netops @ sw0002", "sw0001 admin"):
        run("record", "add", "--type", "login", "--title", title, input="")
    r = run("reveal", "netops @ sw001", code=4)
    assert r.stderr == ("error: no record with uid or title 'netops @ sw001'; did you mean "
                        "'netops @ sw0001' or 'netops @ sw0002'?\n")
    r = run("record", "show", "SW0001 ADMN", code=4)
    assert r.stderr == "error: no record with uid or title 'SW0001 ADMN'; did you mean 'sw0001 admin'?\n"
    r = run("record", "show", "nothing like it", code=4)
    assert r.stderr == "error: no record with uid or title 'nothing like it' (see `keyturn record list`)\n"


def test_filters_matching_nothing_say_why(run) -> None:  # type: ignore[no-untyped-def]
    for title in ("sw1 netops", "sw2 netops"):
        run("record", "add", "--type", "pamUser", "--title", title, "--login", "netops", input="")
        run("script", "attach", title, "/bin/true")
        run("rotation", "set", title, "--target", "noop")
    r = run("rotate", "--filter", "target=nop", code=2)
    assert r.stderr == ("error: no record matches --filter 'target=nop': no record has target='nop'; "
                        "did you mean 'noop'?\n")
    r = run("rotate", "--filter", "type=pamUsr", code=2)
    assert r.stderr.endswith("no record has type='pamUsr'; did you mean 'pamUser'?\n")
    r = run("rotate", "--filter", "target=meraki-auth-user", code=2)
    assert r.stderr.endswith("no record has target='meraki-auth-user'; in use: noop\n")
    r = run("rotate", "--filter", "title=sw1 netop", code=2)
    assert r.stderr.endswith("did you mean 'sw1 netops' or 'sw2 netops'?\n")
    r = run("rotate", "--filter", "title=sw1 netops,title=sw2 netops", code=2)
    assert r.stderr.endswith("each term matches some record, but no record matches all of them\n")
    r = run("rotate", "--filter", "title~nowhere", code=2)
    assert (r.stdout, r.stderr) == ("", "error: no record matches --filter 'title~nowhere'\n")
    r = run("schedule", "set", "--filter", "target=nop", "--every", "30d", "--yes", code=2)
    assert r.stderr == ("error: no record matches --filter 'target=nop' (no record has target='nop'; did "
                        "you mean 'noop'?); nothing was changed\n")
