"""Sites: which workers rotate an account (issue 13, item 3).

A resource record (the device or network) may carry a site in its metadata, ``meta["site"]``; a rotation
profile may override it for one account with its ``site`` option. The account's rotations go to that
site's queue, and ``keyturn worker --site dc-east`` consumes only that queue. Without either, the site
is ``default``.

    site_of(vault, user)  =  profile option "site"  >  resource meta["site"]  >  "default"

The sites a vault may name are configured (`keyturn.config.Settings.sites`)::

    KEYTURN_SITES=dc-east,dc-west          # or, in keyturn.toml:  [keyturn]  sites = ["dc-east", "dc-west"]

``default`` is always known. A name is lowercase, ``^[a-z0-9][a-z0-9_.-]{0,62}$``: it becomes a Celery
queue name. Every way a site gets into the vault (`keyturn record add|edit --site`, `keyturn rotation
set --site`, the API's record and profile routes, `keyturn record import`) checks it with `check_site`:
an unknown site is refused with the known ones listed, never stored. A site later removed from the
configuration is still returned by `site_of`; whoever dispatches decides what to do with it.

Reading a site decrypts nothing: metadata only, the user's (already read, or one read) and one read of
the resource's.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from keyturn.errors import ConfigError, RecordNotFound

if TYPE_CHECKING:
    from keyturn.config import Settings

DEFAULT_SITE = "default"
META_KEY = "site"                # on a resource record: meta["site"]
OPTION = "site"                  # on a rotation profile: options["site"]
PROFILE_KEY = "rotation"         # keyturn.engine.profile.META_KEY (not imported: this module stays low)
SITE_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")   # fullmatch; a Celery queue name
NAME_RULE = "a lowercase letter or digit, then up to 62 of a-z 0-9 _ . -"
HOW_TO_ADD = ("to add one, list it in KEYTURN_SITES (comma-separated) or in `sites = [...]` under "
              "[keyturn] in keyturn.toml")


class MetaReader(Protocol):
    """What `site_of` needs from a vault (`keyturn.vault.Vault.meta`)."""

    def meta(self, ref: str) -> tuple[str, dict[str, Any]]: ...


class HasMeta(Protocol):
    @property
    def meta(self) -> Mapping[str, Any]: ...


def _quoted(name: str) -> str:
    return repr(name if len(name) <= 64 else name[:63] + "…")


def check_name(name: str) -> str:
    """`name` if it is a well-formed site name; `ConfigError` saying the rule otherwise."""
    if not isinstance(name, str) or not SITE_NAME.fullmatch(name):
        shown = _quoted(name) if isinstance(name, str) else f"of type {type(name).__name__}"
        raise ConfigError(f"site name {shown} is not valid: {NAME_RULE} (it becomes a queue name)")
    return name


def configured_sites(names: Iterable[str]) -> list[str]:
    """`default` first, then `names` checked and without repeats (what `Settings.sites` holds)."""
    out = [DEFAULT_SITE]
    for name in names:
        if check_name(name) not in out:
            out.append(name)
    return out


def known_sites(settings: Settings) -> list[str]:
    """The sites a record or profile may name: `default`, then the configured ones in their order."""
    return configured_sites(settings.sites)


def check_site(name: str, settings: Settings) -> str:
    """`name` (surrounding spaces dropped) when it is a known site; else `ConfigError` listing the known
    sites and saying how to add one (exit 2 in the CLI, 422 in the API)."""
    # Only spaces: a stray newline or tab is refused, not silently dropped.
    return check_known(name.strip(" ") if isinstance(name, str) else name, known_sites(settings))


def check_known(name: str, known: Sequence[str]) -> str:
    """`name` when it is well formed and one of `known`; `ConfigError` as `check_site` raises it."""
    if check_name(name) not in known:
        raise ConfigError(f"unknown site {_quoted(name)}; known sites: {', '.join(known)}; {HOW_TO_ADD}")
    return name


def site_setting(name: str | None, settings: Settings) -> str | None:
    """What a `--site` option (or an API ``site``) asks to store on a record: None to clear (``""`` or
    ``default``: a record without a site is at the default site), else the checked known name."""
    if name is None or not name.strip(" "):
        return None
    site = check_site(name, settings)
    return None if site == DEFAULT_SITE else site


def profile_options(options: Mapping[str, str], site: str | None, settings: Settings) -> dict[str, str]:
    """Profile `options` with a `--site` option folded in: None leaves them as they are, ``""`` means
    no override, a name must be a known site (`default` too: it pins the account to the default site
    whatever its resource says); ``--option site=NAME`` is checked the same way. `ConfigError` for an
    unknown site, or when ``--option site=`` and `site` disagree."""
    out = dict(options)
    if site is not None:
        chosen = check_site(site, settings) if site.strip(" ") else None
        given = out.pop(OPTION, None)
        if given is not None and given.strip(" ") != (chosen or ""):
            raise ConfigError("--site and --option site= disagree; give one of them")
        if chosen is not None:
            out[OPTION] = chosen
    elif OPTION in out:
        out[OPTION] = check_site(out[OPTION], settings)
    return out


def _site_value(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not SITE_NAME.fullmatch(value):
        raise ConfigError(f"the {where} holds a malformed site; set it again with --site NAME")
    return value


def profile_site(user_meta: Mapping[str, Any]) -> str | None:
    """The override in a user record's rotation profile (``options.site``), or None."""
    profile = user_meta.get(PROFILE_KEY)
    options = profile.get("options") if isinstance(profile, Mapping) else None
    if not isinstance(options, Mapping):
        return None
    return _site_value(options.get(OPTION), "rotation profile")


def resource_of(user_meta: Mapping[str, Any]) -> str | None:
    """The resource record uid a user record's rotation profile names, or None."""
    profile = user_meta.get(PROFILE_KEY)
    resource = profile.get("resource") if isinstance(profile, Mapping) else None
    return resource if isinstance(resource, str) and resource else None


def site_from_metas(user_meta: Mapping[str, Any], resource_meta: Mapping[str, Any] | None) -> str:
    """The site from already-read metadata (batch use): the profile's override, else the resource's
    ``site``, else `DEFAULT_SITE`. `ConfigError` for a malformed stored value (written around keyturn)."""
    return _resolve(user_meta, resource_meta)[0]


def _resolve(user_meta: Mapping[str, Any], resource_meta: Mapping[str, Any] | None) -> tuple[str, str]:
    override = profile_site(user_meta)
    if override is not None:
        return override, "profile"
    site = _site_value(resource_meta.get(META_KEY), "resource record") if resource_meta else None
    return (site, "resource") if site is not None else (DEFAULT_SITE, "default")


def site_of(vault: MetaReader, user: HasMeta | str) -> str:
    """The site an account's rotations go to. `user` is the user record (anything with ``meta``) or its
    uid/title (then its metadata is read too). At most one metadata read for the resource, and none when
    the profile overrides it; nothing is decrypted. A resource that no longer exists counts as siteless
    (the rotation itself will say what is wrong); `RecordNotFound` only for a `user` reference."""
    return site_and_source(vault, user)[0]


def site_and_source(vault: MetaReader, user: HasMeta | str) -> tuple[str, str]:
    """`site_of` and where it came from: ``"profile"``, ``"resource"`` or ``"default"``."""
    user_meta = vault.meta(user)[1] if isinstance(user, str) else user.meta
    resource = resource_of(user_meta)
    resource_meta: dict[str, Any] | None = None
    if resource is not None and profile_site(user_meta) is None:
        with contextlib.suppress(RecordNotFound):
            _uid, resource_meta = vault.meta(resource)
    return _resolve(user_meta, resource_meta)


def check_meta_sites(meta: Mapping[str, Any], known: Sequence[str]) -> None:
    """Check every site a record's metadata carries (its own ``site``, its profile's ``options.site``)
    against `known` (`known_sites`): for writes of whole metadata, such as an import. `ConfigError` as
    `check_site` raises it."""
    values = [('"meta.site"', meta.get(META_KEY))]
    profile = meta.get(PROFILE_KEY)
    options = profile.get("options") if isinstance(profile, Mapping) else None
    if isinstance(options, Mapping):
        values.append(("the rotation profile's site option", options.get(OPTION)))
    for where, value in values:
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be text, not {type(value).__name__}")
        check_known(value, known)
