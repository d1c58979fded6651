"""`keyturn serve` killed with SIGKILL while scheduled rotations are due or in flight, then restarted:
every due rotation happens once (no record is ever rotated twice at the same time, none is left
unsettled) and the simulators agree with the vault."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
from pathlib import Path

from keyturn.config import load_settings
from keyturn.engine.journal import Journal
from keyturn.scheduler.assign import set_schedule
from keyturn.vault import Vault, VersionState
from tests.integration.engine_lab import add_iosxe
from tests.lab_fixtures import running_lab

INTERVAL_S = 2


async def _serve(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    out = log.open("ab")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "keyturn.cli.main", "serve", "--port", "0", "--grace", "5",
        env=env, stdout=out, stderr=out)
    out.close()
    return proc


async def _until(predicate: object, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await asyncio.to_thread(predicate):  # type: ignore[arg-type]
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.2)


async def test_sigkill_mid_run_then_restart_rotates_each_due_slot_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env["KEYTURN_HOME"] = str(home)
    log = tmp_path / "serve.log"
    async with running_lab(tmp_path, iosxe=3, meraki_orgs=0, users_per_device=1) as lab:
        settings = load_settings(home=home)
        with Vault.init(settings) as vault:
            accounts = add_iosxe(vault, lab.state, "iosxe-restconf")
            for acct in accounts:
                # Quartz with seconds: intervals are 1 minute at least, a test cannot wait that long.
                set_schedule(vault, acct.uid, f"*/{INTERVAL_S} * * * * ?", actor="test")
        journal_vault = Vault.open(settings)
        journal = Journal(journal_vault.engine)

        def rotations() -> int:
            return sum(len(journal.for_record(a.uid)) for a in accounts)

        try:
            first = await _serve(env, log)
            # Kill while rotations are due or running: once the first ones have started.
            await _until(lambda: rotations() >= len(accounts) + 1, timeout=90)
            first.send_signal(signal.SIGKILL)
            assert await first.wait() == -signal.SIGKILL
            killed_at = rotations()

            second = await _serve(env, log)
            await _until(lambda: rotations() >= killed_at + 2 * len(accounts), timeout=90)
            second.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(second.wait(), timeout=60) == 0

            async with lab.control() as ctl:
                for acct in accounts:
                    runs = journal.for_record(acct.uid, limit=1000)
                    assert runs, "the schedule never rotated this account"
                    # Never two rotations of one account at once (a due slot dispatched twice would).
                    spans = sorted((r.started_at, r.finished_at or r.updated_at) for r in runs)
                    for (_, end), (start, _) in itertools.pairwise(spans):
                        assert start >= end, f"overlapping rotations of {acct.login}: {spans}"
                    # Nothing left open: the one the kill interrupted was settled after the restart.
                    assert not journal.open_rotations(acct.uid), [r.to_json() for r in runs]
                    assert all(v.state != VersionState.PENDING for v in journal_vault.versions(acct.uid))
                    # The simulators agree with the vault.
                    assert await acct.current_logs_in(journal_vault, ctl), acct.login
                    # At most one rotation per due slot over the whole run (plus the settling one).
                    elapsed = (spans[-1][1] - spans[0][0]).total_seconds()
                    assert len(runs) <= elapsed / INTERVAL_S + 2, (len(runs), elapsed)
        finally:
            journal_vault.close()
    text = log.read_text()
    assert [json.loads(x) for x in text.splitlines() if x.startswith("{")], "serve wrote no JSON logs"
    with Vault.open(load_settings(home=home)) as vault:  # no secret of any version reached the log
        for acct in accounts:
            for v in vault.versions(acct.uid):
                assert vault.version_secret(acct.uid, v.version).reveal() not in text
