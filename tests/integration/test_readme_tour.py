"""The README's quick tour works as written: its command block (after `<!-- tour -->`) and the REST
API recipe (after `<!-- api-recipe -->`) run in bash, verbatim, in an empty directory.

What the README tells a person to have is provided as it says: `.venv/bin/activate` (here: one that
puts this interpreter's keyturn first on PATH, as `make install` does), `openssl` and `curl`. The only
change to the text is the API's port, 8443 in the README, replaced by a free one. Every placeholder the
tour needs (ports, passwords, user names) it reads from the lab's state file itself, with `keyturn sim
get`. `keyturn sim lab --records-file` is checked the same way: the file imports and rotates.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def block(marker: str) -> str:
    """The ```bash block right after `<!-- marker -->` in the README."""
    text = README.read_text(encoding="utf-8")
    m = re.search(rf"<!-- {marker} -->\n```bash\n(.*?)\n```\n", text, re.DOTALL)
    assert m, f"README has no ```bash block after <!-- {marker} -->"
    return m.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def workdir(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """An empty directory with the `.venv/bin/activate` the tour sources, and a clean environment."""
    work = tmp_path / "tour"
    (work / ".venv" / "bin").mkdir(parents=True)
    bindir = Path(sys.executable).parent
    (work / ".venv" / "bin" / "activate").write_text(f'export PATH="{bindir}:$PATH"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env["PYTHONPATH"] = str(ROOT / "src")
    env["COLUMNS"] = "160"
    return work, env


def run_bash(script: str, work: Path, env: dict[str, str], timeout: float = 300
             ) -> subprocess.CompletedProcess[str]:
    """`script` under `bash -e -o pipefail`; whatever it left running (the lab, the API) is stopped."""
    proc = subprocess.Popen(["bash", "-e", "-o", "pipefail", "-c", script], cwd=work, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):   # the lab or the API, if a step failed
            os.killpg(proc.pid, signal.SIGTERM)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def keyturn(work: Path, env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "keyturn.cli.main", *args], cwd=work, text=True,
                          env={**env, "KEYTURN_HOME": str(work / ".keyturn")}, capture_output=True,
                          check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.skipif(not (shutil.which("openssl") and shutil.which("curl")),
                    reason="the API recipe needs openssl and curl")
def test_the_quick_tour_and_the_api_recipe_work_as_written(tmp_path: Path) -> None:
    work, env = workdir(tmp_path)
    tour, recipe = block("tour"), block("api-recipe")
    assert "8443" in recipe
    script = "\n".join([tour, recipe.replace("8443", str(free_port())), "kill %1"])
    result = run_bash(script, work, env)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])

    lab = json.loads((work / "lab.json").read_text())
    initial = next(u["password"] for u in lab["iosxe"][0]["users"] if u["username"] == "netops1")
    assert "1 rotated" in result.stdout
    # the tour's reveal printed the new secret: not the lab's initial one; then the API rotated again
    history = json.loads(keyturn(work, env, "history", "netops @ sw0001", "--json"))
    assert [r["outcome"] for r in history["rotations"]] == ["rotated", "rotated"]
    current = keyturn(work, env, "reveal", "netops @ sw0001").strip()
    assert current != initial and current not in result.stdout   # the API round printed no secret
    assert "intact" in result.stdout                                # keyturn audit verify
    accepted = json.loads((work / "rotation.json").read_text())
    assert accepted["rotations"][0]["id"] == history["rotations"][0]["id"]
    assert '"outcome"' in result.stdout and "netops @ sw0001" in result.stdout


def test_the_records_file_onboards_the_lab(tmp_path: Path) -> None:
    work, env = workdir(tmp_path)
    script = "\n".join([
        ". .venv/bin/activate",
        "export KEYTURN_HOME=$PWD/.keyturn",
        "keyturn sim lab --iosxe 2 --meraki-orgs 1 --seed 2 --state-file lab.json "
        "--records-file lab-records.json -q &",
        "keyturn init",
        "keyturn sim get lab.json control_url >/dev/null      # waits until the lab is up",
        "stat -c %a lab-records.json",
        "keyturn record import lab-records.json",
        'keyturn rotation set "ops2 @ sw0002" --target iosxe-ssh --resource sw0002 --admin "sw0002 admin"',
        "keyturn device trust sw0002 --yes --ssh-only",
        'keyturn rotate "ops2 @ sw0002"',
        "kill %1",
    ])
    result = run_bash(script, work, env)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    assert "600" in result.stdout.splitlines()      # stat: the file holds the lab's passwords
    assert "1 rotated" in result.stdout
    titles = {r["title"] for r in json.loads(keyturn(work, env, "record", "list", "--json"))}
    lab = json.loads((work / "lab.json").read_text())
    net = lab["meraki"]["orgs"][0]["networks"][0]
    expected = {"sw0001", "sw0001 admin", "netops1 @ sw0001", "deploy2 @ sw0001", "sw0002",
                "sw0002 admin", "backup1 @ sw0002", "ops2 @ sw0002", f"Meraki {net['name']}",
                "Meraki API key", *(u["email"] for u in net["users"])}
    assert expected <= titles
