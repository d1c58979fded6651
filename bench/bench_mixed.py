"""Mixed lab (issue 4's acceptance run): IOS XE over RESTCONF and over SSH, and Meraki auth users,
rotated by `keyturn rotate --filter target=KIND` one target after the other, then all verified.

Default: 200 RESTCONF devices + 200 SSH devices (one user each) and 1,000 Meraki users in 5 orgs.
"""

from __future__ import annotations

from pathlib import Path

from bench.harness import KEYTURN, Home, Lab, run_measured, verify_all
from bench.report import Row

TARGETS = ("iosxe-restconf", "iosxe-ssh", "meraki-auth-user")


def run(workdir: Path, *, devices: int, orgs: int, users: int, concurrency: int, seed: int
        ) -> tuple[list[Row], list[str]]:
    per_org = max(1, users // max(1, orgs))
    with Lab(workdir, iosxe=devices, users_per_device=1, meraki_orgs=orgs, networks_per_org=1,
             users_per_network=per_org, seed=seed) as lab:
        assert lab.state is not None
        home = Home(workdir, "home-mixed")
        accts = home.setup(lab.state, iosxe_targets=("iosxe-restconf", "iosxe-ssh"))
        rows: list[Row] = []
        for kind in TARGETS:
            mine = [a for a in accts if a.target == kind]
            out, err = workdir / f"rotate-{kind}.json", workdir / f"rotate-{kind}.err"
            usage = run_measured([*KEYTURN, "rotate", "--filter", f"target={kind}", "--concurrency",
                                  str(concurrency), "--json"], env=home.env, stdout=out, stderr=err)
            bad = verify_all(lab, mine, home.current_secrets(mine))
            rows.append(Row(f"mixed lab: {kind}", "keyturn", len(mine), usage, len(mine) - len(bad),
                            note=f"--filter target={kind} --concurrency {concurrency}"))
        stats = lab.stats().get("meraki") or {}
    throttled = sum(int(s.get("throttled", 0)) for s in stats.values())
    notes = [f"{devices // 2 + devices % 2} RESTCONF + {devices // 2} SSH devices (one user each), "
             f"{per_org * orgs} Meraki users in {orgs} orgs; every account verified afterwards with the "
             "lab's login check",
             f"429 responses served by the Meraki simulator: {throttled}"]
    return rows, notes
