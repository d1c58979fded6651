"""The rotation profile as stored: its fields, the profile options allowed, and reading it from a record.

`keyturn.engine.profile` sets profiles (it validates against the resolved account, so it needs
`keyturn.engine.accounts`); this module is what both of them read, and imports neither, so
`engine/` has no import cycle between them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from keyturn import sites
from keyturn.engine import ab
from keyturn.engine.ports import RecordLike, VaultLike
from keyturn.errors import ProfileError

META_KEY = "rotation"
SCRIPTS_KEY = "scripts"          # keyturn.scripts.attachments.META_KEY (not imported: no cycle, no cost)
DEFAULT_CONFIGURATION_TITLE = "Default PAM Configuration"
NOOP_KIND = "noop"
USER_TYPES = ("pamUser", "login")


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """What one profile option takes: one of `choices`, a text matching `pattern` (described by
    `rule`), or a whole number in [`low`, `high`]."""

    meaning: str
    choices: tuple[str, ...] = ()
    low: int | None = None
    high: int | None = None
    pattern: re.Pattern[str] | None = None
    rule: str = ""

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.pattern is not None:
            return self.rule
        return f"a whole number {self.low}-{self.high}"

    def accepts(self, value: str) -> bool:
        if self.choices:
            return value in self.choices
        if self.pattern is not None:
            return self.pattern.fullmatch(value) is not None
        if not value.isascii() or not value.isdigit() or len(value) > 9:
            return False
        return (self.low is None or int(value) >= self.low) and (self.high is None or int(value) <= self.high)


# The only options a rotation profile may carry. Nothing here may decide where a credential is sent or
# how the peer is trusted: those are resource-record fields (admin-only). A target may check its own
# options further (`validate_options`), never widen this list.
PROFILE_OPTIONS: Mapping[str, OptionSpec] = {
    "mode": OptionSpec("IOS XE: store the new secret as a hashed secret or a reversible password",
                       choices=("auto", "secret", "password")),
    "verify": OptionSpec("IOS XE: prove the new secret by login, stored hash or both",
                         choices=("auto", "login", "hash", "both")),
    "failed_login_budget": OptionSpec("IOS XE: failed logins a rotation may cause on the account",
                                      low=0, high=100),
    "verify_via": OptionSpec("iosxe-restconf: log in over SSH to verify", choices=("ssh",)),
    # Meraki wireless (`meraki-ssid-psk`, `meraki-ipsk`): which SSID of the network, how long the
    # replaced identity PSK keeps working, the group policy of a first identity PSK.
    "ssid": OptionSpec("Meraki: the SSID number (0-14) whose PSK or identity PSKs rotate", low=0, high=14),
    "grace": OptionSpec("meraki-ipsk: how long the replaced identity PSK keeps working",
                        pattern=re.compile(r"(?:\s*\d+\s*[smhdwSMHDW]\s*)+"),
                        rule="a duration such as 24h, 30m or 1d 12h"),
    "group_policy": OptionSpec("meraki-ipsk: the group policy id of the first identity PSK",
                               pattern=re.compile(r"[0-9A-Za-z_.-]{1,64}"), rule="a group policy id"),
    # Which workers rotate the account, overriding the resource's site; checked against the known
    # sites by `set_profile` (`keyturn.sites`). Not a target setting: targets never read it.
    sites.OPTION: OptionSpec("the site whose workers rotate this account (overrides the resource's)",
                             pattern=sites.SITE_NAME, rule=f"a known site name ({sites.NAME_RULE})"),
    # A/B rotation (`keyturn.engine.ab`): the second device account; checked on the device when set.
    ab.OPTION: OptionSpec("A/B rotation: the second device account, rotated in turn with the record's",
                          pattern=ab.LOGIN, rule=ab.LOGIN_RULE),
}


def check_options(options: Mapping[str, Any]) -> dict[str, str]:
    """`options` checked against `PROFILE_OPTIONS`: the same mapping as text, or `ProfileError` naming
    the offending option and what is allowed (an unknown option is never passed on, not even ignored)."""
    allowed = ", ".join(f"{name} ({spec.describe()})" for name, spec in PROFILE_OPTIONS.items())
    checked: dict[str, str] = {}
    for key, raw in options.items():
        name = str(key)
        spec = PROFILE_OPTIONS.get(name)
        if spec is None:
            shown = name if name.isprintable() and len(name) <= 64 else "(unprintable or over-long name)"
            raise ProfileError(f"profile option {shown!r} is not allowed (allowed: {allowed}); where "
                               "credentials go and how the device is trusted are set on the resource "
                               "record, by an admin")
        value = str(raw).strip()
        if not spec.accepts(value):
            shown_value = value if value.isprintable() and len(value) <= 64 else "(unprintable or over-long)"
            raise ProfileError(f"profile option {name} must be {spec.describe()}, not {shown_value!r}")
        checked[name] = value
    return checked


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


def check_noop_effect(profile: RotationProfile, user: RecordLike, resource: RecordLike | None,
                      provider: RecordLike | None) -> None:
    """`ProfileError` for a noop profile that can have no effect: no post-rotation script on the user,
    its resource or the PAM configuration, and no verifier. Rotating it would make a fresh secret
    current that nothing ever set on the device — the working one would be lost from the vault."""
    if not is_noop(profile, user) or profile.verify_with:
        return
    if any(r is not None and r.meta.get(SCRIPTS_KEY) for r in (user, resource, provider)):
        return
    raise ProfileError(
        f"record {user.title!r}: a noop profile changes nothing itself, and no post-rotation script is "
        "attached to the record, its resource or the PAM configuration, and no verifier is set: a "
        "rotation would store a secret nothing ever set. Attach the script first (`keyturn script attach "
        f"{user.uid} SCRIPT`) or add --verify-with KIND"
    )


def default_configuration(vault: VaultLike) -> str:
    """The uid of the PAM configuration a profile without one uses (`default_configuration_record`)."""
    return str(default_configuration_record(vault).uid)


def default_configuration_record(vault: VaultLike) -> RecordLike:
    """The PAM configuration titled `DEFAULT_CONFIGURATION_TITLE`, else the first one by title."""
    found: list[RecordLike] = list(vault.find(type="pamConfiguration"))
    named = [r for r in found if r.title == DEFAULT_CONFIGURATION_TITLE]
    pick = named or found
    if not pick:
        raise ProfileError("no pamConfiguration record in the vault; run `keyturn init` or add one")
    return pick[0]
