"""`meraki-ipsk`: rotate an identity PSK (iPSK without RADIUS) with overlap, through the Dashboard API v1.

Wire facts (reference meraki.md §3.2; https://developer.cisco.com/meraki/api-v1/create-network-wireless-ssid-identity-psk/):

* the account is a **family of identity PSKs** on one SSID: the record's login is the family's name
  ``NAME`` (the first one may be called just ``NAME``), keyturn's rotations add ``NAME-v2``,
  ``NAME-v3``, ...; the SSID is the resource's ``network_id`` + the profile option ``ssid`` (0-14), and
  must be in ``ipsk-without-radius`` mode (another mode is refused with its name, nothing sent);
* change = ``POST .../ssids/{n}/identityPsks`` ``{"name": NAME-vK, "groupPolicyId": ..., "passphrase":
  NEW}`` — a new iPSK **beside** the old one, so devices using the old passphrase keep working; the
  group policy is the replaced iPSK's (the one whose passphrase is `old`), or the profile option
  ``group_policy`` for the very first. Idempotent: an iPSK of the family that already has `NEW` is the
  change done (a retried or recovered rotation creates nothing);
* verify = read back: the list returns passphrases in clear; OK when an unexpired iPSK of the family
  has the secret (`Proof.READ_BACK`). So after a crash between create and commit, recovery finds the
  created iPSK by its family name and passphrase and finishes forward (or, if it is not there,
  backward) — never by deleting anything;
* the replaced iPSKs are deleted later, by `delete_replaced`, once the profile option ``grace``
  (default 24h) has passed since the commit: `keyturn.engine.grace` sweeps, from the vault's durable
  versions, so a restart loses nothing. `delete_replaced` refuses to delete anything unless an iPSK of
  the family holds the current secret: the one in use is never deleted;
* iPSK passphrases are 8-63 characters and unique per SSID (a taken one → `ChangeRejected`);
* budget, 429 pacing, redirects, https-only: `keyturn.targets.meraki_api`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

from keyturn.durations import parse_duration
from keyturn.errors import (
    AccountNotFound,
    AccountNotRotatable,
    ChangeRejected,
    ConfigError,
    ProfileError,
    TargetError,
)
from keyturn.secret import Secret
from keyturn.targets.base import (
    Account,
    AdminCredential,
    Check,
    Endpoint,
    FoundAccount,
    Proof,
    SecretRules,
    Verdict,
)
from keyturn.targets.meraki_api import MerakiApi, _errors_text, _json
from keyturn.targets.meraki_ssid import WPA_PSK_RULES, same_secret, ssid_number

log = logging.getLogger("keyturn.targets.meraki")

KIND = "meraki-ipsk"
IPSK_MODE = "ipsk-without-radius"
DEFAULT_GRACE = timedelta(hours=24)
MAX_GRACE = timedelta(days=90)
OPTIONS = frozenset({"ssid", "site", "grace", "group_policy"})
NAME_TAKEN = "already been taken"   # the 400 when two rotations race for one name (retried once)


def grace_of(options: dict[str, str] | Any) -> timedelta:
    """The profile's ``grace`` (default 24h, at most 90 days); `ProfileError` when it is not a duration."""
    raw = options.get("grace")
    if raw is None:
        return DEFAULT_GRACE
    try:
        return parse_duration(raw, what="grace", maximum=MAX_GRACE)
    except ConfigError as exc:
        raise ProfileError(f"{KIND}: {exc}") from exc


def family_version(base: str, name: Any) -> int | None:
    """1 for ``base`` itself, K for ``base-vK``, None for a name outside the family."""
    if not isinstance(name, str):
        return None
    if name == base:
        return 1
    found = re.fullmatch(re.escape(base) + r"-v([1-9][0-9]{0,5})", name)
    return int(found.group(1)) if found else None


def _expired(ipsk: dict[str, Any], now: datetime) -> bool:
    raw = ipsk.get("expiresAt")
    if not isinstance(raw, str) or not raw or raw == "Never":
        return False
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return False
    return (when if when.tzinfo else when.replace(tzinfo=UTC)) <= now


class MerakiIpskTarget(MerakiApi):
    """Rotates one identity PSK family with overlap (see the module docstring)."""

    kind: ClassVar[str] = KIND
    constraints: ClassVar[SecretRules] = WPA_PSK_RULES
    can_verify: ClassVar[bool] = True

    @staticmethod
    def validate_options(options: dict[str, str]) -> None:
        """``ssid`` required; ``grace`` a duration; nothing else but ``group_policy`` and ``site``."""
        extra = sorted(set(options) - OPTIONS)
        if extra:
            raise ProfileError(f"{KIND} takes no profile option {', '.join(extra)} (only ssid, grace, "
                               "group_policy and site)")
        if "ssid" not in options:
            raise ProfileError(f"{KIND} needs --option ssid=N: the SSID number (0-14) of the network")
        grace_of(options)

    # ---- plumbing ----------------------------------------------------------------------------------
    def _ssid_path(self, account: Account) -> str:
        network = account.endpoint.network_id
        if not network:
            raise ProfileError(f"{KIND}: the resource has no network_id")
        return f"/networks/{quote(network, safe='')}/wireless/ssids/{ssid_number(account, KIND)}"

    async def _get(self, account: Account, path: str, doing: str) -> Any:
        response = await self._call(account, "GET", path, doing=doing)
        if response.status_code != 200:
            self._raise_for(account, response, doing)
        return _json(response)

    async def _check_mode(self, account: Account) -> None:
        ssid = await self._get(account, self._ssid_path(account), "reading the SSID")
        mode = ssid.get("authMode") if isinstance(ssid, dict) else None
        if mode != IPSK_MODE:
            raise self._err(AccountNotRotatable, account, f"SSID {ssid_number(account, KIND)} uses authMode "
                            f"{str(mode)[:40]!r}, not {IPSK_MODE!r}: it has no identity PSKs to rotate")

    async def family(self, account: Account) -> list[tuple[int, dict[str, Any]]]:
        """(version, iPSK) of the account's family on the SSID, oldest version first."""
        body = await self._get(account, f"{self._ssid_path(account)}/identityPsks", "listing identity PSKs")
        if not isinstance(body, list):
            raise self._err(TargetError, account, "listing identity PSKs: the answer is not a JSON list")
        found = [(family_version(account.username, p.get("name")), p) for p in body if isinstance(p, dict)]
        return sorted(((v, p) for v, p in found if v is not None), key=lambda vp: vp[0])

    async def precheck(self, account: Account) -> None:
        """For `keyturn rotation set`: the SSID is in iPSK mode, and the family exists or the profile
        names the group policy of its first iPSK."""
        await self._check_mode(account)
        if not await self.family(account) and not account.options.get("group_policy"):
            raise self._err(AccountNotFound, account, f"no identity PSK named {account.username!r} on "
                            f"SSID {ssid_number(account, KIND)}; give --option group_policy=ID to create "
                            "the first")

    async def discover(self, endpoint: Endpoint, admin: AdminCredential) -> list[FoundAccount]:
        """One account per identity PSK family (``NAME``, ``NAME-vK`` → ``NAME``) on each SSID of the
        network in iPSK mode; ``details`` carry the SSID number, group policy and member count."""
        network = Account(record_uid="", username="", endpoint=endpoint, admin=admin)
        path = f"/networks/{quote(endpoint.network_id or '', safe='')}/wireless/ssids"
        ssids = await self._get(network, path, "listing the SSIDs")
        found: list[FoundAccount] = []
        for ssid in ssids if isinstance(ssids, list) else []:
            number = ssid.get("number") if isinstance(ssid, dict) else None
            if ssid.get("authMode") != IPSK_MODE or not isinstance(number, int):
                continue
            walker = Account(record_uid="", username="", endpoint=endpoint, admin=admin,
                             options={"ssid": str(number)})
            body = await self._get(walker, f"{self._ssid_path(walker)}/identityPsks", "listing identity PSKs")
            families: dict[str, list[dict[str, Any]]] = {}
            for p in body if isinstance(body, list) else []:
                name = p.get("name") if isinstance(p, dict) else None
                if isinstance(name, str) and name:
                    families.setdefault(re.sub(r"-v[1-9][0-9]{0,5}$", "", name), []).append(p)
            found += [FoundAccount(username=base, kind="identity PSK",
                                   details={"ssid": str(number), "ssid_name": str(ssid.get("name") or ""),
                                            "group_policy": str(members[-1].get("groupPolicyId") or ""),
                                            "members": str(len(members))})
                      for base, members in sorted(families.items())]
        return found

    # ---- the contract ------------------------------------------------------------------------------
    async def change(self, account: Account, old: Secret | None, new: Secret) -> None:
        """Create ``NAME-vK`` with `new` beside the current iPSK (same group policy); see the docstring."""
        await self._check_mode(account)
        for attempt in (1, 2):
            family = await self.family(account)
            if any(same_secret(p.get("passphrase"), new) for _, p in family):
                return  # idempotent: already created (a retried or recovered change)
            source = next((p for _, p in family
                           if old is not None and same_secret(p.get("passphrase"), old)),
                          family[-1][1] if family else None)
            group = (str(source.get("groupPolicyId") or "") if source
                     else account.options.get("group_policy", ""))
            if not group:
                raise self._err(AccountNotFound, account, f"no identity PSK named {account.username!r} on "
                                f"SSID {ssid_number(account, KIND)} and no group_policy option for a first "
                                "one")
            version = max((v for v, _ in family), default=1) + 1
            body = {"name": f"{account.username}-v{version}", "groupPolicyId": group,
                    "passphrase": new.reveal()}
            response = await self._call(account, "POST", f"{self._ssid_path(account)}/identityPsks",
                                        doing="creating the identity PSK", json=body, scrub=new)
            if response.status_code in (200, 201):
                made = _json(response)
                if isinstance(made, dict) and not same_secret(made.get("passphrase"), new):
                    raise self._err(TargetError, account, "the identity PSK was created with another "
                                                          "passphrase than the one sent")
                return
            errors = _errors_text(response, new)
            if response.status_code == 400 and NAME_TAKEN in errors and "Name" in errors and attempt == 1:
                continue  # another writer took NAME-vK between our list and our POST: list again
            if response.status_code == 400:
                raise self._err(ChangeRejected, account, f"Meraki refused the new identity PSK: {errors}")
            self._raise_for(account, response, "creating the identity PSK", scrub=new)

    async def check(self, account: Account, secret: Secret) -> Check:
        """OK when an unexpired iPSK of the family has `secret`; INCONCLUSIVE when the list cannot be read."""
        try:
            family = await self.family(account)
        except (TargetError, ProfileError) as exc:
            return Check(Verdict.INCONCLUSIVE, Proof.NONE, str(exc))
        now = datetime.now(UTC)
        matching = [p for _, p in family if same_secret(p.get("passphrase"), secret)]
        if any(not _expired(p, now) for p in matching):
            return Check(Verdict.OK, Proof.READ_BACK)
        why = ("the identity PSK with this passphrase has expired" if matching else
               f"no identity PSK of {account.username!r} has this passphrase")
        return Check(Verdict.REJECTED, Proof.READ_BACK, why)

    async def verify(self, account: Account, secret: Secret) -> Verdict:
        return (await self.check(account, secret)).verdict

    async def delete_replaced(self, account: Account, keep: Sequence[Secret]) -> list[dict[str, str]]:
        """Delete every iPSK of the family whose passphrase is none of `keep` (the current secret
        first, then any pending candidate); returns their names and ids. Refuses — deleting nothing —
        unless an iPSK of the family holds ``keep[0]``: the one in use is never deleted."""
        family = await self.family(account)
        if not keep or not any(same_secret(p.get("passphrase"), keep[0]) for _, p in family):
            raise self._err(AccountNotFound, account, f"no identity PSK of {account.username!r} holds the "
                            "vault's current passphrase; nothing deleted (rotate or reconcile first)")
        gone = []
        for _, p in family:
            if any(same_secret(p.get("passphrase"), k) for k in keep):
                continue
            ipsk_id = str(p.get("id") or "")
            path = f"{self._ssid_path(account)}/identityPsks/{quote(ipsk_id, safe='')}"
            response = await self._call(account, "DELETE", path, doing="deleting a replaced identity PSK")
            if response.status_code not in (200, 204, 404):  # 404: already gone (a sweep that crashed)
                self._raise_for(account, response, "deleting a replaced identity PSK")
            gone.append({"name": str(p.get("name")), "id": ipsk_id})
        return gone


__all__ = ["DEFAULT_GRACE", "KIND", "MerakiIpskTarget", "family_version", "grace_of"]
