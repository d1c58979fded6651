"""Which records a command acts on: the filter language of ``--filter`` (one implementation).

`keyturn rotate --filter`, `keyturn rotation set --filter`, `keyturn schedule set --filter`,
`keyturn status --filter`, `GET /accounts?filter=` and `POST /rotations {"filter": ...}` all read it:
comma-separated terms, every one must match (AND)::

    type=pamUser        record type (exact, case-insensitive)
    target=iosxe-ssh    the rotation profile's target kind
    title~sw00          title contains (case-insensitive); ``title=X`` is an exact title
    resource=UID        the profile's resource record uid
    uid=UID             the record's uid

Selecting reads metadata only — one query on the records table, nothing decrypted, no integrity
check — because it only chooses uids: whatever then acts on a record reads it through the vault.

`sql_where` says the same selection (profiled records, the terms, a tag) as SQL on the records table,
for SQLite and PostgreSQL, so one page of a large fleet can be cut by the database (LIMIT/OFFSET)
instead of parsing every record's metadata; it declines (None) a term it cannot say exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keyturn.errors import ConfigError
from keyturn.vault.storage import RecordRow

FILTER_KEYS = ("type", "target", "title", "resource", "uid")
PROFILE_KEY = "rotation"          # keyturn.engine.profile.META_KEY (not imported: this module stays low)
FILTER_HELP = ("Select records: type=pamUser, target=iosxe-ssh, title~sw00, resource=UID, uid=UID; "
               "comma = AND.")

Term = tuple[str, str, str]


def parse_filter(expr: str) -> list[Term]:
    """`key=value` / `key~value` terms separated by commas → (key, op, value); `ConfigError` saying the
    syntax for a bad term or an empty expression."""
    terms = []
    for raw in expr.split(","):
        term = raw.strip()
        if not term:
            continue
        op = "~" if "~" in term and ("=" not in term or term.index("~") < term.index("=")) else "="
        key, sep, value = term.partition(op)
        key = key.strip().lower()
        if not sep or key not in FILTER_KEYS:
            raise ConfigError(f"bad filter term {term!r}: use KEY=VALUE or KEY~TEXT with KEY one of "
                              f"{', '.join(FILTER_KEYS)}")
        terms.append((key, op, value.strip()))
    if not terms:
        raise ConfigError("empty --filter")
    return terms


@dataclass(frozen=True, slots=True)
class MetaRecord:
    """A record as the filter sees it: what the records table holds in clear."""

    uid: str
    title: str
    type: str
    meta: Mapping[str, Any]

    @property
    def profile(self) -> Mapping[str, Any] | None:
        data = self.meta.get(PROFILE_KEY)
        return data if isinstance(data, Mapping) else None


def matches(record: MetaRecord, terms: Sequence[Term]) -> bool:
    """True when `record` satisfies every term."""
    for key, op, wanted in terms:
        have = str(_value(record, key) or "")
        if op == "~" and wanted.casefold() not in have.casefold():
            return False
        if op == "=" and have.casefold() != wanted.casefold():
            return False
    return True


def meta_records(conn: Connection, *, profiled: bool = False, types: Iterable[str] = (),
                 also_meta_key: str | None = None) -> list[MetaRecord]:
    """Records in one query, ordered by title: with `profiled`, those whose metadata mentions a rotation
    profile (and, with `also_meta_key`, those mentioning that key too — e.g. resources with a site);
    with `types`, only those types."""
    q = sa.select(RecordRow.uid, RecordRow.title, RecordRow.type, RecordRow.meta_json).order_by(
        RecordRow.title_key, RecordRow.uid)
    if profiled:
        cond = RecordRow.meta_json.contains(f'"{PROFILE_KEY}"', autoescape=True)
        if also_meta_key is not None:
            cond = sa.or_(cond, RecordRow.meta_json.contains(f'"{also_meta_key}"', autoescape=True))
        q = q.where(cond)
    wanted = list(types)
    if wanted:
        q = q.where(RecordRow.type.in_(wanted))
    out = []
    for uid, title, type_, meta_json in conn.execute(q):
        meta = json.loads(meta_json)
        out.append(MetaRecord(uid, title, type_, meta if isinstance(meta, dict) else {}))
    return out


def select(conn: Connection, expr: str | None, *, profiled: bool = True,
           types: Iterable[str] = ()) -> list[MetaRecord]:
    """Records matching `expr` (None: all), ordered by title then uid. With `profiled` (what rotating
    and scheduling need) only records with a rotation profile; `types` narrows the record types (what
    setting a profile needs: user records, with or without a profile yet)."""
    terms = parse_filter(expr) if expr is not None else []
    found = meta_records(conn, profiled=profiled, types=types)
    chosen = [r for r in found if (not profiled or r.profile is not None) and matches(r, terms)]
    return sorted(chosen, key=lambda r: (r.title.casefold(), r.uid))


def why_nothing(conn: Connection, expr: str, *, profiled: bool = True, types: Iterable[str] = ()) -> str:
    """Why `expr` selects nothing, for the error that says so: no record has a profile yet, a `KEY=VALUE`
    term no record satisfies with the values in use closest to it ("did you mean"; for type and target
    the values in use), or every term matches alone but not together. Empty when that adds nothing to
    "no record matches" (or `expr` does not parse: `parse_filter` says why)."""
    import difflib

    try:
        terms = parse_filter(expr)
    except ConfigError:
        return ""
    found = [r for r in meta_records(conn, profiled=profiled, types=types)
             if not profiled or r.profile is not None]
    if not found:
        return "no record has a rotation profile yet" if profiled else ""
    for term in terms:
        if any(matches(r, [term]) for r in found):
            continue
        key, op, wanted = term
        values = sorted({str(v) for v in (_value(r, key) for r in found) if v}, key=str.casefold)
        close = difflib.get_close_matches(wanted.casefold(), [v.casefold() for v in values], n=3,
                                          cutoff=0.6) if op == "=" else []
        if close:
            names = [next(v for v in values if v.casefold() == c) for c in close]
            return f"no record has {key}={wanted!r}; did you mean {' or '.join(repr(n) for n in names)}?"
        if key in ("type", "target") and values:
            return f"no record has {key}{op}{wanted!r}; in use: {', '.join(values[:10])}"
        return ""
    return "each term matches some record, but no record matches all of them" if len(terms) > 1 else ""


def _json(dialect: str, *path: str) -> tuple[sa.ColumnElement[Any], sa.ColumnElement[Any]]:
    """(the JSON type name, the value as text) of meta_json at `path`, per backend."""
    if dialect == "sqlite":
        where = "$." + ".".join(path)
        return sa.func.json_type(RecordRow.meta_json, where), sa.func.json_extract(RecordRow.meta_json, where)
    from sqlalchemy.dialects.postgresql import JSONB

    doc = sa.cast(RecordRow.meta_json, JSONB)
    return (sa.func.jsonb_typeof(sa.func.jsonb_extract_path(doc, *path)),
            sa.func.jsonb_extract_path_text(doc, *path))


_KIND = {"sqlite": {"object": "object", "array": "array", "text": "text"},
         "postgresql": {"object": "object", "array": "array", "text": "string"}}


def sql_where(dialect: str, terms: Sequence[Term], tag: str | None = None
              ) -> list[sa.ColumnElement[bool]] | None:
    """WHERE clauses on `RecordRow` selecting exactly what `select(..., profiled=True)` keeps and
    `terms` (and, with `tag`, `keyturn.tags.tags_of` holding it) match; None when the backend or a
    term cannot be said exactly in SQL (non-ASCII text compared outside the casefolded title key)."""
    from keyturn.tags import TAG_NAME

    kinds = _KIND.get(dialect)
    if kinds is None:
        return None
    profile_type, _ = _json(dialect, PROFILE_KEY)
    clauses: list[sa.ColumnElement[bool]] = [profile_type == kinds["object"]]
    for key, op, wanted in terms:
        want = wanted.casefold()
        if key == "title":
            column: sa.ColumnElement[Any] = RecordRow.title_key.expression   # casefolded when stored
        elif not want.isascii():
            return None
        elif key in ("type", "uid"):
            column = sa.func.lower(RecordRow.type if key == "type" else RecordRow.uid)
        else:
            kind, text = _json(dialect, PROFILE_KEY, key)
            column = sa.case((kind == kinds["text"], sa.func.lower(text)), else_="")
        clauses.append(column.contains(want, autoescape=True) if op == "~" else column == want)
    if tag is not None:
        if not TAG_NAME.fullmatch(tag):
            return [sa.false()]
        kind, _ = _json(dialect, "tags")
        clauses.append(kind == kinds["array"])
        if dialect == "sqlite":
            each = sa.func.json_each(RecordRow.meta_json, "$.tags").table_valued("value")
            clauses.append(sa.exists(sa.select(sa.literal(1)).select_from(each).where(each.c.value == tag)))
        else:
            from sqlalchemy.dialects.postgresql import JSONB

            tags = sa.func.jsonb_extract_path(sa.cast(RecordRow.meta_json, JSONB), "tags")
            clauses.append(tags.op("@>")(sa.func.jsonb_build_array(tag)))
    return clauses


def sql_order(dialect: str) -> tuple[sa.ColumnElement[Any], ...]:
    """`select`'s order (casefolded title, then uid) in SQL: code point order on every backend."""
    if dialect == "postgresql":
        return RecordRow.title_key.collate("C"), RecordRow.uid.collate("C")
    return RecordRow.title_key.expression, RecordRow.uid.expression


def _value(record: MetaRecord, key: str) -> Any:
    profile = record.profile or {}
    return {"type": record.type, "target": profile.get("target"), "title": record.title,
            "resource": profile.get("resource"), "uid": record.uid}[key]


__all__ = ["FILTER_HELP", "FILTER_KEYS", "MetaRecord", "Term", "matches", "meta_records", "parse_filter",
           "select", "sql_order", "sql_where", "why_nothing"]
