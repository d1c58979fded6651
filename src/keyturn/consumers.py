"""Consumers: what a `consumer` API token may read, and reading one field for a program (issue 16).

A consumer is automation that logs in with an account keyturn rotates (a backup tool, an Ansible job,
a script run by `keyturn exec`). Its token carries grants, and it may reveal the records they match —
nothing else:

    record:UID     one record (`keyturn token create --grant record:REF` stores the record's uid, so a
                   later record that takes the title over is not granted)
    tag:NAME       every record tagged NAME (`keyturn.tags`), now or later

    granted(["tag:backup"], uid, meta)    → True when meta["tags"] holds "backup"

`read_field` is the one read a consumer gets: ``password`` (the default), ``login``, or the label of a
custom field, current value only. Every read is audited as ``reveal`` with the reader as actor.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from keyturn.errors import ConfigError, VaultError
from keyturn.secret import Secret
from keyturn.tags import check_tag, tags_of

if TYPE_CHECKING:
    from keyturn.vault import Vault

GrantKind = Literal["record", "tag"]
KINDS: tuple[GrantKind, ...] = ("record", "tag")
_RECORD_REF = re.compile(r"[^\x00-\x1f\x7f]{1,512}")  # a uid or a title; no control characters
MAX_GRANTS = 64


@dataclass(frozen=True, slots=True)
class Grant:
    """One grant of a consumer token: ``record:UID`` or ``tag:NAME``."""

    kind: GrantKind
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"

    def matches(self, uid: str, meta: Mapping[str, Any]) -> bool:
        if self.kind == "record":
            return uid == self.value
        return self.value in tags_of(meta)


def parse_grant(text: str) -> Grant:
    """``record:REF`` or ``tag:NAME`` as a `Grant`; `ConfigError` saying the form otherwise."""
    kind, sep, value = text.partition(":")
    if not sep or kind not in KINDS:
        raise ConfigError(f"grant {text[:80]!r}: expected record:REF or tag:NAME")
    if kind == "tag":
        return Grant("tag", check_tag(value))
    if not _RECORD_REF.fullmatch(value):
        raise ConfigError("grant record:REF: REF must be a record uid or title (1-512 characters, no "
                          "control characters)")
    return Grant("record", value)


def parse_grants(texts: Iterable[str]) -> list[Grant]:
    """Several grants, without repeats, in their order; `ConfigError` for a bad one or too many."""
    out: list[Grant] = []
    for text in texts:
        grant = parse_grant(text)
        if grant not in out:
            out.append(grant)
    if len(out) > MAX_GRANTS:
        raise ConfigError(f"{len(out)} grants on one token; at most {MAX_GRANTS} (tag records instead)")
    return out


def granted(grants: Iterable[Grant | str], uid: str, meta: Mapping[str, Any]) -> bool:
    """Whether any of `grants` matches the record `uid` with metadata `meta`."""
    return any((g if isinstance(g, Grant) else parse_grant(g)).matches(uid, meta) for g in grants)


def read_field(vault: Vault, uid: str, field: str = "password", *, actor: str) -> Secret:
    """The current value of `field` of record `uid` — a secret field (`Vault.reveal`), ``login`` or a
    plain custom field — as a `Secret`, audited as ``reveal`` for `actor`. `VaultError` naming the
    field when the record has no such field or it holds no value."""
    rec = vault.get(uid)
    value = rec.field(field)
    if value is None:
        value = rec.custom_value(field)
    if isinstance(value, Secret):
        return vault.reveal(uid, field=field, actor=actor)
    if value is None or isinstance(value, (dict, list)):
        raise VaultError(f"record {uid} has no field {field[:80]!r} with a value to read")
    vault.audit.append("reveal", actor=actor, record_uid=uid, details={"field": field, "plain": True})
    return Secret(str(value))


__all__ = ["KINDS", "MAX_GRANTS", "Grant", "granted", "parse_grant", "parse_grants", "read_field"]
