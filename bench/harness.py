"""What every benchmark (and the chaos run) shares: a lab subprocess, a throw-away vault, measuring.

* `Lab` starts `keyturn sim lab ... --state-file F` in its own process group, waits for the state
  file, talks to the control API synchronously (verify, reset, faults, stats) and stops it with SIGTERM.
* `Home` is a fresh `KEYTURN_HOME` (SQLite vault + key file) in a temporary directory: `keyturn init`,
  the lab's IOS XE devices onboarded with `keyturn.sim.onboard` (records and profiles through the
  Python API, trust per device profile), Meraki users through `keyturn record import` with profiles
  set through the Python API (one process instead of thousands of `keyturn rotation set` calls;
  setup is not measured).
* `run_measured` runs one child process and returns its wall time, CPU seconds and peak RSS from
  `os.wait4` — the kernel's own accounting of that child, no psutil needed.

Lab passwords are simulator test data; they travel in files (mode 0600) and on stdin, never in argv.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from keyturn.sim.client import LabState
from keyturn.sim.onboard import OnboardedAccount, Titles

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def worktree(ref: str) -> Iterator[Path]:
    """A throw-away checkout of `ref` (git worktree, detached), removed on exit: the "before" of a
    before/after measurement in one run."""
    where = Path(tempfile.mkdtemp(prefix="keyturn-before-"))
    path = where / "tree"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(path), ref],
                   check=True, capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],
                       check=False, capture_output=True)
        shutil.rmtree(where, ignore_errors=True)
KEYTURN = [sys.executable, "-m", "keyturn.cli.main"]
GNU_TIME = shutil.which("time", path="/usr/bin:/bin")


# ---- measuring ---------------------------------------------------------------------------------------


@dataclass
class Usage:
    """Resources of one or more child processes (CPU summed, RSS = the largest single process)."""

    wall: float = 0.0
    cpu: float = 0.0
    maxrss_mib: float = 0.0
    returncode: int = 0
    processes: int = 0

    def add(self, other: Usage) -> None:
        self.cpu += other.cpu
        self.maxrss_mib = max(self.maxrss_mib, other.maxrss_mib)
        self.processes += other.processes
        if other.returncode and not self.returncode:
            self.returncode = other.returncode


def run_measured(argv: Sequence[str], *, env: dict[str, str] | None = None, stdin: bytes | None = None,
                 stdout: Path | None = None, stderr: Path | None = None, cwd: Path | None = None,
                 kill_after: float | None = None) -> Usage:
    """Run `argv` to completion; wall time, user+sys CPU and max RSS of that child (os.wait4).

    `kill_after` seconds: SIGKILL the child at that moment (the chaos supervisor's kill -9).
    """
    # Linux carries a process's peak RSS across exec, and a child forked (vfork) from this large
    # process starts with our mm: wrap in GNU time, whose child is forked from a tiny process, so
    # the peak RSS reported is the command's own.
    timefile = None
    if GNU_TIME is not None and kill_after is None:   # kill -9 must reach the command itself
        fd, timefile = tempfile.mkstemp(prefix="rusage-", suffix=".txt")
        os.close(fd)
        argv = [GNU_TIME, "-f", "%M %U %S", "-o", timefile, *argv]
    out = stdout.open("wb") if stdout else subprocess.DEVNULL
    err = stderr.open("wb") if stderr else subprocess.DEVNULL
    began = time.monotonic()
    try:
        proc = subprocess.Popen(list(argv), env=env, cwd=cwd, stdout=out, stderr=err,
                                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL)
        if stdin is not None:
            assert proc.stdin is not None
            try:
                proc.stdin.write(stdin)
                proc.stdin.close()
            except BrokenPipeError:
                pass
        if kill_after is not None:
            deadline = began + kill_after
            while True:
                pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() >= deadline:
                    os.kill(proc.pid, signal.SIGKILL)
                    pid, status, ru = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.01)
        else:
            _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)   # Popen must not wait for it again
    finally:
        for fh in (out, err):
            if not isinstance(fh, int):
                fh.close()
    usage = Usage(wall=time.monotonic() - began, cpu=ru.ru_utime + ru.ru_stime,
                  maxrss_mib=ru.ru_maxrss / 1024, returncode=proc.returncode, processes=1)
    if timefile is not None:
        try:
            # GNU time writes "Command exited with non-zero status N" first when N != 0.
            last = Path(timefile).read_text().strip().splitlines()[-1].split()
            usage.maxrss_mib = int(last[0]) / 1024
        except (OSError, IndexError, ValueError):
            pass   # killed before it wrote: keep the wait4 figure
        finally:
            os.unlink(timefile)
    return usage


# ---- the lab -----------------------------------------------------------------------------------------


class Lab:
    """A `keyturn sim lab` subprocess. Use as a context manager; `state` is the parsed state file."""

    def __init__(self, workdir: Path, *, iosxe: int = 0, users_per_device: int = 1, meraki_orgs: int = 0,
                 networks_per_org: int = 1, users_per_network: int = 0, seed: int = 7, ssh: bool = True,
                 restconf: bool = True, faults: Sequence[str] = (), profile: str = "default",
                 flags: Sequence[str] = (), timeout: float = 600.0) -> None:
        self.workdir = workdir
        self.state_file = workdir / f"lab-{seed}-{os.getpid()}-{id(self)}.json"
        self.args = ["sim", "lab", "--iosxe", str(iosxe), "--users-per-device", str(users_per_device),
                     "--meraki-orgs", str(meraki_orgs), "--networks-per-org", str(networks_per_org),
                     "--users-per-network", str(users_per_network), "--seed", str(seed), "--quiet",
                     "--state-file", str(self.state_file)]
        if not ssh:
            self.args.append("--no-ssh")
        if not restconf:
            self.args.append("--no-restconf")
        for f in faults:
            self.args += ["--fault", f]
        if profile != "default":
            self.args += ["--profile", profile]
        self.args += list(flags)     # device realism switches, e.g. ("--latency", "0")
        self.timeout = timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.state: LabState | None = None
        self.startup = 0.0
        self._http: httpx.Client | None = None

    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LabState:
        began = time.monotonic()
        log = (self.workdir / "lab.log").open("ab")
        self.proc = subprocess.Popen([*KEYTURN, *self.args], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()
        deadline = began + self.timeout
        while not self.state_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the simulator lab exited ({self.proc.returncode}); see "
                                   f"{self.workdir / 'lab.log'}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the simulator lab did not start within {self.timeout:g} s")
            time.sleep(0.1)
        self.state = LabState.load(self.state_file)
        self.startup = time.monotonic() - began
        self._http = httpx.Client(base_url=self.state.control_url, timeout=120)
        return self.state

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    # ---- control API (synchronous) ----------------------------------------------------------------
    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        assert self._http is not None, "lab not started"
        resp = self._http.request(method, path, json=body)
        if resp.status_code >= 400:
            raise RuntimeError(f"control API {method} {path}: {resp.status_code} {resp.text[:200]}")
        return resp.json()

    def reset(self, *, faults_only: bool = False) -> None:
        self.call("POST", "/reset", {"faults_only": faults_only})

    def stats(self) -> dict[str, Any]:
        return dict(self.call("GET", "/stats"))

    def verify(self, acct: Acct, password: str) -> bool:
        if acct.kind == "iosxe":
            body = {"kind": "iosxe", "device": acct.where, "username": acct.login, "password": password}
        else:
            body = {"kind": "meraki", "network": acct.where, "email": acct.login, "password": password}
        return bool(self.call("POST", "/verify", body)["ok"])

    def rss_mib(self) -> float:
        """Current RSS of the lab process (from /proc), for the record."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0


# ---- accounts and records --------------------------------------------------------------------------


@dataclass(frozen=True)
class Acct:
    """One rotated account: its vault title, how the lab checks it, and the profile to set."""

    title: str
    kind: str                  # "iosxe" | "meraki"
    where: str                 # device name | network id
    login: str
    initial: str = field(repr=False)
    target: str = ""
    resource: str = ""         # resource record title
    admin: str = ""            # admin record title
    org: str = ""              # Meraki org id


def user_record(title: str, login: str, password: str) -> dict[str, Any]:
    return {"type": "pamUser", "title": title, "fields": [{"type": "login", "value": [login]},
                                                           {"type": "password", "value": [password]}]}


def iosxe_accts(state: LabState, onboarded: Sequence[OnboardedAccount]) -> list[Acct]:
    """`Acct` rows for accounts `keyturn.sim.onboard` added (default titles), with their initial secret."""
    titles = Titles()
    out = []
    for a in onboarded:
        dev = state.device(a.device)
        initial = next(u.password for u in dev.users if u.username == a.username)
        names = {"device": dev.name, "target": a.target}
        out.append(Acct(a.title, "iosxe", dev.name, a.username, initial, a.target,
                        titles.resource.format(**names), titles.admin.format(**names)))
    return out


def meraki_records(state: LabState, *, meraki_verifier: bool = True
                   ) -> tuple[list[dict[str, Any]], list[Acct]]:
    """Records for every Meraki user of a lab (for `keyturn record import`), and the accounts to rotate.

    Meraki networks get the lab's login check as verifier unless `meraki_verifier` is false.
    """
    records: list[dict[str, Any]] = []
    accts: list[Acct] = []
    if state.meraki is None:
        return records, accts
    records.append({"type": "login", "title": "Meraki API key",
                    "fields": [{"type": "login", "value": ["dashboard-api"]},
                               {"type": "password", "value": [state.meraki.api_key]}]})
    for org in state.meraki.orgs:
        for net in org.networks:
            custom = [{"type": "text", "label": "network_id", "value": [net.id]},
                      {"type": "text", "label": "org_id", "value": [org.id]},
                      {"type": "text", "label": "base_url", "value": [state.meraki.base_url]}]
            if meraki_verifier:
                custom.append({"type": "text", "label": "verify_url",
                               "value": [f"{state.control_url}/verify"]})
            records.append({"type": "pamMerakiNetwork", "title": f"Meraki {net.id}", "custom": custom})
            for u in net.users:
                records.append(user_record(u.email, u.email, u.password))
                accts.append(Acct(u.email, "meraki", net.id, u.email, u.password, "meraki-auth-user",
                                  f"Meraki {net.id}", "Meraki API key", org.id))
    return records, accts


# ---- a throw-away vault ------------------------------------------------------------------------------


class Home:
    """A fresh KEYTURN_HOME (SQLite + key file) under `workdir`; `env` is what child processes get."""

    def __init__(self, workdir: Path, name: str = "home") -> None:
        self.path = workdir / name
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("KEYTURN_DATABASE_URL", "KEYTURN_MASTER_KEY", "KEYTURN_PASSPHRASE",
                                 "KEYTURN_TEST_KILL_AT", "KEYTURN_CONFIG", "KEYTURN_KEY_FILE")}
        self.env["KEYTURN_HOME"] = str(self.path)
        self.uids: dict[str, str] = {}

    def keyturn(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*KEYTURN, *args], env=self.env, capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(f"keyturn {' '.join(args[:2])} exited {proc.returncode}: "
                               f"{proc.stderr.strip()[-300:]}")
        return proc

    def setup(self, state: LabState, *, iosxe_targets: Sequence[str] = ("iosxe-restconf",),
              meraki_verifier: bool = True, options: Mapping[str, str] | None = None) -> list[Acct]:
        """`keyturn init`; the lab's IOS XE devices through `keyturn.sim.onboard` (Python API, one
        transaction; targets round-robin per device, `iosxe-ssh` where logins land in `>`); its Meraki
        users through `keyturn record import` with one profile each. Returns every account to rotate."""
        from keyturn.sim.onboard import onboard_iosxe

        self.keyturn("init")
        vault = self.open_vault()
        try:
            onboarded = onboard_iosxe(vault, state, target=iosxe_targets, options=options, actor="bench")
        finally:
            vault.close()
        accts = iosxe_accts(state, onboarded)
        records, meraki = meraki_records(state, meraki_verifier=meraki_verifier)
        if records:
            fd, name = tempfile.mkstemp(prefix="records-", suffix=".json", dir=self.path)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:    # mkstemp: mode 0600
                json.dump({"records": records}, fh)
            try:
                self.keyturn("record", "import", name, "--format", "keyturn")
            finally:
                os.unlink(name)
        self.set_profiles(meraki)
        return accts + meraki

    def open_vault(self) -> Any:
        from keyturn.config import load_settings
        from keyturn.vault import Vault

        return Vault.open(load_settings(home=self.path, database_url=None))

    def set_profiles(self, accts: Iterable[Acct]) -> None:
        from keyturn.engine.profile import set_profile

        vault = self.open_vault()
        try:
            self.uids = {s.title: s.uid for s in vault.summaries()}
            for a in accts:
                set_profile(vault, self.uids[a.title], target=a.target, resource=self.uids[a.resource],
                            admin=self.uids[a.admin] if a.admin else None, actor="bench")
        finally:
            vault.close()

    def current_secrets(self, accts: Iterable[Acct]) -> dict[str, str]:
        """title → the vault's current password (read through the Python vault API)."""
        vault = self.open_vault()
        try:
            out = {}
            for a in accts:
                value = vault.secret(self.uids[a.title])
                out[a.title] = value.reveal() if value is not None else ""
            return out
        finally:
            vault.close()

    def all_versions(self, acct: Acct) -> list[tuple[int, str, str]]:
        """(version, state, value) of every stored password version of one account."""
        vault = self.open_vault()
        try:
            uid = self.uids[acct.title]
            return [(v.version, str(v.state), vault.version_secret(uid, v.version).reveal())
                    for v in vault.versions(uid)]
        finally:
            vault.close()


def verify_all(lab: Lab, accts: Sequence[Acct], secrets: dict[str, str]) -> list[Acct]:
    """Accounts NOT rotated-and-verified: `secrets[title]` is still the initial one or does not log in."""
    return [a for a in accts if secrets[a.title] == a.initial or not lab.verify(a, secrets[a.title])]


def rotate_json(home: Home, workdir: Path, *, concurrency: int, per_device: int,
                extra: Sequence[str] = ()) -> tuple[Usage, dict[str, int]]:
    """`keyturn rotate --all --json`, measured; returns usage and outcome counts."""
    out, err = workdir / "rotate.json", workdir / "rotate.err"
    usage = run_measured([*KEYTURN, "rotate", "--all", "--concurrency", str(concurrency), "--per-device",
                          str(per_device), "--json", *extra], env=home.env, stdout=out, stderr=err)
    return usage, outcome_counts(out)


def outcome_counts(path: Path) -> dict[str, int]:
    """Outcome → count from a `keyturn rotate --json` output file (`unparsed-output` if not JSON)."""
    counts: dict[str, int] = {}
    try:
        for r in json.loads(path.read_text() or "{}").get("results", []):
            counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    except ValueError:
        counts["unparsed-output"] = 1
    return counts
