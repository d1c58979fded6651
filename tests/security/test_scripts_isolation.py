"""Issue 12, items 9 and 11: a post-rotation script cannot reach keyturn's own secrets or outlive its run.

The attacks, each performed for real:

* a script walks its ancestors' ``/proc/<pid>/environ`` looking for the master key — the keyturn CLI is
  run as a subprocess with ``KEYTURN_MASTER_KEY`` set, exactly as an operator would;
* a script leaves a ``setsid`` daemon (and a double-forked one) behind to keep running with what it saw;
* an attachment sets ``LD_PRELOAD`` (or ``PYTHONPATH``, ``PATH``, ...) to run code of its choosing —
  refused when attached, and refused again at run time for an attachment that reached the database
  another way.
"""

from __future__ import annotations

import base64
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keyturn.cli.main import app
from keyturn.scripts.attachments import ScriptAttachment
from keyturn.scripts.runner import run_script
from keyturn.secret import Secret

ROOT = os.geteuid() == 0


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory every account can use: when the tests run as root, scripts run as `nobody`, who
    cannot enter pytest's private temporary directories."""
    path = Path(tempfile.mkdtemp(prefix="keyturn-security-"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def probe_script(where: Path, marker: str, report: Path) -> Path:
    """A script that reads the environment of every ancestor and reports, per pid, what it got. The
    marker is written into the script itself: given in its environment it would be found in its parent
    (the supervisor runs with the script's environment)."""
    path = where / "probe.sh"
    path.write_text(f"""#!/bin/sh
marker='{marker}'
p=$PPID
while [ "$p" -gt 1 ]; do
  if tr '\\0' '\\n' < /proc/$p/environ > "{where}/env.$$" 2>/dev/null; then
    if grep -qF "$marker" "{where}/env.$$"; then echo "$p readable found"; else echo "$p readable clean"; fi
  else
    echo "$p denied clean"
  fi
  rm -f "{where}/env.$$"
  p=$(cut -d' ' -f4 /proc/$p/stat)
done >> "{report}"
echo "uid $(id -u)" >> "{report}"
""")
    path.chmod(0o755)
    return path


def keyturn(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keyturn.cli.main", *args], env=env, capture_output=True,
                          text=True, check=False, timeout=120)


def rotate_with_probe(tmp_path: Path, public_dir: Path, **extra_env: str) -> tuple[int, dict[str, str]]:
    """Run `keyturn rotate` with a master key in its environment and the probe attached; returns the
    keyturn process's pid and the report lines by pid."""
    master_key = base64.b64encode(secrets.token_bytes(32)).decode()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env.update(KEYTURN_HOME=str(tmp_path / "home"), KEYTURN_MASTER_KEY=master_key, **extra_env)
    report = public_dir / "report"
    probe = probe_script(public_dir, master_key[:24], report)
    assert keyturn(env, "init").returncode == 0
    added = subprocess.run([sys.executable, "-m", "keyturn.cli.main", "record", "add", "--type", "pamUser",
                            "--title", "victim", "--login", "bob", "--password", "-"], input="0ld-pw\n",
                           env=env, capture_output=True, text=True, check=True)
    assert added.stdout.strip()
    for args in (["script", "attach", "victim", str(probe)],
                 ["rotation", "set", "victim", "--target", "noop"]):
        done = keyturn(env, *args)
        assert done.returncode == 0, done.stderr
    proc = subprocess.Popen([sys.executable, "-m", "keyturn.cli.main", "rotate", "victim"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out, err)
    lines = report.read_text().splitlines()
    by_pid = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in lines}
    return proc.pid, by_pid


def test_script_reading_its_ancestors_environ_finds_no_master_key(tmp_path: Path, public_dir: Path) -> None:
    keyturn_pid, report = rotate_with_probe(tmp_path, public_dir)
    assert str(keyturn_pid) in report, report          # the walk did reach the keyturn process
    assert not any(v.endswith("found") for v in report.values()), report
    # not dumpable (same uid) or another uid (root → nobody): its environment is not even readable
    assert report[str(keyturn_pid)] == "denied clean"
    assert report["uid"] == str(pwd.getpwnam("nobody").pw_uid if ROOT else os.geteuid())


@pytest.mark.skipif(not ROOT, reason="only root may keep scripts as root (script_user=root)")
def test_even_a_root_script_finds_the_key_wiped_from_keyturns_environment(tmp_path: Path,
                                                                          public_dir: Path) -> None:
    """Opted out of the separate user, a root script can read keyturn's /proc environ (root passes the
    non-dumpable check): the key's bytes there have been overwritten."""
    keyturn_pid, report = rotate_with_probe(tmp_path, public_dir, KEYTURN_SCRIPT_USER="root")
    assert report["uid"] == "0"
    assert report[str(keyturn_pid)] == "readable clean", report
    assert not any(v.endswith("found") for v in report.values()), report


LEAVE_DAEMONS = """#!/bin/sh
setsid sleep 300 &
echo "setsid $!"
nohup sleep 301 >/dev/null 2>&1 &
echo "nohup $!"
setsid sh -c 'sleep 302 & echo "double $!"; exit 0'
sleep 0.2
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("hang", [False, True], ids=["exits", "times-out"])
async def test_no_process_a_script_started_outlives_the_run(tmp_path: Path, hang: bool) -> None:
    script = tmp_path / "daemons.sh"
    script.write_text(LEAVE_DAEMONS + ("sleep 300\n" if hang else ""))
    script.chmod(0o755)
    result = await run_script(ScriptAttachment(str(script), timeout=3 if hang else 60), b"eA==\n",
                              secrets=[Secret("N3w-S3cret!")], run_as=None)
    pids = {line.split()[0]: int(line.split()[1]) for line in result.stdout.splitlines()}
    assert set(pids) == {"setsid", "nohup", "double"}, result
    assert result.ok is not hang
    assert not hang or (result.error or "").startswith("timeout")
    assert [name for name, pid in pids.items() if alive(pid)] == []


@pytest.mark.parametrize("name", ["LD_PRELOAD", "LD_LIBRARY_PATH", "ld_preload", "PYTHONPATH",
                                  "PYTHONSTARTUP", "PATH", "BASH_ENV"])
async def test_code_choosing_environment_is_refused_at_run_time(tmp_path: Path, name: str) -> None:
    """An attachment that carries LD_PRELOAD (written to the database directly, or from before this
    check) never starts: the script would have left a mark."""
    mark = tmp_path / "ran"
    script = tmp_path / "s.sh"
    script.write_text(f"#!/bin/sh\ntouch {mark}\n")
    script.chmod(0o755)
    att = ScriptAttachment(str(script), env={name: str(tmp_path / "evil.so")})
    result = await run_script(att, b"eA==\n", secrets=[Secret("x1y2z3")], run_as=None)
    assert not result.ok and result.error and name in result.error and "may not be set" in result.error
    assert not mark.exists()


@pytest.mark.parametrize("assignment", ["LD_PRELOAD=/opt/evil/evil.so", "PYTHONPATH=/opt/evil",
                                        "PATH=/opt/evil"])
def test_code_choosing_environment_is_refused_when_attached(tmp_path: Path, assignment: str) -> None:
    runner = CliRunner()
    env = {"KEYTURN_HOME": str(tmp_path / "home"), "KEYTURN_MASTER_KEY": None, "KEYTURN_PASSPHRASE": None,
           "KEYTURN_DATABASE_URL": None, "KEYTURN_KEY_FILE": None}
    script = tmp_path / "s.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    assert runner.invoke(app, ["init"], env=env).exit_code == 0
    assert runner.invoke(app, ["record", "add", "--type", "pamUser", "--title", "u", "--login", "x"],
                         env=env).exit_code == 0
    result = runner.invoke(app, ["script", "attach", "u", str(script), "--env", assignment], env=env)
    assert result.exit_code == 2
    assert "may not be set for a script" in result.stderr and assignment.split("=")[0] in result.stderr
    listed = runner.invoke(app, ["script", "list", "u"], env=env)
    assert "no scripts attached" in listed.stdout
