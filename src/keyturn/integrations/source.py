"""Where a consumer reads the current secret: a keyturn server or the local vault.

`CredentialSource` is one method, `reveal(ref, field) -> Secret`. Both implementations audit every read
(the server as the token's name, the local vault as `cli:<os user>` or the actor given).

`ServerSource` speaks the REST API (`POST /records/{ref}/reveal`, bearer token, TLS verified against the
system store or `ca_bundle`; plain http only to a loopback address: the token and the secrets would
cross the network in clear). It is the one server client of keyturn's consumers (`keyturn exec`, the
Nornir transform); HTTP errors are mapped here, the only httpx boundary of this package:

    401             ConfigError(location="KEYTURN_TOKEN")  (unknown, revoked or expired token)
    403, 404        RecordNotFound                          ("not found, or this token is not granted
                                                             it": a 403 never says which)
    connect / TLS   StorageUnavailable                      (the server is this consumer's vault)

`read_consistent` reads several fields of one record as one consistent set (an A/B rotation swaps a
record's login and password together, between two requests).

`from_env()`: `KEYTURN_URL` set → the server (token from `KEYTURN_TOKEN`, CA bundle from
`KEYTURN_CA_BUNDLE`); otherwise the local vault of `KEYTURN_HOME`.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote, urlsplit

import httpx

from keyturn.errors import ConfigError, KeyturnError, RecordNotFound, StorageUnavailable
from keyturn.secret import Secret

if TYPE_CHECKING:
    from keyturn.vault import Vault

URL_ENV, TOKEN_ENV, CA_ENV = "KEYTURN_URL", "KEYTURN_TOKEN", "KEYTURN_CA_BUNDLE"
TIMEOUT = 30.0


class CredentialSource(Protocol):
    """Reads one secret field of one record (uid or unique title). Raises `KeyturnError`."""

    def reveal(self, ref: str, field: str = "password") -> Secret: ...

    def close(self) -> None: ...


class ServerSource:
    """`keyturn serve` over HTTPS (or HTTP on a loopback lab). `client` is injectable for tests."""

    def __init__(self, url: str, token: Secret, *, ca_bundle: str | None = None,
                 client: httpx.Client | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ConfigError(f"not an http(s) URL: {url[:100]!r}", location=URL_ENV)
        if parts.scheme == "http" and not _loopback(parts.hostname):
            raise ConfigError("plain http would send the token and the secrets in clear; use https",
                              location=URL_ENV)
        self.url = url.rstrip("/")
        self._token = token
        try:
            verify = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot read CA bundle {ca_bundle}: {exc}", location=CA_ENV) from exc
        self._client = client or httpx.Client(verify=verify, timeout=TIMEOUT, follow_redirects=False)

    def reveal(self, ref: str, field: str = "password") -> Secret:
        target = f"{self.url}/records/{quote(ref, safe='')}/reveal"
        headers = {"Authorization": f"Bearer {self._token.reveal()}"}
        try:
            resp = self._client.post(target, json={"field": field}, headers=headers)
        except httpx.HTTPError as exc:
            raise StorageUnavailable(f"keyturn server {self.url} unreachable: {type(exc).__name__}: "
                                     f"{exc}") from exc
        if resp.status_code == 200:
            return Secret(str(resp.json()["value"]))
        detail = _detail(resp)
        if resp.status_code == 401:
            raise ConfigError(f"keyturn server refused the token for {ref!r} (HTTP 401: {detail}): "
                              "unknown, revoked or expired", location=TOKEN_ENV)
        if resp.status_code in (403, 404):
            raise RecordNotFound(f"record {ref[:80]!r}: not found, or this token is not granted it "
                                 f"(HTTP {resp.status_code})")
        raise KeyturnError(f"keyturn server: HTTP {resp.status_code} revealing {field!r} of {ref!r}: "
                           f"{detail}")

    def close(self) -> None:
        self._client.close()


def _detail(resp: httpx.Response) -> str:
    try:
        detail = resp.json().get("detail")
    except ValueError:
        detail = None
    return str(detail if detail is not None else resp.reason_phrase)[:300]


class VaultSource:
    """The local vault (needs the master key: the host keyturn runs on); `login` and plain custom
    fields too, as the API (`keyturn.consumers.read_field`)."""

    def __init__(self, vault: Vault, *, actor: str) -> None:
        self._vault = vault
        self._actor = actor

    def reveal(self, ref: str, field: str = "password") -> Secret:
        from keyturn.consumers import read_field

        return read_field(self._vault, self._vault.resolve(ref), field, actor=self._actor)

    def close(self) -> None:
        self._vault.close()


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_consistent(source: CredentialSource, wanted: Sequence[tuple[str, str]], *,
                    attempts: int = 3) -> list[Secret]:
    """(ref, field) → value, in order. Several fields of one record are one request each, and an A/B
    rotation swaps a record's login and password at once between two of them: those are read again
    until two reads agree (up to `attempts` times), so a pair from both sides of a swap is never
    returned."""
    values = [source.reveal(ref, field) for ref, field in wanted]
    refs = [ref for ref, _ in wanted]
    again_at = [i for i, ref in enumerate(refs) if refs.count(ref) > 1]
    for _ in range(attempts):
        if not again_at:
            return values
        again = {i: source.reveal(*wanted[i]) for i in again_at}
        if all(again[i] == values[i] for i in again_at):
            return values
        values = [again.get(i, v) for i, v in enumerate(values)]
    raise KeyturnError(f"record {refs[again_at[0]][:80]!r} changed on every read ({attempts} times): "
                       "rotations are swapping it faster than it can be read")


def login_and_password(source: CredentialSource, ref: str, *, field: str = "password",
                       attempts: int = 3) -> tuple[Secret, Secret]:
    """The record's `login` and `field` (its password) as one pair (`read_consistent`)."""
    login, password = read_consistent(source, [(ref, "login"), (ref, field)], attempts=attempts)
    return login, password


def server_from_env(env: Mapping[str, str]) -> ServerSource | None:
    """The server `KEYTURN_URL` names, or None when it is unset."""
    url = env.get(URL_ENV)
    if not url:
        return None
    token = env.get(TOKEN_ENV)
    if not token:
        raise ConfigError("set KEYTURN_TOKEN (a consumer token: `keyturn token create --role consumer "
                          "--grant ...`)", location=TOKEN_ENV)
    return ServerSource(url, Secret(token), ca_bundle=env.get(CA_ENV) or None)


def from_env(env: Mapping[str, str] | None = None, *, actor: str = "integration") -> CredentialSource:
    """`ServerSource` when `KEYTURN_URL` is set, else `VaultSource` over the local vault."""
    env = os.environ if env is None else env
    server = server_from_env(env)
    if server is not None:
        return server
    from keyturn.config import load_settings
    from keyturn.vault import Vault

    return VaultSource(Vault.open(load_settings()), actor=actor)


__all__ = ["CredentialSource", "ServerSource", "VaultSource", "from_env", "login_and_password",
           "read_consistent", "server_from_env"]
