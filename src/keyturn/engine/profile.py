"""Rotation profile: how one user record is rotated, stored in the record's meta under "rotation".

    {"target": "iosxe-restconf", "resource": "<uid>", "admin": "<uid>"|None,
     "configuration": "<uid of the pamConfiguration>", "policy": {Keeper complexity}|None,
     "verify_with": "<kind>"|None, "options": {"mode": "password", ...}, "max_attempts": 3}

`set_profile` validates everything when the profile is set (records exist, target kind known, the
policy intersected with the target's constraints is feasible), so a rotation never fails on a profile
mistake a person could have been told about earlier.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from keyturn.engine.ports import RecordLike, VaultLike
from keyturn.errors import ProfileError
from keyturn.policy import PasswordPolicy, effective, parse_policy

META_KEY = "rotation"
DEFAULT_CONFIGURATION_TITLE = "Default PAM Configuration"
NOOP_KIND = "noop"
USER_TYPES = ("pamUser", "login")


@dataclass(frozen=True, slots=True)
class RotationProfile:
    target: str
    resource: str | None = None
    admin: str | None = None
    configuration: str | None = None
    policy: Mapping[str, Any] | None = None
    verify_with: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    max_attempts: int = 3

    def to_meta(self) -> dict[str, Any]:
        return {
            "target": self.target, "resource": self.resource, "admin": self.admin,
            "configuration": self.configuration, "policy": dict(self.policy) if self.policy else None,
            "verify_with": self.verify_with, "options": dict(self.options),
            "max_attempts": self.max_attempts,
        }

    @classmethod
    def from_meta(cls, data: Any) -> RotationProfile:
        if not isinstance(data, Mapping) or not isinstance(data.get("target"), str):
            raise ProfileError("the rotation profile is malformed; set it again with `keyturn rotation set`")
        options = data.get("options") or {}
        try:
            attempts = int(data.get("max_attempts") or 3)
        except (TypeError, ValueError) as exc:
            raise ProfileError("the rotation profile has a bad max_attempts") from exc
        return cls(
            target=data["target"], resource=data.get("resource"), admin=data.get("admin"),
            configuration=data.get("configuration"), policy=data.get("policy"),
            verify_with=data.get("verify_with"),
            options={str(k): str(v) for k, v in dict(options).items()},
            max_attempts=max(1, attempts),
        )


def load_profile(record: RecordLike) -> RotationProfile:
    """The record's profile; `ProfileError` telling the user how to set one if there is none."""
    data = record.meta.get(META_KEY)
    if data is None:
        raise ProfileError(
            f"record {record.title!r} has no rotation profile; set one with "
            f"`keyturn rotation set {record.uid} --target KIND --resource RECORD`"
        )
    return RotationProfile.from_meta(data)


def is_noop(profile: RotationProfile, user: RecordLike) -> bool:
    """Scripts are the change: target `noop`, or the user record's custom field NOOP = True (any case)."""
    flag = user.custom_value("NOOP")
    return profile.target == NOOP_KIND or str(flag or "").strip().lower() == "true"


def default_configuration(vault: VaultLike) -> str:
    found = [r for r in vault.find(type="pamConfiguration")]
    named = [r for r in found if r.title == DEFAULT_CONFIGURATION_TITLE]
    pick = named or found
    if not pick:
        raise ProfileError("no pamConfiguration record in the vault; run `keyturn init` or add one")
    return str(pick[0].uid)


def set_profile(
    vault: VaultLike, ref: str, *, target: str, resource: str | None = None, admin: str | None = None,
    configuration: str | None = None, policy: Mapping[str, Any] | str | None = None,
    verify_with: str | None = None, options: Mapping[str, str] | None = None, max_attempts: int = 3,
    actor: str = "cli",
) -> RotationProfile:
    """Validate and store a rotation profile on record `ref`; returns what was stored.

    Raises `RecordNotFound`/`AmbiguousRecord` for bad references, `ProfileError` for an unknown target
    kind or an unusable resource/admin, and `PolicyError` when the policy cannot be met on the target.
    """
    from keyturn.engine.accounts import resolve_account
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
    for cls in (kind_cls, verifier_cls):
        validate = getattr(cls, "validate_options", None)
        if validate is not None:
            validate(dict(options or {}))
    parsed = parse_policy(policy)
    rules_cls = kind_cls if kind_cls.kind != NOOP_KIND or verifier_cls is None else verifier_cls
    effective(parsed, rules_cls.constraints)  # refuse an impossible policy now, not at rotation time
    policy_data = _policy_meta(parsed)
    profile = RotationProfile(
        target=kind_cls.kind,
        resource=vault.get(resource).uid if resource else None,
        admin=vault.get(admin).uid if admin else None,
        configuration=vault.get(configuration).uid if configuration else default_configuration(vault),
        policy=policy_data if policy is not None else None,
        verify_with=verifier_cls.kind if verifier_cls else None,
        options=dict(options or {}), max_attempts=max(1, max_attempts),
    )
    resolve_account(vault, user, profile)  # the records must make a usable account now
    vault.set_meta(user.uid, META_KEY, profile.to_meta(), actor=actor)
    vault.audit.append("rotation.profile_set", actor=actor, record_uid=user.uid,
                       details={"target": profile.target, "resource": profile.resource,
                                "admin": profile.admin, "verify_with": profile.verify_with,
                                "options": dict(profile.options)})
    return profile


def _policy_meta(policy: PasswordPolicy) -> dict[str, Any]:
    """Store the user's policy as Keeper's complexity object (what `parse_policy` reads back)."""
    data: dict[str, Any] = dict(policy.to_keeper())
    if policy.exclude:
        data["exclude"] = policy.exclude
    if policy.first_char_letter:
        data["firstCharLetter"] = True
    return data
