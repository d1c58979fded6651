"""keyturn.integrations.source.ServerSource against httpx.MockTransport: the request it sends and how
each answer maps to keyturn's errors (never with the token or a secret in the message)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from keyturn.errors import ConfigError, KeyturnError, RecordNotFound, StorageUnavailable
from keyturn.integrations.source import ServerSource, from_env, login_and_password, server_from_env
from keyturn.secret import Secret

TOKEN = "kt_unit-test-token-value"


def _source(handler: httpx.MockTransport) -> ServerSource:
    return ServerSource("https://keyturn.example:8443/", Secret(TOKEN),
                        client=httpx.Client(transport=handler))


def test_reveal_posts_the_field_with_the_bearer_token() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"uid": "U1", "field": "password", "value": "N3w-Secret"})

    value = _source(httpx.MockTransport(answer)).reveal("sw0001 admin", "password")
    assert value == Secret("N3w-Secret") and str(value) != "N3w-Secret"
    (request,) = seen
    assert request.method == "POST"
    assert request.url.raw_path == b"/records/sw0001%20admin/reveal"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(request.content) == {"field": "password"}


@pytest.mark.parametrize(("status", "error", "words"), [
    (401, ConfigError, "KEYTURN_TOKEN: keyturn server refused the token for 'r1' (HTTP 401"),
    (403, RecordNotFound, "record 'r1': not found, or this token is not granted it (HTTP 403)"),
    (404, RecordNotFound, "record 'r1': not found, or this token is not granted it (HTTP 404)"),
    (500, KeyturnError, "HTTP 500 revealing 'password' of 'r1'"),
])
def test_refusals_map_to_keyturn_errors(status: int, error: type[KeyturnError], words: str) -> None:
    source = _source(httpx.MockTransport(lambda _: httpx.Response(status, json={"detail": "forbidden"})))
    with pytest.raises(error) as err:
        source.reveal("r1")
    assert words in str(err.value) and TOKEN not in str(err.value)


def test_unreachable_server_is_storage_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(StorageUnavailable) as err:
        _source(httpx.MockTransport(refuse)).reveal("r1")
    assert str(err.value).startswith("keyturn server https://keyturn.example:8443 unreachable: ConnectError")


def test_environment_choices(tmp_path: Path) -> None:
    assert server_from_env({}) is None
    with pytest.raises(ConfigError, match="KEYTURN_TOKEN"):
        server_from_env({"KEYTURN_URL": "https://k.example"})
    with pytest.raises(ConfigError, match="KEYTURN_URL: not an http"):
        from_env({"KEYTURN_URL": "k.example", "KEYTURN_TOKEN": TOKEN})
    with pytest.raises(ConfigError, match="KEYTURN_CA_BUNDLE: cannot read CA bundle"):
        from_env({"KEYTURN_URL": "https://k.example", "KEYTURN_TOKEN": TOKEN,
                  "KEYTURN_CA_BUNDLE": str(tmp_path / "missing.pem")})
    source = from_env({"KEYTURN_URL": "https://k.example", "KEYTURN_TOKEN": TOKEN})
    assert isinstance(source, ServerSource)
    source.close()


class SwappingSource:
    """An A/B record whose pair is swapped by a rotation between given reads (an in-memory fake)."""

    def __init__(self, swap_after: set[int]) -> None:
        self.pairs = [("netops-a", "Pass-A"), ("netops-b", "Pass-B")]
        self.active, self.reads, self.swap_after = 0, 0, swap_after

    def reveal(self, ref: str, field: str = "password") -> Secret:
        login, password = self.pairs[self.active]
        self.reads += 1
        if self.reads in self.swap_after:
            self.active = 1 - self.active
        return Secret(login if field == "login" else password)

    def close(self) -> None:
        pass


@pytest.mark.parametrize("swap_after", [set(), {1}, {2}, {3}, {1, 4}])
def test_login_and_password_never_mixes_two_accounts(swap_after: set[int]) -> None:
    source = SwappingSource(swap_after)
    login, password = login_and_password(source, "netops @ sw0001")
    assert (login.reveal(), password.reveal()) in source.pairs


def test_a_login_that_keeps_changing_is_an_error() -> None:
    with pytest.raises(KeyturnError, match="changed on every read"):
        login_and_password(SwappingSource(set(range(1, 20, 2))), "netops @ sw0001")
