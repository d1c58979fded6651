"""CLI start-up (issue 14): a command imports only what it uses; `keyturn --help` still lists everything.

The module lists come from `python -X importtime` in a fresh interpreter (never from timings): importing
`keyturn.cli.main`, or running `keyturn --help`, loads no command module and none of the heavy or
network libraries; `keyturn reveal` and `keyturn record add` load their module and the vault, and
neither Alembic (the vault is at the shipped head), a network library nor pydantic (a plain
configuration is read by `keyturn.config_quick`). The help listing, built from the lazy registry without
importing anything, is checked against the commands themselves.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import typer.core
import typer.main

from keyturn.cli.lazy import DeferredCommands, Lazy, LazyCommands
from keyturn.cli.main import COMMANDS, app

HEAVY = ("sqlalchemy.orm", "httpx", "asyncssh", "fastapi", "celery", "cryptography.hazmat.backends")
NETWORK = ("httpx", "asyncssh", "fastapi", "uvicorn", "celery", "kombu", "redis", "paramiko")
COMMAND_MODULES = sorted({e.target.partition(":")[0] for e in COMMANDS})


def env_for(home: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env["COLUMNS"] = "200"
    if home is not None:
        env["KEYTURN_HOME"] = str(home)
    return env


def imported(*argv: str, env: dict[str, str] | None = None, stdin: str | None = None) -> tuple[set[str], str]:
    """Modules a fresh interpreter imports running `argv` (after `python -X importtime`), and its stdout."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *argv], env=env or env_for(), input=stdin,
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    modules = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
               if line.startswith("import time:") and "|" in line}
    assert "typer" in modules  # the list was parsed
    return modules, proc.stdout


def loaded(modules: set[str], names: tuple[str, ...] | list[str]) -> list[str]:
    return sorted(m for m in modules for n in names if m == n or m.startswith(n + "."))


def test_importing_the_cli_loads_no_command_module_and_nothing_heavy() -> None:
    modules, _ = imported("-c", "import keyturn.cli.main")
    assert "keyturn.cli.lazy" in modules
    assert loaded(modules, HEAVY) == []
    assert loaded(modules, COMMAND_MODULES) == []
    assert loaded(modules, ("sqlalchemy", "alembic", "pydantic_settings", "rich")) == []


def test_help_lists_every_command_importing_none_of_them() -> None:
    modules, out = imported("-m", "keyturn.cli.main", "--help")
    assert loaded(modules, HEAVY) == []
    assert loaded(modules, COMMAND_MODULES) == []
    listed = out.split("Commands:", 1)[1].splitlines()
    names = [line.split()[0] for line in listed if line.startswith("  ") and line.strip()]
    assert names == [e.name for e in COMMANDS]
    for entry in COMMANDS:
        line = next(x for x in listed if x.split()[:1] == [entry.name])
        shown = " ".join(line.split()[1:])  # shortened to the terminal width, with "..." when cut
        assert shown and entry.help.startswith(shown.removesuffix("...")), entry.name


# Not on `reveal` / `record add` against a plain configuration: the settings are read without pydantic
# (`keyturn.config_quick`), option values converted without it (`keyturn.cli.coercion`).
NOT_ON_THE_READ_PATH = ("alembic", *NETWORK, "pydantic", "pydantic_settings", "pydantic_core",
                        "keyturn.config", "rich", "sqlalchemy.dialects.postgresql", "keyturn.scripts.runner")


def test_reveal_and_record_add_load_their_module_and_the_vault_and_nothing_else(tmp_path: Path) -> None:
    env = env_for(tmp_path / "home")
    keyturn = [sys.executable, "-m", "keyturn.cli.main"]
    subprocess.run([*keyturn, "init"], env=env, check=True, capture_output=True)
    modules, out = imported("-m", "keyturn.cli.main", "record", "add", "--type", "login", "--title",
                            "core-sw1", "--password", "-", env=env, stdin="pw-one\n")
    assert len(out.strip()) == 22  # the new uid
    assert "keyturn.cli.records" in modules and "keyturn.vault.api" in modules
    assert loaded(modules, [m for m in COMMAND_MODULES if m != "keyturn.cli.records"]) == []
    assert loaded(modules, NOT_ON_THE_READ_PATH) == []
    modules, out = imported("-m", "keyturn.cli.main", "reveal", "core-sw1", env=env)
    assert out == "pw-one\n"
    assert "keyturn.cli.records" in modules and "keyturn.vault.api" in modules  # it did open the vault
    assert loaded(modules, [m for m in COMMAND_MODULES if m != "keyturn.cli.records"]) == []
    assert loaded(modules, NOT_ON_THE_READ_PATH) == []


def test_a_configuration_the_quick_loader_leaves_alone_is_loaded_in_full(tmp_path: Path) -> None:
    env = env_for(tmp_path / "home")
    keyturn = [sys.executable, "-m", "keyturn.cli.main"]
    subprocess.run([*keyturn, "init"], env=env, check=True, capture_output=True)
    subprocess.run([*keyturn, "record", "add", "--type", "login", "--title", "core-sw1", "--password", "-"],
                   env=env, input="pw-one\n", text=True, check=True, capture_output=True)
    modules, out = imported("-m", "keyturn.cli.main", "reveal", "core-sw1",
                            env={**env, "KEYTURN_CONCURRENCY": "8"})
    assert out == "pw-one\n"
    assert "pydantic_settings" in modules and "keyturn.config" in modules


def test_the_registry_help_is_the_first_paragraph_of_each_commands_own_help() -> None:
    for entry in COMMANDS:
        command = entry.load(None)
        assert command.name == entry.name
        first = (command.help or "").split("\n\n", 1)[0]
        assert " ".join(first.split()) == entry.help, entry.name


@pytest.mark.parametrize("width", [60, 80, 120, 200])
def test_the_lazy_listing_is_the_listing_of_the_loaded_commands(width: int) -> None:
    def help_text(load_all: bool) -> str:
        group = typer.main.get_command(app)
        commands = getattr(group, "commands", None)
        assert isinstance(commands, LazyCommands)
        if load_all:
            for name in list(commands):
                commands[name]
            assert set(commands.loaded) == {e.name for e in COMMANDS}
        else:
            assert commands.loaded == {}
        with typer.Context(group, info_name="keyturn", terminal_width=width, max_content_width=width) as ctx:
            return group.get_help(ctx)

    lazy = help_text(load_all=False)
    assert "Commands:" in lazy
    assert lazy == help_text(load_all=True)


def test_a_mistyped_command_is_still_suggested() -> None:
    proc = subprocess.run([sys.executable, "-m", "keyturn.cli.main", "recrod"], env=env_for(),
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "No such command 'recrod'. Did you mean 'record', 'recover'?" in proc.stderr


SUB_APPS = [e for e in COMMANDS if isinstance(e.load(None), typer.core.TyperGroup)]


@pytest.mark.parametrize("entry", SUB_APPS, ids=lambda e: e.name)
def test_a_sub_app_builds_only_the_command_that_runs_and_helps_as_typer_would(entry: Lazy) -> None:
    module, _, attribute = entry.target.partition(":")
    holder = typer.Typer(rich_markup_mode=None)
    holder.add_typer(getattr(__import__(module, fromlist=[attribute]), attribute), name=entry.name)
    eager = typer.main.get_group(holder).commands[entry.name]
    lazy = entry.load(None)
    assert isinstance(eager, typer.core.TyperGroup) and isinstance(lazy, typer.core.TyperGroup)
    commands = lazy.commands
    if isinstance(commands, DeferredCommands):
        assert commands.loaded == {}
    assert list(commands) == list(eager.commands)
    if isinstance(commands, DeferredCommands):
        first = next(iter(commands))
        commands[first]
        assert set(commands.loaded) == {first}
    for width in (80, 120):
        helps = []
        for group in (eager, lazy):
            with typer.Context(group, info_name=f"keyturn {entry.name}", terminal_width=width,
                               max_content_width=width) as ctx:
                helps.append([group.get_help(ctx)] + [
                    group.commands[n].get_help(typer.Context(group.commands[n], parent=ctx, info_name=n))
                    for n in group.commands])
        assert helps[1] == helps[0]
