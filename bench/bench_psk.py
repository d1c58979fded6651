"""SSID PSK rotation across many networks (issue 19): `meraki-ssid-psk` on 100 networks in 10
organisations, one PSK SSID each, within Meraki's per-organisation budget.

One `keyturn sim lab` (10 orgs x 10 networks, ``--ssids-per-network 1``: SSID 1 in PSK mode), one vault
with a record per SSID (profile ``meraki-ssid-psk --option ssid=1``, admin = the lab's API key), then
`keyturn rotate --all --json` measured (wall, CPU of the keyturn process). Each rotation costs four
Dashboard calls: read back the current PSK, read the SSID's mode, PUT the new PSK, read it back.

Counted where Meraki counts them — the simulator stamps each org's requests as they arrive
(`GET /_sim/request-times`): the most requests in any 1-second window per org (the budget keyturn
keeps is `KEYTURN_MERAKI_API_SHARE` x 10/s = 9 by default; Meraki allows 10/s plus a burst of 10),
the mean over 1-second windows, and the 429s the simulator served. Afterwards every SSID's PSK is read
back from the simulator and compared with the vault's current secret.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import httpx

from bench.bench_scaleout_meraki import (
    MERAKI_RATE,
    configured_limit,
    max_in_window,
    mean_per_window,
    request_times,
)
from bench.harness import KEYTURN, Home, Lab, Usage, outcome_counts, run_measured
from bench.report import Row

SSID = 1


def _onboard(home: Home, lab: Lab) -> list[tuple[str, str]]:
    """`keyturn init`, then one record per PSK SSID with its profile (Python API, one vault); returns
    (network id, record uid) of each."""
    from keyturn.engine.profile import set_profile
    from keyturn.secret import Secret
    from keyturn.vault import Field

    assert lab.state is not None and lab.state.meraki is not None
    meraki = lab.state.meraki
    home.keyturn("init")
    vault = home.open_vault()
    out = []
    try:
        key = vault.add(type="login", title="Meraki API key", actor="bench", fields=[
            Field("login", None, ["dashboard-api"]), Field("password", None, [Secret(meraki.api_key)])])
        for org in meraki.orgs:
            for net in org.networks:
                res = vault.add(type="pamMerakiNetwork", title=f"Meraki {net.id}", actor="bench", custom=[
                    Field("text", "network_id", [net.id]), Field("text", "org_id", [org.id]),
                    Field("text", "base_url", [meraki.base_url])])
                ssid = next(s for s in net.ssids if s.number == SSID)
                assert ssid.psk is not None
                rec = vault.add(type="pamUser", title=f"SSID {ssid.name} @ {net.id}", actor="bench",
                                fields=[Field("login", None, [ssid.name]),
                                        Field("password", None, [Secret(ssid.psk)])])
                set_profile(vault, rec.uid, target="meraki-ssid-psk", resource=res.uid, admin=key.uid,
                            options={"ssid": str(SSID)}, actor="bench")
                out.append((net.id, rec.uid))
    finally:
        vault.close()
    return out


def run(workdir: Path, *, orgs: int = 10, networks_per_org: int = 10, concurrency: int = 32,
        seed: int = 2026) -> tuple[list[Row], list[str]]:
    share = float(os.environ.get("KEYTURN_MERAKI_API_SHARE") or 0.9)
    limit = configured_limit(share)
    with Lab(workdir, meraki_orgs=orgs, networks_per_org=networks_per_org, users_per_network=0, seed=seed,
             ssh=False, restconf=False, flags=("--ssids-per-network", str(SSID))) as lab:
        assert lab.state is not None and lab.state.meraki is not None
        meraki = lab.state.meraki
        home = Home(workdir, "home-psk")
        ssids = _onboard(home, lab)
        since, _ = request_times(meraki.base_url)   # only the rotation's requests count from here
        before = {org: int(v.get("throttled", 0)) for org, v in lab.stats()["meraki"].items()}
        out, err = workdir / "rotate-psk.json", workdir / "rotate-psk.err"
        usage = run_measured([*KEYTURN, "rotate", "--all", "--json", "--concurrency", str(concurrency)],
                             env=home.env, stdout=out, stderr=err)
        _, stamps = request_times(meraki.base_url)
        stats = lab.stats()["meraki"]
        vault = home.open_vault()
        try:
            secrets = {uid: s.reveal() for _, uid in ssids if (s := vault.secret(uid)) is not None}
        finally:
            vault.close()
        wrong = 0
        with httpx.Client(base_url=meraki.base_url, timeout=60, trust_env=False,
                          headers={"Authorization": f"Bearer {meraki.api_key}"}) as client:
            for net, uid in ssids:
                on_air = client.get(f"/networks/{net}/wireless/ssids/{SSID}")
                wrong += on_air.status_code != 200 or on_air.json().get("psk") != secrets.get(uid)
    counts = outcome_counts(out)
    failed = sum(n for k, n in counts.items() if k != "rotated")
    per_org = {org: [t for t in ts if t >= since] for org, ts in stamps.items()}
    peak = max((max_in_window(ts) for ts in per_org.values() if ts), default=0)
    means = [mean_per_window(ts) for ts in per_org.values() if ts]
    throttled = sum(int(v.get("throttled", 0)) - before.get(org, 0) for org, v in stats.items())
    requests = sum(len(ts) for ts in per_org.values())
    row = Row(f"SSID PSK {orgs} orgs x {networks_per_org} networks", "keyturn", len(ssids),
              Usage(wall=usage.wall, cpu=usage.cpu, maxrss_mib=usage.maxrss_mib, processes=1),
              len(ssids) - wrong,
              note=f"--concurrency {concurrency}; " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
                   + f"; {failed} failed; {throttled} 429s")
    notes = [
        f"{requests} Dashboard requests for {len(ssids)} rotations ({requests / max(1, len(ssids)):.1f} "
        f"per rotation); keyturn's budget {share:g} x {MERAKI_RATE:g}/s = {limit} requests/s per org",
        f"most requests in any 1-s window, worst org: {peak} (budget {limit}; Meraki allows "
        f"{MERAKI_RATE:g}/s + a burst of 10); mean over 1-s windows per org "
        f"{min(means, default=math.nan):.2f}-{max(means, default=math.nan):.2f}/s",
        f"429s served: {throttled}; rotations not rotated: {failed}; SSIDs whose PSK is not the vault's: "
        f"{wrong}",
        f"keyturn CPU {usage.cpu:.1f} s for {usage.wall:.1f} s wall "
        f"({usage.cpu / max(1, len(ssids)) * 1000:.0f} ms CPU per rotation)",
    ]
    return [row], notes


__all__ = ["run"]
