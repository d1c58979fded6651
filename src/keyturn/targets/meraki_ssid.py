"""`meraki-ssid-psk`: rotate the pre-shared key of a Meraki SSID through the Dashboard API v1.

Wire facts (reference meraki.md §3.1; https://developer.cisco.com/meraki/api-v1/update-network-wireless-ssid/):

* the account is one SSID: the resource's ``network_id`` + the profile option ``ssid`` (0-14). The
  record's login only names it for people and post-rotation scripts (e.g. the SSID's name);
* ``psk`` is "only valid if the authMode is 'psk'": the SSID is read first and one in another mode
  (open, 802.1X, iPSK, ...) is refused with its mode named (`AccountNotRotatable`), nothing sent;
* change = ``PUT /networks/{id}/wireless/ssids/{number}`` with ``{"psk": NEW}`` **only** — never a
  GET → PUT round trip (GET may report ``encryptionMode: wpa-eap``, which PUT refuses,
  dashboard-api-python#124) and never the auth mode; a 200 whose SSID carries the new PSK confirms;
* verify = read back: ``GET`` the SSID — the API returns the current ``psk`` to a key that may read the
  network (the spec's schema omits it; community scripts read ``ssid['psk']``) — compared in constant
  time (`Proof.READ_BACK`). An answer without ``psk`` proves nothing: INCONCLUSIVE, never a guess;
* the rules: a WPA passphrase is 8-63 printable ASCII characters (IEEE 802.11i), so a policy outside
  that is refused when it is set (`keyturn rotation set`);
* budget, 429 pacing, redirects, https-only: `keyturn.targets.meraki_api`.

Operationally a new PSK disconnects every client of the SSID at once (there is no overlap): schedule it
in a maintenance window, or use identity PSKs (`meraki-ipsk`) to hand over with a grace period.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any, ClassVar
from urllib.parse import quote

from keyturn.errors import AccountNotRotatable, ChangeRejected, ProfileError, TargetError
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

log = logging.getLogger("keyturn.targets.meraki")

KIND = "meraki-ssid-psk"
PSK_MODE = "psk"
# WPA passphrase: 8-63 printable ASCII (IEEE 802.11i); a space at either end is refused by the policy.
WPA_PSK_RULES = SecretRules(min_length=8, max_length=63)
OPTIONS = frozenset({"ssid", "site"})


def ssid_number(account: Account, kind: str) -> str:
    """The profile option ``ssid`` (0-14), checked again here: a stored profile may predate the check."""
    raw = account.options.get("ssid", "")
    if not raw.isdigit() or not 0 <= int(raw) <= 14:
        raise ProfileError(f"{kind} needs the profile option ssid=N (the SSID number, 0-14)")
    return str(int(raw))


def same_secret(value: Any, secret: Secret) -> bool:
    return isinstance(value, str) and hmac.compare_digest(value.encode(), secret.reveal().encode())


class MerakiSsidPskTarget(MerakiApi):
    """Rotates one SSID's PSK (see the module docstring)."""

    kind: ClassVar[str] = KIND
    constraints: ClassVar[SecretRules] = WPA_PSK_RULES
    can_verify: ClassVar[bool] = True

    @staticmethod
    def validate_options(options: dict[str, str]) -> None:
        """``ssid`` is required; the IOS XE options mean nothing here."""
        extra = sorted(set(options) - OPTIONS)
        if extra:
            raise ProfileError(f"{KIND} takes no profile option {', '.join(extra)} (only ssid and site)")
        if "ssid" not in options:
            raise ProfileError(f"{KIND} needs --option ssid=N: the SSID number (0-14) of the network")

    def _path(self, account: Account) -> str:
        network = account.endpoint.network_id
        if not network:
            raise ProfileError(f"{KIND}: the resource has no network_id")
        return f"/networks/{quote(network, safe='')}/wireless/ssids/{ssid_number(account, KIND)}"

    async def _ssid(self, account: Account, *, doing: str) -> dict[str, Any]:
        response = await self._call(account, "GET", self._path(account), doing=doing)
        if response.status_code != 200:
            self._raise_for(account, response, doing)
        body = _json(response)
        if not isinstance(body, dict):
            raise self._err(TargetError, account, f"{doing}: the answer is not a JSON object")
        return body

    def _not_psk(self, account: Account, ssid: dict[str, Any]) -> str | None:
        """Why the SSID cannot take a PSK (its auth mode named), or None when it is in PSK mode."""
        mode = ssid.get("authMode")
        if mode == PSK_MODE:
            return None
        name = ssid.get("name")
        label = f"SSID {ssid_number(account, KIND)}" + (f" ({name!r})" if isinstance(name, str) else "")
        return (f"{label} uses authMode {str(mode)[:40]!r}, not 'psk': it has no pre-shared key to "
                "rotate (switch it to PSK in the Dashboard, or use meraki-ipsk for identity PSKs)")

    async def precheck(self, account: Account) -> None:
        """For `keyturn rotation set`: `AccountNotRotatable` when the SSID is not in PSK mode."""
        why = self._not_psk(account, await self._ssid(account, doing="reading the SSID"))
        if why is not None:
            raise self._err(AccountNotRotatable, account, why)

    async def ssids(self, endpoint: Endpoint, admin: AdminCredential) -> list[dict[str, Any]]:
        """``GET /networks/{id}/wireless/ssids`` of ``endpoint.network_id`` (read-only, org budget)."""
        walker = Account(record_uid="", username="", endpoint=endpoint, admin=admin)
        path = f"/networks/{quote(endpoint.network_id or '', safe='')}/wireless/ssids"
        response = await self._call(walker, "GET", path, doing="listing the SSIDs")
        if response.status_code != 200:
            self._raise_for(walker, response, "listing the SSIDs")
        body = _json(response)
        if not isinstance(body, list):
            raise self._err(TargetError, walker, "listing the SSIDs: the answer is not a JSON list")
        return [s for s in body if isinstance(s, dict)]

    async def discover(self, endpoint: Endpoint, admin: AdminCredential) -> list[FoundAccount]:
        """The network's SSIDs in PSK mode (username = the SSID's name, ``details["ssid"]`` its number);
        never their PSKs."""
        return [FoundAccount(username=str(s.get("name") or f"SSID {s.get('number')}"), kind="psk",
                             type=str(s.get("wpaEncryptionMode") or ""),
                             details={"ssid": str(s.get("number"))})
                for s in await self.ssids(endpoint, admin)
                if s.get("authMode") == PSK_MODE and isinstance(s.get("number"), int)]

    # ---- the contract ------------------------------------------------------------------------------
    async def change(self, account: Account, old: Secret | None, new: Secret) -> None:
        """Read the SSID (PSK mode or `AccountNotRotatable`), PUT ``{"psk": NEW}``, confirm the echo."""
        ssid = await self._ssid(account, doing="reading the SSID")
        why = self._not_psk(account, ssid)
        if why is not None:
            raise self._err(AccountNotRotatable, account, why)
        if same_secret(ssid.get("psk"), new):
            return  # idempotent: the SSID already has it (a retried or recovered change)
        response = await self._call(account, "PUT", self._path(account), doing="setting the PSK",
                                    json={"psk": new.reveal()}, scrub=new)
        if response.status_code == 400:
            raise self._err(ChangeRejected, account, f"Meraki refused the new PSK: "
                                                     f"{_errors_text(response, new)}")
        if response.status_code != 200:
            self._raise_for(account, response, "setting the PSK", scrub=new)
        body = _json(response)
        if isinstance(body, dict) and "psk" in body and not same_secret(body.get("psk"), new):
            raise self._err(TargetError, account, "the PSK change was answered 200 but the SSID came back "
                                                  "with another PSK")

    async def check(self, account: Account, secret: Secret) -> Check:
        """Read back: OK when the SSID's PSK is `secret`; REJECTED when it differs or the SSID is not in
        PSK mode (detail says which); INCONCLUSIVE when the API cannot be read or hides the PSK."""
        try:
            ssid = await self._ssid(account, doing="reading the SSID")
        except (TargetError, ProfileError) as exc:
            return Check(Verdict.INCONCLUSIVE, Proof.NONE, str(exc))
        why = self._not_psk(account, ssid)
        if why is not None:
            return Check(Verdict.REJECTED, Proof.READ_BACK, why)
        if not isinstance(ssid.get("psk"), str):
            return Check(Verdict.INCONCLUSIVE, Proof.NONE, "the API did not return the SSID's PSK to this "
                                                           "key (it needs read access to the network)")
        if same_secret(ssid["psk"], secret):
            return Check(Verdict.OK, Proof.READ_BACK)
        return Check(Verdict.REJECTED, Proof.READ_BACK, "the SSID has another PSK")

    async def verify(self, account: Account, secret: Secret) -> Verdict:
        return (await self.check(account, secret)).verdict


__all__ = ["KIND", "WPA_PSK_RULES", "MerakiSsidPskTarget", "same_secret", "ssid_number"]
