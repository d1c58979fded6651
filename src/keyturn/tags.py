"""Tags: how records are grouped (issue 16, item 1).

keyturn groups records with tags, not folders: a record may sit in several groups at once (``backup``
and ``dc-east``), and a group needs no creating. A record's tags are kept in its metadata,
``meta["tags"]``: a sorted list without repeats. They are what a consumer token's ``tag:NAME`` grant
matches (`keyturn.consumers`).

    keyturn record add --type pamUser --title "sw1 admin" --tag backup --tag dc-east ...
    keyturn record edit "sw1 admin" --untag dc-east
    keyturn token create --role consumer --grant tag:backup

A tag name is lowercase, ``^[a-z0-9][a-z0-9_.-]{0,62}$``; a record carries at most `MAX_TAGS`. Every way a
tag gets into the vault (`keyturn record add|edit --tag`, the API's record routes, `keyturn record
import`) checks it here: a malformed tag is refused with the rule, never stored. Reading tags
(`tags_of`) ignores a malformed stored value rather than failing: a value written around keyturn
matches no grant.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from keyturn.errors import ConfigError

META_KEY = "tags"                # on any record: meta["tags"]
TAG_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")   # fullmatch
NAME_RULE = "a lowercase letter or digit, then up to 62 of a-z 0-9 _ . -"
MAX_TAGS = 32


def _quoted(name: str) -> str:
    return repr(name if len(name) <= 64 else name[:63] + "…")


def check_tag(name: object) -> str:
    """`name` if it is a well-formed tag; `ConfigError` saying the rule otherwise (exit 2, HTTP 422)."""
    if not isinstance(name, str) or not TAG_NAME.fullmatch(name):
        shown = _quoted(name) if isinstance(name, str) else f"of type {type(name).__name__}"
        raise ConfigError(f"tag {shown} is not valid: {NAME_RULE}")
    return name


def check_tags(names: Iterable[object]) -> list[str]:
    """The tags checked, sorted, without repeats; `ConfigError` for a malformed one or too many."""
    out = sorted({check_tag(n) for n in names})
    if len(out) > MAX_TAGS:
        raise ConfigError(f"{len(out)} tags on one record; at most {MAX_TAGS}")
    return out


def tags_of(meta: Mapping[str, Any]) -> list[str]:
    """The well-formed tags a record's metadata carries (nothing decrypted, never raises)."""
    value = meta.get(META_KEY)
    if not isinstance(value, list):
        return []
    return sorted({v for v in value if isinstance(v, str) and TAG_NAME.fullmatch(v)})


def retag(current: Iterable[str], add: Iterable[str] = (), remove: Iterable[str] = ()) -> list[str]:
    """`current` with `add` added and `remove` taken away (both checked; removing an absent tag is
    fine), sorted; `ConfigError` for a malformed tag, a tag both added and removed, or too many."""
    adding, removing = set(check_tags(add)), {check_tag(n) for n in remove}
    both = adding & removing
    if both:
        raise ConfigError(f"tag {_quoted(min(both))} is both added and removed; give one of them")
    return check_tags((set(current) | adding) - removing)


def check_meta_tags(meta: Mapping[str, Any]) -> None:
    """Check the tags in a record's whole metadata (an import): absent, or a list of valid names."""
    value = meta.get(META_KEY)
    if value is None:
        return
    if not isinstance(value, list):
        raise ConfigError(f'"meta.tags" must be a list of tag names, not {type(value).__name__}')
    check_tags(value)


__all__ = ["MAX_TAGS", "META_KEY", "NAME_RULE", "TAG_NAME", "check_meta_tags", "check_tag", "check_tags",
           "retag", "tags_of"]
