"""The stdin payload of a Keeper-compatible post-rotation script, and record flattening.

A script receives exactly one line: standard base64 (padded, not wrapped) of a UTF-8 JSON object with
the seven keys of KeeperPAM's contract, then `\\n`, then EOF:

    providerRecordUid   uid of the PAM Configuration record
    resourceRecordUid   uid of the resource record, "" when the profile has none (scripts-only / NOOP)
    userRecordUid       uid of the PAM User record being rotated
    newPassword         the new secret
    oldPassword         the previous secret, "" on a first rotation
    user                the user record's `login` field (Meraki auth users: the e-mail); "" if none
    records             a *string*: standard base64 of the JSON array of flattened records

`records` order: PAM Configuration record, resource record (if any), each record named in the
attachment's `with_records` (in attachment order), the user record.

Flattening (`flatten_record`), keyturn's choices where Keeper is silent:

* `uid`, `title`, then one key per field, standard fields before custom fields, in record order;
  the key is the field's label, or its type when it has no label (custom labels kept exactly as typed);
* a single value is a scalar, several values a list, an object value (host `{hostName, port}`) an
  object; secrets are written in clear (this is the stdin boundary); empty fields are omitted;
* a repeated key gets the next free number appended: `key`, `key2`, `key3`, ...;
* the script attachments (record meta) are never included, nor any field of type `script`;
* **the user record carries the new password** in `records`: scripts run after the change, so the
  record shows the credential as it now is, consistent with `newPassword` (`oldPassword` still
  gives the previous one). The key is that of the user record's first `password`-type field
  (`password` when the record has none).

JSON is written with `ensure_ascii=False` (UTF-8), which every JSON parser reads.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from keyturn.secret import Secret

PAYLOAD_KEYS = (
    "providerRecordUid",
    "resourceRecordUid",
    "userRecordUid",
    "newPassword",
    "oldPassword",
    "user",
    "records",
)
# Field types whose values count as secrets even when stored unwrapped (redaction and payload).
SECRET_FIELD_TYPES = frozenset(
    {"password", "secret", "pinCode", "oneTimeCode", "otp", "keyPair", "privateKey", "passphrase", "apiKey"}
)
_SKIPPED_FIELD_TYPES = frozenset({"script"})


class FieldLike(Protocol):
    """What flattening reads from a vault field (`keyturn.vault.Field` satisfies it)."""

    @property
    def type(self) -> str: ...

    @property
    def label(self) -> str | None: ...

    @property
    def value(self) -> Sequence[Any]: ...


class RecordLike(Protocol):
    """What flattening reads from a vault record (`keyturn.vault.Record` satisfies it)."""

    @property
    def uid(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def fields(self) -> Sequence[FieldLike]: ...

    @property
    def custom(self) -> Sequence[FieldLike]: ...

    @property
    def meta(self) -> Mapping[str, Any]: ...


def _plain(value: Any) -> Any:
    """A JSON-ready copy of a field value with every `Secret` revealed."""
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str | Secret):
        return len(value) == 0
    if isinstance(value, Mapping):
        return all(_is_empty(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_is_empty(v) for v in value)
    return False


def _free_key(key: str, taken: set[str]) -> str:
    if key not in taken:
        return key
    n = 2
    while f"{key}{n}" in taken:
        n += 1
    return f"{key}{n}"


def _field_key(f: FieldLike) -> str:
    return f.label if f.label else f.type


def _all_fields(record: RecordLike) -> list[FieldLike]:
    return [f for f in (*record.fields, *record.custom) if f.type not in _SKIPPED_FIELD_TYPES]


def flatten_record(record: RecordLike, *, overrides: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The Keeper-style flat object for one record (see the module docstring for the rules).

    `overrides` maps a flattened key to a replacement value (set even when the key is absent); it is how
    the user record shows the new password.
    """
    out: dict[str, Any] = {"uid": record.uid, "title": record.title}
    taken = set(out)
    for f in _all_fields(record):
        values = [v for v in f.value if not _is_empty(v)]
        if not values:
            continue
        key = _free_key(_field_key(f), taken)
        taken.add(key)
        out[key] = _plain(values[0]) if len(values) == 1 else _plain(values)
    for key, value in (overrides or {}).items():
        out[key] = value
    return out


def password_key(record: RecordLike) -> str:
    """The flattened key of the record's first `password`-type field (`password` if it has none)."""
    taken = {"uid", "title"}
    for f in _all_fields(record):
        if not any(not _is_empty(v) for v in f.value):
            if f.type == "password":
                return _free_key(_field_key(f), taken)
            continue
        key = _free_key(_field_key(f), taken)
        taken.add(key)
        if f.type == "password":
            return key
    return "password"


def login_of(record: RecordLike) -> str:
    """The record's `login` field value (falls back to `email`), "" when it has neither."""
    for wanted in ("login", "email"):
        for f in _all_fields(record):
            if f.type == wanted:
                for v in f.value:
                    if not _is_empty(v):
                        return str(_plain(v))
    return ""


def custom_text(record: RecordLike, label: str) -> str | None:
    """The first non-empty plain value of the custom field `label` (exact label), else None."""
    for f in record.custom:
        if f.label == label:
            for v in f.value:
                if isinstance(v, str) and v.strip():
                    return v.strip()
    return None


def is_noop(record: RecordLike) -> bool:
    """Keeper's "run PAM scripts only": a custom field labelled `NOOP` whose value is `True` (any case)."""
    value = custom_text(record, "NOOP")
    return value is not None and value.lower() == "true"


def secret_values(record: RecordLike) -> list[Secret]:
    """Every password-like value of a record: `Secret` values and values of secret field types."""
    found: list[Secret] = []

    def walk(value: Any, secret_type: bool) -> None:
        if isinstance(value, Secret):
            found.append(value)
        elif isinstance(value, str) and secret_type and value:
            found.append(Secret(value))
        elif isinstance(value, Mapping):
            for v in value.values():
                walk(v, secret_type)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v, secret_type)

    for f in (*record.fields, *record.custom):
        walk(list(f.value), f.type in SECRET_FIELD_TYPES)
    return found


def records_for(
    *, provider: RecordLike, resource: RecordLike | None, user: RecordLike, extra: Sequence[RecordLike]
) -> list[RecordLike]:
    """The records a script sees, in the contract's order."""
    return [provider, *([resource] if resource is not None else []), *extra, user]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def encode_records(
    *, provider: RecordLike, resource: RecordLike | None, user: RecordLike, extra: Sequence[RecordLike],
    new_password: Secret,
) -> str:
    """The `records` string: base64 of the JSON array of flattened records."""
    flat: list[dict[str, Any]] = []
    for rec in records_for(provider=provider, resource=resource, user=user, extra=extra):
        overrides = {password_key(user): new_password.reveal()} if rec is user else None
        flat.append(flatten_record(rec, overrides=overrides))
    return _b64(_json(flat))


def build_payload(
    *,
    provider: RecordLike,
    resource: RecordLike | None,
    user: RecordLike,
    extra: Sequence[RecordLike],
    new_password: Secret,
    old_password: Secret | None,
    user_login: str,
) -> bytes:
    """The exact stdin bytes: one standard-base64 line of the seven-key JSON object, then `\\n`."""
    obj = {
        "providerRecordUid": provider.uid,
        "resourceRecordUid": resource.uid if resource is not None else "",
        "userRecordUid": user.uid,
        "newPassword": new_password.reveal(),
        "oldPassword": old_password.reveal() if old_password is not None else "",
        "user": user_login,
        "records": encode_records(
            provider=provider, resource=resource, user=user, extra=extra, new_password=new_password
        ),
    }
    return _b64(_json(obj)).encode("ascii") + b"\n"
