"""Reading inventory files: a size limit, UTF-8, and YAML that keeps Ansible's tags readable.

`load_yaml` is PyYAML's safe loader plus Ansible's two tags: ``!vault`` (an Ansible Vault value, which
keyturn cannot decrypt: it becomes `Encrypted`, an unknown secret) and ``!unsafe`` (a plain string).
Any YAML error becomes `ImportFailed` naming the file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from keyturn.errors import ImportFailed
from keyturn.inventory.model import Encrypted

MAX_BYTES = 64 * 1024 * 1024


def read_text(path: Path) -> str:
    """The file's text; `ImportFailed` when it cannot be read, is too large or is not UTF-8."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ImportFailed(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from exc
    if len(data) > MAX_BYTES:
        raise ImportFailed(f"{path} is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFailed(f"{path} is not UTF-8 (byte {exc.start})") from exc


class _Loader(yaml.SafeLoader):
    pass


def _vault(loader: yaml.SafeLoader, node: yaml.Node) -> Encrypted:
    return Encrypted()


def _unsafe(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    raise yaml.constructor.ConstructorError(None, None, "!unsafe on a non-scalar", node.start_mark)


_Loader.add_constructor("!vault", _vault)
_Loader.add_constructor("!unsafe", _unsafe)


def load_yaml(path: Path, text: str | None = None) -> Any:
    """The YAML document in `path` (or `text`); `ImportFailed` with the line for a syntax error."""
    source = read_text(path) if text is None else text
    try:
        return yaml.load(source, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ImportFailed(f"{path}{line}: not valid YAML: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise ImportFailed(f"{path}: not valid YAML: {type(exc).__name__}") from exc
