"""Enable secret kept in step, end to end on the simulator with the CLI: `rotation set --target
iosxe-enable-secret --admin A` links A to the enable-secret record, the enable secret is rotated,
then an SSH rotation whose admin lands in `>` (so it must `enable`) succeeds with the new one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from keyturn.cli.main import app
from tests.lab_fixtures import running_lab


def cli(tmp_path: Path) -> Callable[..., Any]:
    """`run(*args, stdin=None, code=0)`: keyturn's CLI in-process on a vault under `tmp_path`."""
    runner = CliRunner()
    env = {"KEYTURN_HOME": str(tmp_path / "home"), "KEYTURN_MASTER_KEY": None, "KEYTURN_PASSPHRASE": None,
           "KEYTURN_DATABASE_URL": None, "KEYTURN_KEY_FILE": None}

    def run(*args: str, stdin: str | None = None, code: int = 0) -> Any:
        result = runner.invoke(app, list(args), env=env, input=stdin)
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        return result

    return run


async def test_enable_rotation_then_ssh_rotation_needing_enable(tmp_path: Path) -> None:
    run = cli(tmp_path)
    async with running_lab(tmp_path, iosxe=1, meraki_orgs=0, users_per_device=1) as lab:
        dev, state = lab.state.iosxe[0], lab.state
        model = lab.lab.device(dev.name).device
        user = dev.users[0]
        run("init")
        run("record", "add", "--type", "pamNetworkDevice", "--title", "sw1",
            "--field", f"host={dev.host}:{dev.restconf_port}", "--custom", f"ssh_port={dev.ssh_port}",
            "--custom", f"host_key_fingerprint={state.extra['ssh_host_key_fingerprint']}")
        run("record", "add", "--type", "pamUser", "--title", "sw1-admin", "--login", dev.admin.username,
            "--password", "-", "--secret-custom", f"enable_secret={dev.enable_secret}",
            stdin=f"{dev.admin.password}\n")
        run("record", "add", "--type", "pamUser", "--title", "sw1-enable", "--login", "enable",
            "--password", "-", stdin=f"{dev.enable_secret}\n")
        run("record", "add", "--type", "pamUser", "--title", "sw1-netops", "--login", user.username,
            "--password", "-", stdin=f"{user.password}\n")
        run("rotation", "set", "sw1-netops", "--target", "iosxe-ssh", "--resource", "sw1",
            "--admin", "sw1-admin")

        linked = run("rotation", "set", "sw1-enable", "--target", "iosxe-enable-secret", "--resource", "sw1",
                     "--admin", "sw1-admin")
        enable_uid = run("record", "show", "sw1-enable", "--json").stdout.split('"uid": "')[1].split('"')[0]
        assert linked.stdout.splitlines()[-1] == (
            f"admin record sw1-admin now reads its enable secret from sw1-enable (custom field "
            f"enable_secret_record = {enable_uid}): SSH rotations on this device use the current enable "
            "secret")
        assert "warning: admin record sw1-admin also holds a copied enable_secret; it is ignored now" \
            in linked.stderr

        await asyncio.to_thread(run, "rotate", "sw1-enable")
        new_enable = run("reveal", "sw1-enable").stdout.strip()
        assert new_enable != dev.enable_secret and model.check_enable(new_enable)

        # Now the admin lands in user EXEC (`>`) and must `enable` (privilege below 15; reference field
        # behaviour §1: the same happens to privilege 15 without `aaa authorization exec default local`).
        # The admin record still holds the old copy; the reference makes the SSH rotation use the new one.
        model.update_user(dev.admin.username, privilege=1)
        await asyncio.to_thread(run, "rotate", "sw1-netops")
        new_password = run("reveal", "sw1-netops").stdout.strip()
        assert new_password != user.password
        assert lab.lab.verify_iosxe(dev.name, user.username, new_password)[0]


async def test_enable_rotation_when_the_admin_lands_in_user_exec(tmp_path: Path) -> None:
    """The save after an enable-secret change must `enable` with the *new* secret: the old one is dead
    and the vault's copy is stale until the commit (the admin lands in `>`, so `write memory` needs it)."""
    run = cli(tmp_path)
    async with running_lab(tmp_path, iosxe=1, meraki_orgs=0, users_per_device=1) as lab:
        dev, state = lab.state.iosxe[0], lab.state
        model = lab.lab.device(dev.name).device
        model.update_user(dev.admin.username, privilege=1)       # lands in `>`: every save needs enable
        run("init")
        run("record", "add", "--type", "pamNetworkDevice", "--title", "sw1",
            "--field", f"host={dev.host}:{dev.restconf_port}", "--custom", f"ssh_port={dev.ssh_port}",
            "--custom", f"host_key_fingerprint={state.extra['ssh_host_key_fingerprint']}")
        run("record", "add", "--type", "pamUser", "--title", "sw1-admin", "--login", dev.admin.username,
            "--password", "-", stdin=f"{dev.admin.password}\n")
        run("record", "add", "--type", "pamUser", "--title", "sw1-enable", "--login", "enable",
            "--password", "-", stdin=f"{dev.enable_secret}\n")
        run("rotation", "set", "sw1-enable", "--target", "iosxe-enable-secret", "--resource", "sw1",
            "--admin", "sw1-admin")
        out = await asyncio.to_thread(run, "rotate", "sw1-enable", "--json")
        assert '"outcome": "rotated"' in out.stdout
        new_enable = run("reveal", "sw1-enable").stdout.strip()
        assert model.check_enable(new_enable) and not model.check_enable(dev.enable_secret)
        assert not model.unsaved_changes()                       # the save went through
