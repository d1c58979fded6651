"""The short chaos run with workers (issue 13): 2 `keyturn worker`s, one SIGKILLed mid-rotation 3 times.

Runs `python -m chaos --workers 2 --kills 3` on a small lab (RESTCONF, SSH and Meraki accounts, fault
switches, reboots and drifts as in the classic run, without the accept-and-never-answer switch, whose
client timeouts alone would take minutes) against the machine's Redis (database 9, which no other test
flushes, and a site of its own), and checks the JSON summary: every kill landed while the victim held a
running request; every request ended with exactly one outcome (final in the ledger, audited once,
printed once by its round); no account was rotated twice at once and no rotation ran after its request
was reported; nothing lost, nobody locked out.
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
def test_killed_workers_lose_nothing_and_rotate_nothing_twice(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    proc = subprocess.run(
        [sys.executable, "-m", "chaos", "--workers", "2", "--kills", "3", "--rotations", "60", "--seed", "13",
         "--restconf-devices", "4", "--ssh-devices", "2", "--meraki-orgs", "1", "--users-per-org", "6",
         "--worker-concurrency", "4", "--redis-db", "9", "--no-timeouts", "--json-out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=280, check=False,
    )
    assert out.exists(), (f"chaos wrote no summary (exit {proc.returncode}):\n"
                          f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    s = json.loads(out.read_text())
    assert s["workers"] == 2
    assert s["kills"] >= 3 and s["kills_mid_rotation"] == s["kills"]    # every kill hit running work
    assert s["claims_killed"] >= s["kills"] and s["restarts"] == s["kills"]
    assert s["lost"] == 0, s["lost_accounts"]
    assert s["lockouts"] == 0, s["lockout_accounts"]
    assert s["overlaps"] == 0, s["overlap_details"]
    assert s["rotations_outside_requests"] == 0, s["outside_details"]
    assert s["requests"] == s["results_expected"] == s["rounds"] * s["accounts"]
    assert s["requests_not_final"] == 0 and s["outcome_audited_not_once"] == 0
    assert s["results_printed"] == s["requests"] and s["duplicate_results"] == s["missing_results"] == 0
    assert s["redelivered"] >= 1                                  # a killed request went to a worker again
    assert s["stuck_rounds"] == 0
    assert s["committed"] >= s["accounts"]                        # it did rotate, not only fail
    assert proc.returncode == 0, proc.stdout[-3000:]
