"""Fuzzing record import (issue 12, "Also"): the keyturn and Keeper JSON importers take any document —
any JSON value, any nesting, any strings (lone surrogates, controls, bidi marks), records with the wrong
type in any place — and either import it cleanly or raise a `KeyturnError`; nothing else escapes, and an
import that fails leaves the vault exactly as it was (records, secret versions, audit trail).
What is imported can be read back and exported.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from keyturn.config import Settings
from keyturn.errors import ImportFailed, KeyturnError
from keyturn.vault import Vault
from keyturn.vault.importers import export, parse

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---- strings and JSON values -----------------------------------------------------------------------------

NASTY = ["\ud800", "\udfff", "\udcff", "\x00", "\n", "\r", "\t", "\x1b[2J", "\x85", "\u202e", "\u2066",
         "\u200b", "\ufeff", "\u2028", "$", ":", "::", "$text:", "$secret:enable", "$keyPair::1", "-",
         "Shell", "scripts", "password", "login", "host", "é", "\U0001f510", " ", ""]
chars = st.characters(codec=None) | st.characters(categories=["Cs", "Cc", "Cf", "Zl", "Zp"])
texts = st.one_of(st.text(chars, max_size=12), st.sampled_from(NASTY),
                  st.lists(st.sampled_from(NASTY) | st.text(max_size=3), max_size=4).map("".join),
                  st.integers(190, 260).map(lambda n: "t" * n))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=False, allow_infinity=False), texts)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(texts, inner, max_size=4), max_leaves=20)
# Text a record may well hold: plausible records are made of it, then one place is made wrong.
clean = st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cf", "Cs", "Zl", "Zp"]),
                min_size=1, max_size=12)


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, by weight (`st.one_of` treats equal strategies as one)."""
    return st.sampled_from([s for w, s in choices for _ in range(w)]).flatmap(lambda s: s)


def deep(n: int, leaf: Any = "x") -> Any:
    v = leaf
    for i in range(n):
        v = [v] if i % 2 else {"k": v}
    return v


# What replaces one value of a plausible record: any text, any JSON value, nesting up to past the limits.
wrong = st.one_of(texts, json_values, st.integers(0, 40).map(deep), st.just(_DELETE := object()))


def places(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON value (dict keys, list indices), the value itself first."""
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += places(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += places(v, (*path, i))
    return out


def mutate(record: dict[str, Any], where: int, replacement: Any, key: str | None) -> Any:
    """`record` with the value at one path (chosen by `where`) replaced, removed, or given a new key."""
    paths = places(record)[1:]
    if not paths:
        return record
    *parent_path, last = paths[where % len(paths)]
    parent: Any = record
    for step in parent_path:
        parent = parent[step]
    if key is not None and isinstance(parent, dict):
        parent[key] = replacement if replacement is not _DELETE else None
    elif replacement is _DELETE:
        del parent[last]
    else:
        parent[last] = replacement
    return record


field_types = st.sampled_from(["login", "password", "url", "host", "note", "text", "secret", "pinCode",
                               "oneTimeCode", "name", "multiline", "keyPair"])
field_values = st.one_of(clean, st.lists(clean, max_size=2), st.builds(
    lambda h, p: {"hostName": h, "port": p}, clean, st.integers(1, 65535).map(str)))
labels = st.none() | clean | st.sampled_from([":", "a:b", "enable:2", ":1", "$text", "$x:y:3", "1"])
keyturn_field = st.fixed_dictionaries({"type": field_types, "value": field_values},
                                      optional={"label": labels})
plausible_keyturn = st.fixed_dictionaries({
    "title": clean | st.sampled_from(["sw1 admin", "SW1 ADMIN ", "Default PAM Configuration"]),
    "type": st.sampled_from(["login", "pamUser", "pamNetworkDevice"]),
}, optional={
    "uid": st.text("abcXYZ09_-", min_size=16, max_size=32),
    "fields": st.lists(keyturn_field, max_size=3),
    "custom": st.lists(keyturn_field, max_size=2),
    "meta": st.dictionaries(clean, clean, max_size=2) | st.just({"scripts": [{"command": "/bin/true"}]}),
})
keeper_key = st.one_of(clean, st.builds(lambda t, lbl, i: f"${t}:{lbl or ''}{i}", field_types, labels,
                                        st.sampled_from(["", ":1", ":0"])))
plausible_keeper = st.fixed_dictionaries({"title": clean | st.sampled_from(["sw1 admin", "Meraki org"])},
                                         optional={
    "$type": st.sampled_from(["login", "pamUser", "pamMerakiNetwork"]),
    "uid": clean,
    "login": clean, "password": clean, "login_url": clean, "notes": clean,
    "custom_fields": st.dictionaries(keeper_key, field_values, max_size=3) | st.just({"Shell": "/bin/sh"}),
    "folders": json_values,
})


def records(plausible: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
    """A plausible record, or one with one place (anywhere, nested too) made wrong."""
    mutated = st.builds(mutate, plausible, st.integers(0, 10_000), wrong, st.none() | texts)
    return weighted((3, plausible), (2, mutated))


def documents(plausible: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[str]:
    listed = st.lists(records(plausible), min_size=1, max_size=4)
    doc = weighted((6, st.fixed_dictionaries({"records": listed})),
                   (1, st.builds(mutate, st.fixed_dictionaries({"records": listed}), st.integers(0, 3), wrong,
                                 st.none())),
                   (1, listed), (1, json_values))
    as_text = st.builds(lambda d, ascii_only: json.dumps(d, ensure_ascii=ascii_only), doc, st.booleans())
    nested = st.builds(lambda n, d: "[" * n + d + "]" * n, st.sampled_from([1, 900, 5000, 100_000]), as_text)
    broken = st.builds(lambda d, cut: d[:cut], as_text, st.integers(0, 200))
    odd = st.sampled_from(["NaN", '{"records": [Infinity]}', "1e999", "9" * 5000, "", "\ufeff{}"])
    return weighted((8, as_text), (1, nested), (1, broken), (1, odd))


# ---- the vault ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vault]:
    home: Path = tmp_path_factory.mktemp("fuzz-import") / "home"
    v = Vault.init(Settings(home=home))
    v.add(type="pamUser", title="sw1 admin")
    yield v
    v.close()


def state(vault: Vault) -> tuple[Any, ...]:
    st_ = vault.status()
    return st_.records, st_.secret_versions, st_.audit_entries, [s.uid for s in vault.summaries()]


def import_any(vault: Vault, text: str, fmt: str, allow_scripts: bool, allow_duplicate: bool) -> None:
    before = state(vault)
    try:
        specs = parse(text, fmt, allow_scripts=allow_scripts)
    except ImportFailed as exc:
        event("refused by parse: " + re.sub(r"'.*?'|\d+", "_", str(exc))[:60])  # the kind, for statistics
        assert str(exc) and "\n" not in str(exc)
        assert state(vault) == before
        return
    try:
        uids = vault.add_many(specs, allow_duplicate=allow_duplicate, actor="fuzz")
    except KeyturnError as exc:
        event(f"refused by the vault: {type(exc).__name__}")
        assert state(vault) == before  # all or nothing
        return
    event(f"imported {'no' if not uids else 'one' if len(uids) == 1 else 'several'} records")
    for uid, spec in zip(uids, specs, strict=True):
        rec = vault.get(uid)
        assert rec.title == spec.title.strip()
    # What was imported exports again, and that export imports (the records as they now are).
    stored = [vault.get(uid) for uid in uids]
    again = parse(json.dumps(export(stored, fmt)), fmt, allow_scripts=True)
    assert [r.title for r in again] == [r.title for r in stored]
    if fmt == "keyturn":  # keyturn's own format keeps every field as it is
        def names(fields: Any) -> list[tuple[str, str | None]]:
            return [(f.type, f.label) for f in fields]

        assert [names(r.fields) + names(r.custom) for r in again] == \
               [names(r.fields) + names(r.custom) for r in stored]


@FUZZ
@given(text=documents(plausible_keyturn), allow_scripts=st.booleans(), allow_duplicate=st.booleans())
def test_keyturn_import_is_clean_or_a_keyturn_error(
    vault: Vault, text: str, allow_scripts: bool, allow_duplicate: bool,
) -> None:
    import_any(vault, text, "keyturn", allow_scripts, allow_duplicate)


@FUZZ
@given(text=documents(plausible_keeper), allow_scripts=st.booleans(), allow_duplicate=st.booleans())
def test_keeper_import_is_clean_or_a_keyturn_error(
    vault: Vault, text: str, allow_scripts: bool, allow_duplicate: bool,
) -> None:
    import_any(vault, text, "keeper", allow_scripts, allow_duplicate)


@FUZZ
@given(doc=json_values, fmt=st.sampled_from(["keyturn", "keeper"]))
def test_any_json_value_as_the_whole_document(vault: Vault, doc: Any, fmt: str) -> None:
    import_any(vault, json.dumps(doc), fmt, allow_scripts=False, allow_duplicate=True)


def test_keeper_labels_with_colons_survive_export_and_import(vault: Vault) -> None:
    # Found by the fuzzer: "$secret:a:b" was refused on import, and a label "en:12" came back as
    # label "en", index 12. The label is all between the type and an optional ":index".
    from keyturn.secret import Secret
    from keyturn.vault import Field

    labels = ["a:b", "en:12", "en:12", ":", "1", ":5", "$text"]
    rec = vault.add(type="login", title="colons", custom=[Field("secret", lbl, [Secret(f"s{i}")])
                                                          for i, lbl in enumerate(labels)])
    doc = export([rec], "keeper")
    assert list(doc["records"][0]["custom_fields"]) == [
        "$secret:a:b", "$secret:en:12:0", "$secret:en:12:1", "$secret::", "$secret:1", "$secret::5:0",
        "$secret:$text"]
    back = parse(json.dumps(doc), "keeper")[0]
    assert [(f.type, f.label, f.value[0].reveal()) for f in back.custom] == [
        ("secret", lbl, f"s{i}") for i, lbl in enumerate(labels)]
