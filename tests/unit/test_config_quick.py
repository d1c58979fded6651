"""`keyturn.config_quick`: the quick loader answers as `load_settings` does, or leaves it to it.

`QUICK` is held to `Settings`' own fields (type, default, bounds). Each case sets KEYTURN_* variables
and a `[keyturn]` table, then compares the two loaders field by field; the cases the quick loader must
leave alone (an audit sink, a mistyped number, a setting it does not know) give None, and through the
CLI the full loader's error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import pytest
from annotated_types import Ge, Le
from pydantic import SecretStr
from typer.testing import CliRunner

from keyturn.cli.main import app
from keyturn.config import Settings, load_settings
from keyturn.config_quick import NOT_SETTINGS, QUICK, QuickSettings, quick_settings
from keyturn.config_sources import default_home


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [n for n in __import__("os").environ if n.upper().startswith("KEYTURN_")]:
        monkeypatch.delenv(name)
    path = tmp_path / "home"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("KEYTURN_HOME", str(path))
    return path


def _value(settings: Any, name: str) -> Any:
    value = getattr(settings, name)
    return value.get_secret_value() if value is not None and hasattr(value, "get_secret_value") else value


def _same(quick: QuickSettings, full: Settings) -> None:
    for name in QUICK:
        assert _value(quick, name) == _value(full, name), name
        assert type(_value(quick, name)) is type(_value(full, name)), name
    for prop in ("effective_database_url", "effective_auto_upgrade", "effective_key_file"):
        assert getattr(quick, prop) == getattr(full, prop), prop


def test_the_table_is_settings_own_fields() -> None:
    fields = Settings.model_fields
    for name, quick in QUICK.items():
        field = fields[name]
        expected = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
        got = quick.default() if callable(quick.default) else quick.default
        assert got == expected, name
        assert quick.secret == (SecretStr in get_args(field.annotation)), name
    assert fields["home"].default_factory is default_home
    bounds = {type(m): m for m in fields["history_depth"].metadata}
    low, high = bounds[Ge].ge, bounds[Le].le  # type: ignore[attr-defined]
    parse = QUICK["history_depth"].parse
    assert parse(str(low)) == low and parse(high) == high
    for bad in (str(low - 1), high + 1, "1e3", " 5", "+5", True):
        with pytest.raises(Exception):  # noqa: B017 - the quick loader's own "leave it" signal
            parse(bad)
    assert not NOT_SETTINGS & {f"KEYTURN_{n.upper()}" for n in fields}


PLAIN: list[tuple[dict[str, str], str]] = [
    ({}, ""),
    ({"KEYTURN_DATABASE_URL": "sqlite:////tmp/elsewhere.db"}, ""),
    ({"KEYTURN_DATABASE_URL": ""}, ""),
    ({"KEYTURN_HISTORY_DEPTH": "25", "KEYTURN_DEBUG": "true", "KEYTURN_AUTO_UPGRADE": "0"}, ""),
    ({"KEYTURN_MASTER_KEY": "a2V5"}, 'passphrase = "in the file"\n'),
    ({"KEYTURN_SITES": " dc-east, ,dc-west,"}, ""),
    ({"KEYTURN_SITES": ""}, ""),
    ({}, 'sites = ["dc-east", " dc-west "]\nhistory_depth = 3\nauto_upgrade = false\nscript_user = "kt"\n'),
    ({"KEYTURN_HISTORY_DEPTH": "7"}, "history_depth = 3\n"),   # the variable wins over the file
    ({}, 'key_file = "elsewhere.key"\nlog_level = "DEBUG"\n'),
    ({}, 'history_depth = "5"\ndebug = "yes"\n'),                 # pydantic's lax strings, the same
    ({"KEYTURN_URL": "https://keyturn.example", "KEYTURN_TOKEN": "t"}, ""),  # not settings
]


@pytest.mark.parametrize(("env", "toml"), PLAIN)
def test_plain_sources_give_the_full_loaders_values(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                     env: dict[str, str], toml: str) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    if toml:
        (home / "keyturn.toml").write_text("[keyturn]\n" + toml)
    quick = quick_settings()
    assert quick is not None
    _same(quick, load_settings())


def test_arguments_win_and_a_config_file_elsewhere_is_read(home: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other.toml"
    other.write_text('[keyturn]\nhistory_depth = 4\ndatabase_url = "sqlite:////nowhere/file.db"\n')
    monkeypatch.setenv("KEYTURN_CONFIG", str(other))
    args = {"home": tmp_path / "argument-home", "database_url": "sqlite:////tmp/argument.db"}
    quick = quick_settings(**args)
    assert quick is not None and quick.history_depth == 4
    _same(quick, load_settings(**args))


LEFT_TO_PYDANTIC: list[tuple[dict[str, str], str]] = [
    ({"KEYTURN_HISTORY_DEPTH": "0"}, ""),
    ({"KEYTURN_HISTORY_DEPTH": "010"}, ""),
    ({"KEYTURN_DEBUG": "TRUE"}, ""),
    ({"KEYTURN_CONCURRENCY": "8"}, ""),               # a setting the quick table does not hold
    ({"KEYTURN_NOT_A_SETTING": "x"}, ""),
    ({"KEYTURN_SITES": "Dc-East"}, ""),
    ({}, '[[keyturn.audit_sinks]]\nname = "siem"\ntype = "jsonl"\npath = "/var/log/kt.jsonl"\n'),
    ({}, "key_file = 5\n"),
    ({}, "sites = [\"dc-east\", 3]\n"),
]


@pytest.mark.parametrize(("env", "toml"), LEFT_TO_PYDANTIC)
def test_anything_else_is_left_to_the_full_loader(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                  env: dict[str, str], toml: str) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    if toml:
        (home / "keyturn.toml").write_text(("" if toml.startswith("[[") else "[keyturn]\n") + toml)
    assert quick_settings() is None


def test_a_lower_case_variable_pydantic_would_read_is_left_to_it(home: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("keyturn_history_depth", "3")
    assert quick_settings() is None
    assert load_settings().history_depth == 3


def test_an_unreadable_file_is_the_same_error(home: Path) -> None:
    (home / "keyturn.toml").write_text("[keyturn\n")
    with pytest.raises(Exception) as quick_exc:  # compared below
        quick_settings()
    with pytest.raises(Exception) as full_exc:
        load_settings()
    assert (type(quick_exc.value), str(quick_exc.value)) == (type(full_exc.value), str(full_exc.value))


def test_reveal_with_a_bad_setting_gives_the_full_loaders_error_and_touches_nothing(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["init"]).exit_code == 0
    monkeypatch.setenv("KEYTURN_HISTORY_DEPTH", "0")
    result = runner.invoke(app, ["reveal", "anything"])
    assert result.exit_code == 2
    assert "error: invalid setting history_depth: Input should be greater than or equal to 1" in result.output
