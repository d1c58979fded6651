"""Real-browser fixtures for the web console: one lab and one `keyturn serve` for every browser test
module of this package (package-scoped: set-up is most of their cost), one Chromium per module.

    def test_x(stack: ConsoleStack, browser: Browser) -> None:
        page = stack.signed_in(browser, "operator")         # a fresh context, signed in with that token
        page.goto(stack.url("/console/accounts"))

`stack` runs, as real subprocesses on 127.0.0.1: a simulator lab (`keyturn sim lab`, one IOS XE device
with two users), `keyturn init` + `record import` + `device trust` + `rotation set` for both users, API
tokens for the four roles, and `keyturn serve` on a fixed free port (so a test can stop and start it
again at the same address). `browser` is the distribution's Chromium driven by Playwright through
`executable_path` (Playwright's own browser download is never used); without a `chromium` binary the
module is skipped saying so. Screenshots go to `tests/console/screenshots/` (git-ignored).

The in-process HTTP tests (`test_console_*_http.py`) use `api` instead: a vault world and the API app
with a token per role (`tests.unit.api_world`), fresh for each test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

# The in-process HTTP tests' `world` and `api`: the unit tests' fixtures, not a copy of them.
from tests.unit.conftest import api, world  # noqa: F401 (fixtures, found by name)

SCREENSHOTS = Path(__file__).parent / "screenshots"
DEVICE = "sw0001"
USERS = ("netops1", "deploy2")          # --seed 2 names sw0001's users so
ROLES = ("admin", "operator", "auditor", "consumer")
VIEWPORT = {"width": 1280, "height": 800}
START_TIMEOUT = 60.0


def title_of(user: str) -> str:
    """The record title `record import` gives a lab user."""
    return f"{user} @ {DEVICE}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ConsoleStack:
    """The lab, the vault home and the server of one test module."""

    root: Path
    env: dict[str, str | None]    # for the runner: None unsets a variable
    port: int
    tokens: dict[str, str] = field(default_factory=dict)
    lab: subprocess.Popen[bytes] | None = None
    server: subprocess.Popen[bytes] | None = None
    control_url: str = ""
    serve_starts: int = 0

    @property
    def process_env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if k not in self.env}
        return {**base, **{k: v for k, v in self.env.items() if v is not None}}

    # --- processes -----------------------------------------------------------------------------------

    def keyturn(self, *args: str, stdin: str | None = None) -> str:
        """Run one `keyturn` command in this process (Typer's runner: set-up costs no interpreter start);
        its stdout (a failure shows its output)."""
        from typer.testing import CliRunner

        from keyturn.cli.main import app

        done = CliRunner().invoke(app, list(args), env=self.env, input=stdin)
        assert done.exit_code == 0, f"keyturn {' '.join(args)}: {done.output}"
        return done.stdout

    def keyturn_error(self, *args: str) -> str:
        """The one-line error a refused `keyturn` command prints (its text after ``error: ``)."""
        from typer.testing import CliRunner

        from keyturn.cli.main import app

        done = CliRunner().invoke(app, list(args), env=self.env)
        assert done.exit_code != 0, f"keyturn {' '.join(args)} was not refused"
        line = next(x for x in done.output.splitlines() if x.startswith("error: "))
        return line.removeprefix("error: ")

    def start_lab(self) -> None:
        """Start the lab process; `wait_lab` waits for it (other set-up runs meanwhile)."""
        with (self.root / "lab.log").open("wb") as log:
            self.lab = subprocess.Popen(
                [sys.executable, "-m", "keyturn.cli.main", "sim", "lab", "--iosxe", "1", "--meraki-orgs", "0",
                 "--seed", "2", "--state-file", str(self.root / "lab.json"),
                 "--records-file", str(self.root / "lab-records.json"), "-q"],
                env=self.process_env, stdout=log, stderr=log, cwd=self.root, start_new_session=True)

    def wait_lab(self) -> None:
        # `sim get` waits until the lab has written its state file
        self.control_url = self.keyturn("sim", "get", str(self.root / "lab.json"), "control_url").strip()

    def start_server(self, *, wait: bool = True) -> None:
        """`keyturn serve` on `port`, returned once `/healthz` answers (`wait_server`) unless not `wait`."""
        self.serve_starts += 1
        with (self.root / f"serve-{self.serve_starts}.log").open("wb") as log:
            self.server = subprocess.Popen(
                [sys.executable, "-m", "keyturn.cli.main", "serve", "--port", str(self.port),
                 "--grace", "30"],
                env=self.process_env, stdout=log, stderr=log, start_new_session=True)
        if wait:
            self.wait_server()

    def wait_server(self) -> None:
        assert self.server is not None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.server.poll() is None, f"keyturn serve exited: {self.server_log()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url("/healthz"), timeout=2).status_code == 200:
                    return
            assert time.monotonic() < deadline, "keyturn serve did not answer /healthz"
            time.sleep(0.1)

    def stop_server(self) -> None:
        """SIGTERM (rotations in flight get the grace period), then wait for the exit."""
        if self.server is None or self.server.poll() is not None:
            return
        self.server.send_signal(signal.SIGTERM)
        try:
            self.server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()

    def kill_server(self) -> None:
        """SIGKILL, as a crash: rotations in flight are left to recovery at the next start."""
        assert self.server is not None
        self.server.kill()
        self.server.wait()

    def server_log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.root.glob("serve-*.log")))

    def close(self) -> None:
        self.stop_server()
        if self.lab is not None and self.lab.poll() is None:
            self.lab.terminate()
            try:
                self.lab.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.lab.kill()
                self.lab.wait()

    # --- the lab -------------------------------------------------------------------------------------

    def lab_verify(self, username: str, password: str) -> bool:
        """The lab's own answer (control API `/verify`): does the device store `password` for the user?"""
        answer = httpx.post(f"{self.control_url}/verify", timeout=10, json={
            "kind": "iosxe", "device": DEVICE, "username": username, "password": password})
        answer.raise_for_status()
        return bool(answer.json()["ok"])

    def set_latency(self, seconds: float) -> None:
        """Delay every device answer (the lab's `latency` fault), so a rotation's steps arrive one by one."""
        httpx.post(f"{self.control_url}/faults", timeout=10, json={
            "kind": "iosxe", "device": DEVICE, "faults": {"latency": seconds}}).raise_for_status()

    # --- the API, for set-up and checks ----------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def api(self, method: str, path: str, role: str = "admin", **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.url(path), timeout=30,
                             headers={"Authorization": f"Bearer {self.tokens[role]}"}, **kwargs)

    def uid(self, title: str) -> str:
        found = self.api("GET", "/records", params={"title": title}).json()
        return str(next(r["uid"] for r in found if r["title"] == title))

    def audit(self, action: str, record_uid: str | None = None) -> list[dict[str, Any]]:
        params = {"action": action, **({"record": record_uid} if record_uid else {})}
        entries: list[dict[str, Any]] = self.api("GET", "/audit", params=params).json()["entries"]
        return entries

    # --- the browser ---------------------------------------------------------------------------------

    def signed_in(self, browser: Any, role: str, path: str = "/console/") -> Any:
        """A page in a fresh browser context (its own cookies), signed in as `role`, at `path`."""
        page = browser.new_context(viewport=VIEWPORT).new_page()
        page.goto(self.url(path))
        sign_in(page, self.tokens[role])
        return page


def sign_in(page: Any, token: str) -> None:
    """Fill the sign-in form the console shows (by its label) and submit it."""
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def shot(page: Any, name: str) -> Path:
    """A full-page screenshot under `tests/console/screenshots/NAME.png`."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _setup(stack: ConsoleStack) -> None:
    """Lab and server start while the vault is filled (the server reads the vault per request)."""
    stack.start_lab()
    stack.keyturn("init")
    stack.start_server(wait=False)
    stack.wait_lab()
    stack.keyturn("record", "import", str(stack.root / "lab-records.json"))
    stack.keyturn("device", "trust", DEVICE, "--yes", "--tls-only")
    for user in USERS:
        stack.keyturn("rotation", "set", title_of(user), "--target", "iosxe-restconf", "--resource", DEVICE,
                      "--admin", f"{DEVICE} admin", "--policy", "24,4,4,4,4")
    for role in ROLES:
        grant = ["--grant", f"record:{title_of(USERS[1])}"] if role == "consumer" else []
        out = stack.keyturn("token", "create", "--role", role, "--name", f"console-{role}", "--expires", "1d",
                            *grant)
        stack.tokens[role] = out.strip().splitlines()[0]


def chromium() -> str:
    """The system Chromium's path; skips (saying how to get one) when there is none."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("no chromium binary on PATH (Debian: apt-get install chromium; .ci/run installs it)")
    return executable


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    chromium()                  # no browser, no browser tests: skip before starting anything
    root = tmp_path_factory.mktemp("console")
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("KEYTURN_")}
    env["KEYTURN_HOME"] = str(root / "home")
    running = ConsoleStack(root=root, env=env, port=_free_port())
    try:
        _setup(running)
        running.wait_server()
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """The system Chromium under Playwright; the module is skipped when there is none. Per module:
    Playwright's sync API runs an event loop of its own, which must be gone before the package's
    asyncio tests run."""
    executable = chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    # Chromium refuses to run as root inside its sandbox (CI runs as root), and a container's small
    # /dev/shm crashes its renderers.
    args = ["--disable-dev-shm-usage", *(["--no-sandbox"] if os.geteuid() == 0 else [])]
    with sync_api.sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=executable, args=args)
        try:
            yield launched
        finally:
            launched.close()

