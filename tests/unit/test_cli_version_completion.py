"""`keyturn --version` and shell completion over the lazy command registry (issue 15, item 6)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from importlib.metadata import version

from typer.testing import CliRunner

from keyturn.cli.main import COMMANDS, app
from tests.unit.test_cli_imports import COMMAND_MODULES, env_for, imported, loaded


def test_version() -> None:
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0, r.output
    from keyturn.vault.storage import shipped_head

    head = shipped_head()
    assert head is not None
    assert r.stdout == f"keyturn {version('keyturn')} (database schema {head})\n"


def _complete(words: str, cword: int) -> tuple[set[str], list[str]]:
    env = {**env_for(), "_KEYTURN_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    modules, out = imported("-m", "keyturn.cli.main", env=env)
    return modules, out.split()


def test_completing_command_names_imports_no_command_module() -> None:
    modules, names = _complete("keyturn ", 1)
    assert names == [e.name for e in COMMANDS]
    assert loaded(modules, COMMAND_MODULES) == []
    _, names = _complete("keyturn rot", 1)
    assert names == ["rotate", "rotation"]
    _, names = _complete("keyturn --v", 1)
    assert names == ["--version"]


def test_completing_inside_a_command_group_and_its_options() -> None:
    _, names = _complete("keyturn rotation s", 2)
    assert names == ["set", "show"]
    _, names = _complete("keyturn rotate --json", 2)
    assert names == ["--json", "--json-lines"]


def test_the_completion_script_is_for_the_calling_shell() -> None:
    # The shell is detected from the parent process, as when a person types it.
    command = f"{shlex.quote(sys.executable)} -m keyturn.cli.main --show-completion"
    proc = subprocess.run(["bash", "-c", command], env=env_for(), capture_output=True, text=True,
                          check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "complete -o default -F _keyturn_completion keyturn" in proc.stdout
    assert "_KEYTURN_COMPLETE=complete_bash" in proc.stdout
