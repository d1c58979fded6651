"""Scaling curve: keyturn rotating 100 / 1,000 / 5,000 RESTCONF devices → wall time, CPU, peak RSS.

Each size gets its own lab (RESTCONF only, one user per device). Concurrency is min(size, 1,000) so
the 1,000-device point is "1,000 rotations in flight" (target: under 200 MB RSS).
"""

from __future__ import annotations

from pathlib import Path

from bench.harness import Home, Lab, rotate_json, verify_all
from bench.report import Row


def run(workdir: Path, *, sizes: list[int], concurrency: int, seed: int) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    notes: list[str] = []
    for n in sizes:
        sub = workdir / str(n)
        sub.mkdir()
        conc = min(n, 1000)
        try:
            with Lab(sub, iosxe=n, users_per_device=1, ssh=False, seed=seed, timeout=1800) as lab:
                assert lab.state is not None
                home = Home(sub, f"home-{n}")
                accts = home.setup(lab.state, iosxe_targets=("iosxe-restconf",))
                usage, counts = rotate_json(home, sub, concurrency=conc, per_device=1)
                bad = verify_all(lab, accts, home.current_secrets(accts))
                notes.append(f"{n} devices: lab up in {lab.startup:.1f} s, lab RSS {lab.rss_mib():.0f} MiB")
        except RuntimeError as exc:
            notes.append(f"{n} devices: not measured — {exc}")
            continue
        rows.append(Row("scaling", f"keyturn {n} dev", len(accts), usage, len(accts) - len(bad),
                        note=f"--concurrency {conc}; " + ", ".join(f"{v} {k}" for k, v in counts.items())))
    return rows, notes
