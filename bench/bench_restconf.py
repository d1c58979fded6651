"""IOS XE RESTCONF: keyturn `rotate --all` vs the Keeper Gateway model (one script process per rotation).

Same lab (one user per device), same starting state for each contender (control `/reset` between
runs), every device checked afterwards through the lab's login check with the expected new secret.
Contenders: keyturn (one process, asyncio, connection reuse); the per-process script run sequentially
(the Gateway's default); the same script with 8 processes in flight ("pool of 8", the fairer variant).
"""

from __future__ import annotations

import base64
import json
import secrets
import string
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.harness import Acct, Home, Lab, Usage, rotate_json, run_measured, verify_all
from bench.report import Row

SCRIPT = Path(__file__).resolve().parent / "baselines" / "keeper_restconf.py"
_ALPHABET = string.ascii_letters + string.digits + "!#%&*+-=_"


def new_password() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(24))


def keeper_payload(lab: Lab, acct: Acct, password: str, *, verify_tls: bool = True) -> bytes:
    """The one base64 line the Gateway writes to the script's stdin (the fields this script reads).

    `verify_tls=False` adds the auth record's `verify_tls: false` (a device whose certificate requests
    cannot verify)."""
    assert lab.state is not None
    dev = lab.state.device(acct.where)
    auth: dict[str, object] = {"uid": "auth", "title": "Cisco Authentication Record", "type": "login",
                               "host_endpoint": f"{dev.host}:{dev.restconf_port}",
                               "login": dev.admin.username, "password": dev.admin.password}
    if not verify_tls:
        auth["verify_tls"] = False
    records = [auth]
    params = {"user": acct.login, "newPassword": password,
              "records": base64.b64encode(json.dumps(records).encode()).decode()}
    return base64.b64encode(json.dumps(params).encode()) + b"\n"


def run_baseline(lab: Lab, accts: list[Acct], workers: int, env: dict[str, str]) -> tuple[Usage, int, int]:
    """Run the script once per account with `workers` in flight; (usage, succeeded, verified)."""
    import time

    news = {a.title: new_password() for a in accts}
    total = Usage()

    def one(a: Acct) -> Usage:
        payload = keeper_payload(lab, a, news[a.title])
        return run_measured([sys.executable, str(SCRIPT)], env=env, stdin=payload)

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(one, accts))
    total.wall = time.monotonic() - began
    ok = 0
    for u in results:
        total.add(u)
        ok += u.returncode == 0
    bad = verify_all(lab, accts, news)
    return total, ok, len(accts) - len(bad)


def run(workdir: Path, *, devices: int, concurrency: int, seed: int, baseline_limit: int | None,
        pool: int = 8) -> list[Row]:
    name = f"RESTCONF {devices} dev"
    rows: list[Row] = []
    with Lab(workdir, iosxe=devices, users_per_device=1, ssh=False, seed=seed) as lab:
        assert lab.state is not None
        home = Home(workdir, "home-restconf")
        accts = home.setup(lab.state, iosxe_targets=("iosxe-restconf",))
        usage, counts = rotate_json(home, workdir, concurrency=concurrency, per_device=1)
        bad = verify_all(lab, accts, home.current_secrets(accts))
        rows.append(Row(name, "keyturn", len(accts), usage, len(accts) - len(bad),
                        note=f"--concurrency {concurrency}; "
                             + ", ".join(f"{v} {k}" for k, v in counts.items()),
                        baseline_of="script seq,script pool8"))
        env = {**home.env, "REQUESTS_CA_BUNDLE": lab.state.ca_cert}
        sample = accts[:baseline_limit] if baseline_limit else accts
        for label, workers in (("script seq", 1), (f"script pool{pool}", pool)):
            lab.reset()
            usage, ok, verified = run_baseline(lab, sample, workers, env)
            rows.append(Row(name, label, len(sample), usage, verified,
                            note=f"{usage.processes} processes, {ok} exit 0"
                                 + (f"; first {len(sample)} devices" if len(sample) < len(accts) else "")))
    return rows
