"""The target registry: a literal ``kind → "module:Class"`` map, imported lazily.

Adding a target = one line here plus its module (see `keyturn.targets.base`). Unknown kinds fail with
a "did you mean" hint; a target whose optional dependency is missing names the extra to install.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from keyturn.errors import ProfileError
from keyturn.targets.base import Target

TARGETS: dict[str, str] = {
    "iosxe-restconf": "keyturn.targets.iosxe_restconf:IosXeRestconfTarget",
    "iosxe-ssh": "keyturn.targets.iosxe_ssh:IosXeSshTarget",
    "iosxe-enable-secret": "keyturn.targets.iosxe_ssh:IosXeEnableSecretTarget",
    "meraki-auth-user": "keyturn.targets.meraki:MerakiAuthUserTarget",
    "meraki-ssid-psk": "keyturn.targets.meraki_ssid:MerakiSsidPskTarget",
    "meraki-ipsk": "keyturn.targets.meraki_ipsk:MerakiIpskTarget",
    "meraki-api-key": "keyturn.targets.meraki_api_key:MerakiApiKeyTarget",
    "noop": "keyturn.targets.noop:NoopTarget",
}

# Third-party module → the extra that installs it (for a clear message instead of an ImportError).
_EXTRAS = {"asyncssh": "keyturn (core dependency asyncssh)", "httpx": "keyturn (core dependency httpx)"}


def kinds() -> list[str]:
    return sorted(TARGETS)


def target_class(kind: str) -> type[Target]:
    """The class implementing `kind`; `ProfileError` for an unknown kind or a missing dependency."""
    path = TARGETS.get(kind)
    if path is None:
        close = difflib.get_close_matches(kind, TARGETS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ProfileError(f"unknown target kind {kind!r}{hint} (known: {', '.join(kinds())})")
    module_name, _, class_name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or "?"
        if missing.startswith("keyturn"):
            raise
        need = _EXTRAS.get(missing.split(".")[0], f"the package providing {missing!r}")
        raise ProfileError(f"target {kind!r} needs {missing!r}: install {need}") from exc
    cls: type[Target] = getattr(module, class_name)
    return cls


def create_target(kind: str, **io: Any) -> Target:
    """A new target of `kind`; `io` are its constructor's injected I/O (client factory, connect, ...)."""
    return target_class(kind)(**io)
