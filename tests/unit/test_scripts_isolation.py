"""Who scripts run as, which environment they may not get, and the process hardening behind them."""

from __future__ import annotations

import base64
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keyturn import hardening
from keyturn.cli.main import app
from keyturn.errors import ConfigError
from keyturn.scripts.runner import ScriptUser, refused_env_names, resolve_script_user

NOBODY = pwd.getpwnam("nobody")


def test_root_runs_scripts_as_nobody_by_default() -> None:
    assert resolve_script_user(None, euid=0) == ScriptUser("nobody", NOBODY.pw_uid, NOBODY.pw_gid)
    assert resolve_script_user(" nobody ", euid=0) == resolve_script_user(str(NOBODY.pw_uid), euid=0)


def test_root_may_keep_root_only_by_saying_so(caplog: pytest.LogCaptureFixture) -> None:
    assert resolve_script_user("root", euid=0) is None
    assert "run as root" in caplog.text


def test_unknown_script_user_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="no such user"):
        resolve_script_user("no-such-user-keyturn", euid=0)


def test_not_root_runs_scripts_as_itself_and_refuses_a_switch_it_cannot_make() -> None:
    assert resolve_script_user(None, euid=4242) is None
    with pytest.raises(ConfigError, match="needs keyturn to run as root"):
        resolve_script_user("nobody", euid=4242)


@pytest.mark.parametrize(("env", "refused"), [
    ({"NOTIFY_URL": "https://x", "LANG": "C", "HOME_DIR": "/x"}, []),
    ({"LD_PRELOAD": "x", "ld_audit": "x", "PYTHONPATH": "x", "PYTHONHOME": "x", "PATH": "x"},
     ["LD_PRELOAD", "PATH", "PYTHONHOME", "PYTHONPATH", "ld_audit"]),
    ({"BASH_ENV": "x", "NODE_OPTIONS": "x", "PERL5OPT": "x", "DYLD_INSERT_LIBRARIES": "x", "MYPATH": "x"},
     ["BASH_ENV", "DYLD_INSERT_LIBRARIES", "NODE_OPTIONS", "PERL5OPT"]),
])
def test_refused_environment_names(env: dict[str, str], refused: list[str]) -> None:
    assert refused_env_names(env) == refused


HARDEN = """
import json, os, resource
from keyturn import hardening
before = open("/proc/self/environ", "rb").read()
undo = hardening.harden_process(script_user="someone")
after = open("/proc/self/environ", "rb").read()
print(json.dumps({
    "before": "MARKER-VALUE-1234" in before.decode(), "after": "MARKER-VALUE-1234" in after.decode(),
    "name_kept": "KEYTURN_PASSPHRASE=" in after.decode(), "other_kept": "OTHER=stays" in after.decode(),
    "environ": "KEYTURN_PASSPHRASE" in os.environ, "settings": hardening.secret_env(),
    "dumpable": hardening.is_dumpable(), "core": list(resource.getrlimit(resource.RLIMIT_CORE)),
    "policy": [hardening.script_policy().separate, hardening.script_policy().user],
}))
"""


def test_harden_process_wipes_the_key_from_proc_environ_and_stops_dumps() -> None:
    env = {**os.environ, "KEYTURN_PASSPHRASE": "MARKER-VALUE-1234", "OTHER": "stays"}
    done = subprocess.run([sys.executable, "-c", HARDEN], env=env, capture_output=True, text=True,
                          check=True)
    seen = json.loads(done.stdout)
    assert seen["before"] and not seen["after"]            # /proc/self/environ no longer shows it
    assert seen["name_kept"] and seen["other_kept"]        # only the value's bytes were overwritten
    assert not seen["environ"]                             # no child can inherit it
    assert seen["settings"] == {"passphrase": "MARKER-VALUE-1234"}  # load_settings still gets it
    assert seen["dumpable"] is False and seen["core"] == [0, 0]
    assert seen["policy"] == [True, "someone"]


def test_the_cli_hardens_each_command_and_gives_the_environment_back(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The key taken from the environment still opens the vault (settings get it from hardening), and
    in-process callers (this test runner) see their environment and the library policy again."""
    key = base64.b64encode(bytes(range(32))).decode()
    monkeypatch.setenv("KEYTURN_MASTER_KEY", key)
    monkeypatch.setenv("KEYTURN_HOME", str(tmp_path / "home"))
    for var in ("KEYTURN_PASSPHRASE", "KEYTURN_DATABASE_URL", "KEYTURN_KEY_FILE"):
        monkeypatch.delenv(var, raising=False)
    runner = CliRunner()
    for args in (["init"], ["record", "list"], ["record", "list"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.stderr
        assert os.environ["KEYTURN_MASTER_KEY"] == key
        assert hardening.script_policy() == hardening.LIBRARY_POLICY
        assert hardening.secret_env() == {}
    assert not (tmp_path / "home" / "master.key").exists()  # the vault uses the key from the environment
