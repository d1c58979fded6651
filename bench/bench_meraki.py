"""Meraki auth users: keyturn's achieved requests/s per organisation against the 10/s budget.

One lab with ORGS organisations (one network each) and USERS auth users spread over them; keyturn
rotates them all (`meraki-auth-user`, with the lab's login check as verifier, which does not touch
the Dashboard API). The simulator counts every Dashboard request and every 429 per organisation
(`/stats`); the floor is the busiest organisation's calls / 10 per second, orgs running in parallel.
"""

from __future__ import annotations

from pathlib import Path

from bench.harness import Home, Lab, rotate_json, verify_all
from bench.report import Row

BUDGET = 10.0   # requests/s per organisation (Meraki's documented limit; the simulator's default)


def run(workdir: Path, *, orgs: int, users: int, concurrency: int, seed: int, per_network: int = 4
        ) -> tuple[list[Row], list[str]]:
    per_org = max(1, users // orgs)
    name = f"Meraki {per_org * orgs} users / {orgs} orgs"
    with Lab(workdir, meraki_orgs=orgs, networks_per_org=1, users_per_network=per_org, seed=seed) as lab:
        assert lab.state is not None
        home = Home(workdir, "home-meraki")
        accts = home.setup(lab.state)
        usage, counts = rotate_json(home, workdir, concurrency=concurrency, per_device=per_network)
        bad = verify_all(lab, accts, home.current_secrets(accts))
        stats = lab.stats()["meraki"]
    requests = {org: s.get("requests", 0) for org, s in stats.items()}
    throttled = sum(int(s.get("throttled", 0)) for s in stats.values())
    busiest = max(requests.values() or [0])
    floor = busiest / BUDGET
    rates = [n / usage.wall for n in requests.values()] if usage.wall else [0.0]
    row = Row(name, "keyturn", len(accts), usage, len(accts) - len(bad),
              note=f"--concurrency {concurrency} --per-device {per_network}; "
                   + ", ".join(f"{v} {k}" for k, v in counts.items()))
    row.extra = {"floor_s": f"{floor:.1f}", "throttled": str(throttled)}
    notes = [
        f"Dashboard requests: {sum(requests.values())} in total, {busiest} for the busiest org "
        f"({busiest / max(1, per_org):.2f} calls per rotation)",
        f"achieved requests/s per org: min {min(rates):.2f}, max {max(rates):.2f} against the budget "
        f"{BUDGET:g}/s ({100 * min(rates) / BUDGET:.0f}-{100 * max(rates) / BUDGET:.0f} % of it, wall time "
        "includes process start and setup of the run)",
        f"429 responses received: {throttled} (counted by the simulator; none may surface as a failure)",
        f"wall {usage.wall:.1f} s vs floor {floor:.1f} s (busiest org's calls / {BUDGET:g} per s, orgs in "
        f"parallel): {100 * floor / usage.wall if usage.wall else 0:.0f} % of the floor-limited speed",
    ]
    return [row], notes
