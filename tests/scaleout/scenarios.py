"""Failure scenarios run the same way on either broker (Redis, RabbitMQ); the broker-specific parts
(how a lost message comes back) are asserted by the test modules that call these."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keyturn.config import Settings
from keyturn.dispatch.ledger import Request
from keyturn.engine.hooks import KILL_ENV, KILL_EXIT_CODE
from keyturn.engine.journal import Journal, StepRow
from keyturn.vault import Vault
from tests.lab_fixtures import running_lab
from tests.scaleout.settled import all_requests, assert_settled, lab_accounts
from tests.scaleout.workers import Worker, env_for, keyturn, results, unique_site, wait_until, workers


@dataclass
class Killed:
    """What a kill scenario leaves for the broker-specific assertions."""

    requests: dict[str, Request]
    killed: Request                 # the request whose worker died
    steps: list[StepRow]            # its rotation's journal steps
    doomed_pid: int
    second_pid: int


async def kill_mid_rotation(tmp_path: Path, *, broker: str, redis: str, step: str, site: str | None = None,
                            **extra: str) -> Killed:
    """One worker (one thread) dies at `step` of its first rotation; `keyturn rotate --all` follows;
    a second worker starts once the first is dead, gets the message again and finishes everything."""
    settings = Settings(home=tmp_path / "home")
    site = site or unique_site()
    async with running_lab(tmp_path, iosxe=3, meraki_orgs=0, users_per_device=1, ssh=False) as lab:
        accts = lab_accounts(settings, lab, site)
        env = env_for(settings.home, broker=broker, redis=redis, sites=[site], **extra)
        doomed = await Worker({**env, KILL_ENV: step}, tmp_path / "doomed.log", "--site", site,
                              "--concurrency", "1").start()
        assert doomed.proc is not None
        rotate = asyncio.create_task(keyturn(env, "rotate", "--all", "--json"))
        try:
            code = await asyncio.wait_for(doomed.proc.wait(), timeout=60)
        except TimeoutError:
            rotate.cancel()
            doomed.kill()
            raise AssertionError("the doomed worker never reached the kill point:\n" + doomed.output()
                                 ) from None
        assert code == KILL_EXIT_CODE, doomed.output()
        async with workers(env, tmp_path, 1, "--site", site, "--concurrency", "2") as (second,):
            code, out, err = await rotate
            assert second.proc is not None
            second_pid = second.proc.pid
            assert code == 0, out + err + second.output()
        assert [r["outcome"] for r in results(out)] == ["rotated"] * 3, out
        reqs = await assert_settled(settings, lab, accts)
        assert len(reqs) == 3
        killed = [r for r in reqs.values() if r.deliveries > 1]
        assert len(killed) == 1, reqs
        assert [r.deliveries for r in reqs.values()].count(1) == 2
        vault = Vault.open(settings)
        try:
            journal = Journal(vault.engine)
            # The redelivery resumed the dead worker's rotation: one rotation of that account, no second.
            rows = journal.for_record(killed[0].record_uid)
            assert [r.id for r in rows] == [killed[0].id], rows
            steps = journal.steps(killed[0].id)
        finally:
            vault.close()
        return Killed(requests=reqs, killed=killed[0], steps=steps, doomed_pid=doomed.proc.pid,
                      second_pid=second_pid)


def by(pid: int, step: StepRow) -> bool:
    """Whether process `pid` wrote `step` (the journal names host, pid and site: `vm pid 42 site x`)."""
    return re.search(rf"\bpid {pid}\b", step.worker) is not None


def assert_recovered_by_second(k: Killed, step: str) -> None:
    """The dead worker wrote the rotation up to `step`; the second worker's recovery finished it, after
    everything the dead one wrote."""
    assert all(by(k.doomed_pid, s) or by(k.second_pid, s) for s in k.steps), k.steps
    assert by(k.doomed_pid, k.steps[0]), k.steps
    assert k.steps[-1].step == "recover" and by(k.second_pid, k.steps[-1]), k.steps
    assert min(s.at for s in k.steps if by(k.second_pid, s)) >= max(
        s.at for s in k.steps if by(k.doomed_pid, s))
    assert "recovered forward" in (k.killed.result or {}).get("reason", ""), k.killed
    assert any(s.step == "commit" for s in k.steps if by(k.doomed_pid, s)) == (step == "commit"), k.steps


@dataclass
class Restarted:
    requests: dict[str, Request]
    results: list[dict[str, Any]]
    exit_code: int
    queued_at_restart: set[str]          # requests still waiting in the queue when the broker went down


async def restart_mid_run(tmp_path: Path, *, broker: str, redis: str, site: str,
                          restart: Callable[[], Awaitable[None]], devices: int = 10,
                          **extra: str) -> Restarted:
    """`keyturn rotate --all` over `devices` accounts on 2 workers (2 threads each, devices answering
    slowly); once one request is done and others still wait in the queue, `restart()` the broker."""
    settings = Settings(home=tmp_path / "home")
    async with running_lab(tmp_path, iosxe=devices, meraki_orgs=0, users_per_device=1, ssh=False,
                           faults={"latency": 0.15}) as lab:
        accts = lab_accounts(settings, lab, site)
        # Attempts that found no device slot while Redis was down are tried again, 1 + 2 + 4 s later.
        tuning = {"KEYTURN_WORKER_HEARTBEAT": "0.5", "KEYTURN_WORKER_STRANDED_AFTER": "3",
                  "KEYTURN_WORKER_ATTEMPTS": "4", "KEYTURN_WORKER_RETRY_BACKOFF": "1", **extra}
        env = env_for(settings.home, broker=broker, redis=redis, sites=[site], **tuning)
        async with workers(env, tmp_path, 2, "--site", site, "--concurrency", "2") as started:
            # Generous: on a busy machine a broker restart (RabbitMQ: two Erlang VMs) alone takes a minute.
            rotate = asyncio.create_task(keyturn(env, "rotate", "--all", "--json", timeout=240))

            def mid_run() -> set[str] | None:
                reqs = all_requests(settings)
                states = [str(r.state) for r in reqs]
                queued = {r.id for r in reqs if str(r.state) == "queued"}
                return queued if "done" in states and len(queued) >= 2 else None

            try:
                queued = await wait_until(mid_run, timeout=60, poll=0.05, what="a run half done")
            except AssertionError:
                rotate.cancel()
                raise
            await restart()
            code, out, err = await rotate
            logs = "".join(w.output() for w in started)
        assert out, err + logs
        reqs = await assert_settled(settings, lab, accts)
        assert len(reqs) == devices
        return Restarted(requests=reqs, results=results(out), exit_code=code, queued_at_restart=queued)


__all__ = ["Killed", "Restarted", "all_requests", "assert_recovered_by_second", "kill_mid_rotation",
           "restart_mid_run"]
