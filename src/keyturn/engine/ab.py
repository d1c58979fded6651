"""Dual-account ("A/B") rotation: two device accounts take turns, so consumers always hold one that works.

One user record holds both accounts:

    login / password              the ACTIVE account — what `reveal`, `exec` and the plugins hand out
    custom ab_login (text)        the IDLE account's login (absent at first: the profile's `ab` option)
    custom ab_password (secret)   the IDLE account's password, a versioned secret slot of its own

and its profile names the second account: ``keyturn rotation set REC --option ab=LOGIN2 --admin ADMIN``.

Every rotation works on the idle account only, with the full ten steps (verify current, generate,
write-ahead, change, persist, verify new, commit, scripts, audit) — for an A/B profile the resolved
account IS the idle one (`keyturn.engine.accounts.resolve_account`). Its commit swaps the two in the
same transaction that makes the candidate current (`swap`):

    password     ← the candidate (current; the value handed out until now becomes `previous`)
    ab_password  ← the value handed out until now (current)
    login       ↔ ab_login

From the commit on, the freshly rotated account is handed out; the one handed out before stays valid on
the device until the next rotation changes it — a job that read it just before the swap still logs in.
Read login and password together (one record read: `Vault.get`, `GET /records/{ref}`), never in two
reads a swap could fall between.

Crash safety is the engine's: the candidate is written ahead as a `pending` version of `password`, as
for any record, so recovery finds it; until the commit nothing has been swapped, so recovery probes the
candidate on the idle account and finishing forward is the same `swap`. After the commit the candidate
is current and the swap is done with it: recovery only redoes a failed save, on the now active account
(`active_account`).

Refused when the profile is set (`check_profile`, `check_on_device_now`): `ab` on a noop or enable-secret
target or without an admin credential (the idle account's first password is set, and both accounts are
looked up on the device, through it), a second login equal to the record's or the admin's, an `ab_login`
naming a third account, an account another record's profile rotates on the same device (`check_taken`),
and — asked through the admin credential — either account missing on the device.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Protocol

from keyturn.engine.ports import RecordLike, VaultLike
from keyturn.errors import KeyturnError, ProfileError
from keyturn.secret import Secret
from keyturn.targets.base import Account, Discovering, Target

OPTION = "ab"                    # profile option: the second account's login
IDLE_LOGIN = "ab_login"          # text custom field: the idle account's login
IDLE_SLOT = "ab_password"         # secret custom field: the idle account's password (a field name)
# A device login: IOS XE user names (no blanks, no `?`) and Meraki e-mails.
LOGIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._@+-]{0,253}")
LOGIN_RULE = "a login of letters, digits and . _ @ + -"
REFUSED_KINDS = ("noop", "iosxe-enable-secret")


@dataclass(frozen=True, slots=True)
class Pair:
    """The two accounts of an A/B record: `active` is handed out, `idle` is the one rotated next."""

    active: str
    idle: str


class _Profile(Protocol):
    @property
    def target(self) -> str: ...


class Resolved(Protocol):
    """What this module reads of a resolved account (`keyturn.engine.accounts.ResolvedAccount`, not
    imported: that module imports this one, and engine/ has no import cycle)."""

    @property
    def account(self) -> Account: ...

    @property
    def ab(self) -> Pair | None: ...

    @property
    def profile(self) -> _Profile: ...


def _text(record: RecordLike, label: str) -> str:
    value = record.custom_value(label)
    return "" if value is None or isinstance(value, Secret) else str(value).strip()


def _login(record: RecordLike) -> str:
    return str(record.field("login") or record.field("email") or _text(record, "login") or "")


def pair_of(user: RecordLike, options: Mapping[str, str]) -> Pair | None:
    """The record's two accounts when its profile has the `ab` option, else None; `ProfileError` when
    the record and the option disagree (what to fix is in the message)."""
    second = str(options.get(OPTION) or "").strip()
    if not second:
        return None
    active = _login(user)
    idle = _text(user, IDLE_LOGIN) or second
    if not active:
        raise ProfileError(f"record {user.title!r} has no login; an A/B profile needs the first account's "
                           "login on the record")
    if idle.casefold() == active.casefold():
        raise ProfileError(f"A/B rotation of {user.title!r}: the second account ({idle}) must differ from "
                           f"the record's login ({active})")
    if second.casefold() not in (active.casefold(), idle.casefold()):
        raise ProfileError(f"A/B rotation of {user.title!r}: the record's {IDLE_LOGIN} is {idle}, not the "
                           f"profile's ab={second}; fix the record or the option")
    return Pair(active=active, idle=idle)


def check_profile(user: RecordLike, target: str, admin: str | None) -> None:
    """What an A/B profile needs besides its records (`pair_of`): a device target and an admin."""
    if target in REFUSED_KINDS:
        raise ProfileError(f"A/B rotation needs a target that changes a device account, not {target}")
    if admin is None:
        raise ProfileError(f"A/B rotation of {user.title!r} needs --admin: the idle account's first "
                           "password is set, and both accounts are looked up on the device, through it")


def _logins_of(fields_json: str, custom_json: str, profile: Mapping[str, Any]) -> set[str]:
    """The device accounts a stored record's profile rotates (its login, and its A/B partner)."""
    names: set[str] = set()
    for item in json.loads(fields_json or "[]"):
        if isinstance(item, dict) and item.get("type") in ("login", "email") and item.get("value"):
            names.add(str(item["value"][0]).casefold())
    for item in json.loads(custom_json or "[]"):
        if isinstance(item, dict) and item.get("label") in (IDLE_LOGIN, "login") and item.get("value"):
            names.add(str(item["value"][0]).casefold())
    options = profile.get("options")
    if isinstance(options, Mapping) and options.get(OPTION):
        names.add(str(options[OPTION]).casefold())
    return names


def check_taken(session: Any, uid: str, resource: str | None, mine: set[str], *, ab_profile: bool,
                admin_login: str | None) -> None:
    """Inside `set_profile`'s unit of work: refuse an A/B pair that takes the admin credential's account
    or an account another record's profile rotates on the same resource — and a plain profile for an
    account an A/B pair there rotates. Two records rotating one account would each lose the other's
    secret. Reads plain JSON only (logins are not secret); nothing is decrypted."""
    import sqlalchemy as sa

    from keyturn.vault.storage import RecordRow

    mine = {n.casefold() for n in mine}
    if ab_profile and admin_login and admin_login.casefold() in mine:
        raise ProfileError(f"A/B rotation: {admin_login} is the admin credential's account; rotating it "
                           "would lock keyturn out of the device")
    if resource is None:
        return
    query = (sa.select(RecordRow.title, RecordRow.fields_json, RecordRow.custom_json, RecordRow.meta_json)
             .where(RecordRow.meta_json.contains(f'"{resource}"', autoescape=True), RecordRow.uid != uid))
    if not ab_profile:  # only A/B profiles can clash with a plain one: the database skips the rest
        query = query.where(RecordRow.meta_json.contains(f'"{OPTION}":', autoescape=True))
    rows = session.execute(query).all()
    for title, fields_json, custom_json, meta_json in rows:
        profile = json.loads(meta_json).get("rotation")
        if not isinstance(profile, Mapping) or profile.get("resource") != resource:
            continue
        options = profile.get("options")
        theirs_ab = isinstance(options, Mapping) and bool(options.get(OPTION))
        if not (ab_profile or theirs_ab):
            continue
        both = mine & _logins_of(fields_json, custom_json, profile)
        if both:
            raise ProfileError(f"account {sorted(both)[0]} on this device is already rotated by the profile "
                               f"of {title!r}{' (A/B)' if theirs_ab else ''}; two records must not rotate "
                               "one account")


def active_account(ra: Resolved) -> Account:
    """The account handed out (the resolved account of an A/B profile is the idle one)."""
    if ra.ab is None:
        return ra.account
    return replace(ra.account, username=ra.ab.active)


async def check_on_device(target: Target, ra: Resolved) -> None:
    """`ProfileError` unless both accounts exist on the device, listed through the admin credential
    (`Discovering`). A device that cannot be asked refuses too: the profile is not stored unchecked."""
    assert ra.ab is not None
    account = ra.account
    if account.admin is None:
        raise ProfileError("A/B rotation needs --admin to look the accounts up on the device")
    if not isinstance(target, Discovering):
        raise ProfileError(f"target {getattr(target, 'kind', '?')} cannot list the device's accounts, so "
                           "A/B rotation cannot be checked on it")
    where = account.endpoint.resource_title or account.endpoint.host
    try:
        found = await target.discover(account.endpoint, account.admin)
    except KeyturnError as exc:
        raise ProfileError(f"A/B rotation: could not list the accounts on {where} to check them ({exc}); "
                           "nothing was stored") from exc
    names = {f.username.casefold() for f in found}
    missing = [n for n in (ra.ab.active, ra.ab.idle) if n.casefold() not in names]
    if missing:
        raise ProfileError(f"A/B rotation: account {missing[0]} does not exist on {where}; create it on "
                           "the device first (keyturn never creates accounts)")


def check_on_device_now(vault: VaultLike, ra: Resolved,
                        make_target: Callable[[str], Target] | None = None) -> None:
    """`check_on_device` from synchronous code (`set_profile`), with a target of the profile's kind
    from the registry (or `make_target`). Called on a thread running an event loop, it runs on a
    thread of its own."""
    async def check() -> None:
        if make_target is not None:
            await check_on_device(make_target(ra.profile.target), ra)
            return
        from keyturn.engine.hostkeys import HostKeyPins
        from keyturn.targets.registry import create_target

        async def here(fn: Callable[[], str]) -> str:  # the vault call joins the caller's transaction
            return fn()

        io: dict[str, Any] = {}
        if ra.profile.target.startswith("iosxe-ssh"):
            io["host_keys"] = HostKeyPins(vault, here)
        target = create_target(ra.profile.target, **io)
        try:
            await check_on_device(target, ra)
        finally:
            await target.aclose()

    run_now(check)


def run_now(fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run coroutine function `fn` to completion from synchronous code (on a thread of its own when
    the caller's thread already runs an event loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(fn())
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="keyturn-ab") as pool:
        pool.submit(asyncio.run, fn()).result()


def swap(vault: Any, uid: str, version: int, *, rotation_id: str, actor: str) -> Pair:
    """The A/B commit, inside the caller's transaction (`Vault.unit`): candidate `version` of
    `password` becomes current, the value handed out until now becomes the idle account's password,
    and the two logins change places. Returns the pair as it is afterwards."""
    from keyturn.vault import Field
    from keyturn.vault.versions import VersionState

    user = vault.get(uid)
    profile = user.meta.get("rotation") or {}
    pair = pair_of(user, (profile.get("options") or {}) if isinstance(profile, Mapping) else {})
    if pair is None:
        raise ProfileError(f"record {user.title!r} lost its A/B option during the rotation")
    was_active = vault.secret(uid)
    vault.promote(uid, version, actor=actor)
    if was_active is not None:
        vault.add_version(uid, was_active, field=IDLE_SLOT, state=VersionState.CURRENT,
                          rotation_id=rotation_id, actor=actor)
    user = vault.get(uid)

    def keep(f: Any) -> Any:  # an empty value list leaves a secret field's versions as they are
        return Field(f.type, f.label, []) if any(isinstance(v, Secret) for v in f.value) else f

    login = next((i for i, f in enumerate(user.fields) if f.type in ("login", "email")
                  and [str(v) for v in f.value[:1]] == [pair.active]), None)
    fields = [Field(f.type, f.label, [pair.idle]) if i == login else keep(f)
              for i, f in enumerate(user.fields)]
    if login is None:   # the login came from a custom `login` field
        raise ProfileError(f"A/B rotation of {user.title!r}: put the login in the record's standard "
                           "login field")
    custom = [keep(f) for f in user.custom if (f.label or "").casefold() != IDLE_LOGIN]
    custom.append(Field("text", IDLE_LOGIN, [pair.active]))
    vault.update(uid, fields=fields, custom=custom, actor=actor)
    return Pair(active=pair.idle, idle=pair.active)


__all__ = ["IDLE_LOGIN", "IDLE_SLOT", "OPTION", "Pair", "active_account", "check_on_device",
           "check_on_device_now", "check_profile", "check_taken", "pair_of", "swap"]
