"""Onboarding (issue 15): `keyturn import inventory` of a generated 2,000-device CSV, wall and CPU.

The CSV is keyturn's own: one row per account, every device with its admin credential (password and
enable secret in the file), one user without a password (the admin sets the first one), a schedule
and SSH port, RESTCONF and SSH targets alternating. Three runs, each its own process:

* ``dry run``  — the plan on an empty vault: every check, then rolled back;
* ``import``   — the same file into the empty vault (everything created, one transaction);
* ``re-run``   — the same file again: everything unchanged (the idempotent path).

Target (issue 15): the import under 30 s on this machine. No simulator is needed: nothing is rotated.
"""

from __future__ import annotations

import csv
from pathlib import Path

from bench.harness import KEYTURN, Home, run_measured
from bench.report import Row, console

TARGET_S = 30.0
COLUMNS = ("device", "host", "port", "ssh_port", "target", "admin_login", "admin_password", "enable_secret",
           "user", "schedule", "jitter")


def write_csv(path: Path, devices: int) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for i in range(1, devices + 1):
            w.writerow([f"sw{i:05d}", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 443, 22,
                        "iosxe-restconf" if i % 2 else "iosxe-ssh", "admin", f"bench-admin-{i}",
                        f"bench-enable-{i}", "netops", "0 2 * * sun", "2h"])


def run(workdir: Path, *, devices: int = 2000) -> tuple[list[Row], list[str]]:
    inventory = workdir / "fleet.csv"
    write_csv(inventory, devices)
    home = Home(workdir)
    home.keyturn("init")
    rows: list[Row] = []
    notes: list[str] = []
    for label, extra in (("dry run", ("--dry-run", "--json")), ("import", ()), ("re-run", ())):
        out = workdir / f"{label.replace(' ', '-')}.out"
        err = workdir / f"{label.replace(' ', '-')}.err"
        usage = run_measured([*KEYTURN, "import", "inventory", str(inventory), *extra], env=home.env,
                             stdout=out, stderr=err)
        if usage.returncode:
            raise RuntimeError(f"import inventory ({label}) exited {usage.returncode}: "
                               f"{err.read_text()[-300:]}")
        said = out.read_text().strip().splitlines()[-1][:200] if label != "dry run" else ""
        console.print(f"  {label}: {usage.wall:.1f} s wall, {usage.cpu:.1f} s CPU  {said}")
        rows.append(Row("onboarding", f"keyturn import inventory ({label})", devices, usage, devices,
                        note=f"{devices} devices, {devices * 3} records + {devices} profiles/schedules"))
    imported = rows[1].usage.wall
    notes.append(f"2,000-device CSV import: {imported:.1f} s wall, {rows[1].usage.cpu:.1f} s CPU "
                 f"(target < {TARGET_S:.0f} s: {'met' if imported < TARGET_S else 'NOT met'})")
    return rows, notes
