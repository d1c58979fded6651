"""Where a consumer reads the current secret: a keyturn server or the local vault.

`CredentialSource` is one method, `reveal(ref, field) -> Secret`. Both implementations audit every read
(the server as the token's name, the local vault as `cli:<os user>` or the actor given).

`ServerSource` speaks the REST API (`POST /records/{ref}/reveal`, bearer token, TLS verified against the
system store or `ca_bundle`); HTTP errors are mapped here, the only httpx boundary of this package:

    401, 403        ConfigError(location="KEYTURN_TOKEN")  (a 403 never says whether the record exists)
    404             RecordNotFound
    connect / TLS   StorageUnavailable                      (the server is this consumer's vault)

`from_env()`: `KEYTURN_URL` set → the server (token from `KEYTURN_TOKEN`, CA bundle from
`KEYTURN_CA_BUNDLE`); otherwise the local vault of `KEYTURN_HOME`.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

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
        if not url.startswith(("https://", "http://")):
            raise ConfigError(f"not an http(s) URL: {url!r}", location=URL_ENV)
        self.url = url.rstrip("/")
        self._token = token
        try:
            verify = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot read CA bundle {ca_bundle}: {exc}", location=CA_ENV) from exc
        self._client = client or httpx.Client(verify=verify, timeout=TIMEOUT)

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
        if resp.status_code in (401, 403):
            raise ConfigError(f"keyturn server refused the token for {ref!r} (HTTP {resp.status_code}: "
                              f"{detail})", location=TOKEN_ENV)
        if resp.status_code == 404:
            raise RecordNotFound(f"keyturn server: {detail}")
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


def login_and_password(source: CredentialSource, ref: str, *, field: str = "password",
                       attempts: int = 3) -> tuple[Secret, Secret]:
    """The record's `login` and `field` (its password) as one pair. An A/B rotation swaps both at
    once, and two reads could fall on either side of a swap: the login is read again after the
    password, and the pair is read anew (up to `attempts` times) when it changed."""
    login = source.reveal(ref, "login")
    for _ in range(attempts):
        password = source.reveal(ref, field)
        again = source.reveal(ref, "login")
        if again == login:
            return login, password
        login = again
    raise KeyturnError(f"record {ref!r}: its login changed on every read ({attempts} times); rotations "
                       "are swapping it faster than it can be read")


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
           "server_from_env"]
