"""`python -m chaos` (`make chaos`): faults + kill -9 over many rotations; exit 0 only if nothing was lost.

    python -m chaos                                  # 2,000 rotations, 20 kills
    python -m chaos --rotations 10000 --kills 50 --seed 7
    python -m chaos --rotations 200 --kills 3        # the short variant `make test` runs
    python -m chaos --profile enterprise --latency 0 # the realistic network (issue 11), fast
    python -m chaos --workers 3 --kills 20           # rotations on 3 workers, a worker SIGKILLed 20 times

See `chaos/supervisor.py` for what it does and the drift rule, `chaos/workers.py` for the workers mode.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from chaos.supervisor import Chaos, Options, dump
from chaos.workers import WorkerChaos


def parse(argv: list[str] | None) -> argparse.Namespace:
    d = Options()
    p = argparse.ArgumentParser(prog="python -m chaos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rotations", type=int, default=d.rotations, help="rotations to attempt (at least)")
    p.add_argument("--kills", type=int, default=d.kills, help="kill -9 of the keyturn process")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--restconf-devices", type=int, default=d.restconf_devices)
    p.add_argument("--ssh-devices", type=int, default=d.ssh_devices)
    p.add_argument("--users-per-device", type=int, default=d.users_per_device)
    p.add_argument("--meraki-orgs", type=int, default=d.meraki_orgs)
    p.add_argument("--users-per-org", type=int, default=d.users_per_org)
    p.add_argument("--concurrency", type=int, default=d.concurrency)
    p.add_argument("--profile", choices=("default", "enterprise"), default=d.profile,
                   help="lab profile: enterprise = TACACS+, lockouts, type 5, > landing, self-signed certs")
    p.add_argument("--latency", default=d.latency,
                   help="device latency of the enterprise profile: realistic (its default) or 0")
    p.add_argument("--no-timeouts", action="store_true", help="leave out the accept-never-answer switch")
    p.add_argument("--workers", type=int, default=d.workers,
                   help="run the rotations on this many `keyturn worker`s and kill workers, not the CLI")
    p.add_argument("--worker-concurrency", type=int, default=d.worker_concurrency,
                   help="rotations in flight per worker")
    p.add_argument("--redis-db", type=int, default=d.redis_db,
                   help="Redis database for the workers' broker and shared limits (flushed; its own)")
    p.add_argument("--visibility-timeout", type=float, default=d.visibility_timeout,
                   help="KEYTURN_BROKER_VISIBILITY_TIMEOUT of the workers (seconds)")
    p.add_argument("--json-out", type=Path, default=None, help="write the summary as JSON here")
    p.add_argument("--keep", action="store_true", help="keep the work directory (vault, logs)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    opts = Options(rotations=a.rotations, kills=a.kills, seed=a.seed, restconf_devices=a.restconf_devices,
                   ssh_devices=a.ssh_devices, users_per_device=a.users_per_device, meraki_orgs=a.meraki_orgs,
                   users_per_org=a.users_per_org, concurrency=a.concurrency, timeouts=not a.no_timeouts,
                   profile=a.profile, latency=a.latency, workers=a.workers,
                   worker_concurrency=a.worker_concurrency, redis_db=a.redis_db,
                   visibility_timeout=a.visibility_timeout)
    workdir = Path(tempfile.mkdtemp(prefix="keyturn-chaos-"))
    print(f"chaos: {opts.rotations} rotations, {opts.kills} kills, seed {opts.seed}, profile {opts.profile}"
          + (f" (latency {opts.latency})" if opts.latency is not None else "") + f"; work dir {workdir}",
          flush=True)
    run = WorkerChaos if opts.workers > 0 else Chaos
    if opts.workers > 0:
        print(f"chaos: {opts.workers} workers (--concurrency {opts.worker_concurrency}), broker Redis db "
              f"{opts.redis_db}, visibility timeout {opts.visibility_timeout:g} s; kills hit workers",
              flush=True)
    try:
        summary = run(opts, workdir, log=lambda m: print(m, flush=True)).main()
    finally:
        if not a.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if a.json_out:
        dump(summary, a.json_out)
    width = max(len(k) for k in summary)
    print("-" * 60)
    for key in ("accounts", "rounds", "attempted", "committed", "rolled_back", "failed", "open", "kills",
                "reboots", "drifts", "drifted_accounts", "reconciled", "lost", "lockouts", "lock_events",
                "quiet_mode_entries", "failed_logins", "seconds"):
        print(f"{key:<{width}}  {summary[key]}")
    if summary["failed_logins"]:
        per = summary["failed_logins_by_device"]
        print(f"failed logins keyturn caused: {summary['failed_logins']} on {len(per)} of "
              f"{summary['devices']} devices (max {max(per.values())} on one device)")
        print(f"  by role: {summary['failed_logins_by_role']}")
        print(f"  by user: {summary['failed_logins_by_user']}")
        for name, n in sorted(per.items(), key=lambda kv: -kv[1])[:10]:
            print(f"  {n:5d}  {name}")
    else:
        print(f"failed logins keyturn caused: 0 on all {summary['devices']} devices")
    print("failed, by reason:")
    for reason, n in summary["failed_reasons"].items():
        print(f"  {n:5d}  {reason}")
    print("faults injected:")
    for name, n in sorted(summary["faults"].items()):
        print(f"  {n:5d}  {name}")
    if summary["lost_accounts"] or summary["lockout_accounts"]:
        print(f"LOST: {summary['lost_accounts']}  LOCKED OUT: {summary['lockout_accounts']}")
    if opts.workers > 0:
        print_workers(summary)
    verdict = "PASSED" if summary["passed"] else "FAILED"
    print(f"chaos {verdict}: {summary['lost']} credentials lost, {summary['lockouts']} lockouts, "
          f"{summary['kills']} kills survived")
    return 0 if summary["passed"] else 1


def print_workers(summary: dict[str, object]) -> None:
    """The workers mode's own checks (see chaos/workers.py)."""
    print("workers:")
    for key in ("workers", "kills_mid_rotation", "claims_killed", "restarts", "requests",
                "requests_not_final", "outcome_audited_not_once", "request_outcomes", "redelivered",
                "max_deliveries", "results_printed", "results_expected", "duplicate_results",
                "missing_results", "stuck_rounds", "round_exits", "open_before_recover",
                "rotations_outside_requests", "overlaps"):
        print(f"  {key:<26}  {summary[key]}")
    for line in summary["overlap_details"]:  # type: ignore[attr-defined]
        print(f"  OVERLAP {line}")
    for line in summary["outside_details"]:  # type: ignore[attr-defined]
        print(f"  OUTSIDE {line}")
    once = not summary["requests_not_final"] and not summary["outcome_audited_not_once"]
    print(f"every request exactly one outcome: {'yes' if once else 'NO'}; accounts rotated twice at once: "
          f"{summary['overlaps']}; rotations after their request ended: "
          f"{summary['rotations_outside_requests']}")


if __name__ == "__main__":
    sys.exit(main())
