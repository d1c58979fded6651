"""Typer's parameter conversion without pydantic for the values that need none (CLI start-up, issue 14).

Typer converts every parameter value through a pydantic `TypeAdapter` built on first use, so the first
option of any command imports pydantic (~40 ms) and builds adapters. Most values need no conversion: a
`str` option gets a `str` from the command line, a repeatable `list[str]` option a tuple of them, a
`Path` option a string that only has to become a `Path`. `plain_coercion(command)` gives each
parameter of `command` (and of its subcommands) a converter that returns those values exactly as
Typer's adapter would, and hands every other value (an `int`, a `bool` from the environment, a choice,
a callback parser, ...) to Typer's own converter, built then: its results and its error messages are
Typer's. `tests/unit/test_cli_coercion.py` checks both against Typer's adapters.

This leans on Typer internals (`typer.core._TyperParameter._runtime_param`, `typer._coercion`); when a
Typer release changes them, `plain_coercion` leaves the parameters alone (slower, never wrong).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typer import _click as click

try:
    from typer._coercion import RuntimeParam, build_runtime_param, resolve_type_descriptor
    from typer._param_types import coerce_cli_path
    from typer.core import _TyperParameter
except ImportError:  # pragma: no cover - a Typer without these internals: keep its own conversion
    RuntimeParam = None  # type: ignore[assignment,misc]

_LIST_STR = list[str]


def _plain(annotation: Any, value: Any) -> bool:
    """A value Typer's adapter (without a `parser`) returns unchanged (as a list, for `list[str]`)."""
    if annotation is str:
        return type(value) is str
    if annotation == _LIST_STR:
        return isinstance(value, (list, tuple)) and all(type(v) is str for v in value)
    return False


if RuntimeParam is not None:

    @dataclass(frozen=True)
    class PlainRuntimeParam(RuntimeParam):
        """A str, a list of str or a plain path string as is; anything else through Typer's adapter."""

        typer_param: list[RuntimeParam] = field(default_factory=list, compare=False)  # built on need

        def _coerce_value(self, value: Any, param: _TyperParameter, ctx: click.Context) -> Any:
            if self.parameter_info.parser is None and _plain(self.annotation, value):
                return list(value) if isinstance(value, (list, tuple)) else value
            if self._plain_path(value):
                # What Typer's path adapter does after pydantic's `Path(value)` (the exists/readable
                # checks and their messages): `value` round-trips, so the messages quote it unchanged.
                return coerce_cli_path(Path(value), self.parameter_info, path_type=Path, param=param, ctx=ctx)
            if not self.typer_param:
                self.typer_param.append(build_runtime_param(resolve_type_descriptor(
                    self.annotation, self.parameter_info)))
            return self.typer_param[0]._coerce_value(value, param=param, ctx=ctx)

        def _plain_path(self, value: Any) -> bool:
            info = self.parameter_info
            return (self.annotation is Path and info.path_type is None and info.parser is None
                    and type(value) is str and value != "" and str(Path(value)) == value)


def plain_coercion(command: click.Command, ctx: click.Context) -> None:
    """Install the pydantic-free converter on every parameter of `command` and of its subcommands
    (not of a lazy group's, which would all be imported or built: such a group converts its own
    when it resolves one). Help options are made now, with `ctx`'s help option names: the command's
    own context, or the one its context inherits them from."""
    if RuntimeParam is None:  # pragma: no cover
        return
    params = list(command.params)
    if "help_option_names" not in (command.context_settings or {}):  # else its own context decides
        params.append(command.get_help_option(ctx))  # type: ignore[arg-type]  # cached by the command
    for param in params:
        if (isinstance(param, _TyperParameter) and getattr(param, "_runtime_param", 0) is None
                and param.type_descriptor.file_annotation is None):
            desc = param.type_descriptor
            param._runtime_param = PlainRuntimeParam(parameter_info=desc.parameter_info,
                                                     annotation=desc.annotation)
    commands = getattr(command, "commands", None)
    if type(commands) is dict:
        for sub in commands.values():
            plain_coercion(sub, ctx)
