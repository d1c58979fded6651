"""Commands and sub-apps of `keyturn` imported on first use, so a command pays only for its own module.

`LazyGroup` is the root's Typer group class. Its commands come from a literal registry of
`Lazy(name, "module:attribute", help)` entries: the attribute is a command function or a sub-app
(`typer.Typer`). The module is imported when the command is resolved (`keyturn reveal` imports
`keyturn.cli.records` and nothing of `keyturn.cli.sim`), and the command is built exactly as
``app.command(name)(fn)`` / ``app.add_typer(sub, name=name)`` on the root would build it, with the
root's markup mode. `keyturn --help` and shell completion of command names list every entry from the
registry's `help` (the first paragraph of the command's docstring, or the sub-app's ``help=``), importing
nothing; `tests/unit/test_cli_imports.py` checks each against the loaded command.

A sub-app's group is built without its commands (`LazySubGroup`, `DeferredCommands`): each is built
as Typer builds it when looked up, so `keyturn record add` builds `add` alone; the group's `--help`
builds them all and reads as Typer's own (checked per sub-app by the same tests). Both kinds of group
convert plain option values without pydantic (`keyturn.cli.coercion`).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperCommand, TyperGroup
from typer.main import get_command_from_info, get_command_name, get_group
from typer.models import DefaultPlaceholder

from keyturn.cli.coercion import plain_coercion

if TYPE_CHECKING:
    from typer import _click as click
    from typer._click.shell_completion import CompletionItem
    from typer.core import MarkupMode


@dataclass(frozen=True)
class Lazy:
    """One top-level command or command group: where it lives and its one-line help."""

    name: str
    target: str  # "package.module:attribute" — a command function or a `typer.Typer` sub-app
    help: str    # the first paragraph of its help, as `keyturn --help` shows it (shortened to fit)

    def load(self, rich_markup_mode: MarkupMode) -> click.Command:
        """Import the module and build the command as the root app would have."""
        module, _, attribute = self.target.partition(":")
        # `__import__`, not `importlib.import_module`: only the former shows in `python -X importtime`.
        obj = getattr(__import__(module, fromlist=[attribute]), attribute)
        holder = typer.Typer(rich_markup_mode=rich_markup_mode)
        if not isinstance(obj, typer.Typer):
            holder.command(self.name)(obj)
            return get_group(holder).commands[self.name]
        if not _deferrable(obj):
            holder.add_typer(obj, name=self.name)
            return get_group(holder).commands[self.name]
        # The sub-app's group, built without its commands; each is built on first lookup, as Typer
        # builds it (`keyturn record add` builds `add`, not the group's eight commands).
        shell = copy.copy(obj)
        shell.registered_commands = []
        holder.add_typer(shell, name=self.name, cls=LazySubGroup)
        group = get_group(holder).commands[self.name]
        assert isinstance(group, LazySubGroup)
        build: dict[str, Callable[[], click.Command]] = {
            info.name or get_command_name(info.callback.__name__): functools.partial(  # type: ignore[union-attr]
                get_command_from_info, info, pretty_exceptions_short=holder.pretty_exceptions_short,
                rich_markup_mode=rich_markup_mode)
            for info in obj.registered_commands
        }
        group.commands = DeferredCommands(build, dict(group.commands))  # its sub-groups last, as Typer
        return group


def _deferrable(app: typer.Typer) -> bool:
    """A sub-app whose group class is Typer's own (the deferred group replaces it)."""
    classes = [app.info.cls, getattr(app.registered_callback, "cls", None)]
    return all(c is None or isinstance(c, DefaultPlaceholder) for c in classes)


class DeferredCommands(MutableMapping[str, "click.Command"]):
    """A sub-app's commands: built (by `build[name]()`) on first lookup; `ready` ones as they are."""

    def __init__(
        self, build: dict[str, Callable[[], click.Command]], ready: dict[str, click.Command],
    ) -> None:
        self.build = build
        self.loaded: dict[str, click.Command] = {}
        self.ready = ready

    def __getitem__(self, name: str) -> click.Command:
        if name in self.ready:
            return self.ready[name]
        if name not in self.loaded:
            self.loaded[name] = self.build[name]()
        return self.loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self.build.pop(name, None)
        self.ready[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        for d in (self.build, self.loaded, self.ready):
            d.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        yield from self.build
        yield from (n for n in self.ready if n not in self.build)

    def __len__(self) -> int:
        return len(self.build.keys() | self.ready.keys())

    def __contains__(self, name: object) -> bool:
        return name in self.build or name in self.ready


class _PlainValues(TyperGroup):
    """Values of plain options converted without pydantic (`keyturn.cli.coercion`): the group's own
    options when it parses (its context exists: it makes the help option), a subcommand's when it is
    resolved."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        plain_coercion(self, ctx)
        return super().parse_args(ctx, args)

    def resolve_command(
        self, ctx: click.Context, args: list[str],
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None:
            plain_coercion(command, ctx)
        return name, command, rest


class LazySubGroup(_PlainValues):
    """A sub-app's group (`DeferredCommands`)."""


class LazyCommands(MutableMapping[str, "click.Command"]):
    """The group's commands: names known up front, each one built on first lookup."""

    def __init__(self, entries: tuple[Lazy, ...], rich_markup_mode: MarkupMode) -> None:
        self.entries = {e.name: e for e in entries}
        self.rich_markup_mode = rich_markup_mode
        self.loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self.loaded:
            self.loaded[name] = self.entries[name].load(self.rich_markup_mode)
        return self.loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self.loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self.entries.pop(name, None)
        self.loaded.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        yield from self.entries
        yield from (n for n in self.loaded if n not in self.entries)

    def __len__(self) -> int:
        return len(self.entries.keys() | self.loaded.keys())

    def __contains__(self, name: object) -> bool:
        return name in self.entries or name in self.loaded

    def short_help(self, name: str, limit: int) -> str:
        """What `--help` shows for `name`: from the command once loaded, else from the registry."""
        if name in self.loaded:
            return self.loaded[name].get_short_help_str(limit)
        return TyperCommand(name=name, help=self.entries[name].help).get_short_help_str(limit)


class LazyGroup(_PlainValues):
    """A Typer group whose commands are the class's `registry` (set by `lazy_group`)."""

    registry: tuple[Lazy, ...] = ()

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        lazy = LazyCommands(self.registry, self.rich_markup_mode)
        for name, command in self.commands.items():  # registered on the app itself (none today)
            lazy[name] = command
        self.commands = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # TyperGroup's own listing, but the help text comes from the registry: nothing is imported.
        commands = self.commands
        assert isinstance(commands, LazyCommands)
        names = [n for n in commands if n not in commands.loaded or not commands.loaded[n].hidden]
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        with formatter.section("Commands"):
            formatter.write_dl([(n, commands.short_help(n, limit)) for n in names])

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        # TyperGroup's completion, with the command help from the registry: `keyturn <TAB>` imports
        # no command module (completing inside a command imports that command's module, as running it).
        from typer._click.core import Command
        from typer._click.shell_completion import CompletionItem

        commands = self.commands
        assert isinstance(commands, LazyCommands)
        items = [CompletionItem(n, help=commands.short_help(n, 45)) for n in commands
                 if n.startswith(incomplete) and not (n in commands.loaded and commands.loaded[n].hidden)]
        return items + Command.shell_complete(self, ctx, incomplete)


def lazy_group(*entries: Lazy) -> type[LazyGroup]:
    """The group class for `typer.Typer(cls=...)` over these entries (in `--help` order)."""
    return type("KeyturnGroup", (LazyGroup,), {"registry": entries})
