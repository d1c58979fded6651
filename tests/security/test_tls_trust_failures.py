"""Issue 12, item 13: a peer whose certificate does not verify (wrong CA, pin mismatch) is a trust
failure — the rotation ends `failed` saying so and that nothing was sent — not "unreachable; will
retry" (an interceptor does not go away by itself, and retrying only knocks on its door again).

The "device" is a real TLS listener on 127.0.0.1 that records every application byte it receives:
after the handshake fails (or the pin does not match), it must have received none.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from keyturn.engine.journal import Journal
from keyturn.engine.outcome import Outcome
from keyturn.engine.profile import set_profile
from keyturn.secret import Secret
from keyturn.sim.tls import SimCA, der_fingerprint, self_signed_context_and_der
from keyturn.targets.registry import create_target
from keyturn.vault import Field
from tests.unit.engine_world import ADMIN, OLD, World, open_world

WRONG_PIN = "ab" * 32


@dataclass
class Interceptor:
    """A TLS server with a certificate the client has no reason to trust."""

    port: int
    der: bytes
    connections: int = 0
    received: list[bytes] = field(default_factory=list)


async def _listen(ctx: ssl.SSLContext, der: bytes) -> tuple[Interceptor, asyncio.Server]:
    found = Interceptor(port=0, der=der)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        found.connections += 1
        with contextlib.suppress(Exception):
            data = await reader.read(65536)
            if data:
                found.received.append(data)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    found.port = server.sockets[0].getsockname()[1]
    return found, server


@pytest.fixture
async def interceptor() -> AsyncIterator[Interceptor]:
    ctx, _ca, der = self_signed_context_and_der("127.0.0.1")
    found, server = await _listen(ctx, der)
    try:
        yield found
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    for w in open_world(tmp_path):
        for kind in ("iosxe-restconf", "meraki-auth-user"):
            w.targets[kind] = create_target(kind)
        yield w


def other_ca(tmp_path: Path) -> str:
    return str(SimCA.create(organization="not the device's CA").write_ca(tmp_path / "other-ca.pem"))


def restconf_user(world: World, port: int, **trust: str) -> str:
    device = world.vault.add(type="pamNetworkDevice", title=f"sw-{port}-{len(trust)}",
                             fields=[Field("host", value=[f"127.0.0.1:{port}"])],
                             custom=[Field("text", k, [v]) for k, v in trust.items()])
    uid = world.add_user(f"netops-{device.uid[:6]}", "netops", OLD)
    set_profile(world.vault, uid, target="iosxe-restconf", resource=device.uid, admin=world.admin.uid)
    return uid


async def rotate(world: World, uid: str) -> tuple[Outcome, str, list[tuple[str, str, str]]]:
    engine = world.engine()
    try:
        result = await engine.rotate(uid)
    finally:
        await engine.aclose()
    assert result.rotation_id is not None
    journal = Journal(world.vault.engine)
    steps = [(s.step, str(s.status), s.message) for s in journal.steps(result.rotation_id)]
    return result.outcome, result.reason, steps


@pytest.mark.parametrize(("trust", "cause"), [
    ("pin", "certificate does not match the pinned fingerprint"),
    ("ca", "certificate not trusted"),
])
async def test_untrusted_device_fails_the_rotation_as_a_trust_failure(
        world: World, interceptor: Interceptor, tmp_path: Path, trust: str, cause: str) -> None:
    fields = {"fingerprint": WRONG_PIN} if trust == "pin" else {"ca_bundle": other_ca(tmp_path)}
    uid = restconf_user(world, interceptor.port, **fields)
    versions = [(v.version, str(v.state)) for v in world.vault.versions(uid)]
    outcome, reason, steps = await rotate(world, uid)
    assert outcome is Outcome.FAILED
    assert reason.startswith("trust failure: iosxe-restconf") and f"127.0.0.1: {cause}" in reason
    assert "nothing was sent" in reason and "keyturn device trust" in reason
    assert "unreachable" not in reason and "will retry" not in reason
    assert ("verify_current", "failed", reason) in steps
    assert interceptor.received == []                          # not one byte: no credential, no request
    assert interceptor.connections <= 1                        # and no retries against it
    assert [(v.version, str(v.state)) for v in world.vault.versions(uid)] == versions
    assert world.current(uid) == OLD


async def test_the_right_pin_is_trusted(world: World, interceptor: Interceptor) -> None:
    """Control: with the listener's own fingerprint the request does go out (so the test above is
    about trust, not about a listener that cannot be reached)."""
    uid = restconf_user(world, interceptor.port, fingerprint=der_fingerprint(interceptor.der))
    _outcome, reason, _steps = await rotate(world, uid)
    assert "trust failure" not in reason
    assert interceptor.received and interceptor.received[0].startswith(b"GET ")


async def test_an_unreachable_device_is_still_unreachable(world: World, tmp_path: Path) -> None:
    with socket_port() as port:
        pass                                                   # closed again: connection refused
    uid = restconf_user(world, port, ca_bundle=other_ca(tmp_path))
    outcome, reason, _steps = await rotate(world, uid)
    assert outcome is Outcome.FAILED
    assert reason.startswith("device unreachable before change; will retry")
    assert "trust failure" not in reason


async def test_a_trust_failure_during_the_change_drops_the_candidate(
        world: World, interceptor: Interceptor, tmp_path: Path) -> None:
    """Meraki without a verifier: nothing is verified first, so the change itself meets the interceptor.
    Every request died in the handshake, so the device saw nothing: failed, candidate dropped."""
    net = world.vault.add(type="pamMerakiNetwork", title="Meraki HQ", custom=[
        Field("text", "network_id", ["N_1"]), Field("text", "org_id", ["O_1"]),
        Field("text", "base_url", [f"https://127.0.0.1:{interceptor.port}/api/v1"]),
        Field("text", "ca_bundle", [other_ca(tmp_path)])])
    key = world.vault.add(type="login", title="Meraki API key", fields=[
        Field("login", value=["api"]), Field("password", value=[Secret(ADMIN)])])
    uid = world.add_user("alice", "alice@example.com", OLD)
    set_profile(world.vault, uid, target="meraki-auth-user", resource=net.uid, admin=key.uid)
    outcome, reason, steps = await rotate(world, uid)
    assert outcome is Outcome.FAILED
    assert reason.startswith("trust failure: meraki-auth-user") and "certificate not trusted" in reason
    assert reason.endswith("the old secret stays current")
    assert any(step == "apply" and status == "failed" for step, status, _ in steps)
    assert interceptor.received == []
    assert [str(v.state) for v in world.vault.versions(uid)] == ["failed", "current"]
    assert world.current(uid) == OLD


@contextlib.contextmanager
def socket_port() -> Iterator[int]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]
