"""Rotation profile: how one user record is rotated, stored in the record's meta under "rotation".

    {"target": "iosxe-restconf", "resource": "<uid>", "admin": "<uid>"|None,
     "configuration": "<uid of the pamConfiguration>", "policy": {Keeper complexity}|None,
     "verify_with": "<kind>"|None, "options": {"mode": "password", ...}, "max_attempts": 3}

`set_profile` validates everything when the profile is set (records exist, target kind known, the
policy intersected with the target's constraints is feasible), so a rotation never fails on a profile
mistake a person could have been told about earlier.

Who may set what (issue 12, item 1). Operators set profiles, so a profile must not be able to send a
credential anywhere or loosen how a peer is trusted:

* profile options are an allow-list with types (`PROFILE_OPTIONS`); they reach the target only as
  `Account.options`. Where credentials go and how the device is trusted (``verify_url``, ``proxy``,
  ``base_url``, ``ca_bundle``, ``fingerprint``, ``insecure``, host keys, ``ssh_algorithms``, ...) are
  custom fields of the resource record, which only an admin can change;
* a record that is the admin or the resource of another record's profile cannot get a profile, and a
  record with a profile cannot become another profile's admin or resource (a record may be its own
  resource/admin: Keeper's "Cisco Authentication Record");
* a `noop` profile with no post-rotation script and no verifier is refused: it would store a new secret
  that nothing ever sets (`check_noop_effect`, also run before each rotation);
* an A/B profile (option ``ab``, `keyturn.engine.ab`) is refused unless both accounts exist on the
  device, asked through the admin credential when the profile is set.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from keyturn import sites
from keyturn.engine import ab
from keyturn.engine.accounts import OWN_KEY_TARGETS, ResolvedAccount, resolve_account
from keyturn.engine.ports import RecordLike, VaultLike
from keyturn.engine.profile_model import (
    DEFAULT_CONFIGURATION_TITLE,
    META_KEY,
    NOOP_KIND,
    PROFILE_OPTIONS,
    SCRIPTS_KEY,
    USER_TYPES,
    OptionSpec,
    RotationProfile,
    check_noop_effect,
    check_options,
    default_configuration,
    is_noop,
    load_profile,
)
from keyturn.errors import (
    PolicyError,
    ProfileError,
    RateLimited,
    TargetError,
    TargetTimeout,
    TargetUnreachable,
)
from keyturn.policy import PasswordPolicy, effective, parse_policy
from keyturn.vault.storage import RecordRow

log = logging.getLogger("keyturn.engine.profile")

# The profile model lives in `keyturn.engine.profile_model` (read by `keyturn.engine.accounts`, which
# this module needs to validate a profile); its names stay importable from here.
__all__ = [
    "DEFAULT_CONFIGURATION_TITLE", "META_KEY", "NOOP_KIND", "PROFILE_OPTIONS", "SCRIPTS_KEY", "USER_TYPES",
    "OptionSpec", "RotationProfile", "check_credential_roles", "check_noop_effect", "check_options",
    "default_configuration", "is_noop", "load_profile", "precheck_now", "set_profile",
]


def _roles_of(session: Any, uid: str) -> list[tuple[str, str]]:
    """[(role, title of the profile's record)] for every other record whose profile names `uid` as its
    admin or resource (read in `session`; plain JSON, nothing decrypted). The SQL filter scans the
    table without an index, but only rows that mention the uid are parsed."""
    import json

    rows = session.execute(sa.select(RecordRow.uid, RecordRow.title, RecordRow.meta_json)
                           .where(RecordRow.meta_json.contains(f'"{META_KEY}"', autoescape=True),
                                  RecordRow.meta_json.contains(f'"{uid}"', autoescape=True),
                                  RecordRow.uid != uid)).all()
    found = []
    for _uid, title, meta_json in rows:
        data = json.loads(meta_json).get(META_KEY)
        if isinstance(data, Mapping):
            found += [(role, title) for role in ("admin", "resource") if data.get(role) == uid]
    return found


def check_credential_roles(vault: VaultLike, session: Any, user: RecordLike,
                           profile: RotationProfile) -> None:
    """Refuse a profile on a record that is another profile's admin or resource, and a profile whose
    admin or resource is a record with a profile of its own (read inside the caller's unit of work,
    so two concurrent `set_profile` calls cannot cross)."""
    # A Meraki API-key record is the admin (or, Keeper-style, the resource) of the profiles that use
    # the key, and rotating it is the point: its commit switches them all (`keyturn.engine.generated`).
    used = _roles_of(session, user.uid) if profile.target not in OWN_KEY_TARGETS else []
    if used:
        role, title = used[0]
        raise ProfileError(f"record {user.title!r} is the {role} credential of the rotation profile of "
                           f"{title!r}; a profile cannot be set on it (rotate it as that profile's "
                           "admin intends, or use a separate record)")
    for role in ("admin", "resource"):
        ref = getattr(profile, role)
        if ref is None or ref == user.uid:
            continue
        other = vault.get(ref)
        theirs = other.meta.get(META_KEY)
        if theirs is not None and not (isinstance(theirs, Mapping)
                                       and theirs.get("target") in OWN_KEY_TARGETS):
            raise ProfileError(f"record {other.title!r} has a rotation profile of its own; it cannot be "
                               f"the {role} of another profile")


def set_profile(
    vault: VaultLike, ref: str, *, target: str, resource: str | None = None, admin: str | None = None,
    configuration: str | None = None, policy: Mapping[str, Any] | str | None = None,
    verify_with: str | None = None, options: Mapping[str, str] | None = None, max_attempts: int = 3,
    actor: str = "cli",
) -> RotationProfile:
    """Validate and store a rotation profile on record `ref`; returns what was stored.

    Raises `RecordNotFound`/`AmbiguousRecord` for bad references, `ProfileError` for an unknown target
    kind, an unusable resource/admin, an option outside `PROFILE_OPTIONS`, a record that is another
    profile's credential (or an admin/resource that has a profile), or a noop profile without effect,
    and `PolicyError` when the policy cannot be met on the target. The audit entry
    `rotation.profile_set` records every option.
    """
    from keyturn.targets.registry import target_class

    user = vault.get(ref)
    if user.type not in USER_TYPES:
        raise ProfileError(f"record {user.title!r} is a {user.type}; rotation profiles go on "
                           f"{' or '.join(USER_TYPES)} records")
    kind_cls = target_class(target)
    verifier_cls = None
    if verify_with is not None:
        verifier_cls = target_class(verify_with)
        if verify_with == NOOP_KIND:
            raise ProfileError("--verify-with names a target that checks logins, not noop")
    if kind_cls.kind != NOOP_KIND and resource is None:
        raise ProfileError(f"target {target} needs --resource (the device or network record)")
    checked = check_options(options or {})
    if sites.OPTION in checked:  # an override for this account: a known site (`default` included)
        sites.check_site(checked[sites.OPTION], vault.settings)
    for cls in (kind_cls, verifier_cls):
        validate = getattr(cls, "validate_options", None)
        if validate is not None:
            validate(dict(checked))
    parsed = parse_policy(policy)
    rules_cls = kind_cls if kind_cls.kind != NOOP_KIND or verifier_cls is None else verifier_cls
    try:
        effective(parsed, rules_cls.constraints)  # refuse an impossible policy now, not at rotation time
    except PolicyError as exc:
        rules = rules_cls.constraints
        raise PolicyError(f"the policy does not fit target {rules_cls.kind}, which takes "
                          f"{rules.min_length}-{rules.max_length} characters: {exc}") from exc
    policy_data = _policy_meta(parsed)
    profile = RotationProfile(
        target=kind_cls.kind,
        resource=vault.get(resource).uid if resource else None,
        admin=vault.get(admin).uid if admin else None,
        configuration=vault.get(configuration).uid if configuration else default_configuration(vault),
        policy=policy_data if policy is not None else None,
        verify_with=verifier_cls.kind if verifier_cls else None,
        options=checked, max_attempts=max(1, max_attempts),
    )
    ra = resolve_account(vault, user, profile)  # the records must make a usable account now
    check_noop_effect(profile, user, ra.resource, ra.provider)
    if not ra.noop:
        precheck_now(ra)
    if ra.ab is not None:  # both accounts must exist on the device: asked through the admin credential
        ab.check_profile(user, profile.target, profile.admin)
        ab.check_on_device_now(vault, ra)
    with vault.unit() as session:
        check_credential_roles(vault, session, user, profile)
        mine = {ra.ab.active, ra.ab.idle} if ra.ab is not None else {ra.account.username}
        ab.check_taken(session, user.uid, profile.resource, mine, ab_profile=ra.ab is not None,
                       admin_login=ra.account.admin.username if ra.account.admin else None)
        vault.set_meta(user.uid, META_KEY, profile.to_meta(), actor=actor)
        vault.audit.append("rotation.profile_set", actor=actor, record_uid=user.uid,
                           details={"target": profile.target, "resource": profile.resource,
                                    "admin": profile.admin, "verify_with": profile.verify_with,
                                    "options": dict(profile.options)})
    return profile


def precheck_now(ra: ResolvedAccount) -> None:
    """Let the profile's target refuse, on the device now, an account it cannot rotate as configured
    (a target with ``precheck``: a Meraki SSID not in PSK mode → `ProfileError` naming its mode). A
    device that does not answer (unreachable, rate limited) refuses nothing: the rotation checks again."""
    from keyturn.targets.base import Prechecking
    from keyturn.targets.registry import create_target, target_class

    if not hasattr(target_class(ra.profile.target), "precheck"):
        return

    async def run() -> None:
        target = create_target(ra.profile.target, timeout=10.0, max_429=3, max_5xx=1)
        try:
            if isinstance(target, Prechecking):
                await target.precheck(ra.account)
        except (TargetUnreachable, TargetTimeout, RateLimited) as exc:
            log.info("rotation set: %s not checked on the device: %s", ra.user.title, exc)
        except TargetError as exc:
            raise ProfileError(f"record {ra.user.title!r} cannot be rotated with {ra.profile.target}: "
                               f"{exc}") from exc
        finally:
            await target.aclose()

    ab.run_now(run)


def _policy_meta(policy: PasswordPolicy) -> dict[str, Any]:
    """Store the user's policy as Keeper's complexity object (what `parse_policy` reads back)."""
    data: dict[str, Any] = dict(policy.to_keeper())
    if policy.exclude:
        data["exclude"] = policy.exclude
    if policy.first_char_letter:
        data["firstCharLetter"] = True
    return data
