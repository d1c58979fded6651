"""The chaos run: faults from every simulator switch, kill -9 at random moments, then prove nothing is lost.

    run = Chaos(Options(rotations=2000, kills=20, seed=7), workdir)
    summary = run.main()          # dict; summary["passed"] is the verdict

1. A mixed lab: IOS XE devices rotated over RESTCONF and over SSH (alternating per device, two users
   each, all through the device's admin credential) and Meraki organisations (auth users, with the
   lab's login check as verifier). A fresh vault holds them (IOS XE records from `keyturn.sim.onboard`).
   `profile="enterprise"` makes the IOS XE devices the `keyturn sim lab --profile enterprise` mix
   (TACACS+ first with max-fail and block-for, TACACS+ down, legacy type 5, logins landing in `>`,
   self-signed IOS certificates; realistic latency unless `latency="0"`).
2. Rounds: before each round the supervisor sets random fault switches on a random share of devices
   and organisations (5xx, timeouts, resets, drop-after-apply, refused passwords, 429 storms,
   302-on-write, latency, down); while the round runs, a background thread reboots devices (unsaved
   changes are lost) and changes passwords out of band (drift). Each round is one
   `keyturn rotate --all` process; in K of the rounds it is SIGKILLed at a random moment, then
   `keyturn recover` runs, and the next round resumes. Rounds continue until the journal holds N
   rotations.
3. The end: clear all faults, `keyturn recover`, reconcile drift, check every account.

Drift rule: an out-of-band change makes the vault's secret wrong by design — that is not a loss. Every
account whose vault secret fails the final check and that was drifted during the run gets one
`keyturn rotate` (its profile changes it through the admin credential, which never needs the lost
password); it counts as *lost* only if its vault secret still fails after that. Accounts never
drifted get no second chance. A *lockout* is an account no secret the vault holds (any version) logs
in to, a device admin credential that no longer logs in, a user the device lists as locked at the end
(`locked_users` in the lab's `/stats`: max-fail), an account the device refuses because it is locked
(`/verify` says `locked`), or a lock event during the run (`lockouts` in `/stats`: a lock a later reboot
cleared is still one keyturn caused). Nothing but keyturn logs in to the lab during a run (the
supervisor checks through `/verify`, which is no login), so every failed login in `/stats` is
keyturn's: the summary reports them per device.
"""

from __future__ import annotations

import json
import random
import sqlite3
import string
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import KEYTURN, Acct, Home, Lab, run_measured

IOSXE_FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("5xx", {"error_rate": 0.3}),
    ("timeout", {"timeout_rate": 0.15}),
    ("reset", {"reset_rate": 0.3}),
    ("drop-after-apply", {"drop_after_apply": 1}),
    ("refuse-password", {"refuse_passwords": 1}),
    ("latency", {"latency": 0.3}),
    ("down", {"down": True}),
]
MERAKI_FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("5xx", {"error_rate": 0.2}),
    ("timeout", {"timeout_rate": 0.05}),
    ("reset", {"reset_rate": 0.2}),
    ("drop-after-apply", {"drop_after_apply": 2}),
    ("refuse-password", {"refuse_passwords": 2}),
    ("429-storm", {"rate_limit_storm": 15, "retry_after": 1}),
    ("302-on-write", {"redirect_on_write": True}),
    ("latency", {"latency": 0.2}),
]
_DRIFT_ALPHABET = string.ascii_letters + string.digits + "!#%&*+-=_"


@dataclass
class Options:
    rotations: int = 2000
    kills: int = 20
    seed: int = 1
    restconf_devices: int = 10
    ssh_devices: int = 10
    users_per_device: int = 2
    meraki_orgs: int = 2
    users_per_org: int = 20
    concurrency: int = 16
    per_device: int = 4              # Meraki networks hold many users; IOS XE devices have two each
    fault_share: float = 0.25        # share of devices/orgs given a fault each round
    events_per_round: int = 4        # reboots + drifts during a round
    timeouts: bool = True            # include the "accept, never answer" switch
    profile: str = "default"         # lab profile: "default" | "enterprise"
    latency: str | None = None       # enterprise device latency: None = the profile's ("realistic"), "0"
    workers: int = 0                 # > 0: rotations run on this many `keyturn worker`s (chaos/workers.py)
    worker_concurrency: int = 8      # rotations in flight per worker
    redis_db: int = 15               # broker + shared limits of the workers: a Redis database of its own
    visibility_timeout: float = 10.0  # KEYTURN_BROKER_VISIBILITY_TIMEOUT for the workers


@dataclass
class Tally:
    faults: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    rounds: int = 0
    reboots: int = 0
    drifts: int = 0
    drifted: set[str] = field(default_factory=set)
    round_seconds: list[float] = field(default_factory=list)


class Chaos:
    def __init__(self, opts: Options, workdir: Path, *, log: Any = print) -> None:
        self.o = opts
        self.workdir = workdir
        self.rng = random.Random(opts.seed)  # noqa: S311 - a seeded run is reproducible; nothing secret
        self.log = log
        self.tally = Tally()
        self.lab: Lab | None = None
        self.home: Home | None = None
        self.accts: list[Acct] = []

    # ---- helpers -------------------------------------------------------------------------------------
    def keyturn(self, *args: str, kill_after: float | None = None) -> int:
        assert self.home is not None
        n = self.tally.rounds
        usage = run_measured([*KEYTURN, *args], env=self.home.env, kill_after=kill_after,
                             stdout=self.workdir / f"{args[0]}-{n}.out",
                             stderr=self.workdir / f"{args[0]}-{n}.err")
        return usage.returncode

    def journal(self) -> list[tuple[str, str | None, str]]:
        """(state, outcome, reason) of every rotation row (read-only SQLite access, no keyturn code)."""
        assert self.home is not None
        conn = sqlite3.connect(f"file:{self.home.path / 'keyturn.db'}?mode=ro", uri=True, timeout=30)
        try:
            return list(conn.execute("SELECT state, outcome, reason FROM rotations"))
        finally:
            conn.close()

    def _devices(self) -> list[str]:
        assert self.lab is not None and self.lab.state is not None
        return [d.name for d in self.lab.state.iosxe]

    def _orgs(self) -> list[str]:
        assert self.lab is not None and self.lab.state is not None
        return [o.id for o in self.lab.state.meraki.orgs] if self.lab.state.meraki else []

    # ---- faults --------------------------------------------------------------------------------------
    def arm_faults(self) -> None:
        assert self.lab is not None
        for kind, idents, catalog in (("iosxe", self._devices(), IOSXE_FAULTS),
                                      ("meraki", self._orgs(), MERAKI_FAULTS)):
            usable = [c for c in catalog if self.o.timeouts or c[0] != "timeout"]
            for ident in idents:
                if self.rng.random() >= self.o.fault_share:
                    continue
                label, switches = self.rng.choice(usable)
                key = "device" if kind == "iosxe" else "org"
                seeded = {**switches, "seed": self.rng.randrange(1 << 30)}
                self.lab.call("POST", "/faults", {"kind": kind, key: ident, "faults": seeded})
                self.tally.faults[f"{kind} {label}"] += 1

    def event(self) -> None:
        """One mid-round event: reboot a device (unsaved changes lost) or drift an account."""
        assert self.lab is not None
        if self.rng.random() < 0.5:
            name = self.rng.choice(self._devices())
            self.lab.call("POST", "/reboot", {"device": name})
            self.tally.reboots += 1
            self.tally.faults["iosxe reboot"] += 1
            return
        acct = self.rng.choice(self.accts)
        password = "".join(self.rng.choice(_DRIFT_ALPHABET) for _ in range(20))
        if acct.kind == "iosxe":
            body = {"kind": "iosxe", "device": acct.where, "username": acct.login, "password": password}
        else:
            body = {"kind": "meraki", "network": acct.where, "email": acct.login, "password": password}
        self.lab.call("POST", "/drift", body)
        self.tally.drifts += 1
        self.tally.drifted.add(acct.title)
        self.tally.faults[f"{acct.kind} drift"] += 1

    def events_during(self, stop: threading.Event, horizon: float) -> None:
        times = sorted(self.rng.uniform(0.2, horizon) for _ in range(self.o.events_per_round))
        began = time.monotonic()
        for at in times:
            if stop.wait(max(0.0, began + at - time.monotonic())):
                return
            try:
                self.event()
            except RuntimeError as exc:   # a control API refusal must not end the run
                self.log(f"  event skipped: {exc}")

    # ---- the run -------------------------------------------------------------------------------------
    def setup(self) -> None:
        o = self.o
        devices = o.restconf_devices + o.ssh_devices
        flags = ["--latency", o.latency] if o.latency is not None else []
        self.lab = Lab(self.workdir, iosxe=devices, users_per_device=o.users_per_device,
                       meraki_orgs=o.meraki_orgs, users_per_network=o.users_per_org, seed=o.seed,
                       profile=o.profile, flags=flags)
        state = self.lab.start()
        # alternate targets so both front-ends of the simulator are exercised in one lab
        targets = ["iosxe-restconf", "iosxe-ssh"] if o.ssh_devices and o.restconf_devices else \
            (["iosxe-ssh"] if o.ssh_devices else ["iosxe-restconf"])
        self.home = Home(self.workdir, "home")
        self.accts = self.home.setup(state, iosxe_targets=targets)

    def rounds(self) -> None:
        o = self.o
        per_round = max(1, len(self.accts))
        planned = max(1, -(-o.rotations // per_round))
        kill_rounds = Counter(self.rng.randrange(planned + o.kills) for _ in range(o.kills))
        estimate = 8.0
        while len(self.journal()) < o.rotations or self.tally.kills < o.kills:
            assert self.lab is not None
            n = self.tally.rounds
            self.arm_faults()
            kill_at = None
            owed = len(self.journal()) >= o.rotations and self.tally.kills < o.kills
            if kill_rounds.get(n, 0) > 0 or owed:
                kill_at = self.rng.uniform(0.5, max(1.0, estimate * 0.9))
            stop = threading.Event()
            events = threading.Thread(target=self.events_during, args=(stop, max(1.0, estimate * 0.8)),
                                      daemon=True)
            events.start()
            began = time.monotonic()
            rc = self.keyturn("rotate", "--all", "--concurrency", str(o.concurrency), "--per-device",
                              str(o.per_device), "--json",
                              kill_after=kill_at)
            took = time.monotonic() - began
            stop.set()
            events.join()
            killed = kill_at is not None and rc == -9
            self.tally.rounds += 1
            if killed:
                self.tally.kills += 1
                rec = self.keyturn("recover", "--json")
                self.log(f"round {n}: kill -9 after {took:.1f} s; recover exit {rec}")
            else:
                self.tally.round_seconds.append(took)
                estimate = sum(self.tally.round_seconds[-5:]) / len(self.tally.round_seconds[-5:])
                self.log(f"round {n}: {took:.1f} s, exit {rc}; journal {len(self.journal())} rotations")
            self.lab.reset(faults_only=True)

    def final_check(self) -> dict[str, Any]:
        assert self.lab is not None and self.home is not None
        self.lab.reset(faults_only=True)
        rec = self.keyturn("recover", "--json")
        current = self.home.current_secrets(self.accts)
        failing = [a for a in self.accts if not self.lab.verify(a, current[a.title])]
        reconcile = [a for a in failing if a.title in self.tally.drifted]
        if reconcile:
            self.keyturn("rotate", *[self.home.uids[a.title] for a in reconcile], "--json")
            current = self.home.current_secrets(self.accts)
        lost = [a for a in self.accts if not self.lab.verify(a, current[a.title])]
        lockouts = [a.title for a in lost
                    if not any(self.lab.verify(a, value) for _, _, value in self.home.all_versions(a))]
        admins = self._admin_lockouts()
        device = self._device_lockouts(current)
        return {"recover_exit": rec, "failing_before_reconcile": len(failing), "reconciled": len(reconcile),
                "lost": [a.title for a in lost], "lockouts": lockouts + admins + device["lockouts"],
                **{k: v for k, v in device.items() if k != "lockouts"}}

    def _device_lockouts(self, current: dict[str, str]) -> dict[str, Any]:
        """Lockouts the devices report, and the failed logins keyturn caused on each (`/stats`)."""
        assert self.lab is not None and self.lab.state is not None
        stats = self.lab.stats()["iosxe"]
        by_device = {name: int(d.get("failed_logins", 0)) for name, d in stats.items()}
        by_user: Counter[str] = Counter()
        by_role: Counter[str] = Counter()
        for name, d in stats.items():
            by_user.update({str(u): int(n) for u, n in (d.get("failed_logins_by_user") or {}).items()})
            if by_device[name]:
                by_role[str(self.lab.state.device(name).profile.get("role", "default"))] += by_device[name]
        out = [f"{name}:{user} (locked on the device)" for name, d in sorted(stats.items())
               for user in d.get("locked_users") or []]
        for a in self.accts:
            if a.kind != "iosxe":
                continue
            body = {"kind": "iosxe", "device": a.where, "username": a.login, "password": current[a.title]}
            label = f"{a.where}:{a.login} (locked on the device)"
            if self.lab.call("POST", "/verify", body).get("locked") and label not in out:
                out.append(label)
        events = {name: int(d.get("lockouts", 0)) for name, d in stats.items() if d.get("lockouts")}
        out += [f"{name}: {n} lock event(s) during the run" for name, n in sorted(events.items())]
        return {"lockouts": out,
                "failed_logins": sum(by_device.values()),
                "failed_logins_by_device": {k: v for k, v in sorted(by_device.items()) if v},
                "failed_logins_by_user": dict(by_user.most_common()),
                "failed_logins_by_role": dict(by_role.most_common()),
                "devices": len(stats),
                "lock_events": sum(events.values()),
                "quiet_mode_entries": sum(int(d.get("quiet_mode_entries", 0)) for d in stats.values())}

    def _admin_lockouts(self) -> list[str]:
        assert self.lab is not None and self.lab.state is not None and self.home is not None
        vault = self.home.open_vault()
        try:
            out = []
            for dev in self.lab.state.iosxe:
                value = vault.secret(self.home.uids[f"{dev.name} admin"])
                pw = value.reveal() if value is not None else ""
                body = {"kind": "iosxe", "device": dev.name, "username": dev.admin.username, "password": pw}
                if not self.lab.call("POST", "/verify", body)["ok"]:
                    out.append(f"{dev.name} admin")
            return out
        finally:
            vault.close()

    def summary(self, check: dict[str, Any], took: float) -> dict[str, Any]:
        rows = self.journal()
        outcomes = Counter((outcome or state) for state, outcome, _ in rows)
        committed = sum(outcomes[k] for k in ("rotated", "rotated_unverifiable", "rotated_script_errors"))
        reasons = Counter(_reason(reason) for state, outcome, reason in rows if outcome == "failed")
        return {
            "attempted": len(rows), "committed": committed, "rolled_back": outcomes["rolled_back"],
            "failed": outcomes["failed"], "failed_reasons": dict(reasons.most_common()),
            "open": {k: outcomes[k] for k in ("running", "unverified", "needs_attention") if outcomes[k]},
            "outcomes": dict(outcomes), "kills": self.tally.kills, "rounds": self.tally.rounds,
            "accounts": len(self.accts), "faults": dict(self.tally.faults), "reboots": self.tally.reboots,
            "drifts": self.tally.drifts, "drifted_accounts": len(self.tally.drifted),
            "reconciled": check["reconciled"], "lost": len(check["lost"]), "lost_accounts": check["lost"],
            "lockouts": len(check["lockouts"]), "lockout_accounts": check["lockouts"],
            "profile": self.o.profile, "devices": check["devices"], "failed_logins": check["failed_logins"],
            "failed_logins_by_device": check["failed_logins_by_device"],
            "failed_logins_by_user": check["failed_logins_by_user"],
            "failed_logins_by_role": check["failed_logins_by_role"], "lock_events": check["lock_events"],
            "quiet_mode_entries": check["quiet_mode_entries"],
            "seconds": round(took, 1),
            "passed": not check["lost"] and not check["lockouts"] and self.tally.kills >= self.o.kills,
        }

    def main(self) -> dict[str, Any]:
        began = time.monotonic()
        try:
            self.setup()
            self.rounds()
            check = self.final_check()
            return self.summary(check, time.monotonic() - began)
        finally:
            if self.lab is not None:
                self.lab.stop()


def _reason(reason: str) -> str:
    """Group failure reasons: drop ids, numbers and quoted names so equal causes count together."""
    import re

    text = re.sub(r"\b[0-9a-f]{12,}\b", "ID", reason or "?")
    text = re.sub(r"127\.0\.0\.1:\d+", "HOST", text)
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'X'", text)
    text = re.sub(r"\d+(\.\d+)?", "N", text)
    return text[:120]


def dump(summary: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
