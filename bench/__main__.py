"""`python -m bench` (`make bench`): every benchmark, each against its own simulator lab; tables on stdout.

    python -m bench                      # full sizes (RESTCONF 1,000, SSH 1,000, Meraki 5,000, scaling)
    python -m bench --quick              # small sizes, a few minutes
    python -m bench --only restconf,meraki --restconf-devices 500
    python -m bench --markdown out.md    # also write the tables as Markdown
    python -m bench --only enterprise --enterprise-devices 200   # issue 11's realistic network
    python -m bench --only simcost --simcost-before HEAD~1      # simulator CPU per rotation (issue 14)
    python -m bench --only startup --startup-before HEAD~1      # CLI start-up wall/CPU (issue 14)
    python -m bench --only cost --cost-before ccf3472    # CPU, SQL, requests per rotation (issue 14)
    python -m bench --only cost --cost-kinds meraki-auth-user --cost-skip-startup --cost-profile DIR
                                         # ... with each probe under py-spy --gil: its top functions
    python -m bench --only cost --cost-kinds iosxe-restconf --cost-skip-startup --cost-sql DIR
                                         # ... and what each probe's SQL per rotation is made of
    python -m bench --only floor         # the CPU floor under a rotation: scrypt, a request, a transaction
    python -m bench --only scaleout      # in-process vs 1, 2, 4 workers; Meraki on 2 workers (issue 13)
    python -m bench --only console       # the console's accounts page over 10,000 accounts (issue 17)

Benchmarks assert nothing: they print what they measured, including failures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.report import Row, console, markdown, print_table

ALL = ("restconf", "ssh", "meraki", "scaling", "mixed", "enterprise", "simcost")
ALL += ("startup",)  # CLI start-up wall/CPU per command (issue 14)
ALL += ("cost",)  # CPU, SQL, requests and handshakes per rotation per target and phase (issue 14)
ALL += ("scaleout",)  # in-process vs 1, 2, 4 worker processes; Meraki budgets across 2 workers (issue 13)
ALL += ("onboarding",)  # `keyturn import inventory` of a 2,000-device CSV (issue 15)
ALL += ("console",)  # the web console's accounts page over 10,000 accounts (issue 17)
ALL += ("floor",)  # what the parts a verified rotation cannot skip cost alone: the CPU floor (issue 14)
ALL += ("psk",)  # meraki-ssid-psk on 100 networks in 10 orgs within the per-org budget (issue 19)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    p.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--concurrency", type=int, default=100, help="keyturn rotations in flight")
    p.add_argument("--restconf-devices", type=int)
    p.add_argument("--baseline-limit", type=int, default=None,
                   help="run the per-process RESTCONF baselines on the first N devices only")
    p.add_argument("--ssh-devices", type=int)
    p.add_argument("--ssh-baseline", choices=("auto", "ansible", "netmiko"), default="auto")
    p.add_argument("--meraki-orgs", type=int)
    p.add_argument("--meraki-users", type=int, help="auth users in total, spread over the orgs")
    p.add_argument("--mixed-devices", type=int, help="IOS XE devices of the mixed lab (half over SSH)")
    p.add_argument("--mixed-orgs", type=int)
    p.add_argument("--mixed-users", type=int, help="Meraki users of the mixed lab, spread over its orgs")
    p.add_argument("--enterprise-devices", type=int, help="devices of the enterprise lab (one user each)")
    p.add_argument("--enterprise-keeper-limit", type=int, default=None,
                   help="run the Keeper-style script pool on the first N enterprise devices only")
    p.add_argument("--enterprise-ansible-limit", type=int, default=None,
                   help="run Ansible on the first N enterprise devices only (0: skip; full default 200)")
    p.add_argument("--enterprise-latency", default="realistic", help="realistic (default) or 0")
    p.add_argument("--enterprise-keyturn-only", action="store_true",
                   help="no baselines in the enterprise run")
    p.add_argument("--simcost-devices", type=int, help="devices of the simulator-cost lab (issue 14)")
    p.add_argument("--simcost-before", default=None, metavar="REF",
                   help="also measure the simulator of git revision REF (a temporary worktree)")
    p.add_argument("--simcost-before-keyturn", action="store_true",
                   help="the --simcost-before row runs REF's keyturn too (a change of requests per rotation)")
    p.add_argument("--simcost-profile", type=Path, default=None, metavar="DIR",
                   help="record the simulator with py-spy during each simcost rotation run, into DIR")
    p.add_argument("--cost-devices", type=int, default=None, help="IOS XE devices per kind (cost)")
    p.add_argument("--cost-meraki-users", type=int, default=None, help="Meraki users (cost)")
    p.add_argument("--cost-before", default=None, metavar="REF",
                   help="measure REF's keyturn too, from a temporary worktree (cost: before/after)")
    p.add_argument("--cost-database", choices=("sqlite", "postgresql"), default="sqlite",
                   help="the vault of the cost probes (postgresql: a fresh schema on 127.0.0.1 per probe)")
    p.add_argument("--cost-kinds", default=None, metavar="K1,K2",
                   help="target kinds of the cost probes (default: all three and meraki-fleet)")
    p.add_argument("--cost-profile", type=Path, default=None, metavar="DIR",
                   help="record each cost probe with py-spy (--gil) into DIR and print its top functions")
    p.add_argument("--cost-sql", type=Path, default=None, metavar="DIR",
                   help="cost: write each probe's statements per second rotation (by first line) to DIR")
    p.add_argument("--cost-fleet-users", type=int, default=None, metavar="N",
                   help="cost: Meraki users per organisation of the 10-organisation run (0: skip it)")
    p.add_argument("--cost-skip-startup", action="store_true",
                   help="cost: leave out the CLI start-up rows (a rotation-only run)")
    p.add_argument("--onboarding-devices", type=int, default=2000, help="devices in the generated CSV")
    p.add_argument("--console-accounts", type=int, default=None, help="accounts seeded (console; 10,000)")
    p.add_argument("--startup-runs", type=int, default=10, help="runs per CLI command (median reported)")
    p.add_argument("--startup-before", default=None, metavar="REF",
                   help="also measure the CLI of git revision REF (a temporary worktree)")
    p.add_argument("--scaleout-devices", type=int, help="RESTCONF devices of the scale-out lab (issue 13)")
    p.add_argument("--scaleout-processes", default="1,2,4", help="worker processes per scale-out run")
    p.add_argument("--scaleout-threads", type=int, default=32, help="--concurrency of each worker process")
    p.add_argument("--scaleout-meraki-users", type=int, help="Meraki users per org, 2 orgs (0: skip)")
    p.add_argument("--scaleout-redis-db", type=int, default=14, help="Redis database of the scale-out runs")
    p.add_argument("--scaleout-database", default="sqlite", help="sqlite, postgresql, or both")
    p.add_argument("--scaleout-patience", type=float, default=600, help="max s to wait for an idle CPU")
    p.add_argument("--scaling", default=None, help="device counts for the scaling curve, e.g. 100,1000,5000")
    p.add_argument("--markdown", type=Path, default=None, help="also write the tables here (Markdown)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    q = args.quick
    args.restconf_devices = args.restconf_devices or (100 if q else 1000)
    args.cost_devices = args.cost_devices or (50 if q else 500)
    args.cost_meraki_users = args.cost_meraki_users or (20 if q else 100)
    if args.cost_fleet_users is None:
        args.cost_fleet_users = 20 if q else 120
    args.ssh_devices = args.ssh_devices or (100 if q else 1000)
    args.meraki_orgs = args.meraki_orgs or (2 if q else 10)
    args.meraki_users = args.meraki_users or (200 if q else 5000)
    args.mixed_devices = args.mixed_devices or (40 if q else 400)
    args.mixed_orgs = args.mixed_orgs or (2 if q else 5)
    args.mixed_users = args.mixed_users or (100 if q else 1000)
    args.enterprise_devices = args.enterprise_devices or (50 if q else 1000)
    args.simcost_devices = args.simcost_devices or (50 if q else 200)
    if args.enterprise_ansible_limit is None and not q:
        # Ansible took ~35 min for 1,000 devices without latency on 2 cores: a subset, said so in the table.
        args.enterprise_ansible_limit = 200
    args.scaling = [int(x) for x in (args.scaling or ("50,200" if q else "100,1000,5000")).split(",")]
    args.only = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = set(args.only) - set(ALL)
    if unknown:
        p.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {ALL}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    workdir = Path(tempfile.mkdtemp(prefix="keyturn-bench-"))
    rows: list[Row] = []
    sections: list[tuple[str, list[Row], list[str]]] = []
    console.print(f"keyturn benchmarks on {os.cpu_count()} CPU(s), Python {sys.version.split()[0]}; "
                  f"work dir {workdir}")
    began = time.monotonic()
    try:
        for name in args.only:
            sub = workdir / name
            sub.mkdir()
            console.rule(name)
            t0 = time.monotonic()
            notes: list[str] = []
            if name == "restconf":
                from bench import bench_restconf

                got = bench_restconf.run(sub, devices=args.restconf_devices, concurrency=args.concurrency,
                                         seed=args.seed, baseline_limit=args.baseline_limit)
            elif name == "ssh":
                from bench import bench_ssh

                got, notes = bench_ssh.run(sub, devices=args.ssh_devices, concurrency=args.concurrency,
                                           seed=args.seed, baseline=args.ssh_baseline)
            elif name == "meraki":
                from bench import bench_meraki

                got, notes = bench_meraki.run(sub, orgs=args.meraki_orgs, users=args.meraki_users,
                                              concurrency=args.concurrency, seed=args.seed)
            elif name == "mixed":
                from bench import bench_mixed

                got, notes = bench_mixed.run(sub, devices=args.mixed_devices, orgs=args.mixed_orgs,
                                             users=args.mixed_users, concurrency=args.concurrency,
                                             seed=args.seed)
            elif name == "enterprise":
                from bench import bench_enterprise

                got, notes = bench_enterprise.run(sub, devices=args.enterprise_devices,
                                                  concurrency=args.concurrency, seed=args.seed,
                                                  keeper_limit=args.enterprise_keeper_limit,
                                                  ansible_limit=args.enterprise_ansible_limit,
                                                  latency=args.enterprise_latency,
                                                  baselines=not args.enterprise_keyturn_only)
            elif name == "simcost":
                from bench import bench_simcost

                got, notes = bench_simcost.run(sub, devices=args.simcost_devices,
                                               concurrency=args.concurrency, seed=args.seed,
                                               before=args.simcost_before, profile=args.simcost_profile,
                                               before_keyturn=args.simcost_before_keyturn)
            elif name == "cost":
                from bench import bench_cost

                got, notes = bench_cost.run(sub, devices=args.cost_devices,
                                            meraki_users=args.cost_meraki_users,
                                            before=args.cost_before, startup_runs=args.startup_runs,
                                            database=args.cost_database, kinds=args.cost_kinds,
                                            profile=args.cost_profile, startup=not args.cost_skip_startup,
                                            sql=args.cost_sql, fleet_users=args.cost_fleet_users)
            elif name == "console":
                from bench import bench_console

                seeded = args.console_accounts or (1000 if args.quick else 10_000)
                got, notes = bench_console.run(sub, accounts=seeded)
            elif name == "onboarding":
                from bench import bench_onboarding

                got, notes = bench_onboarding.run(sub, devices=args.onboarding_devices)
            elif name == "scaleout":
                from bench import bench_scaleout

                got, notes = bench_scaleout.run_all(sub, args)
            elif name == "floor":
                from bench import cost_floor

                got, notes = cost_floor.run(sub)
            elif name == "psk":
                from bench import bench_psk

                got, notes = bench_psk.run(sub, concurrency=args.concurrency, seed=args.seed)
            elif name == "startup":
                from bench import bench_cli_startup

                got, notes = bench_cli_startup.run(sub, runs=args.startup_runs, before=args.startup_before)
            else:
                from bench import bench_scaling

                got, notes = bench_scaling.run(sub, sizes=args.scaling, concurrency=args.concurrency,
                                               seed=args.seed)
            print_table(f"{name} ({time.monotonic() - t0:.0f} s)", got)
            for n in notes:
                console.print(f"  {n}")
            rows += got
            sections.append((name, got, notes))
    finally:
        if args.keep:
            console.print(f"work dir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    console.rule("all")
    print_table(f"keyturn benchmarks ({time.monotonic() - began:.0f} s in total)", rows)
    if args.markdown:
        parts = []
        for name, got, notes in sections:
            parts.append(f"### {name}\n\n{markdown(got)}\n" + "".join(f"\n- {n}" for n in notes))
        args.markdown.write_text("\n\n".join(parts) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
