"""Tags (`keyturn.tags`), grants and `read_field` (`keyturn.consumers`), the `--env` spec of `keyturn
exec`, and tags in a keyturn JSON import."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer

from keyturn.cli.exec import parse_env
from keyturn.config import Settings
from keyturn.consumers import Grant, granted, parse_grant, parse_grants, read_field
from keyturn.errors import ConfigError, ImportFailed, VaultError
from keyturn.secret import Secret
from keyturn.tags import MAX_TAGS, check_meta_tags, check_tag, retag, tags_of
from keyturn.vault import Field, Vault
from keyturn.vault.importers import parse


@pytest.mark.parametrize("name", ["backup", "dc-east", "a", "v1.2_x", "0" * 63])
def test_good_tags(name: str) -> None:
    assert check_tag(name) == name


@pytest.mark.parametrize("name", ["", "Backup", "dc east", "-x", "x" * 64, "tag\n", "ta:g", "é", 3, None])
def test_bad_tags_say_the_rule(name: object) -> None:
    with pytest.raises(ConfigError, match="is not valid: a lowercase letter or digit"):
        check_tag(name)


def test_retag_adds_removes_sorts_and_refuses_contradictions() -> None:
    assert retag(["lab", "core"], ["backup", "core"], ["lab", "absent"]) == ["backup", "core"]
    with pytest.raises(ConfigError, match="both added and removed"):
        retag([], ["x"], ["x"])
    with pytest.raises(ConfigError, match=f"at most {MAX_TAGS}"):
        retag([], [f"t{i}" for i in range(MAX_TAGS + 1)])


def test_tags_of_ignores_what_keyturn_would_not_store() -> None:
    assert tags_of({"tags": ["b", "a", "a", "Bad Tag", 7]}) == ["a", "b"]
    assert tags_of({"tags": "backup"}) == [] and tags_of({}) == []
    check_meta_tags({"tags": ["ok"]})
    with pytest.raises(ConfigError, match="must be a list"):
        check_meta_tags({"tags": "backup"})


def test_grants_parse_and_match() -> None:
    assert parse_grant("tag:backup") == Grant("tag", "backup")
    assert str(parse_grant("record:sw1 admin")) == "record:sw1 admin"
    for bad in ("backup", "folder:x", "tag:", "tag:Bad", "record:", "record:a\nb"):
        with pytest.raises(ConfigError):
            parse_grant(bad)
    assert parse_grants(["tag:a", "tag:a", "record:u1"]) == [Grant("tag", "a"), Grant("record", "u1")]
    assert granted(["tag:backup"], "u9", {"tags": ["backup"]})
    assert granted(["record:u9"], "u9", {})
    assert not granted(["tag:backup", "record:u1"], "u9", {"tags": ["backups"]})
    assert not granted([], "u9", {"tags": ["backup"]})


def test_read_field_reads_secret_login_and_custom_fields_audited(tmp_path: Path) -> None:
    with Vault.init(Settings(home=tmp_path / "home")) as vault:
        uid = vault.add(type="pamUser", title="sw1", fields=[
            Field("login", value=["netops"]), Field("password", value=[Secret("Pw-1-secret")])],
            custom=[Field("text", "site_code", ["b2"]),
                    Field("secret", "enable", [Secret("En-2-secret")])]).uid
        got = {f: read_field(vault, uid, f, actor="t").reveal() for f in ("password", "login", "site_code",
                                                                          "enable")}
        assert got == {"password": "Pw-1-secret", "login": "netops", "site_code": "b2",
                       "enable": "En-2-secret"}
        with pytest.raises(VaultError, match="no field 'nope'"):
            read_field(vault, uid, "nope", actor="t")
        audited = vault.audit.list(action="reveal", record_uid=uid)
        assert len(audited) == 4 and {e.actor for e in audited} == {"t"}


def test_exec_env_specs() -> None:
    assert parse_env("PW=sw1 admin") == ("PW", "sw1 admin", "password")
    assert parse_env("U=sw1 admin:login") == ("U", "sw1 admin", "login")
    assert parse_env("PW=a:b:password") == ("PW", "a:b", "password")
    for bad in ("PW", "1PW=x", "P-W=x", "PW=", "PW=x:", "PW=:login"):
        with pytest.raises(typer.Exit):
            parse_env(bad)


def _doc(meta: object) -> str:
    return json.dumps({"records": [{"type": "login", "title": "t", "meta": meta}]})


def test_a_keyturn_import_checks_tags() -> None:
    specs = parse(_doc({"tags": ["backup"]}), "keyturn", source="f.json")
    assert specs[0].meta == {"tags": ["backup"]}
    for meta, message in (({"tags": ["No"]}, "is not valid"), ({"tags": "backup"}, "must be a list")):
        with pytest.raises(ImportFailed, match=message):
            parse(_doc(meta), "keyturn", source="f.json")
