"""Import / export: keyturn JSON and Keeper Commander JSON (``keeper export --format json``).

Parsing is separate from writing: `parse(text, fmt)` validates the whole file and returns
`NewRecord`s (or raises `ImportFailed` naming the JSON line/column or the record index and title);
`Vault.add_many` then writes them in one transaction, so an import is all-or-nothing.

An import file comes from elsewhere, so every part of it is checked before anything is written: at most
`MAX_IMPORT_BYTES`, strict JSON (no NaN/Infinity, no number the parser cannot hold, nesting within what
the parser can follow), every value of the type its place needs, and the record rules of
`vault.records` (titles, logins and labels without control/bidi/zero-width characters, no lone
surrogates anywhere, bounded nesting inside values). Whatever is wrong ends as `ImportFailed`, never
another exception; a title is quoted only when it is itself valid (`records.shown`).

A record that would run a post-rotation script (attachments in ``meta.scripts``, a ``Shell`` custom
field) is refused unless the admin confirms with ``allow_scripts`` (``keyturn record import
--allow-scripts``): an import file from elsewhere must not choose what runs with the passwords.

A site in a record's metadata (``meta.site``, a profile's ``options.site``) must be one of `sites`, the
known sites (`keyturn.sites.known_sites`; only ``default`` unless the caller passes them), as
``--site`` requires: an import is no back door to an unknown queue. Tags (``meta.tags``, `keyturn.tags`)
must be a list of valid tag names, as ``--tag`` requires: they decide what consumer tokens may reveal.

Keeper Commander shape::

    {"shared_folders": [...], "records": [{"uid": ..., "title": ..., "$type": "login", "login": ...,
      "password": ..., "login_url": ..., "notes": ..., "custom_fields": {...}, "folders": [...]}]}

`custom_fields` keys: a plain ``label`` is a text custom field; ``$type:label`` or
``$type:label:index`` (label may be empty: ``$oneTimeCode``, ``$keyPair::1``) carry a field type.
Typed keys whose type is one of `KEEPER_CUSTOM_TYPES` become custom fields, all others standard
fields (Keeper exports both sections into `custom_fields`; this rule round-trips keyturn's exports).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from keyturn.errors import ConfigError, ImportFailed, VaultError
from keyturn.scripts.attachments import script_bearing
from keyturn.secret import Secret
from keyturn.sites import DEFAULT_SITE, check_meta_sites
from keyturn.tags import check_meta_tags
from keyturn.vault.api import NewRecord
from keyturn.vault.records import (
    MAX_META_DEPTH,
    Field,
    Record,
    check_fields,
    check_value,
    is_secret_field,
    shown,
    validate_title,
)

FORMATS = ("keyturn", "keeper")
KEYTURN_FORMAT_VERSION = 1
KEEPER_CUSTOM_TYPES = frozenset({"text", "secret", "multiline"})
# Keeper top-level keys ↔ keyturn standard field types.
_KEEPER_TOP = (("login", "login"), ("password", "password"), ("login_url", "url"), ("notes", "note"))
# The label is everything between the type and an optional trailing ":index", so it may hold ":" itself.
_TYPED_KEY = re.compile(r"^\$(?P<type>[A-Za-z][A-Za-z0-9_]*)(?::(?P<label>.*?))?(?::(?P<index>\d+))?$",
                        re.DOTALL)
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")  # fullmatch: "$" would let a final "\n" in
# 64 MiB: ~150,000 Keeper records of ordinary size (~450 bytes each; 5,000 records are ~2 MiB), far past
# any real export, while parsing and checking one that big stays under ~1 GiB of memory (measured: 100,000
# records, 43 MiB, 13 s and 540 MiB peak). A bigger file is a mistake or an attack: refused unread.
MAX_IMPORT_BYTES = 64 * 1024 * 1024
_MIB = 1024 * 1024


class _Bad(Exception):
    """Internal: a problem in one record; turned into ImportFailed with the record's index/title."""


class _NotJson(ValueError):
    """Internal: a number strict JSON does not have (NaN, Infinity, a float that overflows)."""


def _no_constant(name: str) -> NoReturn:
    raise _NotJson(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _NotJson(f"the number {text[:20]}{'…' if len(text) > 20 else ''} is too large")
    return value


def _too_big(size: int, source: str) -> NoReturn:
    raise ImportFailed(
        f"{source} is larger than {MAX_IMPORT_BYTES // _MIB} MiB ({size // _MIB} MiB or more); keyturn "
        "refuses import files that size (split it into several imports)"
    )


def read_file(path: Path, *, limit: int = MAX_IMPORT_BYTES) -> str:
    """The text of an import file (UTF-8, an optional BOM dropped), read only up to `limit` bytes:
    `ImportFailed` when it is larger, unreadable or not UTF-8."""
    try:
        with path.open("rb") as fh:
            data = fh.read(limit + 1)  # not stat(): a FIFO or /dev/zero has no honest size
    except OSError as exc:
        raise ImportFailed(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > limit:
        _too_big(len(data), str(path))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFailed(f"{path} is not UTF-8 text (byte {exc.start + 1} is not valid UTF-8)") from exc


def _load(text: str, source: str) -> Any:
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_IMPORT_BYTES:
        _too_big(size, source)
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise ImportFailed(f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") \
            from exc
    except _NotJson as exc:
        raise ImportFailed(f"{source}: invalid JSON: {exc}") from exc
    except RecursionError as exc:  # the decoder stops cleanly at the interpreter's recursion limit
        raise ImportFailed(f"{source}: invalid JSON: nested too deeply for keyturn to read") from exc
    except ValueError as exc:  # an integer longer than int() accepts (sys.get_int_max_str_digits)
        raise ImportFailed(f"{source}: invalid JSON: a number has too many digits") from exc


def parse(
    text: str, fmt: str, *, source: str = "import file", allow_scripts: bool = False,
    sites: Sequence[str] = (DEFAULT_SITE,),
) -> list[NewRecord]:
    """Validate a whole import file and return the records to create; a script-bearing record is
    refused (`ImportFailed`) unless `allow_scripts`, a site outside `sites` always. Every problem is an
    `ImportFailed` naming the record (index, and its title when that is valid); nothing else escapes."""
    if fmt not in FORMATS:
        raise ImportFailed(f"unknown import format {shown(str(fmt))} (choose {' or '.join(FORMATS)})")
    doc = _load(text, source)
    if isinstance(doc, list):  # old Keeper exports are a bare list of records
        items: Any = doc
    elif isinstance(doc, dict):
        items = doc.get("records")
    else:
        items = None
    if not isinstance(items, list):
        raise ImportFailed(f"{source}: expected an object with a \"records\" list")
    convert = _from_keyturn if fmt == "keyturn" else _from_keeper
    out: list[NewRecord] = []
    for i, item in enumerate(items, start=1):
        where = f"{source}: record #{i}"
        if not isinstance(item, dict):
            raise ImportFailed(f"{where}: not a JSON object")
        with contextlib.suppress(VaultError):  # a wrong title is not quoted: `_title` says what is wrong
            where += f" ({shown(validate_title(item.get('title')))})"
        try:
            rec = convert(item)
            check_fields(rec.fields, rec.custom)
            check_value(dict(rec.meta or {}), "\"meta\"", depth=MAX_META_DEPTH)
            check_meta_sites(rec.meta or {}, sites)
            check_meta_tags(rec.meta or {})
        except (_Bad, VaultError, ConfigError) as exc:
            raise ImportFailed(f"{where}: {exc}") from exc
        found = script_bearing(custom=rec.custom, meta=rec.meta)
        if found and not allow_scripts:
            raise ImportFailed(
                f"{where}: carries {', '.join(found)}, which would run a program with the passwords at "
                "rotation time; review the file, then confirm with `keyturn record import --allow-scripts`"
            )
        out.append(rec)
    return out


def _title(item: dict[str, Any]) -> str:
    title = item.get("title")
    if title is None or (isinstance(title, str) and not title.strip()):
        raise _Bad("missing or empty \"title\"")
    try:
        return validate_title(title)
    except VaultError as exc:
        raise _Bad(f"\"title\": {exc}") from exc


def _uid(item: dict[str, Any]) -> str | None:
    uid = item.get("uid")
    if uid is not None and not isinstance(uid, str):
        raise _Bad(f"\"uid\" must be text, not {_kind(uid)}")
    return uid


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "true/false", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        got = shown(value) if isinstance(value, str) else _kind(value)
        raise _Bad(f"invalid {what} {got} (a letter, then letters, digits or _)")
    return value


def _values(raw: Any, where: str) -> list[Any]:
    values = raw if isinstance(raw, list) else [raw]
    for v in values:
        if not isinstance(v, (str, int, float, bool, dict)):
            raise _Bad(f"{where}: a value must be text, a number, true/false or an object, not {_kind(v)}")
    return list(values)


def _field(ftype: Any, label: Any, raw: Any, *, custom: bool) -> Field:
    ftype = _name(ftype, "field type")
    if label is not None and not isinstance(label, str):
        raise _Bad(f"field {ftype}: the label must be text, not {_kind(label)}")
    where = f"field {shown(label) if label else ftype}"
    values = _values(raw, where)
    if is_secret_field(ftype, custom=custom):
        if len(values) > 1:
            raise _Bad(f"{where}: a secret field holds one value")
        if any(not isinstance(v, str) for v in values):
            raise _Bad(f"{where}: secret values must be text")
        values = [Secret(v) for v in values]
    return Field(ftype, label or None, values)


def _from_keyturn(item: dict[str, Any]) -> NewRecord:
    title, rtype = _title(item), _name(item.get("type"), "record type")
    groups: list[list[Field]] = []
    for key in ("fields", "custom"):
        raw = item.get(key, [])
        if not isinstance(raw, list) or not all(isinstance(f, dict) for f in raw):
            raise _Bad(f"\"{key}\" must be a list of objects")
        groups.append([_field(f.get("type"), f.get("label"), f.get("value", []), custom=key == "custom")
                       for f in raw])
    meta = item.get("meta", {})
    if not isinstance(meta, dict):
        raise _Bad(f"\"meta\" must be an object, not {_kind(meta)}")
    return NewRecord(type=rtype, title=title, fields=groups[0], custom=groups[1], meta=meta, uid=_uid(item))


def _from_keeper(item: dict[str, Any]) -> NewRecord:
    title = _title(item)
    rtype = _name(item.get("$type", "login"), "record type")
    fields: list[Field] = []
    custom: list[Field] = []
    for key, ftype in _KEEPER_TOP:
        if item.get(key) not in (None, "", []):
            fields.append(_field(ftype, None, item[key], custom=False))
    cf = item.get("custom_fields", {})
    if not isinstance(cf, dict):
        raise _Bad(f"\"custom_fields\" must be an object, not {_kind(cf)}")
    for key, raw in cf.items():
        m = _TYPED_KEY.fullmatch(key)
        if key.startswith("$") and m is None:
            raise _Bad(f"custom field key {shown(key)} is not $type, $type:label or $type:label:index")
        if m is None:
            custom.append(_field("text", key, raw, custom=True))
        elif m["type"] in KEEPER_CUSTOM_TYPES:
            custom.append(_field(m["type"], m["label"] or None, raw, custom=True))
        else:
            fields.append(_field(m["type"], m["label"] or None, raw, custom=False))
    return NewRecord(type=rtype, title=title, fields=fields, custom=custom, uid=_uid(item))


# --- export ------------------------------------------------------------------------------------------


def _plain(v: Any) -> Any:
    return v.reveal() if isinstance(v, Secret) else v


def export(records: Iterable[Record], fmt: str) -> dict[str, Any]:
    """A JSON-able export document. It CONTAINS SECRETS IN CLEAR: the caller writes it 0600."""
    if fmt == "keyturn":
        return {"keyturn_export": KEYTURN_FORMAT_VERSION, "records": [_to_keyturn(r) for r in records]}
    if fmt == "keeper":
        return {"shared_folders": [], "records": [_to_keeper(r) for r in records]}
    raise ImportFailed(f"unknown export format {fmt!r} (choose {' or '.join(FORMATS)})")


def _fields_json(fields: Sequence[Field]) -> list[dict[str, Any]]:
    return [{"type": f.type, "label": f.label, "value": [_plain(v) for v in f.value]} for f in fields]


def _to_keyturn(r: Record) -> dict[str, Any]:
    return {"uid": r.uid, "title": r.title, "type": r.type, "fields": _fields_json(r.fields),
            "custom": _fields_json(r.custom), "meta": r.meta}


def _to_keeper(r: Record) -> dict[str, Any]:
    out: dict[str, Any] = {"uid": r.uid, "title": r.title, "$type": r.type}
    top = {ftype: key for key, ftype in _KEEPER_TOP}
    custom_fields: dict[str, Any] = {}

    def put(ftype: str, label: str | None, values: list[Any]) -> None:
        base = f"${ftype}:{label}" if label else f"${ftype}"
        m = _TYPED_KEY.fullmatch(base)
        # A label ending in ":<digits>" would read as an index: give it an explicit one.
        unique = f"{base}:0" if m is None or m["index"] is not None else base
        n = 1
        while unique in custom_fields:  # Keeper's "$type:label:index" form for repeats
            unique = f"{base if ':' in base else base + ':'}:{n}"
            n += 1
        custom_fields[unique] = values[0] if len(values) == 1 else values

    for f in r.fields:
        values = [_plain(v) for v in f.value]
        if not values:
            continue
        key = top.get(f.type)
        if key is not None and f.label is None and key not in out and len(values) == 1:
            out[key] = values[0]
        else:
            put(f.type, f.label, values)
    for f in r.custom:
        values = [_plain(v) for v in f.value]
        label = f.label or ""
        if f.type == "text" and label and not label.startswith("$") and label not in custom_fields:
            custom_fields[label] = values[0] if len(values) == 1 else values
        else:
            put(f.type, label, values)
    if custom_fields:
        out["custom_fields"] = custom_fields
    return out
