"""Issue 12, items 12 and 16: what the local install exposes.

* `keyturn serve --host` on an address others can reach, without `--cert/--key`, would put bearer
  tokens and revealed secrets on the network in clear: refused unless `--insecure-http` (loud warning).
* KEYTURN_HOME holds the key file and the database: created 0700, tightened (with a warning) when it is
  open to group/others; a database password on the command line draws the `--password` warning.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from keyturn.cli.main import app
from keyturn.cli.serve import is_loopback
from keyturn.config import Settings, database_url_warning, load_settings, secure_home
from keyturn.vault import Vault


@pytest.fixture(autouse=True)
def _keep_root_logging() -> Any:
    """`serve` configures the root logger for its JSON lines before it opens the vault; put it back so
    the rest of the suite does not inherit an INFO-level handler."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def cli(tmp_path: Path, *args: str, env: dict[str, Any] | None = None) -> Any:
    base = {"KEYTURN_HOME": str(tmp_path / "home"), "KEYTURN_MASTER_KEY": None, "KEYTURN_PASSPHRASE": None,
            "KEYTURN_DATABASE_URL": None, "KEYTURN_KEY_FILE": None, "KEYTURN_SERVE_INSECURE_HTTP": None}
    return CliRunner().invoke(app, list(args), env={**base, **(env or {})})


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "192.168.0.10", "keyturn.example.net",
                                  "[fe80::1]"])
def test_serve_refuses_plain_http_on_a_reachable_address(tmp_path: Path, host: str) -> None:
    result = cli(tmp_path, "serve", "--host", host, "--port", "0")
    assert result.exit_code == 2, result.output
    assert f"--host {host} is reachable from other machines" in result.stderr
    assert "--insecure-http" in result.stderr
    assert not (tmp_path / "home").exists()                 # refused before anything was opened


def test_insecure_http_is_an_explicit_loud_choice(tmp_path: Path) -> None:
    # No vault here: getting as far as opening it proves the refusal was lifted, and nothing is served.
    result = cli(tmp_path, "serve", "--host", "0.0.0.0", "--port", "0", "--insecure-http")
    assert "INSECURE: serving plain HTTP on 0.0.0.0" in result.stderr
    assert "no vault" in result.stderr and result.exit_code == 1
    by_env = cli(tmp_path, "serve", "--host", "0.0.0.0", "--port", "0",
                 env={"KEYTURN_SERVE_INSECURE_HTTP": "1"})
    assert "INSECURE" in by_env.stderr and by_env.exit_code == 1


def test_tls_or_loopback_needs_no_flag(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    with_tls = cli(tmp_path, "serve", "--host", "0.0.0.0", "--port", "0", "--cert", str(cert),
                   "--key", str(key))
    assert "reachable from other machines" not in with_tls.stderr and "no vault" in with_tls.stderr
    for host in ("127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST."):
        assert is_loopback(host), host
        assert "reachable" not in cli(tmp_path, "serve", "--host", host, "--port", "0").stderr


def test_init_creates_home_0700_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        Vault.init(Settings(home=tmp_path / "home")).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "home").stat().st_mode) == 0o700


def test_a_home_open_to_others_is_tightened_with_a_warning(tmp_path: Path, caplog: Any) -> None:
    home = tmp_path / "home"
    Vault.init(Settings(home=home)).close()
    home.chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="keyturn.config"):
        load_settings(home=home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert "was open to group/others (mode 0755); tightened to 0700" in caplog.text
    caplog.clear()
    assert secure_home(home) is None                       # nothing more to say


def test_a_shared_directory_is_never_chmodded(tmp_path: Path) -> None:
    """KEYTURN_HOME=/tmp (or a directory with other people's files) is warned about, never changed."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "someone-elses.txt").write_text("x")
    shared.chmod(0o777)
    message = secure_home(shared)
    assert message is not None and "was left as it is" in message and "chmod 700" in message
    assert stat.S_IMODE(shared.stat().st_mode) == 0o777
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    assert "left as it is" in (secure_home(sticky) or "")
    assert stat.S_IMODE(sticky.stat().st_mode) == 0o1777


def test_a_database_password_on_the_command_line_is_warned_about(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    url = "postgresql://keyturn:S3cret-db-pw@127.0.0.1:9/keyturn"
    with caplog.at_level(logging.WARNING, logger="keyturn.config"):
        result = cli(tmp_path, "--database-url", url, "record", "list")
    # A warning through logging: on stderr in a terminal (no handler: Python's last resort), in the
    # captured log under pytest (whose handler on the root logger takes it).
    said = result.stderr + caplog.text
    assert "a database password given on the command line (--database-url) can leak via the process " \
           "list and shell history" in said
    assert "S3cret-db-pw" not in said
    # From the environment (owner-readable only), or without a password: nothing to warn about.
    assert database_url_warning(url, from_env=url) is None
    assert database_url_warning("postgresql://keyturn@127.0.0.1:9/keyturn", from_env=None) is None
    assert database_url_warning("sqlite:////var/lib/keyturn/keyturn.db", from_env=None) is None
