"""Records → the `Account` a target works on (issue 4, "Records the targets read").

* IOS XE resource: a `pamNetworkDevice` record, standard field `host` = ``HOST[:PORT]`` (RESTCONF
  port, default 443; Keeper's ``{"hostName", "port"}`` object is accepted too) and optional custom
  fields `ssh_port`, `ca_bundle`, `fingerprint`, `insecure`.
* Meraki resource: a `pamMerakiNetwork` record, custom `network_id`, optional `org_id`, `base_url`,
  `verify_url`.
* Keeper-style "Cisco Authentication Record": a `login` record with custom `host_endpoint` (IOS XE)
  or `network_id` (Meraki) — usable as resource and admin at once.
* Admin credential: a `login`/`pamUser` record; its password is the admin password (Meraki: the API
  key). The IOS enable secret comes from the custom text field `enable_secret_record` = uid of the
  record whose current password IS the enable secret (the record `iosxe-enable-secret` rotates), or
  else from a copied custom secret `enable_secret`. The reference wins: a copy goes stale the moment
  the enable secret is rotated, the reference never does. The rotated user may carry either too.
* The rotated user: `pamUser`/`login` with `login` (Meraki: the e-mail) and the current `password`.
  With an A/B profile (option ``ab``) the rotated account is the record's idle one, custom `ab_login`
  / `ab_password` (`keyturn.engine.ab`).

Other text custom fields of the resource land in `Endpoint.options` (e.g. `verify_url`); the
profile's options only in `Account.options` (e.g. `mode=password`), never in `Endpoint.options`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keyturn.engine.ab import IDLE_SLOT, Pair, pair_of
from keyturn.engine.ports import RecordLike, VaultLike
from keyturn.engine.profile_model import NOOP_KIND, RotationProfile, default_configuration_record, is_noop
from keyturn.errors import AmbiguousRecord, ProfileError, RecordNotFound
from keyturn.secret import Secret
from keyturn.targets.base import Account, AdminCredential, Endpoint

IOSXE_TYPES = ("pamNetworkDevice",)
MERAKI_TYPES = ("pamMerakiNetwork",)
# Custom fields with a dedicated Endpoint attribute (not copied into Endpoint.options).
_ENDPOINT_FIELDS = ("host_endpoint", "ssh_port", "ca_bundle", "fingerprint", "insecure", "network_id",
                    "org_id", "base_url")
_TRUE = ("1", "true", "yes", "on")
ENABLE_REF = "enable_secret_record"   # text custom field: uid of the record holding the enable secret
PAM_CONFIGURATION_TYPE = "pamConfiguration"  # the record type `default_configuration_record` lists
ENABLE_COPY = "enable_secret"         # secret custom field: a copied enable secret (goes stale)
ENABLE_TARGET = "iosxe-enable-secret"
# Targets whose calls authenticate with the rotated secret itself (a Meraki API key rotates its own key):
# they need no admin credential, and their record may be the admin of other profiles.
OWN_KEY_TARGETS = ("meraki-api-key",)


@dataclass(frozen=True, slots=True)
class ResolvedAccount:
    """Everything one rotation needs, read from the vault at its start."""

    account: Account
    profile: RotationProfile
    user: Any            # keyturn.vault.Record (RecordLike)
    resource: Any | None
    admin: Any | None
    provider: Any        # the pamConfiguration record (the scripts' providerRecordUid)
    noop: bool
    ab: Pair | None = None   # A/B profile: `account` is the idle account of the pair

    @property
    def secret_field(self) -> str:
        """The vault field holding the rotated account's current secret."""
        return IDLE_SLOT if self.ab is not None else "password"

    @property
    def verifier_kind(self) -> str | None:
        """The target kind that checks logins for this account (None: nothing can)."""
        if self.profile.verify_with:
            return self.profile.verify_with
        if self.profile.target != NOOP_KIND:
            return self.profile.target
        return None


def parse_host(value: Any, *, default_port: int = 443) -> tuple[str, int]:
    """``"host"``, ``"host:port"``, ``"[v6]:port"`` or Keeper's ``{"hostName", "port"}`` → (host, port)."""
    if isinstance(value, Mapping):
        host = str(value.get("hostName") or "").strip()
        port_text = str(value.get("port") or "").strip()
    else:
        text = str(value or "").strip()
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port_text = rest.lstrip(":")
        elif text.count(":") == 1:
            host, _, port_text = text.partition(":")
        else:
            host, port_text = text, ""
    if not host:
        raise ProfileError("the resource has no host; set its `host` field to HOST[:PORT]")
    try:
        port = int(port_text) if port_text else default_port
    except ValueError as exc:
        raise ProfileError(f"the resource's port {port_text!r} is not a number") from exc
    if not 0 < port < 65536:
        raise ProfileError(f"the resource's port {port} is out of range")
    return host, port


def _text(record: RecordLike, label: str) -> str | None:
    value = record.custom_value(label)
    if value is None or isinstance(value, Secret):
        return None
    text = str(value).strip()
    return text or None


def _port(record: RecordLike, label: str) -> int | None:
    text = _text(record, label)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise ProfileError(f"record {record.title!r}: custom field {label} {text!r} is not a port") from exc


def _as_secret(value: Any) -> Secret | None:
    if value is None or isinstance(value, Secret):
        return value
    text = str(value)
    return Secret(text) if text else None


def _extra_options(record: RecordLike, profile: RotationProfile) -> dict[str, str]:
    """`Endpoint.options`: the resource record's plain custom fields, and nothing from the profile.

    Where credentials go and how the peer is trusted (``verify_url``, ``proxy``, host keys, ...) is
    the resource's business, and only an admin may change a record; operators set profiles, whose
    options reach the target only as `Account.options` (issue 12, item 1). A profile stored before
    options were checked that still carries one outside the allow-list is refused, not ignored: its
    owner may have meant it, and must move it to the resource record.
    """
    from keyturn.engine.profile_model import PROFILE_OPTIONS

    stale = sorted(k for k in profile.options if k not in PROFILE_OPTIONS)
    if stale:
        raise ProfileError(f"the rotation profile carries option(s) {', '.join(stale)}, which a profile may "
                           f"not set; an admin sets where credentials go and how the device is trusted on "
                           f"the resource record {record.title!r}; set the profile again without them")
    options: dict[str, str] = {}
    for f in record.custom:
        label = getattr(f, "label", None)
        values = getattr(f, "value", None) or []
        if not label or label in _ENDPOINT_FIELDS or not values or isinstance(values[0], Secret):
            continue
        if isinstance(values[0], str | int | float | bool):
            options[label] = str(values[0])
    return options


def resource_kind(record: RecordLike) -> str:
    """"iosxe" or "meraki" for a resource record; `ProfileError` if it is neither."""
    if record.type in IOSXE_TYPES or _text(record, "host_endpoint"):
        return "iosxe"
    if record.type in MERAKI_TYPES or _text(record, "network_id"):
        return "meraki"
    raise ProfileError(
        f"record {record.title!r} ({record.type}) is not a resource: use a pamNetworkDevice or "
        "pamMerakiNetwork record, or a login record with custom host_endpoint / network_id"
    )


def build_endpoint(record: RecordLike, profile: RotationProfile) -> Endpoint:
    options = _extra_options(record, profile)
    insecure = (_text(record, "insecure") or "").lower() in _TRUE
    if resource_kind(record) == "iosxe":
        raw = record.field("host") if record.type in IOSXE_TYPES else None
        host, port = parse_host(raw if raw else _text(record, "host_endpoint"))
        return Endpoint(host=host, port=port, ssh_port=_port(record, "ssh_port"),
                        ca_bundle=_text(record, "ca_bundle"), fingerprint=_text(record, "fingerprint"),
                        insecure=insecure, options=options, resource_uid=record.uid,
                        resource_title=record.title)
    network_id = _text(record, "network_id")
    if not network_id:
        raise ProfileError(f"Meraki resource {record.title!r} has no network_id custom field")
    base_url = _text(record, "base_url")
    return Endpoint(host=base_url or "api.meraki.com", base_url=base_url, network_id=network_id,
                    org_id=_text(record, "org_id"), ca_bundle=_text(record, "ca_bundle"),
                    fingerprint=_text(record, "fingerprint"), insecure=insecure, options=options)


def enable_secret(vault: VaultLike, record: RecordLike) -> Secret | None:
    """The IOS enable secret `record` (an admin or user record) points to or carries.

    `enable_secret_record` = uid → that record's *current* password (read now, so a rotated enable
    secret is used at once); else the copied custom secret `enable_secret`; else None. A reference to
    a missing record, or to one without a password, is a `ProfileError`.
    """
    ref = _text(record, ENABLE_REF)
    if ref is None:
        return _as_secret(record.custom_value(ENABLE_COPY))
    try:
        holder = vault.get(ref)
    except (RecordNotFound, AmbiguousRecord) as exc:
        raise ProfileError(f"record {record.title!r}: custom field {ENABLE_REF} names {ref!r}, which is "
                           "not a record in the vault; set it to the enable-secret record's uid") from exc
    secret = vault.secret(holder.uid)
    if secret is None:
        raise ProfileError(f"record {record.title!r}: its enable secret record {holder.title!r} has no "
                           "password")
    return secret


def build_admin(vault: VaultLike, record: RecordLike) -> AdminCredential:
    secret = vault.secret(record.uid)
    if secret is None:
        raise ProfileError(f"admin record {record.title!r} has no password")
    username = record.field("login") or _text(record, "login") or ""
    return AdminCredential(username=str(username), secret=secret, enable_secret=enable_secret(vault, record))


@dataclass(frozen=True, slots=True)
class EnableLink:
    """What `link_enable_secret` found or did on the admin record."""

    admin_uid: str
    admin_title: str
    state: str                  # "linked" (reference set now) | "kept" (already this one) | "other"
    reference: str              # the uid the admin record references afterwards
    copy_ignored: bool          # the admin record also holds a copied `enable_secret`, now unused


def link_enable_secret(vault: Any, enable_uid: str, admin_ref: str, *, actor: str = "cli") -> EnableLink:
    """Make admin record `admin_ref` read its enable secret from record `enable_uid`, unless it already
    references a record (a reference someone set is never overwritten: state "other").

    The reference is a text custom field written through `vault.update` (audited `record.update`).
    """
    from keyturn.vault import Field

    admin = vault.get(admin_ref)
    current = _text(admin, ENABLE_REF)
    has_copy = _as_secret(admin.custom_value(ENABLE_COPY)) is not None
    if current is not None:
        state = "kept" if current == enable_uid else "other"
        return EnableLink(admin.uid, admin.title, state, current, has_copy)
    custom = [*admin.custom, Field("text", ENABLE_REF, [enable_uid])]
    vault.update(admin.uid, custom=custom, actor=actor)
    return EnableLink(admin.uid, admin.title, "linked", enable_uid, has_copy)


def resolve_account(vault: VaultLike, user: RecordLike, profile: RotationProfile) -> ResolvedAccount:
    """Read the user, resource, admin and configuration records of `profile` into an account.

    Raises `ProfileError` (or the vault's `RecordNotFound`) with what to fix.
    """
    noop = is_noop(profile, user)
    prefetch = getattr(vault, "prefetch", None)   # `Vault.prefetch`; a test's vault may lack it
    if prefetch is not None:
        # One query for the records read below (and one for their versions) instead of one or two each.
        prefetch([r for r in (profile.resource, profile.admin, profile.configuration, _text(user, ENABLE_REF))
                  if r], types=() if profile.configuration else (PAM_CONFIGURATION_TYPE,))
    resource = vault.get(profile.resource) if profile.resource else None
    admin = vault.get(profile.admin) if profile.admin else None
    # Without a configuration the default one, as `find` read it (no second read by uid).
    provider = (vault.get(profile.configuration) if profile.configuration
                else default_configuration_record(vault))
    checked_kind = profile.verify_with or (profile.target if profile.target != NOOP_KIND else None)
    meraki_target = (checked_kind or "").startswith("meraki")
    if resource is None:
        if not noop or profile.verify_with:
            raise ProfileError(f"the rotation profile of {user.title!r} names no resource")
        endpoint = Endpoint(host="", options=dict(profile.options))
    else:
        endpoint = build_endpoint(resource, profile)
        kind = resource_kind(resource)
        if checked_kind is not None and meraki_target != (kind == "meraki"):
            raise ProfileError(f"resource {resource.title!r} is an {kind} resource; it does not fit target "
                               f"{checked_kind}")
    username = user.field("login") or user.field("email") or _text(user, "login")
    if not username:
        raise ProfileError(f"record {user.title!r} has no login (Meraki: the user's e-mail)")
    pair = pair_of(user, profile.options)
    if pair is not None:
        username = pair.idle
    admin_cred = build_admin(vault, admin) if admin is not None else None
    if meraki_target and admin_cred is None and checked_kind not in OWN_KEY_TARGETS:
        raise ProfileError("a Meraki target needs --admin: the record whose password is the API key")
    account = Account(
        record_uid=user.uid, username=str(username), endpoint=endpoint, admin=admin_cred,
        enable_secret=enable_secret(vault, user), options=dict(profile.options),
    )
    return ResolvedAccount(account=account, profile=profile, user=user, resource=resource, admin=admin,
                           provider=provider, noop=noop, ab=pair)
