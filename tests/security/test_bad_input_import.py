"""Bad import files (issue 12, item 15): lone surrogates, deep nesting, huge files, non-JSON numbers and
the wrong type at every level are refused with one clear line — `ImportFailed` from the Python API,
exit 1 from `keyturn record import` (exit 2 for a wrong `--format`) — never a traceback, and nothing is
written: the import stays all-or-nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from keyturn.config import Settings
from keyturn.errors import ImportFailed
from keyturn.vault import Vault
from keyturn.vault.importers import MAX_IMPORT_BYTES, parse, read_file

Run = Callable[..., Result]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def run(home: Path) -> Iterator[Run]:
    from keyturn.cli.main import app

    runner = CliRunner()
    env = {"KEYTURN_HOME": str(home), "KEYTURN_MASTER_KEY": None, "KEYTURN_PASSPHRASE": None,
           "KEYTURN_DATABASE_URL": None, "KEYTURN_KEY_FILE": None, "KEYTURN_DEBUG": None}

    def invoke(*args: str, code: int = 0) -> Result:
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        assert "Traceback" not in result.output and "internal error" not in result.output
        return result

    invoke("init")
    invoke("record", "add", "--type", "login", "--title", "already here")
    yield invoke


def state(home: Path) -> tuple[Any, ...]:
    """Everything an import could change: the records, the secret versions, the audit trail."""
    with Vault.open(Settings(home=home)) as vault:
        st = vault.status()
        return (st.records, st.secret_versions, st.audit_entries,
                [(s.uid, s.title) for s in vault.summaries()])


def refused(run: Run, home: Path, tmp_path: Path, content: str | bytes, fmt: str = "keyturn") -> str:
    """Import `content` through the CLI: exit 1, one error line, nothing written; the line is returned."""
    before = state(home)
    src = tmp_path / "import.json"
    if isinstance(content, str):
        content = content.encode("utf-8", "surrogatepass")
    src.write_bytes(content)
    r = run("record", "import", str(src), "--format", fmt, code=1)
    assert r.stdout == ""
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert state(home) == before
    return r.stderr


def keyturn_doc(*records: Any) -> str:
    return json.dumps({"keyturn_export": 1, "records": list(records)})


def keeper_doc(*records: Any) -> str:
    return json.dumps({"shared_folders": [], "records": list(records)})


GOOD_KEYTURN = {"title": "good one", "type": "login", "fields": [{"type": "login", "value": ["admin"]}]}
GOOD_KEEPER = {"title": "good one", "$type": "login", "login": "admin", "password": "pw"}


# ---- lone surrogates -------------------------------------------------------------------------------------

SURROGATE_PLACES = {
    "title": ({**GOOD_KEYTURN, "title": "sw1\ud800"}, {**GOOD_KEEPER, "title": "sw1\ud800"}),
    "login": ({**GOOD_KEYTURN, "fields": [{"type": "login", "value": ["ad\udfffmin"]}]},
              {**GOOD_KEEPER, "login": "ad\udfffmin"}),
    "secret": ({**GOOD_KEYTURN, "fields": [{"type": "password", "value": ["pw\ud83d"]}]},
               {**GOOD_KEEPER, "password": "pw\ud83d"}),
    "label": ({**GOOD_KEYTURN, "custom": [{"type": "text", "label": "\udc80site", "value": ["hq"]}]},
              {**GOOD_KEEPER, "custom_fields": {"\udc80site": "hq"}}),
    "value": ({**GOOD_KEYTURN, "fields": [{"type": "host", "value": [{"hostName": "h\udc00"}]}]},
              {**GOOD_KEEPER, "custom_fields": {"$host": {"hostName": "h\udc00", "port": "22"}}}),
    "meta key": ({**GOOD_KEYTURN, "meta": {"rotation": {"\ud800": 1}}}, None),  # Keeper has no meta
}


SURROGATE_CASES = [(place, fmt) for place, pair in SURROGATE_PLACES.items()
                   for fmt, record in zip(("keyturn", "keeper"), pair, strict=True) if record]


@pytest.mark.parametrize(("place", "fmt"), SURROGATE_CASES)
def test_lone_surrogates_are_refused(run: Run, home: Path, tmp_path: Path, place: str, fmt: str) -> None:
    record = SURROGATE_PLACES[place][0 if fmt == "keyturn" else 1]
    # json.dumps writes a lone surrogate as the escape "\ud800": what a hostile file holds.
    doc = keyturn_doc(GOOD_KEYTURN, record) if fmt == "keyturn" else keeper_doc(GOOD_KEEPER, record)
    assert "\\ud" in doc
    err = refused(run, home, tmp_path, doc, fmt)
    assert "record #2" in err and "lone surrogate" in err
    if place == "secret":
        assert "U+D83D" not in err  # not even the code point of a secret is told
    else:
        assert "U+D" in err


def test_surrogate_raw_in_a_str_from_the_python_api() -> None:
    # A str built in Python (e.g. from a non-UTF-8 command line, surrogateescape) can hold one raw.
    with pytest.raises(ImportFailed, match=r"record #1: \"title\": .*lone surrogate.*U\+DCFF"):
        parse(keeper_doc({"title": "x"}).replace('"x"', '"x\udcff"'), "keeper")


# ---- deep nesting ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["keyturn", "keeper"])
def test_json_nested_100000_levels_is_refused(run: Run, home: Path, tmp_path: Path, fmt: str) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    doc = '{"records": [{"title": "deep", "type": "login", "meta": {"x": ' + deep + "}}]}"
    err = refused(run, home, tmp_path, doc, fmt)
    assert "nested too deeply" in err
    with pytest.raises(ImportFailed, match="nested too deeply"):
        parse(doc, fmt)


def test_nesting_the_parser_can_read_but_a_record_may_not_hold(
    run: Run, home: Path, tmp_path: Path,
) -> None:
    def nest(n: int) -> Any:
        v: Any = "leaf"
        for _ in range(n):
            v = {"k": v}
        return v

    err = refused(run, home, tmp_path, keyturn_doc({**GOOD_KEYTURN, "meta": {"x": nest(500)}}))
    assert "nested more than 16 levels deep" in err
    field = {"type": "host", "value": [nest(50)]}
    err = refused(run, home, tmp_path, keyturn_doc({**GOOD_KEYTURN, "fields": [field]}))
    assert "field host" in err and "nested more than 8 levels deep" in err
    err = refused(run, home, tmp_path, keeper_doc({**GOOD_KEEPER, "custom_fields": {"$name": nest(50)}}),
                  "keeper")
    assert "nested more than 8 levels deep" in err
    # Keeper's own object values (host, name, phone, pamResources) stay well inside the limit.
    ok = tmp_path / "ok.json"
    ok.write_text(keeper_doc({**GOOD_KEEPER, "title": "objects", "custom_fields": {
        "$host": {"hostName": "10.0.0.1", "port": "22"},
        "$name": {"first": "A", "middle": "", "last": "B"},
        "$pamResources": {"controllerUid": "c", "folderUid": "f", "resourceRef": ["r1", "r2"]}}}))
    assert run("record", "import", str(ok), "--format", "keeper").stdout == "imported 1 records\n"


# ---- huge files ------------------------------------------------------------------------------------------

def test_a_file_over_the_cap_is_refused_unread(run: Run, home: Path, tmp_path: Path) -> None:
    before = state(home)
    big = tmp_path / "big.json"
    with big.open("wb") as fh:  # sparse: no disk or time spent on the 64 MiB
        fh.truncate(MAX_IMPORT_BYTES + 1)
    r = run("record", "import", str(big), code=1)
    assert r.stderr == (f"error: {big} is larger than 64 MiB (64 MiB or more); keyturn refuses import "
                        "files that size (split it into several imports)\n")
    assert state(home) == before


def test_the_cap_holds_for_the_python_api_and_exactly_at_the_limit(tmp_path: Path) -> None:
    exact = tmp_path / "exact.json"
    exact.write_bytes(b"[]" + b" " * (1000 - 2))
    assert read_file(exact, limit=1000) == "[" + "]" + " " * 998
    exact.write_bytes(b" " * 1001)
    with pytest.raises(ImportFailed, match="larger than"):
        read_file(exact, limit=1000)
    with pytest.raises(ImportFailed, match="larger than 64 MiB"):
        parse(" " * (MAX_IMPORT_BYTES + 1), "keyturn")
    # Counted in UTF-8 bytes, not characters: 2^24 four-byte characters are 64 MiB of text.
    with pytest.raises(ImportFailed, match="larger than 64 MiB"):
        parse("\U0001f510" * (MAX_IMPORT_BYTES // 4) + " ", "keyturn")


def test_a_file_that_is_not_utf8_names_the_byte(run: Run, home: Path, tmp_path: Path) -> None:
    err = refused(run, home, tmp_path, b'{"records": [{"title": "caf\xe9"}]}', "keeper")
    assert err.endswith("is not UTF-8 text (byte 28 is not valid UTF-8)\n")


def test_a_utf8_bom_is_accepted(run: Run, tmp_path: Path) -> None:
    src = tmp_path / "bom.json"
    src.write_bytes(b"\xef\xbb\xbf" + keeper_doc(GOOD_KEEPER).encode())
    assert run("record", "import", str(src), "--format", "keeper").stdout == "imported 1 records\n"


# ---- numbers JSON does not have --------------------------------------------------------------------------

@pytest.mark.parametrize(("number", "message"), [
    ("NaN", "NaN is not a JSON number"),
    ("-Infinity", "-Infinity is not a JSON number"),
    ("1e999", "the number 1e999 is too large"),
    ("9" * 5000, "a number has too many digits"),
])
def test_numbers_json_does_not_have(run: Run, home: Path, tmp_path: Path, number: str, message: str) -> None:
    doc = keeper_doc(GOOD_KEEPER).replace('"login": "admin"', f'"login": "admin", "x": {number}')
    err = refused(run, home, tmp_path, doc, "keeper")
    assert err == f"error: {tmp_path / 'import.json'}: invalid JSON: {message}\n"


# ---- wrong types at every level --------------------------------------------------------------------------

def kt(**changes: Any) -> dict[str, Any]:
    return {**GOOD_KEYTURN, **changes}


def kp(**changes: Any) -> dict[str, Any]:
    return {**GOOD_KEEPER, **changes}


WRONG_TYPES: list[tuple[str, str, Any, str]] = [
    # (format, what, the document or a record, the message part)
    ("keyturn", "document is a number", 42, 'expected an object with a "records" list'),
    ("keyturn", "document is text", "records", 'expected an object with a "records" list'),
    ("keeper", "document is null", None, 'expected an object with a "records" list'),
    ("keyturn", "records is an object", {"records": {"a": GOOD_KEYTURN}}, 'a "records" list'),
    ("keeper", "record is a list", {"records": [GOOD_KEEPER, ["title", "x"]]},
     "record #2: not a JSON object"),
    ("keeper", "record is text", {"records": [GOOD_KEEPER, "x"]}, "record #2: not a JSON object"),
    ("keyturn", "title is a number", kt(title=5),
     'record #2: "title": a record title must be text, not a number'),
    ("keeper", "title is a list", kp(title=["a"]), '"title": a record title must be text, not a list'),
    ("keeper", "title is an object", kp(title={"a": 1}), "must be text, not an object"),
    ("keyturn", "title is true", kt(title=True), "must be text, not true/false"),
    ("keeper", "title is null", kp(title=None), 'missing or empty "title"'),
    ("keyturn", "title is blank", kt(title="  "), 'missing or empty "title"'),
    ("keyturn", "type is a number", kt(type=7), "invalid record type a number"),
    ("keeper", "$type is a list", kp(**{"$type": ["login"]}), "invalid record type a list"),
    ("keyturn", "type has a space", kt(type="pam User"), "invalid record type 'pam User'"),
    ("keyturn", "type ends in a newline", kt(type="login\n"), "invalid record type 'login\\n'"),
    ("keeper", "custom field type ends in a newline", kp(custom_fields={"$host\n": "h"}),
     "is not $type, $type:label or $type:label:index"),
    ("keyturn", "uid is a number", kt(uid=12), '"uid" must be text, not a number'),
    ("keeper", "uid is an object", kp(uid={}), '"uid" must be text, not an object'),
    ("keyturn", "fields is an object", kt(fields={"login": "x"}), '"fields" must be a list of objects'),
    ("keyturn", "a field is text", kt(fields=["login"]), '"fields" must be a list of objects'),
    ("keyturn", "custom is text", kt(custom="x"), '"custom" must be a list of objects'),
    ("keyturn", "field type is a number", kt(fields=[{"type": 1, "value": ["x"]}]),
     "invalid field type a number"),
    ("keyturn", "field label is a list", kt(custom=[{"type": "text", "label": ["l"], "value": ["x"]}]),
     "field text: the label must be text, not a list"),
    ("keyturn", "field value is null", kt(fields=[{"type": "host", "value": [None]}]),
     "field host: a value must be text, a number, true/false or an object, not null"),
    ("keyturn", "field value is a list of lists", kt(fields=[{"type": "host", "value": [["a"]]}]),
     "not a list"),
    ("keyturn", "login value is an object", kt(fields=[{"type": "login", "value": [{"user": "admin"}]}]),
     "the login (field login) must be text, not an object"),
    ("keeper", "login is an object", kp(login={"user": "admin"}), "the login (field login) must be text"),
    ("keeper", "login is a number", kp(login=1234), "the login (field login) must be text, not a number"),
    ("keyturn", "url value is an object", kt(fields=[{"type": "url", "value": [{"u": 1}]}]),
     "field url: a url value must be text, not an object"),
    ("keeper", "notes is an object", kp(notes={"n": 1}),
     "field note: a note value must be text, not an object"),
    ("keyturn", "password is an object", kt(fields=[{"type": "password", "value": [{"p": 1}]}]),
     "field password: secret values must be text"),
    ("keeper", "password is a number", kp(password=1234), "field password: secret values must be text"),
    ("keeper", "password is two values", kp(password=["a", "b"]), "a secret field holds one value"),
    ("keyturn", "meta is a list", kt(meta=[1]), '"meta" must be an object, not a list'),
    ("keeper", "custom_fields is a list", kp(custom_fields=["x"]),
     '"custom_fields" must be an object, not a list'),
    ("keeper", "custom field value is null", kp(custom_fields={"site": None}),
     "field 'site': a value must be"),
    ("keeper", "custom secret is an object", kp(custom_fields={"$secret:enable": {"x": 1}}),
     "field 'enable': secret values must be text"),
    ("keeper", "custom field key is not $type", kp(custom_fields={"$bad key!": "x"}),
     "custom field key '$bad key!' is not $type"),
]


@pytest.mark.parametrize(("fmt", "what", "item", "message"), WRONG_TYPES, ids=[w[1] for w in WRONG_TYPES])
def test_wrong_types_at_every_level(
    run: Run, home: Path, tmp_path: Path, fmt: str, what: str, item: Any, message: str,
) -> None:
    if isinstance(item, dict) and ("title" in item or "$type" in item):  # a record, after a good one
        doc = keyturn_doc(GOOD_KEYTURN, item) if fmt == "keyturn" else keeper_doc(GOOD_KEEPER, item)
    else:
        doc = json.dumps(item)
    err = refused(run, home, tmp_path, doc, fmt)
    assert message in err, err
    with pytest.raises(ImportFailed):
        parse(doc, fmt)


def test_the_error_never_quotes_a_refused_title_and_shortens_a_long_one(
    run: Run, home: Path, tmp_path: Path,
) -> None:
    err = refused(run, home, tmp_path, keeper_doc(GOOD_KEEPER, kp(title="pay\u202eroll\nadmin")), "keeper")
    assert "record #2: \"title\": the record title contains a bidi embedding or override, U+202E " \
           "RIGHT-TO-LEFT OVERRIDE, at character 4" in err
    assert "payroll" not in err.replace("\\u202e", "") and "pay" not in err
    long_title = "t" * 150
    err = refused(run, home, tmp_path, keeper_doc(kp(title=long_title, login={"x": 1})), "keeper")
    assert f"record #1 ('{'t' * 60}\u2026')" in err and long_title not in err
    err = refused(run, home, tmp_path, keeper_doc(kp(title="t" * 201)), "keeper")
    assert "the record title is 201 characters long; the limit is 200" in err and "t" * 61 not in err


def test_a_bad_record_after_good_ones_imports_nothing(run: Run, home: Path, tmp_path: Path) -> None:
    goods = [kp(title=f"good {i}") for i in range(5)]
    refused(run, home, tmp_path, keeper_doc(*goods, kp(title="bad", login=["a", {"b": 1}])), "keeper")
    # A record the vault refuses at write time (a duplicate title) also leaves nothing behind.
    refused(run, home, tmp_path, keeper_doc(*goods, kp(title="ALREADY here")), "keeper")
    assert run("record", "list", "--title", "good").stdout == "no records\n"


def test_an_unknown_format_is_a_usage_error(run: Run, home: Path, tmp_path: Path) -> None:
    src = tmp_path / "x.json"
    src.write_text(keeper_doc(GOOD_KEEPER))
    r = run("record", "import", str(src), "--format", "lastpass", code=2)
    assert r.stderr == "error: --format 'lastpass': choose keyturn or keeper\n"
    r = run("record", "export", str(tmp_path / "out.json"), "--format", "csv\x1b[2J", code=2)
    assert r.stderr == "error: --format 'csv\\x1b[2J': choose keyturn or keeper\n"
    assert not (tmp_path / "out.json").exists()
