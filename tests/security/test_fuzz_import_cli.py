"""Fuzzing the `keyturn record add` field parser (issue 12, "Also") through Typer's CliRunner: any
`--field TYPE[:LABEL]=VALUE`, `--custom LABEL=VALUE`, `--secret-custom LABEL=VALUE`, `--login`,
`--password`, `--type` and `--title` (controls, bidi marks, lone surrogates as a non-UTF-8 command line
gives them, '=' and ':' anywhere, '-' for stdin) ends as a new record (exit 0) or one error line with
exit 1 (the vault refused: a duplicate) or 2 (usage) — never a traceback — and a refused command writes
nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from keyturn.config import Settings
from keyturn.vault import Vault

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NASTY = ["\udcff", "\ud800", "\x00", "\n", "\r", "\t", "\x1b[2J", "\x85", "\u202e", "\u2066", "\u200b",
         "\ufeff", "\u2029", "=", ":", "::", "-", "--", "--title", " ", "", "é", "\U0001f510"]
clean = st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cf", "Cs", "Zl", "Zp"]),
                min_size=1, max_size=10)
nasty = st.one_of(st.sampled_from(NASTY), st.text(st.characters(codec=None), max_size=8),
                  st.lists(st.sampled_from(NASTY) | clean, max_size=4).map("".join))


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, by weight (`st.one_of` treats equal strategies as one)."""
    return st.sampled_from([s for w, s in choices for _ in range(w)]).flatmap(lambda s: s)


words = weighted((8, clean), (1, nasty))
field_types = weighted((8, st.sampled_from(["login", "password", "url", "host", "note", "secret", "pinCode",
                                            "text", "email"])), (1, nasty))
values = weighted((8, clean), (1, nasty), (1, st.just("-")))
field_specs = weighted(
    (8, st.builds(lambda t, lbl, v: f"{t}{':' + lbl if lbl is not None else ''}={v}", field_types,
                  st.none() | words, values)),
    (1, nasty))
label_specs = weighted((8, st.builds(lambda lbl, v: f"{lbl}={v}", words, values)), (1, nasty))


@st.composite
def commands(draw: st.DrawFn) -> tuple[list[str], str | None]:
    args = ["record", "add", "--type", draw(weighted((4, st.sampled_from(["login", "pamUser",
                                                                            "pamNetworkDevice"])),
                                                     (1, nasty))),
            "--title", draw(weighted((3, clean), (1, nasty), (1, st.just("sw1 admin"))))]
    if draw(st.booleans()):
        args += ["--login", draw(words)]
    if draw(st.booleans()):
        args += ["--password", draw(values)]
    for opt, spec in (("--field", field_specs), ("--custom", label_specs), ("--secret-custom", label_specs)):
        for item in draw(st.lists(spec, max_size=2)):
            args += [opt, item]
    if draw(st.booleans()):
        args.append("--allow-duplicate")
    # What stdin holds when an option reads '-' (the runner sends it as UTF-8: no lone surrogates).
    stdin = draw(st.none() | st.text(st.characters(codec="utf-8"), max_size=10).map(lambda s: s + "\n"))
    return args, stdin


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CliRunner, dict[str, Any], Path]]:
    from keyturn.cli.main import app

    home = tmp_path_factory.mktemp("fuzz-cli") / "home"
    env = {"KEYTURN_HOME": str(home), "KEYTURN_MASTER_KEY": None, "KEYTURN_PASSPHRASE": None,
           "KEYTURN_DATABASE_URL": None, "KEYTURN_KEY_FILE": None, "KEYTURN_DEBUG": None}
    runner = CliRunner()
    assert runner.invoke(app, ["init"], env=env).exit_code == 0
    assert runner.invoke(app, ["record", "add", "--type", "pamUser", "--title", "sw1 admin"],
                         env=env).exit_code == 0
    yield runner, env, home


def state(home: Path) -> tuple[Any, ...]:
    with Vault.open(Settings(home=home)) as vault:
        st_ = vault.status()
        return st_.records, st_.secret_versions, st_.audit_entries


@FUZZ
@given(command=commands())
def test_record_add_takes_any_options_without_a_crash(
    cli: tuple[CliRunner, dict[str, Any], Path], command: tuple[list[str], str | None],
) -> None:
    from keyturn.cli.main import app

    runner, env, home = cli
    args, stdin = command
    before = state(home)
    r = runner.invoke(app, args, env=env, input=stdin)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code in (0, 1, 2), (r.exit_code, r.stderr)
    assert "Traceback" not in r.output and "internal error" not in r.output, r.output
    if r.exit_code == 0:
        event("added")
        uid = r.stdout.strip()
        assert len(uid) == 22
        title = args[args.index("--title") + 1]
        with Vault.open(Settings(home=home)) as vault:
            assert vault.get(uid).title == title.strip()
        return
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    event(f"exit {r.exit_code}: " + re.sub(r"'.*?'|\d+", "_", (errors or ["(Click usage)"])[0])[:50])
    assert len(errors) == 1 or (r.exit_code == 2 and "Usage:" in r.stderr), r.stderr  # Click's own usage
    assert state(home) == before
