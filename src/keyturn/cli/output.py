"""Shared CLI plumbing: settings/vault access, JSON/Rich output, and error → exit code.

Every command is wrapped with `@handle_errors`: a `KeyturnError` ends as ONE red line on stderr
(``error: <message>``) and the exit code from `EXIT_CODES`; never a traceback.

    exit 0  success
    exit 1  generic failure (incl. audit chain broken, duplicate record, import failed)
    exit 2  usage / configuration error
    exit 3  vault sealed (no / wrong master key)
    exit 4  record not found / ambiguous
    exit 5  storage unavailable (database locked / unreachable)
    exit 141  the reader of stdout went away (`keyturn ... | head`); ends quietly, like SIGPIPE

Commands of other groups use the same helpers: `settings()`, `open_vault()`, `actor()`,
`echo_json()`, `table()`, `warn()`, `read_secret()`.
"""

from __future__ import annotations

import functools
import getpass
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

import typer

from keyturn.errors import (
    AmbiguousRecord,
    BrokerUnavailable,
    ConfigError,
    KeyturnError,
    RecordNotFound,
    StorageUnavailable,
    VaultSealed,
)
from keyturn.secret import Secret

if TYPE_CHECKING:
    from keyturn.config import Settings
    from keyturn.config_quick import QuickSettings
    from keyturn.vault import Vault

P = ParamSpec("P")
R = TypeVar("R")

EXIT_GENERIC, EXIT_USAGE, EXIT_SEALED, EXIT_NOT_FOUND, EXIT_STORAGE = 1, 2, 3, 4, 5
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `yes | head`
EXIT_CODES: tuple[tuple[type[KeyturnError], int], ...] = (
    (VaultSealed, EXIT_SEALED),
    (RecordNotFound, EXIT_NOT_FOUND),
    (AmbiguousRecord, EXIT_NOT_FOUND),
    (StorageUnavailable, EXIT_STORAGE),
    (BrokerUnavailable, EXIT_STORAGE),
    (ConfigError, EXIT_USAGE),
    (KeyturnError, EXIT_GENERIC),
)

# Global options from the root callback (`--home`, `--database-url`), applied by `settings()`.
OVERRIDES: dict[str, Any] = {}


def exit_code(exc: KeyturnError) -> int:
    return next(code for cls, code in EXIT_CODES if isinstance(exc, cls))


def error(message: str) -> None:
    """One red line on stderr (plain when stderr is not a terminal); control, bidi and zero-width
    characters escaped, whatever text the message quotes."""
    from keyturn.vault.records import escaped

    typer.echo(typer.style(f"error: {escaped(message)}", fg="red"), err=True)


def fail(message: str, code: int = EXIT_GENERIC) -> NoReturn:
    error(message)
    raise typer.Exit(code)


def warn(message: str) -> None:
    typer.echo(typer.style(f"warning: {message}", fg="yellow"), err=True)


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator for commands: KeyturnError → one line + exit code; Ctrl-C → exit 130."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            result = fn(*args, **kwargs)
            sys.stdout.flush()  # here, not at exit: a closed pipe must end up below, not in a traceback
            return result
        except BrokenPipeError:
            _quiet_broken_pipe()
        except KeyturnError as exc:
            error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            raise typer.Exit(exit_code(exc)) from None
        except KeyboardInterrupt:
            error("interrupted")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            try:
                sys.stdout.flush()
            except BrokenPipeError:
                silence_stdout()
            raise
        except Exception as exc:
            # A bug, not a user error: its text may hold anything, so show only its type by default.
            if os.environ.get("KEYTURN_DEBUG", "").lower() in ("1", "true", "yes"):
                raise
            error(f"internal error ({type(exc).__name__}); run again with KEYTURN_DEBUG=1 for the "
                  "traceback and please report it")
            raise typer.Exit(EXIT_GENERIC) from None

    return wrapper


def silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail on a closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor (e.g. a test runner's buffer)
        pass


def _quiet_broken_pipe() -> NoReturn:
    """The reader went away (`keyturn ... | head`): stop quietly, with the status a shell gives a
    command killed by SIGPIPE (128 + 13), instead of an "internal error" and a traceback."""
    silence_stdout()
    raise typer.Exit(EXIT_BROKEN_PIPE)


def settings() -> Settings:
    from keyturn.config import load_settings

    return load_settings(**OVERRIDES)


def quick_settings() -> Settings | QuickSettings:
    """`settings()` for a command that reads only what `keyturn.config_quick` knows (and the vault it
    opens): without pydantic when the configuration is plain, else the full settings."""
    from keyturn.config_quick import quick_settings

    return quick_settings(**OVERRIDES) or settings()


def _prompt_passphrase() -> Secret:
    if not sys.stdin.isatty():
        raise VaultSealed("vault is sealed: this vault uses a passphrase; set KEYTURN_PASSPHRASE")
    return Secret(typer.prompt("Vault passphrase", hide_input=True))


def open_vault(cfg: Settings | QuickSettings | None = None, **kwargs: Any) -> Vault:
    """Open the vault from `cfg` (default: `settings()`); prompts (hidden) for a passphrase on a
    terminal when needed."""
    from keyturn.vault import Vault

    kwargs.setdefault("ask_passphrase", _prompt_passphrase)
    return Vault.open(settings() if cfg is None else cfg, **kwargs)


def actor() -> str:
    """Audit actor for CLI actions: ``cli:<os user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=False, default=str))


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None) -> None:
    """A Rich table on a terminal; plain aligned columns, one row per line, when piped (grep/awk).
    Cells are escaped (`vault.records.escaped`): a stored newline or bidi override cannot forge a row."""
    from keyturn.vault.records import escaped

    cells = [[escaped(str(c)) if c is not None else "" for c in row] for row in rows]
    if not sys.stdout.isatty():
        widths = [max(len(x) for x in col) for col in zip(columns, *cells, strict=True)]
        if title:
            typer.echo(title)
        for line in (list(columns), *cells):
            typer.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(*columns, title=title, box=None, pad_edge=False, header_style="bold")
    for row in cells:
        t.add_row(*row)
    Console().print(t)


def read_secret(value: str | None, *, what: str, prompt: bool) -> Secret | None:
    """A secret from an option: ``-`` reads one line from stdin (an empty line is refused, exit 2); a
    literal value is allowed with a warning (process list / shell history); None prompts (hidden,
    confirmed) when `prompt` and stdin is a terminal, else gives None."""
    if value == "-":
        line = sys.stdin.readline()
        if not line:
            fail(f"--{what} -: nothing on stdin", EXIT_USAGE)
        value = line.rstrip("\r\n")
        if not value:
            # `echo "$UNSET_VAR" | keyturn record add ... --password -` must not store an empty secret.
            fail(f"--{what} -: the line on stdin is empty (an unset shell variable?); nothing was stored",
                 EXIT_USAGE)
        return Secret(value)
    if value is not None:
        warn(f"a {what} given on the command line can leak via the process list and shell history; "
             f"prefer --{what} - (stdin)")
        return Secret(value)
    if prompt and sys.stdin.isatty():
        entered = typer.prompt(f"{what.capitalize()} (empty for none)", default="", hide_input=True,
                               confirmation_prompt=True, show_default=False)
        return Secret(entered) if entered else None
    return None
