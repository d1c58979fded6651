"""Keeper-shaped records: typed standard fields, custom fields by label, a non-secret `meta` dict.

A record is ``uid`` (22-char URL-safe random), ``title``, ``type`` (``login``, ``pamUser``,
``pamNetworkDevice``, ``pamMerakiNetwork``, ``pamConfiguration``, ...), standard ``fields`` and
``custom`` fields. A field is ``type`` + optional ``label`` + a value list, as in Keeper.

Secret-bearing fields (`is_secret_field`) are never stored in the record row: their values live in
encrypted, versioned slots (see `versions.py`); the row keeps only the slot name. In a `Record`
their values are `Secret` objects.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import datetime
from typing import Any

from keyturn.errors import VaultError
from keyturn.secret import Secret

# Standard field types whose values are secrets (encrypted, versioned).
SECRET_FIELD_TYPES: frozenset[str] = frozenset({"password", "secret", "pinCode", "oneTimeCode", "privateKey"})
# Custom field types whose values are secrets.
SECRET_CUSTOM_TYPES: frozenset[str] = SECRET_FIELD_TYPES
# Standard field types keyturn knows (others are accepted as-is; Keeper has many more).
STANDARD_FIELD_TYPES: frozenset[str] = frozenset({
    "login", "password", "url", "email", "host", "pamHostname", "secret", "oneTimeCode", "pinCode",
    "privateKey", "keyPair", "name", "phone", "note", "text", "multiline", "date", "fileRef",
})
RECORD_TYPES: tuple[str, ...] = (
    "login", "pamUser", "pamNetworkDevice", "pamMerakiNetwork", "pamConfiguration", "pamMachine",
    "pamDatabase", "serverCredentials", "databaseCredentials", "general", "encryptedNotes",
)
DEFAULT_PAM_CONFIGURATION_TITLE = "Default PAM Configuration"


def new_uid() -> str:
    """22-char URL-safe random id, as Keeper's."""
    # A leading '-' would read as an option on every command line that takes a uid.
    while (uid := secrets.token_urlsafe(16)).startswith("-"):
        pass
    return uid


def is_secret_field(field_type: str, *, custom: bool) -> bool:
    return field_type in (SECRET_CUSTOM_TYPES if custom else SECRET_FIELD_TYPES)


@dataclass(frozen=True)
class Field:
    """One field: Keeper type, optional label, value list (values of secret fields are `Secret`)."""

    type: str
    label: str | None = None
    value: list[Any] = dc_field(default_factory=list)

    @property
    def name(self) -> str:
        """What a person calls it: the label, else the type."""
        return self.label or self.type


@dataclass(frozen=True)
class Record:
    """A decrypted record as the vault returns it. Secret values are `Secret` (redacted repr)."""

    uid: str
    title: str
    type: str
    fields: list[Field]
    custom: list[Field]
    meta: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    def field(self, type_or_label: str) -> Any | None:
        """First value of the first standard field with this type, else with this label; else None."""
        for by_label in (False, True):
            for f in self.fields:
                if (f.label if by_label else f.type) == type_or_label:
                    return f.value[0] if f.value else None
        return None

    def custom_value(self, label: str) -> Any | None:
        """First value of the custom field with this label (case-sensitive, then -insensitive)."""
        for fold in (False, True):
            for f in self.custom:
                have = f.label or ""
                if (have.casefold() == label.casefold()) if fold else (have == label):
                    return f.value[0] if f.value else None
        return None


# --- row (de)serialisation --------------------------------------------------------------------------


def slot_names(fields: Sequence[Field], custom: Sequence[Field]) -> list[tuple[Field, bool, str | None]]:
    """(field, is_custom, slot name or None) in order; slot names are unique within a record.

    Standard field ``password`` → ``password``; labelled ``password``/``enable`` → ``password:enable``;
    custom field labelled ``x`` → ``custom:x``.
    """
    out: list[tuple[Field, bool, str | None]] = []
    seen: set[str] = set()
    for group, is_custom in ((fields, False), (custom, True)):
        for f in group:
            if not is_secret_field(f.type, custom=is_custom):
                out.append((f, is_custom, None))
                continue
            if is_custom:
                base = f"custom:{f.label or f.type}"
            else:
                base = f"{f.type}:{f.label}" if f.label else f.type
            slot, n = base, 2
            while slot in seen:
                slot, n = f"{base}#{n}", n + 1
            seen.add(slot)
            out.append((f, is_custom, slot))
    return out


def encode_fields(items: Iterable[tuple[Field, str | None]]) -> list[dict[str, Any]]:
    """JSON-able field list for the record row: secret fields carry only their slot name."""
    rows: list[dict[str, Any]] = []
    for f, slot in items:
        row: dict[str, Any] = {"type": f.type, "label": f.label}
        if slot is None:
            for v in f.value:
                if isinstance(v, Secret):
                    raise VaultError(f"field {f.name!r} of type {f.type!r} is not a secret field; "
                                     "its value must not be a Secret")
            row["value"] = list(f.value)
        else:
            row["slot"] = slot
        rows.append(row)
    return rows


def secret_values(f: Field) -> list[Secret]:
    """Values of a secret field as `Secret`s (plain strings are wrapped)."""
    out: list[Secret] = []
    for v in f.value:
        if isinstance(v, Secret):
            out.append(v)
        elif isinstance(v, str):
            out.append(Secret(v))
        else:
            raise VaultError(
                f"secret field {f.name!r} holds a {type(v).__name__}; secret values must be text"
            )
    return out


def validate_title(title: str) -> str:
    title = title.strip()
    if not title:
        raise VaultError("a record title must not be empty")
    if len(title) > 512:
        raise VaultError("a record title must be at most 512 characters")
    return title


def title_key(title: str) -> str:
    return title.strip().casefold()
