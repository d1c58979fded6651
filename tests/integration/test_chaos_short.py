"""The short chaos run (issue 7): 200 rotations, 3 kill -9s, faults from the simulators' switches.

Runs `python -m chaos` exactly as `make chaos` does, only smaller, and checks its JSON summary: every
account's vault secret logs in at the end (no credential lost), nobody is locked out, every kill was
survived, and the run really rotated and really injected faults (so a run that did nothing cannot
pass). The accept-and-never-answer switch is left out here only because one such request costs a
client timeout (15-60 s) and this test must stay under three minutes; `make chaos` includes it.
The enterprise variant (issue 11) runs the realistic lab without latency and also counts device-side
locks as lockouts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_chaos_short_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    proc = subprocess.run(
        [sys.executable, "-m", "chaos", "--rotations", "200", "--kills", "3", "--seed", "11",
         "--restconf-devices", "6", "--ssh-devices", "6", "--meraki-orgs", "2", "--users-per-org", "10",
         "--no-timeouts", "--json-out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=280, check=False,
    )
    assert out.exists(), (f"chaos wrote no summary (exit {proc.returncode}):\n"
                          f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    summary = json.loads(out.read_text())
    assert summary["lost"] == 0, summary["lost_accounts"]
    assert summary["lockouts"] == 0, summary["lockout_accounts"]
    assert summary["kills"] >= 3
    assert summary["attempted"] >= 200
    assert summary["committed"] >= summary["accounts"]          # it did rotate, not only fail
    assert not summary["open"], summary["open"]                 # recovery settled every rotation
    assert len(summary["faults"]) >= 5                          # several kinds of fault were injected
    assert proc.returncode == 0, proc.stdout[-3000:]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_chaos_short_enterprise_locks_nobody_out(tmp_path: Path) -> None:
    """The enterprise lab (TACACS+ first with max-fail and block-for, TACACS+ down, legacy type 5, logins
    landing in `>`, self-signed IOS certificates) without latency: ~40 s on 2 cores. Device-side locks
    (locked users, accounts refused as locked, lock events a reboot cleared) count as lockouts."""
    out = tmp_path / "chaos.json"
    proc = subprocess.run(
        [sys.executable, "-m", "chaos", "--profile", "enterprise", "--latency", "0", "--rotations", "60",
         "--kills", "2", "--seed", "11", "--restconf-devices", "5", "--ssh-devices", "5",
         "--meraki-orgs", "0", "--no-timeouts", "--json-out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=170, check=False,
    )
    assert out.exists(), (f"chaos wrote no summary (exit {proc.returncode}):\n"
                          f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    summary = json.loads(out.read_text())
    assert summary["profile"] == "enterprise"
    assert summary["lost"] == 0, summary["lost_accounts"]
    assert summary["lockouts"] == 0, summary["lockout_accounts"]
    assert summary["lock_events"] == 0
    assert summary["kills"] >= 2
    assert summary["attempted"] >= 60
    assert summary["committed"] >= summary["accounts"]
    assert not summary["open"], summary["open"]
    # keyturn's lockout budget: at most one failed login per rotation, never a lock.
    assert summary["failed_logins"] <= summary["attempted"], summary["failed_logins_by_device"]
    assert proc.returncode == 0, proc.stdout[-3000:]
