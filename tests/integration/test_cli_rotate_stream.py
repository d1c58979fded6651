"""`keyturn rotate` with stdout piped streams one line per result as it finishes (tab-separated columns,
or --json-lines); a reader that goes away ends it quietly.

The lab runs in this test's event loop with one slow device (latency on every RESTCONF answer); the CLI
runs as a real subprocess: the fast device's line is read while the slow rotation is still running.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from keyturn.config import Settings
from keyturn.sim.client import ControlClient
from keyturn.vault import Vault
from tests.integration.engine_lab import add_iosxe
from tests.lab_fixtures import running_lab

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = ["record", "target", "outcome", "reason", "duration"]


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env.update({"KEYTURN_HOME": str(home), "PYTHONPATH": str(ROOT / "src")})
    return env


async def _start(home: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "keyturn.cli.main", "rotate", *args, env=_env(home), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def _line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    return (await asyncio.wait_for(proc.stdout.readline(), timeout=60)).decode().rstrip("\n")


async def test_piped_rotate_streams_each_result_as_it_finishes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with running_lab(tmp_path, iosxe=2, meraki_orgs=0, users_per_device=1, ssh=False) as lab:
        vault = Vault.init(Settings(home=home))
        try:
            accts = add_iosxe(vault, lab.state, "iosxe-restconf")
        finally:
            vault.close()
        slow, fast = (f"{a.device}-iosxe-restconf-{a.login}" for a in
                      sorted(accts, key=lambda a: a.device != "sw0002"))
        async with ControlClient(lab.state.control_url) as ctl:
            await ctl.set_faults("sw0002", {"latency": 0.6})   # ~9 answers: seconds for its rotation

            proc = await _start(home, "--all")
            assert (await _line(proc)).split("\t") == COLUMNS
            first = (await _line(proc)).split("\t")
            # The fast device's result is out while the slow device's rotation is still running.
            assert proc.returncode is None
            assert first[:3] == [fast, "iosxe-restconf", "rotated"], first
            assert first[4].endswith("s")
            second = (await _line(proc)).split("\t")
            assert second[:3] == [slow, "iosxe-restconf", "rotated"], second
            rest, err = await asyncio.wait_for(proc.communicate(), timeout=60)
            assert proc.returncode == 0, err.decode()
            assert rest.decode() == "2 rotated\n"

            await ctl.set_faults("sw0002", {"latency": 0.3})
            proc = await _start(home, "--all", "--json-lines")
            first_json = json.loads(await _line(proc))
            assert proc.returncode is None
            assert first_json["outcome"] == "rotated" and first_json["title"] == fast
            rest, err = await asyncio.wait_for(proc.communicate(), timeout=60)
            assert proc.returncode == 0, err.decode()
            lines = [json.loads(x) for x in rest.decode().splitlines()]
            assert [x["title"] for x in lines] == [slow]


async def test_rotate_json_and_json_lines_exclude_each_other(tmp_path: Path) -> None:
    home = tmp_path / "home"
    Vault.init(Settings(home=home)).close()
    proc = await _start(home, "--all", "--json", "--json-lines")
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 2 and out == b""
    assert err.decode() == "error: --json and --json-lines exclude each other\n"


async def test_a_reader_that_goes_away_ends_nothing_and_prints_no_traceback(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with running_lab(tmp_path, iosxe=3, meraki_orgs=0, users_per_device=1, ssh=False) as lab:
        vault = Vault.init(Settings(home=home))
        try:
            accts = add_iosxe(vault, lab.state, "iosxe-restconf")
        finally:
            vault.close()
        async with ControlClient(lab.state.control_url) as ctl:
            await ctl.set_faults("sw0003", {"latency": 0.3})   # its line comes after `head` has gone
            keyturn = f"{sys.executable} -m keyturn.cli.main rotate --all"
            proc = await asyncio.create_subprocess_exec(
                "bash", "-c", f'{keyturn} | head -n 2; echo "keyturn exit ${{PIPESTATUS[0]}}" >&2',
                env=_env(home), cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
            assert out.decode().splitlines()[0].split("\t") == COLUMNS and len(out.splitlines()) == 2
            assert err.decode() == "keyturn exit 0\n"       # no traceback, no "internal error"
            for a in accts:   # every rotation finished, on the device too
                vault = Vault.open(Settings(home=home))
                try:
                    current = vault.secret(a.uid).reveal()
                finally:
                    vault.close()
                assert await a.logs_in(ctl, current), a
