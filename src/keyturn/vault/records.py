"""Keeper-shaped records: typed standard fields, custom fields by label, a non-secret `meta` dict.

A record is ``uid`` (22-char URL-safe random), ``title``, ``type`` (``login``, ``pamUser``,
``pamNetworkDevice``, ``pamMerakiNetwork``, ``pamConfiguration``, ...), standard ``fields`` and
``custom`` fields. A field is ``type`` + optional ``label`` + a value list, as in Keeper.

Secret-bearing fields (`is_secret_field`) are never stored in the record row: their values live in
encrypted, versioned slots (see `versions.py`); the row keeps only the slot name. In a `Record`
their values are `Secret` objects.

What a record may hold is checked on WRITE only (`validate_title`, `check_fields`): a vault written
before a rule existed stays readable. Titles, logins and field labels are read by people (listings,
confirmations, audit trails), so they may not hold control, bidi or zero-width characters
(`REFUSED_CHARACTERS`); no stored text may hold a lone surrogate (not Unicode: the database cannot take
it). An error names the refused code point and its position, never the raw value; `shown` is how a
title or login is quoted in a message (first `ECHO_CHARS` characters, escaped).
"""

from __future__ import annotations

import math
import re
import secrets
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
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

MAX_TITLE_CHARS = 200   # a title is a name for people; the column holds 512 (older vaults may have such)
MAX_LOGIN_CHARS = 256   # an e-mail address (Meraki, RFC 5321: 254) with room; IOS XE names stop at 64
MAX_LABEL_CHARS = 128   # as the API's FieldIn.label
MAX_VALUE_DEPTH = 8     # nesting inside one field value (Keeper objects are flat: host, name, phone, ...)
MAX_META_DEPTH = 16     # nesting inside `meta` (a rotation profile with options is 3 deep)
ECHO_CHARS = 60         # how much of a title / login an error message quotes

# Characters a title, login or label may not contain: (first, last, what). Each can make a name read as
# something it is not: C0/C1 controls move the cursor or end a line (a forged row in `record list`, a
# forged line in a log), bidi controls reorder what is shown ("Trojan Source", CVE-2021-42574), zero-width
# ones make two different names look equal. Lone surrogates are not Unicode at all.
REFUSED_CHARACTERS: tuple[tuple[int, int, str], ...] = (
    (0x0000, 0x001F, "a control character"),
    (0x007F, 0x009F, "a control character"),
    (0x061C, 0x061C, "a bidi mark"),
    (0x200B, 0x200F, "a zero-width or bidi mark"),
    (0x2028, 0x2029, "a line or paragraph separator"),
    (0x202A, 0x202E, "a bidi embedding or override"),
    (0x2066, 0x2069, "a bidi isolate"),
    (0xD800, 0xDFFF, "a lone surrogate (not Unicode text)"),
    (0xFEFF, 0xFEFF, "a zero-width no-break space"),
)
# Names Unicode does not give (controls have none in `unicodedata`).
CONTROL_NAMES: dict[int, str] = {
    0x00: "NUL", 0x07: "BEL", 0x08: "BACKSPACE", 0x09: "TAB", 0x0A: "LINE FEED", 0x0B: "VERTICAL TAB",
    0x0C: "FORM FEED", 0x0D: "CARRIAGE RETURN", 0x1B: "ESCAPE", 0x7F: "DELETE", 0x85: "NEXT LINE",
    0x9B: "CONTROL SEQUENCE INTRODUCER",
}
_REFUSED = re.compile("[" + "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b, _ in REFUSED_CHARACTERS) + "]")
_SURROGATE = re.compile("[\\ud800-\\udfff]")
# Field types whose values are text a person reads (objects belong to host, name, phone, ...).
LOGIN_TYPE = "login"
TEXT_FIELD_TYPES: frozenset[str] = frozenset({"url", "email", "note", "text", "multiline"})
_FIELD_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")  # fullmatch: "$" would let a final "\n" in


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


def shorten(text: str, limit: int = ECHO_CHARS) -> str:
    """The first `limit` characters of `text`, with "…" when there were more."""
    return text if len(text) <= limit else text[:limit] + "\u2026"


def shown(text: str) -> str:
    """How an error quotes a title or login: shortened, then `repr` (controls, bidi and zero-width
    characters escaped, so a stored name cannot rewrite the line it is shown in)."""
    return repr(shorten(text))


def unstorable(text: str) -> bool:
    """True when `text` holds a lone surrogate (e.g. a non-UTF-8 byte of a command line): the database
    cannot take it, and nothing stored can equal or contain it."""
    return _SURROGATE.search(text) is not None


def escaped(text: str) -> str:
    """`text` with each `REFUSED_CHARACTERS` character written as its escape (``\\u202e``): for showing
    a name stored before the rule, or any message, without it acting on the terminal."""
    return _REFUSED.sub(lambda m: m.group().encode("unicode_escape", "backslashreplace").decode("ascii"),
                        text)


def describe_char(ch: str) -> str:
    """``U+202E RIGHT-TO-LEFT OVERRIDE``: a code point and its name, for messages (never the raw char)."""
    name = CONTROL_NAMES.get(ord(ch)) or unicodedata.name(ch, "")
    return f"U+{ord(ch):04X} {name}".rstrip()


def _refused(text: str, what: str, *, pattern: re.Pattern[str] = _REFUSED) -> None:
    m = pattern.search(text)
    if m is None:
        return
    ch = m.group()
    kind = next(k for a, b, k in REFUSED_CHARACTERS if a <= ord(ch) <= b)
    raise VaultError(f"{what} contains {kind}, {describe_char(ch)}, at character {m.start() + 1}; "
                     "remove it")


def check_name(text: object, what: str, *, limit: int) -> str:
    """`text` as a name people read (title, login, label): text, at most `limit` characters, none of
    `REFUSED_CHARACTERS`. `VaultError` naming `what` and the code point otherwise (never the value)."""
    if not isinstance(text, str):
        raise VaultError(f"{what} must be text, not {_json_kind(text)}")
    _refused(text, what)
    if len(text) > limit:
        raise VaultError(f"{what} is {len(text)} characters long; the limit is {limit}")
    return text


def validate_title(title: object) -> str:
    """The title to store (surrounding spaces removed); `VaultError` when empty, longer than
    `MAX_TITLE_CHARS` or holding a refused character."""
    if not isinstance(title, str):
        raise VaultError(f"a record title must be text, not {_json_kind(title)}")
    _refused(title, "the record title")
    title = title.strip()
    if not title:
        raise VaultError("a record title must not be empty")
    return check_name(title, "the record title", limit=MAX_TITLE_CHARS)


def check_record_type(rtype: object) -> str:
    """A record type is a name: a letter, then letters, digits or _ (at most 64). `VaultError`."""
    if not isinstance(rtype, str) or not _FIELD_TYPE.fullmatch(rtype):
        got = shown(rtype) if isinstance(rtype, str) else _json_kind(rtype)
        raise VaultError(f"invalid record type {got}: a letter, then letters, digits or _")
    return rtype


def title_key(title: str) -> str:
    return title.strip().casefold()


def _json_kind(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "text", bool: "true/false", type(None): "null",
             int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


def check_value(value: object, where: str, *, depth: int) -> None:
    """`value` is JSON a vault row can hold: text without lone surrogates, finite numbers, true/false,
    null, lists and objects (text keys) nested at most `depth` deep. `VaultError` naming `where`."""
    stack: list[tuple[object, str, int]] = [(value, where, 0)]
    while stack:  # a loop, not recursion: the input decides how deep it goes
        v, at, level = stack.pop()
        if isinstance(v, str):
            _refused(v, at, pattern=_SURROGATE)
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise VaultError(f"{at}: {v} is not a JSON number")
        elif v is None or isinstance(v, (bool, int)):
            continue
        elif isinstance(v, (list, tuple, Mapping)):
            if level >= depth:
                raise VaultError(f"{at}: nested more than {depth} levels deep")
            if isinstance(v, Mapping):
                for k, item in v.items():
                    if not isinstance(k, str):
                        raise VaultError(f"{at}: object keys must be text, not {_json_kind(k)}")
                    _refused(k, f"{at}: a key", pattern=_SURROGATE)
                    stack.append((item, f"{at}.{shorten(k, 20)}", level + 1))
            else:
                stack.extend((item, f"{at}[{i}]", level + 1) for i, item in enumerate(v))
        else:
            raise VaultError(f"{at}: {_json_kind(v)} is not a JSON value")


def _field_key(f: Field) -> tuple[str, str | None, str]:
    """What makes two plain fields the same for `check_fields(unchanged=...)`."""
    return f.type, f.label, repr(f.value)


def check_fields(
    fields: Sequence[Field], custom: Sequence[Field], *, unchanged: Sequence[Field] = (),
) -> None:
    """What a write may store: field types are names, labels and logins are names people read
    (`check_name`), text fields hold text or numbers, secret fields one text value, other values JSON
    (`check_value`). A field equal to one in `unchanged` (the record as stored) is not checked again,
    so a record written before a rule existed can still be edited. `VaultError` naming the field."""
    names = {(f.type, f.label) for f in unchanged}
    keep = {_field_key(f) for f in unchanged}
    for group, is_custom in ((fields, False), (custom, True)):
        for f in group:
            if not isinstance(f, Field):
                raise VaultError(f"a field must be a Field, not {type(f).__name__}")
            if (f.type, f.label) not in names:
                _check_names(f, is_custom)
            what = f"{'custom ' if is_custom else ''}field {shown(f.name) if f.label else f.type}"
            if not isinstance(f.value, list):
                raise VaultError(f"{what}: the value must be a list, not {_json_kind(f.value)}")
            if is_secret_field(f.type, custom=is_custom):
                _check_secret(f.value, what)  # always: a changed secret keeps its field's key
            elif _field_key(f) not in keep:
                for v in f.value:
                    _check_plain(f.type, v, what)


def _check_names(f: Field, is_custom: bool) -> None:
    if not isinstance(f.type, str) or not _FIELD_TYPE.fullmatch(f.type):
        shown_type = shown(f.type) if isinstance(f.type, str) else _json_kind(f.type)
        raise VaultError(f"invalid field type {shown_type}: a letter, then letters, digits or _")
    if f.label is not None:
        check_name(f.label, f"the label of {'custom ' if is_custom else ''}field {f.type}",
                   limit=MAX_LABEL_CHARS)


def _check_secret(values: list[Any], what: str) -> None:
    if len(values) > 1:
        raise VaultError(f"{what}: a secret field holds one value, not {len(values)}")
    for v in values:
        text = v.reveal() if isinstance(v, Secret) else v
        if not isinstance(text, str):
            raise VaultError(f"{what}: a secret value must be text, not {_json_kind(text)}")
        if _SURROGATE.search(text):  # the position would say something about the secret: not given
            raise VaultError(f"{what}: the secret value contains a lone surrogate (not Unicode text)")


def _check_plain(ftype: str, v: object, what: str) -> None:
    if isinstance(v, Secret):
        raise VaultError(f"{what} of type {ftype!r} is not a secret field; its value must not be a Secret")
    if ftype == LOGIN_TYPE:
        check_name(v, f"the login ({what})", limit=MAX_LOGIN_CHARS)
    elif ftype in TEXT_FIELD_TYPES and not isinstance(v, (str, int, float)):
        raise VaultError(f"{what}: a {ftype} value must be text, not {_json_kind(v)}")
    check_value(v, what, depth=MAX_VALUE_DEPTH)
