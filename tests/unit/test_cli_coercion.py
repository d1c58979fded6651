"""`keyturn.cli.coercion`: the pydantic-free converter gives what Typer's own gives, value or error.

Each case builds a one-option Typer command twice — once with Typer's converter, once with the one
`plain_coercion` installs — runs both on the same command line and compares the result, or the exit
code and the error text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
import typer.main

from keyturn.cli.coercion import PlainRuntimeParam, plain_coercion


def _outcome(annotation: Any, option: Any, args: list[str], *, plain: bool,
             env: dict[str, str] | None = None) -> tuple[str, Any]:
    """What a one-option command does with `args`: ("value", the value and its type) or ("error", the
    exception type and message)."""
    seen: list[Any] = []
    app = typer.Typer()

    def cmd(value=None):  # type: ignore[no-untyped-def]  # annotated below: the case's own type
        seen.append(value)

    cmd.__annotations__ = {"value": Annotated[annotation, option], "return": None}
    app.command()(cmd)
    command = typer.main.get_command(app)
    if plain:
        with typer.Context(command) as ctx:
            plain_coercion(command, ctx)
        assert all(isinstance(p._runtime_param, PlainRuntimeParam)  # type: ignore[attr-defined]
                   for p in command.params)
    try:
        with pytest.MonkeyPatch.context() as mp:
            for k, v in (env or {}).items():
                mp.setenv(k, v)
            command.main(args, standalone_mode=False)
    except typer.Exit as exc:  # --help
        return "exit", exc.exit_code
    except Exception as exc:  # the very exception is what is compared
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        return "error", (type(exc), message)
    return "value", [(v, type(v)) for v in seen]


CASES: list[tuple[Any, Any, list[str]]] = [
    (str | None, typer.Option("--value"), ["--value", "core-sw1"]),
    (str | None, typer.Option("--value"), ["--value", ""]),
    (str | None, typer.Option("--value"), ["--value", " spaced \t"]),
    (str | None, typer.Option("--value"), []),
    (list[str] | None, typer.Option("--value"), ["--value", "a=1", "--value", "b"]),
    (list[str] | None, typer.Option("--value"), []),
    (int | None, typer.Option("--value", min=1), ["--value", "3"]),
    (int | None, typer.Option("--value", min=1), ["--value", "0"]),
    (int | None, typer.Option("--value", min=1), ["--value", "three"]),
    (int | None, typer.Option("--value", min=1), []),
    (bool, typer.Option("--value"), ["--value"]),
    (Path | None, typer.Option("--value"), ["--value", "/var/lib/keyturn"]),
    (Path | None, typer.Option("--value"), ["--value", "relative/dir/"]),
    (Path | None, typer.Option("--value"), ["--value", "./x"]),
    (Path | None, typer.Option("--value"), ["--value", ""]),
    (Path | None, typer.Option("--value", exists=True), ["--value", "/nonexistent/keyturn/home"]),
    (Path | None, typer.Option("--value", exists=True), ["--value", "/nonexistent/keyturn/home/"]),
    (Path | None, typer.Option("--value", dir_okay=False), ["--value", "/"]),
    (str | None, typer.Option("--value", parser=str.upper), ["--value", "abc"]),
]


@pytest.mark.parametrize(("annotation", "option", "args"), CASES)
def test_the_plain_converter_gives_typers_value_or_typers_error(annotation: Any, option: Any,
                                                                 args: list[str]) -> None:
    assert _outcome(annotation, option, args, plain=True) == _outcome(annotation, option, args, plain=False)


def test_an_env_var_for_a_path_option_is_converted_as_typer_does(tmp_path: Path) -> None:
    option = typer.Option("--value", envvar="KT_TEST_PATH")
    env = {"KT_TEST_PATH": str(tmp_path)}
    plain = _outcome(Path | None, option, [], plain=True, env=env)
    assert plain == _outcome(Path | None, option, [], plain=False, env=env)
    assert plain == ("value", [(tmp_path, type(tmp_path))])
