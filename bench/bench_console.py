"""Web console (issue 17): the accounts page over 10,000 accounts, first render.

Seeds a fresh SQLite vault with `accounts` managed accounts (100 devices, each account with a rotation
profile, a schedule, tags and, for a tenth of them, a finished rotation in the journal), signs in
through the form, and renders ``/console/accounts`` (page 1, 50 rows) and a filtered page through the
real app in this process: server time per request, wall and CPU (median of `runs`). The dashboard is
timed the same way (it reads every account). With Playwright and a Chromium on the machine, the same
page is also opened in the browser against `keyturn serve` and timed to the load event.

Prints figures, asserts nothing (issue 17's goal: the first page in under 1 s on this machine).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.harness import Usage
from bench.report import Row, console

TARGET_S = 1.0
NAVIGATION_TIMING = "JSON.parse(JSON.stringify(performance.getEntriesByType('navigation')[0]))"
DEVICES = 100


def seed(vault: Any, accounts: int) -> None:
    """`accounts` managed accounts over `DEVICES` devices, in two transactions; a tenth rotated once."""
    import secrets

    from keyturn.engine.journal import rotations, write_tx
    from keyturn.engine.profile import RotationProfile
    from keyturn.vault.api import NewRecord

    devices = vault.add_many([NewRecord(type="pamNetworkDevice", title=f"sw{i:03d}",
                                        meta={"tags": [f"dc-{i % 3}"]}) for i in range(DEVICES)])
    specs = []
    for i in range(accounts):
        profile = RotationProfile(target="iosxe-restconf" if i % 2 else "iosxe-ssh",
                                  resource=devices[i % DEVICES]).to_meta()
        specs.append(NewRecord(type="pamUser", title=f"sw{i % DEVICES:03d} netops{i:05d}", meta={
            "rotation": profile, "tags": sorted({"fleet", f"dc-{i % 3}"}),
            "schedule": {"spec": "0 2 * * sun", "tz": "UTC", "kind": "cron"} if i % 4 else None}))
    uids = vault.add_many(specs)
    now = datetime.now(UTC)
    with write_tx(vault.engine) as conn:
        conn.execute(rotations.insert(), [
            {"id": secrets.token_hex(8), "record_uid": uid, "title": f"netops{i:05d}", "target": "iosxe-ssh",
             "state": "done", "outcome": "rotated" if i % 7 else "failed", "reason": "",
             "last_step": "audit", "started_at": now - timedelta(hours=i % 700),
             "updated_at": now - timedelta(hours=i % 700), "finished_at": now - timedelta(hours=i % 700)}
            for i, uid in enumerate(uids) if i % 10 == 0])


async def _timed(runs: int, call: Callable[[], Awaitable[Any]]) -> tuple[float, float, Any]:
    """Median wall and CPU (this process) of `runs` calls, and the last result."""
    walls, cpus = [], []
    result = None
    for _ in range(runs):
        c0, t0 = time.process_time(), time.perf_counter()
        result = await call()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), result


def run(workdir: Path, *, accounts: int = 10_000, runs: int = 5) -> tuple[list[Row], list[str]]:
    rows, notes, token = asyncio.run(_run(workdir, accounts=accounts, runs=runs))
    row, note = _chromium(workdir, token, runs)
    console.print(f"  {note}")
    return rows + ([row] if row is not None else []), [*notes, note]


async def _run(workdir: Path, *, accounts: int, runs: int) -> tuple[list[Row], list[str], str]:
    import httpx

    from keyturn.api.app import create_app
    from keyturn.api.tokens import Role, TokenStore
    from keyturn.config import Settings
    from keyturn.engine.rotate import RotationEngine
    from keyturn.vault import Vault

    vault = Vault.init(Settings(home=workdir / "home"))
    t0 = time.perf_counter()
    seed(vault, accounts)
    console.print(f"  seeded {accounts} accounts in {time.perf_counter() - t0:.1f} s")
    token = TokenStore(vault.engine).create(Role.OPERATOR, name="bench")[1].reveal()
    app = create_app(vault, engine_factory=lambda actor: RotationEngine(vault, actor=actor))
    rows: list[Row] = []
    notes: list[str] = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://bench") as client:
        form = await client.get("/console/signin")
        import re
        presession = re.search(r'name="presession" value="([^"]+)"', form.text)
        assert presession is not None
        await client.post("/console/signin", data={"token": token, "next": "/console/",
                                                   "presession": presession.group(1)})
        pages = (("accounts page 1", "/console/accounts"),
                 ("accounts page 1 filtered", "/console/accounts?q=netops0&target=iosxe-ssh&tag=dc-1"),
                 ("accounts page 100", "/console/accounts?page=100"),
                 ("dashboard", "/console/"))
        for label, path in pages:
            wall, cpu, response = await _timed(runs, lambda path=path: client.get(path))
            ok = response.status_code == 200
            console.print(f"  {label}: {wall * 1000:.0f} ms wall, {cpu * 1000:.0f} ms CPU "
                          f"(median of {runs}; {len(response.content) // 1024} KiB, "
                          f"HTTP {response.status_code})")
            rows.append(Row("console", f"{label} (server, in-process)", 0, Usage(wall=wall, cpu=cpu),
                            0, note=f"{accounts} accounts; median of {runs}"))
            if label == "accounts page 1":
                notes.append(f"accounts page 1 over {accounts:,} accounts: {wall * 1000:.0f} ms wall, "
                             f"{cpu * 1000:.0f} ms CPU in the server (target < {TARGET_S:.0f} s: "
                             f"{'met' if ok and wall < TARGET_S else 'NOT met'})")
    vault.close()
    return rows, notes, token


def _chromium(workdir: Path, token: str, runs: int) -> tuple[Row | None, str]:
    """The browser-side figure, when Playwright and a Chromium are available (else why not)."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        return None, "no Chromium on this machine: browser timing skipped"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None, "Playwright not installed (test extra): browser timing skipped"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    # Plain HTTP on 127.0.0.1: Chromium counts loopback as a secure origin and keeps the Secure cookie.
    env.update(KEYTURN_HOME=str(workdir / "home"))
    with (workdir / "serve.log").open("wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "keyturn.cli.main", "serve", "--port", str(port)],
                                  env=env, stdout=log, stderr=log, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, server)
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=exe, args=args)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{base}/console/signin")
            page.get_by_label("API token").fill(token)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_load_state()
            loads, firsts = [], []
            for _ in range(runs):
                page.goto(f"{base}/console/accounts", wait_until="load")
                nav = page.evaluate(NAVIGATION_TIMING)
                loads.append(float(nav["loadEventEnd"]) / 1000)
                firsts.append(float(nav["responseStart"]) / 1000)
            rows_shown = page.locator("table.accounts tbody tr").count()
            browser.close()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    load, first = statistics.median(loads), statistics.median(firsts)
    row = Row("console", "accounts page 1 (Chromium, load event)", 0, Usage(wall=load), 0,
              note=f"first byte {first * 1000:.0f} ms; {rows_shown} rows; median of {runs}")
    return row, (f"accounts page 1 in Chromium (keyturn serve, 1280x800): load event after "
                 f"{load * 1000:.0f} ms, "
                 f"first byte {first * 1000:.0f} ms (median of {runs}; target < {TARGET_S:.0f} s: "
                 f"{'met' if load < TARGET_S else 'NOT met'})")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(base: str, server: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"keyturn serve exited with {server.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("keyturn serve did not answer /healthz within 60 s")


if __name__ == "__main__":
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="keyturn-console-bench-"))
    try:
        _rows, _notes = run(d, accounts=int(os.environ.get("ACCOUNTS", "10000")))
        for n in _notes:
            console.print(n)
    finally:
        shutil.rmtree(d, ignore_errors=True)
