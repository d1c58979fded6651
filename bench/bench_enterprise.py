"""Enterprise profile (issue 11): keyturn vs the Keeper-style script pool vs Ansible `ios_user`, on a
`keyturn sim lab --profile enterprise` lab at realistic latency (RESTCONF 0.1-0.4 s per request,
save-config 2.5-3.7 s, SSH login ~1 s, `write memory` 1-3 s, 2-4 s re-sync after a CLI change).

The lab mixes TACACS+-first devices with max-fail/block-for lockouts, TACACS+-down devices, legacy
type-5 devices (some on the SHA-1-only SSH algorithm set) and devices whose logins land in `>`; every
device serves stock IOS XE's self-signed certificate. One local user per device is rotated.

keyturn gets the records `keyturn.sim.onboard` makes (pinned certificate, host key, legacy algorithms,
`iosxe-ssh` where logins land in `>`, `iosxe-restconf` elsewhere) and rotates with `rotate --all`.
The Keeper-style pool runs `baselines/keeper_restconf.py` once per account, 8 in flight, as
bench_restconf.py does; Ansible runs `baselines/ansible_ios_user.yml` with 20 forks, as bench_ssh.py
does. Both log in as the device admin, which the lab's TACACS+ server knows: they work where that login
works, and neither can prove the local account afterwards (they do not try).

After each contender, from the lab's control API: `/verify` of every account (new secret stored, old
refused, user locked), `/stats` login safety per device (`failed_logins`, `failed_logins_by_user`,
`locked_users`, `quiet_mode_entries`); for keyturn the `verified_by` of every `rotate --json` row. The lab
is reset (initial credentials, counters, locks) before each contender.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.bench_restconf import SCRIPT, keeper_payload, new_password
from bench.bench_ssh import FORKS, ansible_failed_hosts, ensure_ansible, run_ansible
from bench.harness import Acct, Home, Lab, Usage, rotate_json, run_measured
from bench.report import Row

KEEPER_POOL = 8
# Seconds a lab of N devices may take to come up (RSA keys and certificates per device).
LAB_TIMEOUT = 1800.0


@dataclass
class Check:
    """What the lab says about a set of accounts after one contender."""

    accounts: int = 0
    verified: int = 0                 # new secret stored and the initial one refused
    not_stored: int = 0               # the expected new secret is not what the device stores
    old_kept: int = 0                 # the initial secret is still stored (nothing changed)
    locked_accounts: list[str] = field(default_factory=list)   # rotated users the device holds locked
    unverified: list[Acct] = field(default_factory=list)


@dataclass
class Safety:
    """Login safety over a set of devices, from `/stats`."""

    failed_logins: int = 0
    devices_with_failures: int = 0
    max_per_device: int = 0
    by_user: Counter[str] = field(default_factory=Counter)
    by_role: Counter[str] = field(default_factory=Counter)
    locked_users: list[str] = field(default_factory=list)     # "device:user"
    quiet_mode_entries: int = 0

    def text(self) -> str:
        out = f"failed logins {self.failed_logins} on {self.devices_with_failures} dev"
        if self.failed_logins:
            out += f" (max {self.max_per_device}/dev; by user {dict(self.by_user.most_common(4))}; " \
                   f"by role {dict(self.by_role.most_common())})"
        out += f"; locked users {len(self.locked_users)}; quiet mode {self.quiet_mode_entries}"
        return out


def check_accounts(lab: Lab, accts: list[Acct], news: dict[str, str]) -> Check:
    """Ask `/verify` for the expected new secret and the initial one of every account."""
    out = Check(accounts=len(accts))
    for a in accts:
        new = news.get(a.title, "")
        stored = new != a.initial and _verify(lab, a, new)["ok"]
        old = _verify(lab, a, a.initial)
        out.verified += bool(stored and not old["ok"])
        if not (stored and not old["ok"]):
            out.unverified.append(a)
        out.not_stored += not stored
        out.old_kept += bool(old["ok"])
        if old.get("locked"):
            out.locked_accounts.append(a.title)
    return out


def _verify(lab: Lab, a: Acct, password: str) -> dict[str, Any]:
    body = {"kind": "iosxe", "device": a.where, "username": a.login, "password": password}
    return dict(lab.call("POST", "/verify", body))


def login_safety(lab: Lab, devices: list[str]) -> Safety:
    assert lab.state is not None
    stats = lab.stats()["iosxe"]
    out = Safety()
    for name in devices:
        d = stats[name]
        n = int(d.get("failed_logins", 0))
        out.failed_logins += n
        out.devices_with_failures += n > 0
        out.max_per_device = max(out.max_per_device, n)
        out.by_user.update({str(k): int(v) for k, v in (d.get("failed_logins_by_user") or {}).items()})
        if n:
            out.by_role[str(lab.state.device(name).profile.get("role", "?"))] += n
        out.locked_users += [f"{name}:{u}" for u in d.get("locked_users") or []]
        out.quiet_mode_entries += int(d.get("quiet_mode_entries", 0))
    return out


def roles(lab: Lab, accts: list[Acct]) -> Counter[str]:
    assert lab.state is not None
    return Counter(str(lab.state.device(a.where).profile.get("role", "?")) for a in accts)


def note(check: Check, safety: Safety, extra: str = "") -> str:
    parts = [extra] if extra else []
    if check.not_stored:
        parts.append(f"{check.not_stored} new secrets not stored")
    if check.old_kept:
        parts.append(f"{check.old_kept} old secrets still stored")
    parts.append(safety.text())
    parts.append(f"accounts locked out {len(check.locked_accounts)}")
    return "; ".join(parts)


# ---- contenders --------------------------------------------------------------------------------------


def run_keyturn(workdir: Path, lab: Lab, home: Home, accts: list[Acct], *, concurrency: int
                ) -> tuple[Usage, Check, Safety, dict[str, Any]]:
    usage, counts = rotate_json(home, workdir, concurrency=concurrency, per_device=1)
    proofs: Counter[str] = Counter()
    failures: list[dict[str, Any]] = []
    try:
        rows = json.loads((workdir / "rotate.json").read_text() or "{}").get("results", [])
    except ValueError:
        rows = []
    for r in rows:
        if r.get("outcome") == "rotated":
            proofs[str(r.get("verified_by"))] += 1
        else:
            failures.append({k: r.get(k) for k in ("title", "target", "outcome", "reason", "rotation_id")})
    check = check_accounts(lab, accts, home.current_secrets(accts))
    safety = login_safety(lab, sorted({a.where for a in accts}))
    return usage, check, safety, {"counts": counts, "proofs": proofs, "failures": failures}


def run_keeper(workdir: Path, lab: Lab, accts: list[Acct], env: dict[str, str]
               ) -> tuple[Usage, Check, Safety, dict[str, Any]]:
    """The Keeper Gateway model: one script process per rotation, `KEEPER_POOL` in flight."""
    assert lab.state is not None
    news = {a.title: new_password() for a in accts}
    errors: Counter[str] = Counter()

    def one(a: Acct) -> Usage:
        # Stock IOS XE's certificate has no SAN: requests cannot verify it and cannot pin a fingerprint,
        # so the script turns verification off there, as people running such scripts do.
        pinned_only = lab.state.device(a.where).profile.get("cert") == "ios-self-signed"  # type: ignore[union-attr]
        payload = keeper_payload(lab, a, news[a.title], verify_tls=not pinned_only)
        err = workdir / f"keeper-{a.where}.err"
        usage = run_measured([sys.executable, str(SCRIPT)], env=env, stdin=payload, stderr=err)
        if usage.returncode:
            first = (err.read_text(errors="replace").strip().splitlines() or ["?"])[-1]
            errors[first[:80]] += 1
        return usage

    total = Usage()
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=KEEPER_POOL) as pool:
        results = list(pool.map(one, accts))
    total.wall = time.monotonic() - began
    for u in results:
        total.add(u)
    check = check_accounts(lab, accts, news)
    safety = login_safety(lab, sorted({a.where for a in accts}))
    return total, check, safety, {"errors": errors, "ok": sum(u.returncode == 0 for u in results)}


def run_ansible_leg(workdir: Path, lab: Lab, accts: list[Acct]
                    ) -> tuple[Usage, Check, Safety, dict[str, Any]]:
    news = {a.title: new_password() for a in accts}
    usage = run_ansible(workdir, lab, accts, news)
    check = check_accounts(lab, accts, news)
    safety = login_safety(lab, sorted({a.where for a in accts}))
    failed_hosts = ansible_failed_hosts(workdir / "ansible.out")
    return usage, check, safety, {"failed_hosts": failed_hosts}


# ---- the benchmark -----------------------------------------------------------------------------------


def run(workdir: Path, *, devices: int, concurrency: int, seed: int, keeper_limit: int | None = None,
        ansible_limit: int | None = None, latency: str = "realistic", baselines: bool = True
        ) -> tuple[list[Row], list[str]]:
    """Rows for keyturn (all `devices`) and the baselines (the first `*_limit` devices, all by default)."""
    name = f"enterprise {devices} dev"
    rows: list[Row] = []
    notes: list[str] = []
    flags = ["--latency", latency] if latency != "realistic" else []
    use_ansible = baselines and ansible_limit != 0 and ensure_ansible(notes)
    with Lab(workdir, iosxe=devices, users_per_device=1, seed=seed, profile="enterprise", flags=flags,
             timeout=LAB_TIMEOUT) as lab:
        assert lab.state is not None
        home = Home(workdir, "home-enterprise")
        accts = home.setup(lab.state)
        mix = roles(lab, accts)
        targets = Counter(a.target for a in accts)
        notes.append(f"lab: {devices} devices ({', '.join(f'{n} {r}' for r, n in sorted(mix.items()))}); "
                     f"latency {latency}; lab up in {lab.startup:.0f} s, lab RSS {lab.rss_mib():.0f} MiB")
        notes.append("keyturn targets: " + ", ".join(f"{n} {t}" for t, n in sorted(targets.items()))
                     + "; records from keyturn.sim.onboard (pinned certificate, host key, legacy SSH "
                       "algorithms where needed); profile option verify=auto (default)")

        usage, check, safety, info = run_keyturn(workdir, lab, home, accts, concurrency=concurrency)
        proofs = ", ".join(f"{n} {p}" for p, n in info["proofs"].most_common()) or "none"
        outcome = ", ".join(f"{v} {k}" for k, v in info["counts"].items())
        rows.append(Row(name, "keyturn", len(accts), usage, check.verified,
                        note=note(check, safety,
                                  f"--concurrency {concurrency}; {outcome}; proved by {proofs}"),
                        baseline_of=f"keeper pool{KEEPER_POOL},ansible forks {FORKS}"))
        for f in info["failures"][:10]:
            notes.append(f"keyturn did not rotate {f['title']} ({f['target']}): {f['outcome']} — "
                         f"{f['reason']} (rotation {f['rotation_id']})")
        if check.unverified:
            notes.append(f"keyturn: not rotated, by role: {dict(roles(lab, check.unverified))}")
        if check.locked_accounts or safety.locked_users:
            locked = sorted(set(check.locked_accounts) | set(safety.locked_users))
            notes.append(f"keyturn: locked {locked[:10]}")

        if not baselines:
            return rows, notes
        env = {**home.env, "REQUESTS_CA_BUNDLE": lab.state.ca_cert}
        sample = accts[:keeper_limit] if keeper_limit else accts
        lab.reset()
        usage, check, safety, info = run_keeper(workdir, lab, sample, env)
        subset = f"first {len(sample)} devices; " if len(sample) < len(accts) else ""
        errors = "; ".join(f"{n} x {e}" for e, n in info["errors"].most_common(3))
        rows.append(Row(name, f"keeper pool{KEEPER_POOL}", len(sample), usage, check.verified,
                        note=note(check, safety, f"{subset}{usage.processes} processes, {info['ok']} exit 0"
                                  + (f" ({errors})" if errors else "")
                                  + "; TLS unverified (no SAN, requests cannot pin); admin login, cannot "
                                    "verify the local account")))
        if check.unverified:
            notes.append(f"keeper pool: not rotated, by role: {dict(roles(lab, check.unverified))}")

        if use_ansible:
            sample = accts[:ansible_limit] if ansible_limit else accts
            lab.reset()
            usage, check, safety, info = run_ansible_leg(workdir, lab, sample)
            subset = f"first {len(sample)} devices; " if len(sample) < len(accts) else ""
            fh = info["failed_hosts"]
            # paramiko 4+ implements neither diffie-hellman-group14-sha1 nor ssh-rsa: a legacy IOS XE
            # (reference §5) offers nothing else, so network_cli over paramiko cannot reach it.
            legacy = sum(1 for h in fh["hosts"]
                         if lab.state.device(h).profile.get("ssh_profile") == "ios-legacy")
            rows.append(Row(name, f"ansible forks {FORKS}", len(sample), usage, check.verified,
                            note=note(check, safety, f"{subset}exit {usage.returncode}, {fh['failed']} hosts "
                                      f"failed ({legacy} on the ios-legacy SSH algorithm set), "
                                      f"{fh['unreachable']} unreachable; admin login, cannot verify the "
                                      "local account")))
            if check.unverified:
                notes.append(f"ansible: not rotated, by role: {dict(roles(lab, check.unverified))}")
            notes.append("Ansible CPU counts ansible-playbook and its forks; persistent `ansible-connection` "
                         "daemons detach and are not counted (in Ansible's favour)")
        elif baselines:
            notes.append("Ansible leg not run (not installable here or --enterprise-ansible-limit 0)")
    return rows, notes

