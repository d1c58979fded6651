"""`keyturn serve` as a real subprocess runs the `[[keyturn.notify]]` rules: a rotation that fails in
another process (`keyturn rotate`, the lab's device down) reaches the HTTPS webhook receiver once,
without a secret, and serve still exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from keyturn.config import Settings
from keyturn.secret import Secret
from keyturn.sim.tls import SimCA
from keyturn.vault import Field, Vault
from tests.integration.engine_lab import add_iosxe
from tests.integration.test_notify_receivers import HOOK_PATH, Hook
from tests.lab_fixtures import running_lab


async def keyturn(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "keyturn.cli.main", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_serve_sends_a_failed_rotation_from_another_process(tmp_path: Path) -> None:
    ca = SimCA.create("notify serve CA")
    hook = Hook(ca.server_context("127.0.0.1"))
    await hook.start()
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env["KEYTURN_HOME"] = str(home)
    try:
        async with running_lab(tmp_path, iosxe=1, meraki_orgs=0, users_per_device=1) as lab:
            with Vault.init(Settings(home=home)) as vault:
                vault.add(type="login", title="chat hook", fields=[
                    Field("password", None, [Secret(f"https://127.0.0.1:{hook.port}{HOOK_PATH}")])])
                acct = add_iosxe(vault, lab.state, "iosxe-restconf", devices=1, users=1, admin=False)[0]
                assert acct.device is not None
                secrets = {s.reveal() for r in vault.find() for f in r.fields for s in f.value
                           if isinstance(s, Secret)}
            (home / "keyturn.toml").write_text(
                f'[[keyturn.notify]]\nname = "chat"\ntype = "slack"\nurl_record = "chat hook"\n'
                f'ca_bundle = "{ca.write_ca(tmp_path / "ca.pem")}"\n')
            async with lab.control() as ctl:
                await ctl.set_faults(acct.device, {"down": True})

            serve = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "keyturn.cli.main", "serve", "--port", "0", "--grace", "5", env=env,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
            assert serve.stderr is not None
            logs: list[str] = []
            try:
                async with asyncio.timeout(60):
                    while not any("listening on" in line for line in logs):
                        logs.append((await serve.stderr.readline()).decode())
                code, _, _ = await keyturn("rotate", acct.uid, env=env)
                assert code != 0  # the device is down: the rotation failed
                async with asyncio.timeout(60):
                    while not hook.bodies:
                        await asyncio.sleep(0.05)
                serve.send_signal(signal.SIGTERM)
                async with asyncio.timeout(60):
                    rest = await serve.stderr.read()
                    assert await serve.wait() == 0
                logs += rest.decode().splitlines()
            finally:
                if serve.returncode is None:
                    serve.kill()
                    await serve.wait()
    finally:
        if hook.runner is not None:
            await hook.stop()
    assert len(hook.bodies) == 1  # once, although serve made a last delivery pass when it stopped
    text = json.loads(hook.bodies[0])["text"]
    assert "rotation failed" in text and "device unreachable" in text and acct.uid in text
    assert not [s for s in secrets if len(s) >= 6 and (s in text or s in "\n".join(logs))]
    assert HOOK_PATH.rsplit("/", 1)[1] not in "\n".join(logs)
