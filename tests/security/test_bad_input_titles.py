"""Titles, logins and labels people read (issue 12, item 15): control characters (NUL, newline, carriage
return, other C0/C1), bidi controls and zero-width characters are refused on write with a message that
names the code point and never holds the raw value; titles over 200 characters are refused; a title or
login quoted in a message is shortened. Vaults that already hold such names stay readable (and their
names are shown escaped): the rules apply to writes only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from keyturn.config import Settings
from keyturn.errors import DuplicateRecord, RecordNotFound, VaultError
from keyturn.secret import Secret
from keyturn.vault import Field, Vault

Run = Callable[..., Result]

# Every character the issue names, and the neighbours of each range.
REFUSED = [0x00, 0x01, 0x09, 0x0A, 0x0D, 0x1B, 0x1F, 0x7F, 0x80, 0x85, 0x9B, 0x9F, 0x061C,
           0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2028, 0x2029, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E,
           0x2066, 0x2067, 0x2068, 0x2069, 0xFEFF]
ALLOWED = ["café", "Zürich core-sw1", "東京 edge", "naïve / ½ (test) #3", "admin@example.com", "\u00a0nbsp",
           "\U0001f510 vault", "x" * 200]


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    v = Vault.init(Settings(home=tmp_path / "home"))
    yield v
    v.close()


def state(vault: Vault) -> tuple[Any, ...]:
    st = vault.status()
    return st.records, st.secret_versions, st.audit_entries, [(s.uid, s.title) for s in vault.summaries()]


def refused_write(vault: Vault, write: Callable[[], object], *, names: str, raw: str) -> str:
    before = state(vault)
    with pytest.raises(VaultError) as err:
        write()
    message = str(err.value)
    assert names in message, message
    assert raw not in message
    assert state(vault) == before
    return message


# ---- the Python API --------------------------------------------------------------------------------------

@pytest.mark.parametrize("cp", REFUSED, ids=[f"U+{c:04X}" for c in REFUSED])
def test_refused_characters_in_title_login_and_label(vault: Vault, cp: int) -> None:
    ch = chr(cp)
    raw = f"pay{ch}roll"
    named = f"U+{cp:04X}"
    msg = refused_write(vault, lambda: vault.add(type="login", title=raw), names=named, raw=ch)
    assert msg.startswith("the record title contains ") and msg.endswith("at character 4; remove it")
    refused_write(vault, lambda: vault.add(type="login", title="t", fields=[Field("login", None, [raw])]),
                  names=named, raw=ch)
    refused_write(vault, lambda: vault.add(type="login", title="t", custom=[Field("text", raw, ["v"])]),
                  names=named, raw=ch)
    refused_write(vault, lambda: vault.add(
        type="login", title="t", custom=[Field("secret", raw, [Secret("pw")])]), names=named, raw=ch)
    uid = vault.add(type="login", title="fine", fields=[Field("login", None, ["admin"])]).uid
    refused_write(vault, lambda: vault.update(uid, title=raw), names=named, raw=ch)
    refused_write(vault, lambda: vault.update(uid, fields=[Field("login", None, [raw])]), names=named, raw=ch)
    assert vault.get(uid).title == "fine" and vault.get(uid).field("login") == "admin"


def test_the_message_names_the_character(vault: Vault) -> None:
    cases = {
        "a\x00b": "a control character, U+0000 NUL, at character 2",
        "ab\n": "a control character, U+000A LINE FEED, at character 3",
        "\rab": "a control character, U+000D CARRIAGE RETURN, at character 1",
        "a\x1b[2Jb": "a control character, U+001B ESCAPE, at character 2",
        "a\u202eb": "a bidi embedding or override, U+202E RIGHT-TO-LEFT OVERRIDE, at character 2",
        "a\u2067b": "a bidi isolate, U+2067 RIGHT-TO-LEFT ISOLATE, at character 2",
        "a\u200bb": "a zero-width or bidi mark, U+200B ZERO WIDTH SPACE, at character 2",
        "\ufeffab": "a zero-width no-break space, U+FEFF ZERO WIDTH NO-BREAK SPACE, at character 1",
        "ab\ud800": "a lone surrogate (not Unicode text), U+D800, at character 3",
    }
    for title, want in cases.items():
        with pytest.raises(VaultError) as err:
            vault.add(type="login", title=title)
        assert str(err.value) == f"the record title contains {want}; remove it"


@pytest.mark.parametrize("title", ALLOWED)
def test_ordinary_titles_and_logins_are_accepted(vault: Vault, title: str) -> None:
    rec = vault.add(type="login", title=title, fields=[Field("login", None, [title])])
    assert rec.title == title.strip() and rec.field("login") == title


def test_title_and_login_length(vault: Vault) -> None:
    vault.add(type="login", title="t" * 200)
    refused_write(vault, lambda: vault.add(type="login", title="u" * 201),
                  names="the record title is 201 characters long; the limit is 200", raw="u" * 61)
    long_login = [Field("login", None, ["a" * 257])]
    refused_write(vault, lambda: vault.add(type="login", title="l", fields=long_login),
                  names="is 257 characters long; the limit is 256", raw="a" * 61)
    vault.add(type="login", title="l", fields=[Field("login", None, ["a" * 256])])


def test_a_long_title_is_shortened_wherever_it_is_quoted(vault: Vault) -> None:
    title = "core-switch " + "x" * 180
    vault.add(type="login", title=title)
    with pytest.raises(DuplicateRecord) as dup:
        vault.add(type="login", title=title.upper())
    assert f"a record titled '{title.upper()[:60]}\u2026' already exists" in str(dup.value)
    with pytest.raises(RecordNotFound) as missing:
        vault.get("y" * 5000)
    assert str(missing.value) == f"no record with uid or title '{'y' * 60}\u2026' (see `keyturn record list`)"
    with pytest.raises(RecordNotFound):
        vault.get("no\udcffsuch")  # from a non-UTF-8 command line: not even asked of the database
    assert vault.summaries(title="\udcff") == [] and vault.find(title="\udcff") == []


# ---- vaults written before the rules ---------------------------------------------------------------------

LEGACY_TITLE = "old\u202etitle\nwith a line break and " + "z" * 300


def legacy_record(vault: Vault, home: Path) -> str:
    """A record with a title and login today's rules refuse, as a vault of an earlier version holds it
    (written straight into the database, then accepted by an admin with `vault reseal`)."""
    uid = vault.add(type="pamUser", title="legacy", fields=[Field("login", None, ["admin"]),
                                                            Field("password", None, [Secret("pw")])]).uid
    con = sqlite3.connect(home / "keyturn.db")
    con.execute("UPDATE kt_records SET title = ?, title_key = ?, fields_json = replace(fields_json, "
                "'\"admin\"', '\"adm\\u200bin\"') WHERE uid = ?",
                (LEGACY_TITLE, LEGACY_TITLE.strip().casefold(), uid))
    con.commit()
    con.close()
    vault.reseal(uid, actor="test")
    return uid


def test_names_stored_before_the_rules_stay_readable_and_editable(vault: Vault, tmp_path: Path) -> None:
    uid = legacy_record(vault, tmp_path / "home")
    rec = vault.get(uid)
    assert rec.title == LEGACY_TITLE and rec.field("login") == "adm\u200bin"
    assert [s.uid for s in vault.summaries(title="old\u202etitle")] == [uid]
    assert vault.get(LEGACY_TITLE).uid == uid
    # Editing something else keeps the stored title and login: only what changes is checked.
    vault.update(uid, fields=[*rec.fields[:1], Field("password", None, [Secret("new")])],
                 custom=[Field("text", "site", ["hq"])])
    assert vault.secret(uid).reveal() == "new" and vault.get(uid).field("login") == "adm\u200bin"
    with pytest.raises(VaultError, match="U\\+200B"):
        vault.update(uid, fields=[Field("login", None, ["adm\u200bin2"])])
    vault.update(uid, title="legacy, renamed")
    assert vault.get(uid).title == "legacy, renamed"


# ---- the CLI ---------------------------------------------------------------------------------------------

@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    from keyturn.cli.main import app

    runner = CliRunner()
    env = {"KEYTURN_HOME": str(tmp_path / "home"), "KEYTURN_MASTER_KEY": None, "KEYTURN_PASSPHRASE": None,
           "KEYTURN_DATABASE_URL": None, "KEYTURN_KEY_FILE": None, "KEYTURN_DEBUG": None}

    def invoke(*args: str, code: int = 0, input: str | None = None) -> Result:
        result = runner.invoke(app, list(args), env=env, input=input)
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        assert "Traceback" not in result.output and "internal error" not in result.output
        return result

    invoke("init")
    yield invoke


def cli_state(tmp_path: Path) -> tuple[Any, ...]:
    with Vault.open(Settings(home=tmp_path / "home")) as vault:
        return state(vault)


USAGE_CASES = [
    (["--title", "sw1\nadmin"], "--title: the record title contains a control character, U+000A LINE FEED"),
    (["--title", "sw1\x00"], "U+0000 NUL, at character 4"),
    (["--title", "\u202eadmin"], "U+202E RIGHT-TO-LEFT OVERRIDE, at character 1"),
    (["--title", "a" * 201], "--title: the record title is 201 characters long; the limit is 200"),
    (["--title", "t", "--login", "ad\rmin"], "the login (field login) contains a control character, U+000D"),
    (["--title", "t", "--login", "ad\u2066min"], "U+2066 LEFT-TO-RIGHT ISOLATE"),
    (["--title", "t", "--field", "login=root\u200d"], "U+200D ZERO WIDTH JOINER"),
    (["--title", "t", "--field", "host:\x1b[31mlabel=10.0.0.1"], "the label of field host contains"),
    (["--title", "t", "--custom", "si\u2029te=hq"], "U+2029 PARAGRAPH SEPARATOR"),
    (["--title", "t", "--custom", "site\n=hq"], "the label of custom field text contains a control"),
    (["--title", "t", "--field", "no such type=1"], "invalid field type 'no such type'"),
    (["--title", "t", "--field", ":label=1"], "invalid field type ''"),
    (["--title", "t", "--field", "=1"], "--field '': expected NAME=VALUE"),
    (["--title", "t", "--custom", "x" * 500], f"--custom '{'x' * 60}\u2026': expected NAME=VALUE"),
    (["--title", "t\udcff"], "U+DCFF, at character 2"),  # a non-UTF-8 byte of a command line
]


@pytest.mark.parametrize(("args", "message"), USAGE_CASES, ids=[str(i) for i in range(len(USAGE_CASES))])
def test_record_add_refuses_with_exit_2_and_writes_nothing(
    run: Run, tmp_path: Path, args: list[str], message: str,
) -> None:
    before = cli_state(tmp_path)
    r = run("record", "add", "--type", "login", *args, code=2)
    assert r.stdout == "" and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert message in r.stderr, r.stderr
    for raw in ("\n" + "admin", "\x00", "\u202e", "\r", "\u2066", "\u200d", "\x1b", "\u2029", "\udcff"):
        assert raw not in r.stderr
    assert cli_state(tmp_path) == before


def test_record_edit_refuses_with_exit_2(run: Run, tmp_path: Path) -> None:
    run("record", "add", "--type", "login", "--title", "sw1", "--login", "admin")
    before = cli_state(tmp_path)
    r = run("record", "edit", "sw1", "--title", "sw1\u200e", code=2)
    assert r.stderr == ("error: --title: the record title contains a zero-width or bidi mark, U+200E "
                        "LEFT-TO-RIGHT MARK, at character 4; remove it\n")
    r = run("record", "edit", "sw1", "--login", "root\x85", code=2)
    assert "U+0085 NEXT LINE" in r.stderr
    assert cli_state(tmp_path) == before


def test_cli_shortens_and_escapes_what_it_quotes(run: Run, tmp_path: Path) -> None:
    title = "t" * 200
    run("record", "add", "--type", "login", "--title", title)
    r = run("record", "add", "--type", "login", "--title", title, code=1)
    assert r.stderr.startswith(f"error: a record titled '{'t' * 60}\u2026' already exists (uid ")
    r = run("record", "show", "q" * 3000, code=4)
    assert r.stderr == f"error: no record with uid or title '{'q' * 60}\u2026' (see `keyturn record list`)\n"
    r = run("record", "show", "\udcff\x1b[2J", code=4)
    assert r.stderr == "error: no record with uid or title '\\udcff\\x1b[2J' (see `keyturn record list`)\n"
    assert run("record", "list", "--title", "\udcff").stdout == "no records\n"
    r = run("record", "rm", "--yes", title)
    assert r.stdout.endswith(f" '{'t' * 60}\u2026'\n")


def test_cli_shows_a_stored_name_escaped(run: Run, tmp_path: Path) -> None:
    with Vault.open(Settings(home=tmp_path / "home")) as vault:
        uid = legacy_record(vault, tmp_path / "home")
    listing = run("record", "list", "--type", "pamUser").stdout.splitlines()
    assert len(listing) == 2  # a stored line break does not forge a row
    assert listing[1].startswith(f"{uid}  pamUser  old\\u202etitle\\nwith a line break")
    show = run("record", "show", uid).stdout.splitlines()
    assert show[1].startswith("title:    old\\u202etitle\\nwith a line break and zzz")
    assert show[3] == "login:    adm\\u200bin"
    assert "\u202e" not in run("record", "show", uid).stdout
    r = run("record", "rm", "--yes", uid)
    assert r.stdout == f"removed {uid} 'old\\u202etitle\\nwith a line break and {'z' * 28}\u2026'\n"


def test_a_record_type_that_is_not_a_name_is_a_usage_error(run: Run, tmp_path: Path) -> None:
    before = cli_state(tmp_path)
    r = run("record", "add", "--type", "pam\nUser", "--title", "t", code=2)
    assert r.stderr == ("error: --type: invalid record type 'pam\\nUser': a letter, then letters, digits "
                        "or _\n")
    r = run("record", "add", "--type", "login\n", "--title", "t", code=2)  # "$" would let it through
    assert "invalid record type 'login\\n'" in r.stderr
    r = run("record", "add", "--type", "login", "--title", "t", "--field", "host\n=h", code=2)
    assert "invalid field type 'host\\n'" in r.stderr
    assert cli_state(tmp_path) == before
