"""The plan discovery prints and applies: rows, new network records, and `apply_plan`.

`apply_plan` writes every `create` row in ONE transaction (`vault.unit()`), each profile through
`set_profile`, so a proposal is validated exactly like `keyturn rotation set`; any error leaves the
vault as it was.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from keyturn.engine.profile import META_KEY, RotationProfile, set_profile
from keyturn.errors import ProfileError
from keyturn.targets.base import FoundAccount
from keyturn.vault import Field

CONCURRENCY = 8

# Row actions, in the order a person reads them.
CREATE, MANAGED, ADMIN, SKIP, UNREADABLE = "create", "managed", "admin", "skip", "unreadable"


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a plan: an account found (or a resource that could not be read, `UNREADABLE`)."""

    source: str                       # "org / network (id)" or the device record's title
    account: str = ""                 # login / e-mail ("" on an UNREADABLE row)
    privilege: int | None = None
    credential: str = ""              # "secret 9", "password 7", Meraki: the account type
    action: str = CREATE
    note: str = ""                    # why (managed by whom, why skipped, what failed)
    title: str = ""                   # the record to create (CREATE rows)
    resource: str = ""                # uid of its resource, or the title of a NewNetwork
    admin: str = ""                   # uid of the admin record for its profile
    target: str = ""
    options: tuple[tuple[str, str], ...] = ()   # profile options (Meraki wireless: the SSID number)

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "account": self.account, "privilege": self.privilege,
                "credential": self.credential, "action": self.action, "note": self.note,
                "title": self.title or None, "target": self.target or None,
                **({"options": dict(self.options)} if self.options else {})}


@dataclass(frozen=True, slots=True)
class NewNetwork:
    """A `pamMerakiNetwork` record the plan creates (a network with users to onboard and no record)."""

    title: str
    custom: tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Plan:
    kind: str                                        # "meraki" | "iosxe"
    rows: list[Row] = field(default_factory=list)
    networks: list[NewNetwork] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for r in self.rows if r.action == action)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "summary": {a: self.count(a) for a in (CREATE, MANAGED, ADMIN, SKIP,
                                                                           UNREADABLE)},
                "new_resources": [n.title for n in self.networks],
                "rows": [r.to_json() for r in self.rows]}


def credential_text(found: FoundAccount) -> str:
    return " ".join(part for part in (found.kind, found.type) if part)


def text_field(record: Any, label: str) -> str | None:
    from keyturn.secret import Secret

    value = record.custom_value(label)
    if value is None or isinstance(value, Secret):
        return None
    return str(value).strip() or None


def login_of(record: Any) -> str:
    return str(record.field("login") or record.field("email") or text_field(record, "login") or "").strip()


def taken_titles(vault: Any) -> set[str]:
    return {s.title.casefold() for s in vault.summaries()}


def profiled_records(vault: Any) -> list[tuple[Any, RotationProfile]]:
    """(record, profile) for every record with a rotation profile."""
    out = []
    for record in vault.find():
        data = record.meta.get(META_KEY)
        if data is None:
            continue
        try:
            out.append((record, RotationProfile.from_meta(data)))
        except ProfileError:
            continue
    return out


def managed_by(profiles: Iterable[tuple[Any, RotationProfile]], resource_uid: str) -> dict[str, str]:
    """login (case-folded) → title of the record whose profile rotates it on `resource_uid`."""
    return {login_of(rec).casefold(): rec.title for rec, prof in profiles
            if prof.resource == resource_uid and login_of(rec)}


def apply_plan(vault: Any, plan: Plan, *, actor: str = "cli") -> list[str]:
    """Create the plan's new network records and one `pamUser` per CREATE row with its profile (via
    `set_profile`), all in one transaction. Returns the uids of the user records created."""
    created: list[str] = []
    with vault.unit():
        networks: dict[str, str] = {}
        for net in plan.networks:
            rec = vault.add(type="pamMerakiNetwork", title=net.title, actor=actor,
                            custom=[Field("text", label, [value]) for label, value in net.custom])
            networks[net.title] = rec.uid
        for row in plan.rows:
            if row.action != CREATE:
                continue
            if row.target == "meraki-api-key":  # the API-key record exists: it only gets its profile
                set_profile(vault, row.admin, target=row.target,
                            resource=networks.get(row.resource, row.resource), actor=actor)
                created.append(row.admin)
                continue
            rec = vault.add(type="pamUser", title=row.title, actor=actor,
                            fields=[Field("login", None, [row.account])])
            set_profile(vault, rec.uid, target=row.target, resource=networks.get(row.resource, row.resource),
                        admin=row.admin, options=dict(row.options) or None, actor=actor)
            created.append(rec.uid)
    return created
