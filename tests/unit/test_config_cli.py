"""Issue 18, item 4: every setting in keyturn.toml / env / flags, `keyturn config example` and `show`,
serve's host, port, TLS and grace from the file (flags first), `postgres://` URLs."""

from __future__ import annotations

import base64
import json
import logging
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from keyturn.cli.main import app
from keyturn.config import Settings
from keyturn.vault.storage import Storage, normalize_url
from tests.pg import pg_up

KEY = base64.b64encode(bytes(range(32))).decode()
CLEAN = {"KEYTURN_MASTER_KEY": None, "KEYTURN_PASSPHRASE": None, "KEYTURN_DATABASE_URL": None,
         "KEYTURN_KEY_FILE": None, "KEYTURN_CONFIG": None, "KEYTURN_SERVE_HOST": None,
         "KEYTURN_SERVE_PORT": None, "KEYTURN_SERVE_CERT": None, "KEYTURN_SERVE_KEY": None,
         "KEYTURN_SERVE_GRACE": None, "KEYTURN_SERVE_INSECURE_HTTP": None, "KEYTURN_LOG_LEVEL": None}


@pytest.fixture(autouse=True)
def _keep_root_logging() -> Any:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def cli(home: Path, *args: str, env: dict[str, Any] | None = None) -> Any:
    home.mkdir(mode=0o700, exist_ok=True)
    return CliRunner().invoke(app, list(args), env={**CLEAN, "KEYTURN_HOME": str(home), **(env or {})})


def example() -> str:
    r = CliRunner().invoke(app, ["config", "example"], env=CLEAN)
    assert r.exit_code == 0, r.output
    return str(r.stdout)


def test_example_names_every_setting_with_its_variable() -> None:
    text = example()
    for name in Settings.model_fields:
        assert re.search(rf"^#? ?{name}[ :(]", text, re.M), name
        assert f"KEYTURN_{name.upper()}" in text, name


def test_example_is_valid_toml_that_keyturn_accepts_also_with_every_example_uncommented() -> None:
    text = example()
    Settings(**tomllib.loads(text)["keyturn"])
    fields = "|".join(Settings.model_fields)
    uncommented = re.sub(rf"^# ((?:{fields}) = )", r"\1", text, flags=re.M)
    values = tomllib.loads(uncommented)["keyturn"]
    assert {"serve_cert", "database_url", "broker_url", "sites"} <= set(values)
    Settings(**values)
    tables = re.sub(r"^# (\[\[keyturn\.|[a-z_]+ = )", r"\1", text, flags=re.M)
    parsed = Settings(**tomllib.loads(tables)["keyturn"])
    assert [s.type for s in parsed.audit_sinks] == ["syslog"]
    assert [n.type for n in parsed.notify] == ["email"]


def test_example_never_holds_a_master_key_setting() -> None:
    values = tomllib.loads(example())["keyturn"]
    assert not {"master_key", "passphrase", "new_passphrase"} & set(values)


def test_show_names_the_source_of_each_value_and_masks_secrets(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "keyturn.toml").write_text('[keyturn]\nserve_port = 9001\nserve_host = "10.1.2.3"\n'
                                       'database_url = "postgres://kt:file-pw-77@db.example.net/kt"\n')
    r = cli(home, "--home", str(home), "config", "show", "--json",
            env={"KEYTURN_MASTER_KEY": KEY, "KEYTURN_SERVE_HOST": "10.9.9.9"})
    assert r.exit_code == 0, r.output
    assert KEY not in r.stdout and "file-pw-77" not in r.stdout
    shown = json.loads(r.stdout)
    assert shown["config_file"] == str(home / "keyturn.toml")
    s = shown["settings"]
    assert s["home"] == {"value": str(home), "source": "env"}   # --home equal to KEYTURN_HOME
    assert s["serve_port"] == {"value": "9001", "source": "file"}
    assert s["serve_host"] == {"value": "10.9.9.9", "source": "env"}
    assert s["serve_grace"] == {"value": "30.0", "source": "default"}
    assert s["master_key"] == {"value": "********", "source": "env"}
    assert s["database_url"]["source"] == "file"
    assert "db.example.net" in s["database_url"]["value"]

    other = tmp_path / "other"
    r = cli(home, "--home", str(other), "config", "show")
    assert r.exit_code == 0, r.output
    assert re.search(r"^home\s+flag\s+" + re.escape(str(other)) + "$", r.stdout, re.M), r.stdout
    assert f"config file: {other / 'keyturn.toml'} (not found)" in r.stdout


def test_show_reports_a_broken_file_in_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "keyturn.toml").write_text("[keyturn]\nserve_port = 70000\n")
    r = cli(home, "config", "show")
    assert r.exit_code != 0
    assert "serve_port" in r.output and "Traceback" not in r.output


def test_serve_takes_host_and_tls_from_the_file_and_flags_win(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    conf = home / "keyturn.toml"
    conf.write_text('[keyturn]\nserve_host = "0.0.0.0"\nserve_grace = 3\n')
    r = cli(home, "serve")
    assert r.exit_code == 2, r.output
    assert "--host 0.0.0.0 is reachable" in r.output
    r = cli(home, "serve", "--host", "10.0.0.7")
    assert r.exit_code == 2, r.output
    assert "--host 10.0.0.7 is reachable" in r.output
    r = cli(home, "serve", env={"KEYTURN_SERVE_HOST": "10.0.0.8"})
    assert "--host 10.0.0.8 is reachable" in r.output

    conf.write_text(f'[keyturn]\nserve_host = "0.0.0.0"\nserve_cert = "{tmp_path / "c.pem"}"\n'
                    f'serve_key = "{tmp_path / "k.pem"}"\n')
    r = cli(home, "serve")
    assert r.exit_code == 2, r.output
    assert f"no such file: {tmp_path / 'c.pem'}" in r.output
    r = cli(home, "serve", "--cert", str(tmp_path / "flag.pem"))   # a flag pair is never half a file pair
    assert r.exit_code == 2
    assert "--cert and --key go together" in r.output


@pytest.mark.parametrize(("given", "used"), [
    ("postgres://kt@db/kt", "postgresql+psycopg://kt@db/kt"),
    ("postgresql://kt:pw@db:5433/kt?sslmode=require", "postgresql+psycopg://kt:pw@db:5433/kt?sslmode=require"),
    ("postgresql+psycopg://kt@db/kt", "postgresql+psycopg://kt@db/kt"),
    ("sqlite:///x.db", "sqlite:///x.db"),
])
def test_postgres_url_spellings_name_psycopg(given: str, used: str) -> None:
    assert normalize_url(given) == used


@pytest.mark.postgres
@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_postgres_urls_connect(scheme: str) -> None:
    if not pg_up():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    storage = Storage(f"{scheme}://postgres@127.0.0.1:5432/test")
    try:
        with storage.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        storage.dispose()
