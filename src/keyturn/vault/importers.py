"""Import / export: keyturn JSON and Keeper Commander JSON (``keeper export --format json``).

Parsing is separate from writing: `parse(text, fmt)` validates the whole file and returns
`NewRecord`s (or raises `ImportFailed` naming the JSON line/column or the record index and title);
`Vault.add_many` then writes them in one transaction, so an import is all-or-nothing.

A record that would run a post-rotation script (attachments in ``meta.scripts``, a ``Shell`` custom
field) is refused unless the admin confirms with ``allow_scripts`` (``keyturn record import
--allow-scripts``): an import file from elsewhere must not choose what runs with the passwords.

Keeper Commander shape::

    {"shared_folders": [...], "records": [{"uid": ..., "title": ..., "$type": "login", "login": ...,
      "password": ..., "login_url": ..., "notes": ..., "custom_fields": {...}, "folders": [...]}]}

`custom_fields` keys: a plain ``label`` is a text custom field; ``$type:label`` or
``$type:label:index`` (label may be empty: ``$oneTimeCode``, ``$keyPair::1``) carry a field type.
Typed keys whose type is one of `KEEPER_CUSTOM_TYPES` become custom fields, all others standard
fields (Keeper exports both sections into `custom_fields`; this rule round-trips keyturn's exports).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from keyturn.errors import ImportFailed
from keyturn.scripts.attachments import script_bearing
from keyturn.secret import Secret
from keyturn.vault.api import NewRecord
from keyturn.vault.records import Field, Record, is_secret_field

FORMATS = ("keyturn", "keeper")
KEYTURN_FORMAT_VERSION = 1
KEEPER_CUSTOM_TYPES = frozenset({"text", "secret", "multiline"})
# Keeper top-level keys ↔ keyturn standard field types.
_KEEPER_TOP = (("login", "login"), ("password", "password"), ("login_url", "url"), ("notes", "note"))
_TYPED_KEY = re.compile(r"^\$(?P<type>[A-Za-z][A-Za-z0-9_]*)(?::(?P<label>[^:]*))?(?::(?P<index>\d+))?$")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


class _Bad(Exception):
    """Internal: a problem in one record; turned into ImportFailed with the record's index/title."""


def parse(
    text: str, fmt: str, *, source: str = "import file", allow_scripts: bool = False,
) -> list[NewRecord]:
    """Validate a whole import file and return the records to create; a script-bearing record is
    refused (`ImportFailed`) unless `allow_scripts`."""
    if fmt not in FORMATS:
        raise ImportFailed(f"unknown import format {fmt!r} (choose {' or '.join(FORMATS)})")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFailed(f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") \
            from exc
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
        title = item.get("title") if isinstance(item, dict) else None
        where = f"{source}: record #{i}" + (f" ({title!r})" if isinstance(title, str) else "")
        if not isinstance(item, dict):
            raise ImportFailed(f"{where}: not a JSON object")
        try:
            rec = convert(item)
        except _Bad as exc:
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
    if not isinstance(title, str) or not title.strip():
        raise _Bad("missing or empty \"title\"")
    return title


def _values(raw: Any, where: str) -> list[Any]:
    values = raw if isinstance(raw, list) else [raw]
    for v in values:
        if not isinstance(v, (str, int, float, bool, dict)):
            raise _Bad(f"{where}: unsupported value {type(v).__name__}")
    return list(values)


def _field(ftype: Any, label: Any, raw: Any, *, custom: bool) -> Field:
    if not isinstance(ftype, str) or not _NAME.match(ftype):
        raise _Bad(f"invalid field type {ftype!r}")
    if label is not None and not isinstance(label, str):
        raise _Bad(f"field {ftype!r}: label must be text")
    where = f"field {label or ftype!r}"
    values = _values(raw, where)
    if is_secret_field(ftype, custom=custom):
        if len(values) > 1:
            raise _Bad(f"{where}: a secret field holds one value")
        if any(not isinstance(v, str) for v in values):
            raise _Bad(f"{where}: secret values must be text")
        values = [Secret(v) for v in values]
    return Field(ftype, label or None, values)


def _from_keyturn(item: dict[str, Any]) -> NewRecord:
    title, rtype = _title(item), item.get("type")
    if not isinstance(rtype, str) or not _NAME.match(rtype):
        raise _Bad(f"invalid record type {rtype!r}")
    groups: list[list[Field]] = []
    for key in ("fields", "custom"):
        raw = item.get(key, [])
        if not isinstance(raw, list) or not all(isinstance(f, dict) for f in raw):
            raise _Bad(f"\"{key}\" must be a list of objects")
        groups.append([_field(f.get("type"), f.get("label"), f.get("value", []), custom=key == "custom")
                       for f in raw])
    meta = item.get("meta", {})
    if not isinstance(meta, dict):
        raise _Bad("\"meta\" must be an object")
    uid = item.get("uid")
    return NewRecord(type=rtype, title=title, fields=groups[0], custom=groups[1], meta=meta,
                     uid=uid if isinstance(uid, str) else None)


def _from_keeper(item: dict[str, Any]) -> NewRecord:
    title = _title(item)
    rtype = item.get("$type", "login")
    if not isinstance(rtype, str) or not _NAME.match(rtype):
        raise _Bad(f"invalid record type {rtype!r}")
    fields: list[Field] = []
    custom: list[Field] = []
    for key, ftype in _KEEPER_TOP:
        if item.get(key) not in (None, "", []):
            fields.append(_field(ftype, None, item[key], custom=False))
    cf = item.get("custom_fields", {})
    if not isinstance(cf, dict):
        raise _Bad("\"custom_fields\" must be an object")
    for key, raw in cf.items():
        m = _TYPED_KEY.match(key)
        if key.startswith("$") and m is None:
            raise _Bad(f"custom field key {key!r} is not $type, $type:label or $type:label:index")
        if m is None:
            custom.append(_field("text", key, raw, custom=True))
        elif m["type"] in KEEPER_CUSTOM_TYPES:
            custom.append(_field(m["type"], m["label"] or None, raw, custom=True))
        else:
            fields.append(_field(m["type"], m["label"] or None, raw, custom=False))
    uid = item.get("uid")
    return NewRecord(type=rtype, title=title, fields=fields, custom=custom,
                     uid=uid if isinstance(uid, str) else None)


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

    def put(key: str, values: list[Any]) -> None:
        unique, n = key, 1
        while unique in custom_fields:  # Keeper's "$type:label:index" form for repeats
            unique = f"{key if ':' in key else key + ':'}:{n}"
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
            put(f"${f.type}:{f.label}" if f.label else f"${f.type}", values)
    for f in r.custom:
        values = [_plain(v) for v in f.value]
        label = f.label or ""
        if f.type == "text" and label and not label.startswith("$") and label not in custom_fields:
            custom_fields[label] = values[0] if len(values) == 1 else values
        else:
            put(f"${f.type}:{label}", values)
    if custom_fields:
        out["custom_fields"] = custom_fields
    return out
