"""`iosxe-restconf`: rotate an IOS XE local user's secret over RESTCONF (RFC 8040), then save.

Wire facts (reference cisco-iosxe.md §1.7, §2):

* the user lives at ``/restconf/data/Cisco-IOS-XE-native:native/username=NAME``; we PATCH that entry
  (a plain PATCH never creates its target, RFC 8040 §4.6.1: rotation never creates accounts) after
  reading it — or taking the entry an earlier read of the same rotation returned — for the kind it holds;
* the change is a PATCH (merge) of that entry with ``secret {encryption "0", secret NEW}`` — the
  device hashes it (type 9 on current releases) and keeps privilege/view. The profile option `mode`:
  ``auto`` (default) rotates whichever the user holds, ``secret`` / ``password`` insist on one
  (``password`` is the reversible kind KeeperPAM's sample script writes);
* a user holds a password *or* a secret, never both: a forced kind that differs is refused up front;
* writes land in running-config only: `persist` POSTs ``cisco-ia:save-config`` (slow: seconds);
* HTTP Basic on every request, as the admin (reconcile path) or as the user with its old secret;
* 409 lock-denied and 5xx are transient (the device serialises config writes): bounded retries,
  longer for 409 (a save or a post-CLI re-sync holds the lock for seconds: `LOCK_RETRY`);
* error bodies come as ``{"ietf-restconf:errors": ...}`` (17.12+) or bare ``{"errors": ...}``.

`verify`/`check` prove the secret by login, by the stored hash read through the admin credential, or
both — the profile option ``verify`` (default ``auto``: decided by the device's AAA configuration,
``GET native/aaa`` and ``native/login``), see `keyturn.targets.iosxe_verify`. A login authenticates as
the user; RESTCONF only admits privilege-15 users, so for a lower-privilege account a 401/403 does
**not** prove the password wrong — set the profile option ``verify_via=ssh`` for such accounts and
the login is made over SSH instead (`IosXeSshTarget`), or use ``verify=hash``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, Literal, NamedTuple
from urllib.parse import quote

import httpx

from keyturn.cisco_hash import parse_restconf_user
from keyturn.errors import (
    AccountNotFound,
    ChangeRejected,
    ProfileError,
    TargetAuthRejected,
    TargetError,
    TargetUnreachable,
)
from keyturn.secret import REDACTED, Secret
from keyturn.targets.base import (
    Account,
    AdminCredential,
    Endpoint,
    FoundAccount,
    SecretRules,
    Target,
    Verdict,
)
from keyturn.targets.http import build_client, map_httpx_errors
from keyturn.targets.iosxe_verify import AaaConfig, DeviceView, Proving, aaa_from_restconf

log = logging.getLogger("keyturn.targets.iosxe_restconf")

KIND = "iosxe-restconf"
YANG_JSON = "application/yang-data+json"
USER_PATH = "/restconf/data/Cisco-IOS-XE-native:native/username={name}"
USERS_PATH = "/restconf/data/Cisco-IOS-XE-native:native/username"   # the whole list (discovery)
SAVE_PATH = "/restconf/operations/cisco-ia:save-config"
# What decides who checks a login (`keyturn.targets.iosxe_verify`): Cisco-IOS-XE-aaa and -native `login`.
AAA_PATH = "/restconf/data/Cisco-IOS-XE-native:native/aaa"
LOGIN_PATH = "/restconf/data/Cisco-IOS-XE-native:native/login"
# Both in one GET (issue 14): RFC 8040 §4.8.3 `fields`, which IOS XE advertises
# (`urn:ietf:params:restconf:capability:fields:1.0`) and does not list among the query parameters it
# lacks (reference cisco-iosxe.md §2.1: filter, start-time, stop-time, replay, action). The user stays a
# GET of its own entry: `fields` cannot pick one list entry, and the whole list would hand keyturn every
# user's hash. A device that refuses the query is read the old way (two GETs), and remembered.
AAA_FIELDS_PATH = "/restconf/data/Cisco-IOS-XE-native:native?fields=aaa;login"
# ProbeLedger.device key: the user entry the last read of this rotation returned. `change` takes it
# instead of reading the entry again (it needs only that the user exists and which kind it holds; a PATCH
# of a vanished entry is a 404 anyway, RFC 8040 §4.6.1, and a kind changed meanwhile a 400).
LEDGER_ENTRY = "restconf_user_entry"
# Body of the PATCH per mode: container name and its value leaf (RFC 7951; enums as strings).
MODES: Mapping[str, tuple[str, str]] = {"secret": ("secret", "secret"), "password": ("password", "password")}
# Default mode: rotate whichever the user holds (a hashed `secret`, or a reversible `password`).
AUTO = "auto"
# Status codes worth another try: the datastore is locked by another writer, or the server hiccuped.
RETRY_STATUSES = frozenset({409, 500, 502, 503, 504})


class _LockRetry(NamedTuple):
    attempts: int
    max_pause: float
    max_wait: float


# 409 lock-denied/in-use lasts while a save-config runs (2.5-3.7 s) and while the datastore re-syncs
# after a CLI change (cisco-ia.yang: requests "may get rejected when sync is in progress"); Terraform's
# IOS XE provider and go-restconf retry 409 up to 10 times over up to 60 s (reference field §4).
LOCK_RETRY = _LockRetry(attempts=10, max_pause=8.0, max_wait=60.0)
# IOS XE: max 127 characters; `?` would be context help on the CLI side of the translation.
IOSXE_RULES = SecretRules(min_length=1, max_length=127, forbidden="?")

ClientFactory = Callable[[Endpoint], httpx.AsyncClient]
Sleep = Callable[[float], Awaitable[None]]


class _NoJson(Exception):
    """Internal: the body is not JSON a RESTCONF server would send."""


def response_json(response: httpx.Response) -> Any:
    """The parsed body; `_NoJson` for anything unparsable — including nesting deep enough to exhaust
    the parser's recursion (a rogue or broken peer must not crash the rotation)."""
    try:
        return response.json()
    except (ValueError, RecursionError) as exc:
        raise _NoJson(type(exc).__name__) from None


def restconf_errors(response: httpx.Response) -> list[dict[str, Any]]:
    """The `error` entries of a RESTCONF error body, in either shape; [] if none/unparsable."""
    try:
        doc = response_json(response)
    except _NoJson:
        return []
    if not isinstance(doc, dict):
        return []
    root = doc.get("ietf-restconf:errors", doc.get("errors"))
    errors = root.get("error") if isinstance(root, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def describe_errors(response: httpx.Response, *, scrub: Secret | None = None) -> str:
    """``"<status> <tag>: <message>"`` for a RESTCONF error response, secrets scrubbed."""
    parts = [f"{e.get('error-tag', '?')}: {e.get('error-message', '')}".rstrip(": ")
             for e in restconf_errors(response)]
    text = "; ".join(parts) or response.reason_phrase or "no detail"
    if scrub is not None and scrub.reveal():
        text = text.replace(scrub.reveal(), REDACTED)
    return f"HTTP {response.status_code} ({text[:300]})"


class IosXeRestconfTarget(Proving):
    """Rotates IOS XE local-user secrets over RESTCONF; one pooled client per device (host, port)."""

    kind: ClassVar[str] = KIND
    constraints: ClassVar[SecretRules] = IOSXE_RULES
    can_verify: ClassVar[bool] = True
    path: Literal["http"] = "http"   # which login path the device's AAA applies (iosxe_verify.Prover)

    def __init__(self, client_factory: ClientFactory | None = None, *, timeout: float = 15.0,
                 save_timeout: float = 60.0, retries: int = 3, backoff: float = 0.5,
                 sleep: Sleep = asyncio.sleep, ssh_verifier: Target | None = None,
                 lock_retries: int = LOCK_RETRY.attempts) -> None:
        self._factory = client_factory or self._default_client
        self._timeout = timeout
        self._save_timeout = save_timeout
        self._retries = max(1, retries)
        self._lock_retries = max(1, lock_retries)
        self._backoff = backoff
        self._sleep = sleep
        self._clients: dict[tuple[str, int | None, str | None], httpx.AsyncClient] = {}
        # (device, path) → the absolute URL httpx makes of it: merging and parsing a relative URL on
        # every request cost ~7 % of keyturn's CPU per request (issue 14); a rotation asks for a few.
        self._urls: dict[tuple[tuple[str, int | None, str | None], str], httpx.URL] = {}
        # Devices that refused `AAA_FIELDS_PATH`: read with one GET per document instead.
        self._no_fields: set[tuple[str, int | None, str | None]] = set()
        # Credential that must save the config after a self-change (the old one no longer works).
        self._save_auth: dict[str, tuple[str, Secret]] = {}
        self._ssh_verifier = ssh_verifier

    # ---- plumbing ----------------------------------------------------------------------------------
    def _default_client(self, endpoint: Endpoint) -> httpx.AsyncClient:
        base = endpoint.base_url or f"https://{endpoint.host}:{endpoint.port or 443}"
        return build_client(endpoint, base_url=base, timeout=self._timeout,
                            headers={"Accept": YANG_JSON, "Content-Type": YANG_JSON})

    @staticmethod
    def _key(endpoint: Endpoint) -> tuple[str, int | None, str | None]:
        return endpoint.host, endpoint.port, endpoint.base_url

    def _client(self, endpoint: Endpoint) -> httpx.AsyncClient:
        key = self._key(endpoint)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = self._factory(endpoint)
        return client

    def _err(self, cls: type[TargetError], account: Account, message: str) -> TargetError:
        return cls(f"{account.endpoint.host}: {message}", target=KIND, record=account.record_uid)

    @staticmethod
    def _mode(account: Account) -> str:
        mode = account.options.get("mode", AUTO)
        if mode != AUTO and mode not in MODES:
            raise ProfileError(f"iosxe-restconf: option mode must be 'auto', 'secret' or 'password', "
                               f"not {mode!r}")
        return mode

    @staticmethod
    def _user_path(account: Account) -> str:
        return USER_PATH.format(name=quote(account.username, safe=""))

    async def _request(self, account: Account, method: str, path: str, auth: tuple[str, Secret], *,
                       doing: str, json: Any = None, request_timeout: float | None = None) -> httpx.Response:
        """One request with bounded retries on transient statuses; transport errors mapped.

        A locked datastore (409) is retried longer than a server error: IOS XE holds the lock for the
        seconds a save-config or a CLI-change re-sync takes (`LOCK_RETRY`)."""
        client = self._client(account.endpoint)
        url_key = (self._key(account.endpoint), path)
        url = self._urls.get(url_key)
        if url is None:   # exactly what httpx would send for `path` (its own base-URL merge)
            url = self._urls[url_key] = client.build_request(method, path).url
        response: httpx.Response | None = None
        attempts = errors = locked = 0
        waited = 0.0
        while True:
            attempts += 1
            with map_httpx_errors(target=KIND, record=account.record_uid, host=account.endpoint.host,
                                  doing=doing):
                response = await client.request(
                    method, url, json=json, auth=httpx.BasicAuth(auth[0], auth[1].reveal()),
                    headers={"Accept": YANG_JSON, "Content-Type": YANG_JSON},
                    timeout=request_timeout if request_timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
            status = response.status_code
            log.debug("%s %s %s -> %s", KIND, account.endpoint.host, doing, status)
            if status not in RETRY_STATUSES:
                return response
            if status == 409:
                locked += 1
                pause = min(self._backoff * 2 ** (locked - 1), LOCK_RETRY.max_pause)
                if locked >= self._lock_retries or waited + pause > LOCK_RETRY.max_wait:
                    break
            else:
                errors += 1
                pause = self._backoff * 2 ** (errors - 1)
                if errors >= self._retries:
                    break
            waited += pause
            await self._sleep(pause)
        raise self._err(TargetUnreachable, account, f"{doing}: still failing after {attempts} "
                                                    f"attempts, {describe_errors(response)}")

    def _login(self, account: Account, old: Secret | None) -> tuple[str, Secret]:
        if account.admin is not None:
            return account.admin.username, account.admin.secret
        if old is None:
            raise self._err(TargetAuthRejected, account, "no credential to log in with (no admin "
                                                         "credential and no current secret)")
        return account.username, old

    # ---- the contract ------------------------------------------------------------------------------
    async def change(self, account: Account, old: Secret | None, new: Secret) -> None:
        """GET the user (never create it), PATCH its secret/password; see the module docstring."""
        mode = self._mode(account)
        auth = self._login(account, old)
        path = self._user_path(account)
        entry = account.probes.device.pop(LEDGER_ENTRY, None)
        if not isinstance(entry, dict) or entry.get("name") != account.username:
            # No proof of this rotation read it (or it was another user's): read it now, for this
            # change only — a later change (a roll-back) reads again unless a proof read in between.
            response = await self._request(account, "GET", path, auth, doing="reading the user")
            entry = self._check_read(account, response, auth_is_admin=account.admin is not None, keep=False)
        if mode == AUTO:  # keep the kind the user has: switching needs a delete + re-add on IOS
            mode = "password" if "password" in entry else "secret"
        container, leaf = MODES[mode]
        other = "password" if container == "secret" else "secret"
        if other in entry:
            raise self._err(ChangeRejected, account, f"user {account.username!r} holds a {other}, and IOS "
                            f"refuses a {container} beside it; set the profile option mode={other} or "
                            "convert the user on the device")
        body = {"Cisco-IOS-XE-native:username": [
            {"name": account.username, container: {"encryption": "0", leaf: new.reveal()}}]}
        response = await self._request(account, "PATCH", path, auth, doing="setting the secret", json=body)
        status = response.status_code
        if status in (200, 204):
            # After a self-change the old secret is dead: remember the live one for `persist`.
            self._save_auth[account.lock_key] = auth if account.admin is not None else (account.username, new)
            return
        if status == 400:
            raise self._err(ChangeRejected, account, f"device refused the new {container}: "
                                                     f"{describe_errors(response, scrub=new)}")
        if status in (401, 403):
            raise self._err(TargetAuthRejected, account, f"credential refused ({describe_errors(response)})")
        if status == 404:
            raise self._err(AccountNotFound, account, f"user {account.username!r} not found")
        raise self._err(TargetError, account, f"unexpected answer to the change: "
                                              f"{describe_errors(response, scrub=new)}")

    def _check_read(self, account: Account, response: httpx.Response, *,
                    auth_is_admin: bool, keep: bool = True) -> dict[str, Any]:
        """The user's entry from a GET of it (`keep`: also for this rotation's `change`); raises for
        anything else."""
        status = response.status_code
        if status == 200:
            try:
                users = response_json(response).get("Cisco-IOS-XE-native:username", [])
            except _NoJson as exc:
                raise self._err(TargetError, account, "the device's answer for the user is not JSON") from exc
            except AttributeError:
                users = []
            return self._pick_user(account, users, keep=keep)
        if status in (204, 404):
            raise self._err(AccountNotFound, account, f"user {account.username!r} does not exist on the "
                                                      "device (keyturn never creates accounts)")
        if status in (401, 403):
            who = "the admin credential" if auth_is_admin else "the current secret"
            raise self._err(TargetAuthRejected, account, f"{who} was refused ({describe_errors(response)}); "
                                                         "RESTCONF needs a privilege-15 login")
        raise self._err(TargetError, account,
                        f"unexpected answer reading the user: {describe_errors(response)}")

    def _pick_user(self, account: Account, users: Any, *, keep: bool) -> dict[str, Any]:
        """The account's entry in a `username` list; `keep`: in the rotation's ledger for `change`."""
        for user in users if isinstance(users, list) else []:
            if isinstance(user, dict) and user.get("name") == account.username:
                if keep:
                    account.probes.device[LEDGER_ENTRY] = user
                return user
        raise self._err(AccountNotFound, account, f"user {account.username!r} not in the device's answer")

    async def persist(self, account: Account, secret: Secret | None = None) -> None:
        """Save running-config to startup-config (``cisco-ia:save-config``, own longer timeout).

        Logs in as the admin if the account has one, else with `secret`, else with the credential
        that last changed or verified OK for this account in this process.
        """
        if account.admin is not None:
            auth: tuple[str, Secret] | None = (account.admin.username, account.admin.secret)
        elif secret is not None:
            auth = (account.username, secret)
        else:
            auth = self._save_auth.get(account.lock_key)
        if auth is None:
            raise self._err(TargetAuthRejected, account, "no credential to save the configuration with")
        response = await self._request(account, "POST", SAVE_PATH, auth, doing="saving the configuration",
                                       request_timeout=self._save_timeout)
        if response.status_code in (200, 204):
            self._save_auth.pop(account.lock_key, None)
            return
        if response.status_code in (401, 403):
            raise self._err(TargetAuthRejected, account, f"save-config refused the login "
                                                         f"({describe_errors(response)})")
        raise self._err(TargetError, account, f"save-config failed: {describe_errors(response)}")

    async def login(self, account: Account, secret: Secret) -> tuple[Verdict, str]:
        """Log in as the user: 2xx/404 → OK, 401/403 → REJECTED, anything else → INCONCLUSIVE."""
        if account.options.get("verify_via") == "ssh":
            from keyturn.targets.iosxe_ssh import IosXeSshTarget
            ssh = self._ssh(account)
            assert isinstance(ssh, IosXeSshTarget)
            return await ssh.login(account, secret)
        try:
            response = await self._request(account, "GET", self._user_path(account),
                                           (account.username, secret), doing="verifying the login")
        except TargetError as exc:
            log.info("%s %s: verify inconclusive: %s", KIND, account.endpoint.host, exc)
            return Verdict.INCONCLUSIVE, str(exc)
        status = response.status_code
        if status in (200, 204, 404):
            # Authenticated; what the GET found does not matter. This login is live: `persist` may
            # use it (recovery verifies a candidate, then saves, possibly in a fresh process).
            self._save_auth[account.lock_key] = (account.username, secret)
            if status == 200:   # the entry, for this rotation's `change` (a self-service one reads no other)
                with contextlib.suppress(TargetError):
                    self._check_read(account, response, auth_is_admin=False)
            return Verdict.OK, ""
        if status in (401, 403):
            return Verdict.REJECTED, ""
        return Verdict.INCONCLUSIVE, f"unexpected answer to the login: {describe_errors(response)}"

    async def read_device(self, account: Account, *, aaa: bool, user: bool) -> DeviceView:
        """Through the admin credential: ``native/aaa`` + ``native/login`` (one GET with `fields`, two
        on a device without it) and/or the user entry (its own GET)."""
        assert account.admin is not None
        auth = (account.admin.username, account.admin.secret)
        config = stored = None
        if aaa and self._key(account.endpoint) not in self._no_fields:
            config = await self._read_aaa(account, auth)
        if aaa and config is None:
            docs: list[Any] = []
            for path in (AAA_PATH, LOGIN_PATH):
                response = await self._request(account, "GET", path, auth,
                                               doing="reading the AAA configuration")
                if response.status_code in (401, 403):
                    raise self._err(TargetAuthRejected, account, f"the admin credential was refused "
                                                                 f"({describe_errors(response)})")
                if response.status_code in (204, 404):
                    docs.append(None)
                    continue
                if response.status_code != 200:
                    raise self._err(TargetError, account, f"reading the AAA configuration: "
                                                          f"{describe_errors(response)}")
                try:
                    docs.append(response_json(response))
                except _NoJson as exc:
                    raise self._err(TargetError, account, "the AAA configuration is not JSON") from exc
            config = aaa_from_restconf(docs[0], docs[1])
        if user:
            response = await self._request(account, "GET", self._user_path(account), auth,
                                           doing="reading the stored credential")
            stored = parse_restconf_user(self._check_read(account, response, auth_is_admin=True))
        return DeviceView(aaa=config, stored=stored)

    async def _read_aaa(self, account: Account, auth: tuple[str, Secret]) -> AaaConfig | None:
        """`native/aaa` and `native/login` in one GET (`AAA_FIELDS_PATH`); None if the device refused
        the query (remembered: it is then read the old way). 401/403 → `TargetAuthRejected`."""
        response = await self._request(account, "GET", AAA_FIELDS_PATH, auth,
                                       doing="reading the AAA configuration")
        status = response.status_code
        if status in (401, 403):
            raise self._err(TargetAuthRejected, account, f"the admin credential was refused "
                                                         f"({describe_errors(response)})")
        if status not in (200, 204):   # e.g. 400 for a query parameter this release does not know
            log.info("%s %s: the AAA read with `fields` was refused (%s); reading the documents one by one",
                     KIND, account.endpoint.host, describe_errors(response))
            self._no_fields.add(self._key(account.endpoint))
            return None
        native: Any = {}   # 204: neither is configured (an empty selection, RFC 8040 §4.3)
        if status == 200:
            try:
                doc = response_json(response)
            except _NoJson as exc:
                raise self._err(TargetError, account, "the AAA configuration is not JSON") from exc
            native = doc.get("Cisco-IOS-XE-native:native") if isinstance(doc, dict) else None
            if not isinstance(native, dict):
                raise self._err(TargetError, account, "the AAA configuration is not a native document")
        # Inside `native` the members are unprefixed (RFC 7951 §4: the parent's module); accept both.
        members = {str(k).split(":", 1)[-1]: v for k, v in native.items()}
        try:
            return aaa_from_restconf({"aaa": members["aaa"]} if "aaa" in members else None,
                                     {"login": members["login"]} if "login" in members else None)
        except (ValueError, AttributeError) as exc:
            raise self._err(TargetError, account, f"the AAA configuration: {exc}") from exc

    async def discover(self, endpoint: Endpoint, admin: AdminCredential) -> list[FoundAccount]:
        """``GET native/username`` (the whole list) as the admin; 204 = no local users."""
        account = Account(record_uid="", username=admin.username, endpoint=endpoint, admin=admin)
        auth = (admin.username, admin.secret)
        response = await self._request(account, "GET", USERS_PATH, auth, doing="listing the local users")
        status = response.status_code
        if status in (204, 404):
            return []
        if status in (401, 403):
            raise self._err(TargetAuthRejected, account, f"the admin credential was refused "
                                                         f"({describe_errors(response)}); RESTCONF needs a "
                                                         "privilege-15 login")
        if status != 200:
            raise self._err(TargetError, account, f"listing the local users: {describe_errors(response)}")
        try:
            doc = response_json(response)
        except _NoJson as exc:
            raise self._err(TargetError, account, "the list of local users is not JSON") from exc
        entries = doc.get("Cisco-IOS-XE-native:username") if isinstance(doc, dict) else None
        found = []
        for entry in entries if isinstance(entries, list) else []:
            name = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(name, str) or not name:
                continue
            privilege = entry.get("privilege", 1)   # absent = IOS's default level 1
            stored = parse_restconf_user(entry)
            found.append(FoundAccount(
                username=name, privilege=privilege if isinstance(privilege, int) else None,
                kind=stored.kind if stored else "", type=stored.type if stored else "",
                rotatable=stored is not None, note="" if stored else "no password or secret (nopassword)"))
        return found

    def _ssh(self, account: Account) -> Target:
        if self._ssh_verifier is None:
            from keyturn.targets.iosxe_ssh import IosXeSshTarget
            self._ssh_verifier = IosXeSshTarget()
        return self._ssh_verifier

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        self._save_auth.clear()
        self._no_fields.clear()
        self._urls.clear()
        for client in clients:
            await client.aclose()
        if self._ssh_verifier is not None:
            await self._ssh_verifier.aclose()

