"""Why did Ansible fail ~1.5 % of the SSH benchmark's devices? (issue 20) A diagnostic, not a benchmark.

    python -m bench.diagnose_ansible                       # 200 devices, seed 2026, the pre-fix inventory
    python -m bench.diagnose_ansible --devices 1000
    python -m bench.diagnose_ansible --inventory unsafe    # the inventory the benchmark writes now

1. Predicts, from the lab plan alone, the devices whose inventory values (admin password, enable
   secret; the new secrets come from an alphabet without `{`) hold a Jinja opener `{{`, `{%` or `{#`.
2. Starts a throw-away lab like bench_ssh.py's and runs the benchmark's playbook over every device
   with `no_log` off, the inventory written as before commit efa4393 (`--inventory plain`: JSON, plain
   values) or as now (`--inventory unsafe`); then lists the devices the lab's login check finds
   unrotated and the hosts Ansible reports failed, next to the prediction, with the simulator's
   change/save/failed-login counters of those devices (all 0: Ansible never reached them).
3. Runs the same playbook once more with `-vvv` against one predicted device and prints what Ansible
   says about it, every lab secret replaced by its role (`<admin password>`): the secrets are lab data,
   but a diagnostic output is made to be pasted into issues.

The work directory (inventories with the lab's secrets, mode 0600) is removed unless `--keep`.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

from bench.bench_restconf import new_password
from bench.bench_ssh import (
    PLAYBOOK,
    ansible_failed_hosts,
    ensure_ansible,
    jinja_devices,
    run_ansible,
    unsafe_inventory,
)
from bench.harness import Acct, Lab, verify_all
from keyturn.sim.client import LabState


def plain_inventory(hosts: dict[str, dict[str, object]]) -> str:
    """The inventory as bench_ssh.py wrote it before commit efa4393: JSON, every value a plain string."""
    return json.dumps({"devices": {"hosts": hosts}})


def scrubber(state: LabState, news: dict[str, str]) -> list[tuple[str, str]]:
    """(secret, its role) for every secret of the lab and every new secret, longest first."""
    pairs = []
    for dev in state.iosxe:
        pairs += [(dev.admin.password, "<admin password>"), (dev.enable_secret, "<enable secret>")]
        pairs += [(u.password, "<user's initial password>") for u in dev.users]
    pairs += [(v, "<new password>") for v in news.values()]
    # Escaped forms too: -vvv prints values inside JSON and Python reprs.
    pairs += [(json.dumps(s)[1:-1], role) for s, role in list(pairs)]
    pairs += [(repr(s)[1:-1], role) for s, role in list(pairs)]
    return sorted({p for p in pairs if p[0]}, key=lambda p: -len(p[0]))


def scrub(text: str, pairs: list[tuple[str, str]]) -> str:
    for secret, role in pairs:
        text = text.replace(secret, role)
    return text


def fatal_messages(text: str) -> dict[str, str]:
    """Host → the `msg` of its `fatal: [host]: FAILED! => {...}` block (the default callback's format)."""
    out: dict[str, str] = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(?:fatal|failed): \[([^\]]+)\]: \w+! => (\{.*)$", line)
        if not m:
            continue
        block = [m.group(2)]
        for nxt in lines[i + 1:]:
            if block[-1].rstrip() == "}" or block[0].rstrip().endswith("}"):
                break
            block.append(nxt)
        try:
            out[m.group(1)] = str(json.loads("\n".join(block)).get("msg", ""))
        except ValueError:
            out[m.group(1)] = "(unparsed)"
    return out


def from_first_task(text: str) -> list[str]:
    """Ansible's output from the first task on (the header before it only lists versions and paths)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("TASK [")), 0)
    return [line for line in lines[start:] if line.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.diagnose_ansible", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=200)
    p.add_argument("--seed", type=int, default=2026, help="the benchmark's default seed")
    p.add_argument("--inventory", choices=("plain", "unsafe"), default="plain")
    p.add_argument("--host", default=None, help="device for the -vvv run (default: the first predicted)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    notes: list[str] = []
    if not ensure_ansible(notes):
        print("Ansible with cisco.ios could not be installed", *notes, sep="\n  ")
        return 1
    inventory = plain_inventory if args.inventory == "plain" else unsafe_inventory
    workdir = Path(tempfile.mkdtemp(prefix="keyturn-diag-ansible-"))
    try:
        playbook = workdir / "ansible_ios_user.yml"
        # no_log off: what the task would print is the diagnosis (the secrets are scrubbed below).
        playbook.write_text(PLAYBOOK.read_text().replace("no_log: true", "no_log: false"))
        with Lab(workdir, iosxe=args.devices, users_per_device=1, seed=args.seed) as lab:
            assert lab.state is not None
            state = lab.state
            predicted = jinja_devices(state)
            print(f"lab: {args.devices} devices, seed {args.seed}; inventory {args.inventory}")
            print(f"predicted (a Jinja opener in an inventory value): {len(predicted)}")
            for name, fields in predicted.items():
                print(f"  {name}: {', '.join(fields)}")
            accts = [Acct(f"{d.name}/{d.users[0].username}", "iosxe", d.name, d.users[0].username,
                          d.users[0].password) for d in state.iosxe]
            news = {a.title: new_password() for a in accts}
            pairs = scrubber(state, news)

            usage = run_ansible(workdir, lab, accts, news, inventory=inventory, playbook=playbook)
            unrotated = {a.where for a in verify_all(lab, accts, news)}
            failed = ansible_failed_hosts(workdir / "ansible.out")
            stats = lab.stats()["iosxe"]
            print(f"\nansible-playbook over {len(accts)} devices: exit {usage.returncode}, "
                  f"{usage.wall:.0f} s; hosts failed {failed['failed']}, unreachable {failed['unreachable']}")
            print(f"not rotated (lab login check): {len(unrotated)} {sorted(unrotated)}")
            print(f"failed per Ansible's output:   {len(failed['hosts'])} {sorted(failed['hosts'])}")
            same = unrotated == set(predicted) == failed["hosts"]
            print("prediction == not rotated == failed: " + ("yes" if same else "NO")
                  + (f" (predicted only: {sorted(set(predicted) - unrotated)}, "
                     f"not rotated only: {sorted(unrotated - set(predicted))})" if not same else ""))
            msgs = fatal_messages(scrub((workdir / "ansible.out").read_text(errors="replace"), pairs))
            for name in sorted(unrotated | set(predicted) | failed["hosts"]):
                s = stats[name]
                print(f"  {name}: simulator changes {s['changes']}, saves {s['saves']}, "
                      f"failed logins {s['failed_logins']}; Ansible: {msgs.get(name, '-')}")

            host = args.host or next(iter(predicted), None)
            if host is None:
                print("\nno device holds a Jinja opener: no -vvv run")
                return 0
            lab.reset()
            one = [a for a in accts if a.where == host]
            vdir = workdir / "vvv"
            vdir.mkdir()
            usage = run_ansible(vdir, lab, one, news, inventory=inventory, playbook=playbook,
                                extra_args=["-vvv"])
            text = (vdir / "ansible.out").read_text(errors="replace")
            text += (vdir / "ansible.err").read_text(errors="replace")
            text = text.replace(str(workdir), "<work dir>")
            print(f"\n-vvv against {host} alone: exit {usage.returncode}; what Ansible says about it "
                  "(secrets replaced by their role):")
            for line in from_first_task(scrub(text, pairs)):
                print(f"  | {line}")
        return 0
    finally:
        if args.keep:
            print(f"work dir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
