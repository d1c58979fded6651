"""`keyturn demo`: the main job end to end, on the embedded default (SQLite vault + simulators).

What it does, printing every `keyturn` command it runs so a newcomer can repeat them by hand:

1. starts a simulator lab (`keyturn sim lab`) — 3 IOS XE devices, 1 Meraki organisation;
2. creates a fresh vault in a temporary `KEYTURN_HOME` (`keyturn init`);
3. imports the devices, admin credentials and users (`keyturn record import`), and pins the SSH
   device's host key and certificate (`keyturn device trust RECORD --yes`): keyturn sends no credential
   to an SSH server whose key the resource record does not trust;
4. attaches rotation profiles: IOS XE over RESTCONF (self-service and through the admin), IOS XE over
   SSH, the enable secret of the SSH device (its admin record then reads the enable secret from that
   record, so it never goes stale), Meraki auth users (with the simulator's login check as verifier),
   and one NOOP profile whose change is made by an example KeeperPAM-style post-rotation script,
   verified over RESTCONF;
5. rotates the enable secret of the SSH device first, then everything (`keyturn rotate --all`: one
   rotation per device at a time, the SSH users reading the current enable secret), one Meraki SSID's
   pre-shared key (read back from the Dashboard API) and keyturn's own API key, then proves every
   new secret against the simulators (the lab's login check; `enable` for the enable secret) and that
   the old one is refused;
6. turns one device TACACS+-first (`aaa authentication login default group tacacs+ local`, max-fail 3:
   its local users can no longer log in) and rotates its user again — `verify=auto` proves the new
   secret by the device's stored hash, and the lab's counters show keyturn caused no failed login;
7. shows the history of one record, verifies the audit chain, and stops the lab.

The lab's initial passwords are read from its state file (mode 0600) and imported; nothing secret
is printed or passed on a command line.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from keyturn.errors import KeyturnError
from keyturn.sim.client import IosXeEntry, LabState

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scripts"
# Wide enough for the summary tables when the output is piped (make, CI logs).
console = Console(highlight=False, width=None if sys.stdout.isatty() else 130)


@dataclass(frozen=True)
class Planned:
    """One account the demo rotates, and how the lab checks its login."""

    title: str
    kind: str                  # "iosxe", "enable" (the device's enable secret) or "meraki"
    where: str                 # device name or network id
    login: str
    initial: str
    target: str


class DemoError(KeyturnError):
    pass


class Demo:
    def __init__(self, workdir: Path, *, keep: bool) -> None:
        self.workdir = workdir
        self.keep = keep
        self.home = workdir / "home"
        self.state_file = workdir / "lab.json"
        self.env = {**os.environ, "KEYTURN_HOME": str(self.home)}
        self.env.setdefault("COLUMNS", str(max(console.width, 130)))
        self.env.pop("KEYTURN_DATABASE_URL", None)
        self.env.pop("KEYTURN_MASTER_KEY", None)
        self.env.pop("KEYTURN_PASSPHRASE", None)
        if os.geteuid() == 0 and "KEYTURN_SCRIPT_USER" not in os.environ:
            # As root, scripts run as `nobody` — which cannot reach this checkout's Python when it lives
            # under a 0700 home (as root's does). The demo keeps its example script as root and says so;
            # a real install gives scripts an interpreter `nobody` can run (see the README).
            self.env["KEYTURN_SCRIPT_USER"] = "root"
            self.script_user_note = True
        else:
            self.script_user_note = False
        self.lab: subprocess.Popen[bytes] | None = None
        self.keyturn = [sys.executable, "-m", "keyturn.cli.main"]

    # ---- helpers ---------------------------------------------------------------------------------
    def run(self, *args: str, check: bool = True, show: bool = True, quiet: bool = False) -> str:
        shown = "keyturn " + " ".join(shlex.quote(a) for a in args)
        if show:
            console.print(f"[bold cyan]$ {shown}[/]")
        proc = subprocess.run([*self.keyturn, *args], env=self.env, capture_output=True, text=True,
                              check=False)
        if proc.stdout and not quiet:
            console.print(proc.stdout.rstrip(), markup=False)
        if proc.stderr.strip() and (proc.returncode != 0 or not quiet):
            console.print(proc.stderr.rstrip(), style="yellow", markup=False)
        if check and proc.returncode != 0:
            raise DemoError(f"`{shown}` exited {proc.returncode}")
        return proc.stdout

    def start_lab(self) -> LabState:
        args = ["sim", "lab", "--iosxe", "3", "--meraki-orgs", "1", "--users-per-network", "3",
                "--users-per-device", "2", "--ssids-per-network", "1", "--seed", "2026",
                "--state-file", str(self.state_file)]
        console.print(f"[bold cyan]$ keyturn {' '.join(args)} &[/]")
        log = (self.workdir / "lab.log").open("wb")
        self.lab = subprocess.Popen([*self.keyturn, *args], env=self.env, stdout=log, stderr=log,
                                    start_new_session=True)
        deadline = time.monotonic() + 60
        while not self.state_file.exists():
            if self.lab.poll() is not None:
                raise DemoError(f"the simulator lab exited ({self.lab.returncode}); see {log.name}")
            if time.monotonic() > deadline:
                raise DemoError("the simulator lab did not start within 60 s")
            time.sleep(0.1)
        state = LabState.load(self.state_file)
        for dev in state.iosxe:
            console.print(f"  {dev.name}: RESTCONF https://{dev.host}:{dev.restconf_port}  "
                          f"SSH {dev.host}:{dev.ssh_port}  users {', '.join(u.username for u in dev.users)}")
        if state.meraki:
            for org in state.meraki.orgs:
                for net in org.networks:
                    console.print(f"  Meraki org {org.name} network {net.id}: "
                                  f"{len(net.users)} auth users at {state.meraki.base_url}")
        return state

    def stop_lab(self) -> None:
        if self.lab is None or self.lab.poll() is not None:
            return
        console.print("[bold cyan]$ kill -TERM <lab>[/]")
        os.killpg(self.lab.pid, signal.SIGTERM)
        try:
            self.lab.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.lab.pid, signal.SIGKILL)
            self.lab.wait()

    # ---- the records -------------------------------------------------------------------------------
    def write_import(self, state: LabState) -> tuple[Path, list[Planned]]:
        planned: list[Planned] = []
        targets = ["iosxe-restconf", "iosxe-ssh", "noop"]
        for dev, target in zip(state.iosxe, targets, strict=False):
            if target == "iosxe-ssh":
                planned.append(Planned(_enable_title(dev.name), "enable", dev.name, "enable",
                                       dev.enable_secret, "iosxe-enable-secret"))
            planned += [Planned(f"{u.username} @ {dev.name}", "iosxe", dev.name, u.username, u.password,
                                target) for u in dev.users]
        if state.meraki:
            net = state.meraki.orgs[0].networks[0]
            planned += [Planned(u.email, "meraki", net.id, u.email, u.password, "meraki-auth-user")
                        for u in net.users]
        ssh = [dev.name for dev, target in zip(state.iosxe, targets, strict=False) if target == "iosxe-ssh"]
        path = write_records_file(self.workdir / "lab-records.json",
                                  lab_records(state, devices=len(targets), networks=1, enable_records=ssh))
        return path, planned

    def set_profiles(self, state: LabState, planned: Sequence[Planned]) -> None:
        for p in planned:
            if p.kind == "meraki":
                net = state.meraki.orgs[0].networks[0] if state.meraki else None
                assert net is not None
                self.run("rotation", "set", p.title, "--target", p.target, "--resource",
                         f"Meraki {net.name}", "--admin", "Meraki API key")
            elif p.kind == "enable":
                self.run("rotation", "set", p.title, "--target", p.target, "--resource", p.where,
                         "--admin", f"{p.where} admin")
            elif p.target == "noop":
                if self.script_user_note:
                    console.print("  (running as root: the demo sets KEYTURN_SCRIPT_USER=root so the example "
                                  "script can use this checkout's Python; keyturn warns about it)")
                    self.script_user_note = False
                self.run("rotation", "set", p.title, "--target", "noop", "--verify-with", "iosxe-restconf",
                         "--resource", p.where, "--admin", f"{p.where} admin", "--policy", "24,2,2,2,2")
                script = EXAMPLES / "iosxe_restconf_update.py"
                self.run("script", "attach", p.title, str(script), "--prefix", sys.executable,
                         "--with", f"{p.where} admin", "--env", f"REQUESTS_CA_BUNDLE={state.ca_cert}",
                         "--timeout", "60")
            elif p.login == state.device(p.where).users[0].username and p.target == "iosxe-restconf":
                # self-service: the user changes its own secret with its current one
                self.run("rotation", "set", p.title, "--target", p.target, "--resource", p.where,
                         "--policy", "32,4,4,4,4")
            else:
                self.run("rotation", "set", p.title, "--target", p.target, "--resource", p.where,
                         "--admin", f"{p.where} admin")

    def trust(self, planned: Sequence[Planned]) -> None:
        """Pin the host key (and certificate) of every device rotated over SSH: without it keyturn
        refuses the SSH server before sending a credential."""
        ssh = sorted({p.where for p in planned if p.target in ("iosxe-ssh", "iosxe-enable-secret")})
        for device in ssh:
            console.rule(f"3b. trust {device}: read its SSH host key and TLS certificate (no credential "
                         "sent) and pin them on its record")
            console.print("  (a person compares the fingerprints with the device and answers the question; "
                          "the demo passes --yes)")
            self.run("device", "trust", device, "--yes")

    # ---- proof -------------------------------------------------------------------------------------
    def prove(self, state: LabState, planned: Sequence[Planned]) -> bool:
        from keyturn.config import load_settings
        from keyturn.vault import Vault

        table = Table(title="every account checked against the simulators (a real login)")
        for col in ("account", "target", "new secret logs in", "old secret refused", "changed"):
            table.add_column(col)
        all_ok = True
        vault = Vault.open(load_settings(home=self.home))
        try:
            with httpx.Client(timeout=30) as client:
                for p in planned:
                    uid = vault.get(p.title).uid
                    current = vault.reveal(uid, actor="demo").reveal()
                    if p.kind == "enable":
                        new_ok, old_refused = _enable_checks(vault, p, current)
                    else:
                        new_ok = self._login(client, state, p, current)
                        old_refused = not self._login(client, state, p, p.initial)
                    changed = current != p.initial
                    ok = new_ok and old_refused and changed
                    all_ok &= ok
                    table.add_row(p.title, p.target, _mark(new_ok), _mark(old_refused), _mark(changed))
        finally:
            vault.close()
        console.print(table)
        return all_ok

    def tacacs_first(self, state: LabState, planned: Sequence[Planned]) -> bool:
        """A device whose logins go to TACACS+ first: the rotated local user cannot log in at all, so
        `verify=auto` proves the new secret by the device's stored hash — and causes no failed login."""
        p = next(p for p in planned if p.target == "iosxe-restconf"
                 and p.login != state.device(p.where).users[0].username)   # the one with an admin
        switches = {"aaa": "tacacs-first", "max_fail": 3}
        console.rule(f"7. {p.where} now authenticates logins with TACACS+ first (aaa authentication login "
                     "default group tacacs+ local, max-fail 3)")
        console.print(f"  (lab control API) POST /devices/{p.where}/profile {json.dumps(switches)}")
        with httpx.Client(timeout=30) as client:
            client.post(f"{state.control_url}/devices/{p.where}/profile", json=switches).raise_for_status()
            before = client.get(f"{state.control_url}/stats").json()["iosxe"][p.where]["failed_logins"]
            self.run("rotate", p.title, check=False)
            rows = json.loads(self.run("history", p.title, "--json", show=False, quiet=True))["rotations"]
            reason = rows[0]["reason"] if rows else "(no rotation)"
            console.print(f"  outcome: {rows[0]['outcome'] if rows else '-'} — {reason}")
            from keyturn.config import load_settings
            from keyturn.vault import Vault

            vault = Vault.open(load_settings(home=self.home))
            try:
                current = vault.reveal(vault.get(p.title).uid, actor="demo").reveal()
            finally:
                vault.close()
            stored = self._login(client, state, p, current)
            after = client.get(f"{state.control_url}/stats").json()["iosxe"][p.where]["failed_logins"]
        hashed = "stored hash" in reason
        console.print(f"  proved by the stored hash: {_mark(hashed)}   the device stores the new secret: "
                      f"{_mark(stored)}   failed logins keyturn caused: {after - before}")
        return hashed and stored and after == before

    def ssid_psk(self, state: LabState) -> bool:
        """One SSID's pre-shared key (issue 19): the SSID is read first (PSK mode), the new PSK written,
        then read back; the proof asks the simulator's API for the SSID as any client would."""
        if not state.meraki:
            return True
        net = state.meraki.orgs[0].networks[0]
        psk_ssids = [s for s in net.ssids if s.auth_mode == "psk"]
        if not psk_ssids:
            return True
        ssid = psk_ssids[0]
        title = _ssid_title(ssid.name, net.name)
        console.rule(f"5c. the pre-shared key of SSID {ssid.number} ({ssid.name!r}): set, then read back")
        self.run("rotation", "set", title, "--target", "meraki-ssid-psk", "--resource", f"Meraki {net.name}",
                 "--admin", "Meraki API key", "--option", f"ssid={ssid.number}", "--policy", "20,2,2,2,0")
        self.run("rotate", title, check=False)
        from keyturn.config import load_settings
        from keyturn.vault import Vault

        vault = Vault.open(load_settings(home=self.home))
        try:
            current = vault.reveal(vault.get(title).uid, actor="demo").reveal()
        finally:
            vault.close()
        url = f"{state.meraki.base_url}/networks/{net.id}/wireless/ssids/{ssid.number}"
        with httpx.Client(timeout=30, trust_env=False) as client:
            on_air = client.get(url, headers={"Authorization": f"Bearer {state.meraki.api_key}"}).json()
        same, changed = on_air.get("psk") == current, current != ssid.psk
        console.print(f"  the SSID has the vault's PSK: {_mark(same)}   changed: {_mark(changed)}")
        return same and changed

    def api_key(self, state: LabState) -> bool:
        """keyturn's own Meraki API key (issue 19): Meraki generates the new key, keyturn verifies it,
        switches every profile that uses the record in one commit and revokes the old one. Rotated
        after the auth users, so none of their rotations holds the old key when it is revoked."""
        if not state.meraki:
            return True
        net = state.meraki.orgs[0].networks[0]
        console.rule("5d. keyturn's own Meraki API key: generated by Meraki, verified, switched, the old "
                     "one revoked")
        self.run("rotation", "set", "Meraki API key", "--target", "meraki-api-key", "--resource",
                 f"Meraki {net.name}")
        self.run("rotate", "Meraki API key", check=False)
        from keyturn.config import load_settings
        from keyturn.vault import Vault

        vault = Vault.open(load_settings(home=self.home))
        try:
            current = vault.reveal(vault.get("Meraki API key").uid, actor="demo").reveal()
        finally:
            vault.close()
        url = f"{state.meraki.base_url}/administered/identities/me"
        with httpx.Client(timeout=30, trust_env=False) as client:
            new_ok = client.get(url, headers={"Authorization": f"Bearer {current}"}).status_code == 200
            old_gone = client.get(url, headers={"Authorization": f"Bearer {state.meraki.api_key}"}
                                  ).status_code == 401
        console.print(f"  the vault's key authenticates: {_mark(new_ok)}   the old key is revoked: "
                      f"{_mark(old_gone)}   changed: {_mark(current != state.meraki.api_key)}")
        return new_ok and old_gone and current != state.meraki.api_key

    @staticmethod
    def _login(client: httpx.Client, state: LabState, p: Planned, password: str) -> bool:
        body = ({"kind": "iosxe", "device": p.where, "username": p.login, "password": password}
                if p.kind == "iosxe" else
                {"kind": "meraki", "network": p.where, "email": p.login, "password": password})
        resp = client.post(f"{state.control_url}/verify", json=body)
        resp.raise_for_status()
        return bool(resp.json()["ok"])

    # ---- the whole job -----------------------------------------------------------------------------
    def main(self) -> int:
        started = time.monotonic()
        try:
            console.rule("1. a simulator lab: 3 Cisco IOS XE devices, 1 Meraki organisation")
            state = self.start_lab()
            console.rule("2. a fresh encrypted vault (SQLite, key file 0600)")
            console.print(f"  KEYTURN_HOME={self.home}")
            self.run("init")
            console.rule("3. devices, admin credentials and users, imported in one transaction")
            path, planned = self.write_import(state)
            self.run("record", "import", str(path), "--format", "keyturn")
            path.unlink()
            self.run("record", "list")
            self.trust(planned)
            console.rule("4. rotation profiles (checked now: records, target, password policy)")
            self.set_profiles(state, planned)
            enable = next((p for p in planned if p.kind == "enable"), None)
            if enable is not None:
                console.rule(f"5a. the enable secret of {enable.where} first; the admin record of its SSH "
                             "users reads it by reference")
                self.run("record", "show", f"{enable.where} admin")
                self.run("rotate", enable.title, check=False)
            console.rule("5b. rotate everything (one rotation per device at a time)")
            self.run("rotate", "--all", "--concurrency", "16", check=False)
            psk_ok = self.ssid_psk(state)
            key_ok = self.api_key(state) and psk_ok
            console.rule("6. proof")
            ok = self.prove(state, planned) and key_ok
            ok = self.tacacs_first(state, planned) and ok
            console.rule("8. history and audit")
            self.run("history", planned[0].title)
            self.run("audit", "verify")
        finally:
            self.stop_lab()
        took = time.monotonic() - started
        if ok:
            console.print(f"[bold green]demo finished in {took:.1f} s: every account rotated and "
                          "verified on its device.[/]")
            return 0
        console.print(f"[bold red]demo finished in {took:.1f} s: some account was not rotated; "
                      "see the table above.[/]")
        return 1


def _device_records(dev: IosXeEntry, ca: str, *, enable_record: bool) -> list[dict[str, Any]]:
    # A lab run without SSH (`sim lab --no-ssh`) has no SSH port: no field, rather than the text "None"
    # that `device trust` would refuse as a port.
    ssh = [{"type": "text", "label": "ssh_port", "value": [str(dev.ssh_port)]}] if dev.ssh_port else []
    device = {"type": "pamNetworkDevice", "title": dev.name,
              "fields": [{"type": "host", "value": [f"{dev.host}:{dev.restconf_port}"]}],
              "custom": [*ssh, {"type": "text", "label": "ca_bundle", "value": [ca]}]}
    admin: dict[str, Any] = {"type": "login", "title": f"{dev.name} admin",
                             "fields": [{"type": "login", "value": [dev.admin.username]},
                                        {"type": "password", "value": [dev.admin.password]}]}
    users = [{"type": "pamUser", "title": f"{u.username} @ {dev.name}",
              "fields": [{"type": "login", "value": [u.username]},
                         {"type": "password", "value": [u.password]}]} for u in dev.users]
    if not enable_record:
        # A copy of the enable secret on the admin record (fine while nobody rotates it).
        admin["custom"] = [{"type": "secret", "label": "enable_secret", "value": [dev.enable_secret]}]
        return [device, admin, *users]
    # The enable secret in a record of its own (rotated by iosxe-enable-secret); `rotation set`
    # makes the admin record reference it (custom field enable_secret_record).
    enable = {"type": "pamUser", "title": _enable_title(dev.name),
              "fields": [{"type": "login", "value": ["enable"]},
                         {"type": "password", "value": [dev.enable_secret]}]}
    return [device, admin, enable, *users]


def lab_records(state: LabState, *, devices: int | None = None, networks: int | None = None,
                enable_records: Collection[str] = ()) -> list[dict[str, Any]]:
    """The records that onboard a lab, in `keyturn record import --format keyturn` form: per IOS XE
    device (the first `devices`; all by default) the device `DEV` (RESTCONF `host`, custom `ssh_port`
    and `ca_bundle` = the lab CA), its admin `DEV admin` (login, password and a copy of the enable
    secret, or with the device in `enable_records` a record `enable secret @ DEV` of its own) and one
    `pamUser` `USER @ DEV` per user; per Meraki network (the first `networks`) the network `Meraki NAME`
    (network_id, org_id, base_url, verify_url = the lab's login check), the lab's API key `Meraki API
    key` once, one `pamUser` per auth user titled by its e-mail and one `SSID NAME @ NETWORK` per PSK
    SSID (login the SSID's name, password its PSK). Initial passwords included: the
    file is as secret as the lab's state file. No rotation profiles: `keyturn rotation set` adds them."""
    records: list[dict[str, Any]] = []
    for dev in state.iosxe[:devices]:
        records += _device_records(dev, state.ca_cert, enable_record=dev.name in enable_records)
    if state.meraki:
        nets = [(org, net) for org in state.meraki.orgs for net in org.networks][:networks]
        for org, net in nets:
            records.append({"type": "pamMerakiNetwork", "title": f"Meraki {net.name}",
                            "custom": [{"type": "text", "label": "network_id", "value": [net.id]},
                                       {"type": "text", "label": "org_id", "value": [org.id]},
                                       {"type": "text", "label": "base_url",
                                        "value": [state.meraki.base_url]},
                                       {"type": "text", "label": "verify_url",
                                        "value": [f"{state.control_url}/verify"]}]})
        if nets:
            records.append({"type": "login", "title": "Meraki API key",
                            "fields": [{"type": "login", "value": ["dashboard-api"]},
                                       {"type": "password", "value": [state.meraki.api_key]}]})
        for _org, net in nets:
            records += [{"type": "pamUser", "title": u.email,
                         "fields": [{"type": "login", "value": [u.email]},
                                    {"type": "password", "value": [u.password]}]} for u in net.users]
            records += [{"type": "pamUser", "title": _ssid_title(w.name, net.name),
                         "fields": [{"type": "login", "value": [w.name]},
                                    {"type": "password", "value": [w.psk]}]}
                        for w in net.ssids if w.auth_mode == "psk" and w.psk]
    return records


def _ssid_title(ssid: str, network: str) -> str:
    """The record of a PSK SSID of a lab network (`lab_records`, the demo)."""
    return f"SSID {ssid} @ {network}"


def write_records_file(path: Path, records: list[dict[str, Any]]) -> Path:
    """Write `{"records": [...]}` atomically with mode 0600 (it holds the lab's initial passwords)."""
    path = path.resolve()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"records": records}, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)
    return path


def _mark(ok: bool) -> str:
    return "[green]yes[/]" if ok else "[red]NO[/]"


def _enable_title(device: str) -> str:
    return f"enable secret @ {device}"


def _enable_checks(vault: Any, p: Planned, current: str) -> tuple[bool, bool]:
    """(new accepted, old refused) by `enable` in a real SSH session as the admin — what the
    `iosxe-enable-secret` target's verify does (the lab's login check covers users only)."""
    import asyncio

    from keyturn.engine.accounts import resolve_account
    from keyturn.engine.profile import load_profile
    from keyturn.secret import Secret
    from keyturn.targets.base import Verdict
    from keyturn.targets.registry import create_target

    record = vault.get(p.title)
    account = resolve_account(vault, record, load_profile(record)).account

    async def both() -> tuple[bool, bool]:
        target = create_target(p.target)
        try:
            new = await target.verify(account, Secret(current))
            old = await target.verify(account, Secret(p.initial))
        finally:
            await target.aclose()
        return new is Verdict.OK, old is Verdict.REJECTED

    return asyncio.run(both())


def run_demo(*, keep: bool = False) -> int:
    """Run the demo in a temporary directory (kept, and its path printed, with `keep=True`)."""
    workdir = Path(tempfile.mkdtemp(prefix="keyturn-demo-"))
    # A terminated demo (Ctrl-C, `timeout`, CI cancel) must still stop its lab: turn SIGTERM into an
    # exit so the `finally` blocks run (the lab runs in its own session and would outlive us).
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))
    try:
        return Demo(workdir, keep=keep).main()
    except KeyturnError as exc:
        console.print(f"[bold red]demo failed: {exc}[/]")
        return 1
    finally:
        if keep:
            console.print(f"demo files kept in {workdir}")
        else:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
