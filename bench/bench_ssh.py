"""IOS XE SSH CLI: keyturn `rotate --all` (target iosxe-ssh) vs Ansible `cisco.ios.ios_user` + write memory.

Ansible lives in its own venv, `bench/.venv-ansible`, created on first use: `ansible-core` plus the
`cisco.ios` and `ansible.netcommon` collections from Galaxy; when Galaxy is unreachable (only package
registries are), the PyPI `ansible` package, which bundles those collections. If neither works, the
baseline is a sequential Netmiko loop, clearly labelled as such.

The inventory's strings are `!unsafe` (`unsafe_inventory`): written plain, the lab passwords that hold
a Jinja opener failed their hosts, ~1.5 % of devices (issue 20; `python -m bench.diagnose_ansible`
shows it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.bench_restconf import new_password
from bench.harness import Acct, Home, Lab, Usage, rotate_json, run_measured, verify_all
from bench.report import Row
from keyturn.sim.client import LabState

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-ansible"
PLAYBOOK = HERE / "baselines" / "ansible_ios_user.yml"
NETMIKO = HERE / "baselines" / "netmiko_user.py"
FORKS = 20
JINJA_OPENERS = ("{{", "{%", "{#")
# The inventory values that come from the lab plan; the playbook's new secrets never hold `{`.
PLAN_FIELDS = ("admin password", "enable secret")


def _bundled_cisco_ios() -> bool:
    pattern = "python3*/site-packages/ansible_collections/cisco/ios/plugins/modules/ios_user.py"
    return any((VENV / "lib").glob(pattern))


def ensure_ansible(notes: list[str]) -> bool:
    """Create the Ansible venv if needed; True when `ansible-playbook` with cisco.ios is usable."""
    play = VENV / "bin" / "ansible-playbook"
    collections = VENV / "collections"
    galaxy_ios = collections / "ansible_collections" / "cisco" / "ios"
    if play.exists() and (_bundled_cisco_ios() or galaxy_ios.exists()):
        return True
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    run = dict(capture_output=True, text=True, check=False)
    if not (VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([*pip, "ansible-core", "paramiko"], **run)  # type: ignore[call-overload]
    galaxy = subprocess.run([str(VENV / "bin" / "ansible-galaxy"), "collection", "install", "cisco.ios",
                             "ansible.netcommon", "-p", str(collections)], timeout=300, **run)  # type: ignore[call-overload]
    if galaxy.returncode == 0:
        notes.append("Ansible: ansible-core + cisco.ios/ansible.netcommon from Galaxy")
        return True
    notes.append("Ansible: Galaxy unreachable; installed the PyPI `ansible` package (bundles cisco.ios)")
    subprocess.run([*pip, "ansible", "paramiko"], **run)  # type: ignore[call-overload]
    return play.exists() and _bundled_cisco_ios()


def unsafe_inventory(hosts: Mapping[str, Mapping[str, object]]) -> str:
    """A YAML inventory (group `devices`) whose string values are `!unsafe` single-quoted scalars.

    Ansible templates every string it reads from an inventory, so a plain value holding `{{`, `{%` or
    `{#` is a Jinja syntax error and that host fails before it is contacted: 15 of 1,000 lab devices
    (seed 2026) did, whose admin password or enable secret held one (issue 20). `!unsafe` marks a value
    as data; inside single quotes only `'` needs escaping (doubled) and backslashes are literal. Host
    and variable names are single-quoted too (a host named `null` stays a string); integers (the port)
    stay plain. A string that is not printable (a line break, a tab, a control character) raises
    ValueError: YAML would fold or refuse it, and a changed password must never reach a device silently.
    """
    lines = ["devices:", "  hosts:"]
    for name, hostvars in hosts.items():
        lines.append(f"    {_quoted(name)}:")
        for key, value in hostvars.items():
            if isinstance(value, int) and not isinstance(value, bool):
                shown = str(value)
            elif isinstance(value, str):
                shown = f"!unsafe {_quoted(value)}"
            else:
                raise ValueError(f"inventory value {key!r} of host {name!r} is not a string or an integer")
            lines.append(f"      {_quoted(key)}: {shown}")
    return "\n".join(lines) + "\n"


def _quoted(text: str) -> str:
    if not text.isprintable():
        # Not echoed: the text may be a password.
        raise ValueError("an inventory string holds a line break, tab or other non-printable character")
    return "'" + text.replace("'", "''") + "'"


def ansible_hostvars(lab: Lab, accts: list[Acct], news: dict[str, str]) -> dict[str, dict[str, object]]:
    """Per device: where and how Ansible logs in, the user to rotate and its new secret."""
    assert lab.state is not None
    hosts: dict[str, dict[str, object]] = {}
    for a in accts:
        dev = lab.state.device(a.where)
        hosts[dev.name] = {"ansible_host": dev.host, "ansible_port": dev.ssh_port,
                           "ansible_user": dev.admin.username, "ansible_password": dev.admin.password,
                           "ansible_become_password": dev.enable_secret, "rotate_user": a.login,
                           "new_password": news[a.title]}
    return hosts


def run_ansible(workdir: Path, lab: Lab, accts: list[Acct], news: dict[str, str], *,
                inventory: Callable[[dict[str, dict[str, object]]], str] = unsafe_inventory,
                playbook: Path = PLAYBOOK, extra_args: Sequence[str] = ()) -> Usage:
    """`ansible-playbook` with FORKS forks over `accts`, measured; output in workdir/ansible.out/.err.

    `inventory` renders the host variables (the diagnostic passes the pre-fix plain style)."""
    path = workdir / "inventory.yml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(inventory(ansible_hostvars(lab, accts, news)))
    env = {**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_FORKS": str(FORKS),
           "ANSIBLE_COLLECTIONS_PATH": str(VENV / "collections"), "ANSIBLE_RETRY_FILES_ENABLED": "False",
           "ANSIBLE_PERSISTENT_COMMAND_TIMEOUT": "60", "ANSIBLE_PERSISTENT_CONNECT_TIMEOUT": "60",
           "ANSIBLE_LOCAL_TEMP": str(workdir / "ansible-tmp"),
           "ANSIBLE_HOME": str(workdir / "ansible-home"),
           "ANSIBLE_STDOUT_CALLBACK": "default", "ANSIBLE_DISPLAY_OK_HOSTS": "False",
           "ANSIBLE_DISPLAY_SKIPPED_HOSTS": "False", "PATH": f"{VENV / 'bin'}:{os.environ.get('PATH', '')}"}
    return run_measured([str(VENV / "bin" / "ansible-playbook"), "-i", str(path), "-f", str(FORKS),
                         *extra_args, str(playbook)], env=env, stdout=workdir / "ansible.out",
                        stderr=workdir / "ansible.err")


def jinja_devices(state: LabState) -> dict[str, list[str]]:
    """Device name → which of its inventory values hold a Jinja opener (PLAN_FIELDS names)."""
    out: dict[str, list[str]] = {}
    for dev in state.iosxe:
        values = dict(zip(PLAN_FIELDS, (dev.admin.password, dev.enable_secret), strict=True))
        hit = [f for f, v in values.items() if any(o in v for o in JINJA_OPENERS)]
        if hit:
            out[dev.name] = hit
    return out


def ansible_failed_hosts(path: Path) -> dict[str, Any]:
    """`PLAY RECAP` counts (hosts with failures, unreachable hosts) and the names of failed hosts."""
    out: dict[str, Any] = {"failed": 0, "unreachable": 0, "hosts": set()}
    try:
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(("fatal: [", "failed: [")):
                out["hosts"].add(line.split("[", 1)[1].split("]", 1)[0])
            elif " : ok=" in line:
                fields = dict(p.split("=", 1) for p in line.split(":", 1)[1].split() if "=" in p)
                out["failed"] += int(fields.get("failed", "0")) > 0
                out["unreachable"] += int(fields.get("unreachable", "0")) > 0
    except OSError:
        pass
    return out


def run_netmiko(workdir: Path, lab: Lab, accts: list[Acct], news: dict[str, str]) -> Usage:
    assert lab.state is not None
    jobs = []
    for a in accts:
        dev = lab.state.device(a.where)
        jobs.append({"host": dev.host, "port": dev.ssh_port, "admin": dev.admin.username,
                     "password": dev.admin.password, "enable": dev.enable_secret, "user": a.login,
                     "new": news[a.title]})
    return run_measured([sys.executable, str(NETMIKO)], stdin=json.dumps(jobs).encode(),
                        stdout=workdir / "netmiko.out", stderr=workdir / "netmiko.err")


def run(workdir: Path, *, devices: int, concurrency: int, seed: int, baseline: str = "auto"
        ) -> tuple[list[Row], list[str]]:
    name = f"SSH {devices} dev"
    rows: list[Row] = []
    notes: list[str] = []
    use_ansible = baseline != "netmiko" and ensure_ansible(notes)
    if baseline == "ansible" and not use_ansible:
        notes.append("Ansible could not be installed: falling back to the Netmiko baseline")
    label = f"ansible forks {FORKS}" if use_ansible else "netmiko sequential (Ansible unavailable)"
    # RESTCONF stays on only so each device record has a distinct host:port: the engine's account lock
    # key is built from the RESTCONF address, so without it every device shares 127.0.0.1:443 (reported).
    with Lab(workdir, iosxe=devices, users_per_device=1, seed=seed) as lab:
        assert lab.state is not None
        home = Home(workdir, "home-ssh")
        accts = home.setup(lab.state, iosxe_targets=("iosxe-ssh",))
        usage, counts = rotate_json(home, workdir, concurrency=concurrency, per_device=1)
        bad = verify_all(lab, accts, home.current_secrets(accts))
        rows.append(Row(name, "keyturn", len(accts), usage, len(accts) - len(bad), baseline_of=label,
                        note=f"--concurrency {concurrency}; "
                             + ", ".join(f"{v} {k}" for k, v in counts.items())))
        lab.reset()
        news = {a.title: new_password() for a in accts}
        usage = (run_ansible if use_ansible else run_netmiko)(workdir, lab, accts, news)
        bad = verify_all(lab, accts, news)
        saves = sum(1 for d in lab.stats()["iosxe"].values() if d["saves"] > 0)
        rows.append(Row(name, label, len(accts), usage, len(accts) - len(bad),
                        note=f"exit {usage.returncode}; {saves} devices saved"))
        if use_ansible:
            failed = ansible_failed_hosts(workdir / "ansible.out")
            jinja = jinja_devices(lab.state)
            missed = sorted(a.where for a in bad)[:10]
            notes.append(f"Ansible: {failed['failed']} hosts failed {sorted(failed['hosts'])[:10]}, "
                         f"{failed['unreachable']} unreachable; not rotated {missed}")
            notes.append(f"Ansible inventory values are `!unsafe`: {len(jinja)} of {devices} devices hold a "
                         "Jinja opener in the admin password or enable secret (failed before, issue 20)")
    if use_ansible:
        notes.append("Ansible CPU counts ansible-playbook and its forks; persistent `ansible-connection` "
                     "daemons detach and are not counted (in Ansible's favour)")
    return rows, notes
