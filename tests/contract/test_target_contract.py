"""The contract every target must pass against its simulator (STYLE "Tests", DESIGN §4):

set → verify new OK → verify old REJECTED → set the same again OK (idempotent) → an unreachable
device gives `verify` INCONCLUSIVE and `change` raises `TargetUnreachable`.

Real sockets on 127.0.0.1, ephemeral ports. One case per (target, login path).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from keyturn.errors import (
    AccountNotFound,
    ChangeRejected,
    HostKeyChanged,
    HostKeyNotTrusted,
    ProfileError,
    TargetAuthRejected,
    TargetUnreachable,
    TlsVerificationFailed,
)
from keyturn.secret import Secret
from keyturn.sim.faults import Faults
from keyturn.sim.iosxe_device import IosXeDevice
from keyturn.sim.iosxe_restconf import RestconfFrontend
from keyturn.sim.iosxe_ssh import SshFrontend
from keyturn.sim.meraki import MerakiFrontend
from keyturn.sim.meraki_state import MerakiState
from keyturn.sim.tls import self_signed_context
from keyturn.targets.base import (
    Account,
    AdminCredential,
    Endpoint,
    Persisting,
    ProbeLedger,
    Target,
    Verdict,
)
from keyturn.targets.registry import create_target
from keyturn.targets.tofu import fetch_fingerprint

OLD = "Old-pass-1!"
NEW = "N3w-pass;`~|{}!"  # specials that trip naive quoting; never `?` (forbidden on IOS)
ADMIN_PW = "Adm1n-pw!"
ENABLE_PW = "En4ble-pw!"


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


@dataclass
class Case:
    target: Target
    account: Account
    unreachable: Account
    device_has: Callable[[str], bool]      # ground truth from the simulator
    saved_has: Callable[[str], bool] | None = None


async def _iosxe_device() -> IosXeDevice:
    device = IosXeDevice("sw1")
    device.set_user("admin", kind="secret", clear=ADMIN_PW, privilege=15)
    device.set_user("bob", kind="secret", clear=OLD, privilege=15)
    device.set_user("carol", kind="secret", clear=OLD, privilege=1)
    device.set_enable_secret(OLD)
    device.save()
    return device


def _authenticates(device: IosXeDevice, user: str) -> Callable[[str], bool]:
    return lambda pw: device.authenticate(user, pw) is not None


def _startup_has(device: IosXeDevice, user: str) -> Callable[[str], bool]:
    def check(pw: str) -> bool:
        saved = device.startup.users.get(user)
        return saved is not None and saved.credential is not None and saved.credential.matches(pw)
    return check


async def restconf_case(admin: bool) -> tuple[Case, Callable[[], Awaitable[None]]]:
    device = await _iosxe_device()
    server_ctx, _ = self_signed_context("127.0.0.1")
    frontend = RestconfFrontend(device, Faults())
    port = await frontend.start("127.0.0.1", 0, server_ctx)
    pin = await fetch_fingerprint("127.0.0.1", port)  # trust on first use, then pinned
    endpoint = Endpoint(host="127.0.0.1", port=port, fingerprint=pin)
    admin_cred = AdminCredential("admin", Secret(ADMIN_PW)) if admin else None
    account = Account(record_uid="rc", username="bob", endpoint=endpoint, admin=admin_cred)
    dead = replace(account, endpoint=replace(endpoint, port=closed_port()))
    target = create_target("iosxe-restconf", retries=2, backoff=0.01)
    case = Case(target, account, dead, _authenticates(device, "bob"), _startup_has(device, "bob"))
    return case, frontend.stop


def _pin(frontend: SshFrontend) -> dict[str, str]:
    """The resource option that trusts the simulator's host key (keyturn refuses an unpinned SSH peer)."""
    return {"host_key_fingerprint": str(frontend.host_key.get_fingerprint("sha256"))}


async def ssh_case(admin: bool, user: str = "bob") -> tuple[Case, Callable[[], Awaitable[None]]]:
    device = await _iosxe_device()
    frontend = SshFrontend(device, Faults())
    port = await frontend.start("127.0.0.1", 0)
    endpoint = Endpoint(host="127.0.0.1", ssh_port=port, options=_pin(frontend))
    admin_cred = AdminCredential("admin", Secret(ADMIN_PW), enable_secret=Secret(OLD)) if admin else None
    account = Account(record_uid="sc", username=user, endpoint=endpoint, admin=admin_cred,
                      enable_secret=Secret(OLD) if user == "carol" else None)
    dead = replace(account, endpoint=replace(endpoint, ssh_port=closed_port()))
    target = create_target("iosxe-ssh", timeout=10)
    case = Case(target, account, dead, _authenticates(device, user), _startup_has(device, user))
    return case, frontend.stop


async def enable_case() -> tuple[Case, Callable[[], Awaitable[None]]]:
    device = await _iosxe_device()
    frontend = SshFrontend(device, Faults())
    port = await frontend.start("127.0.0.1", 0)
    endpoint = Endpoint(host="127.0.0.1", ssh_port=port, options=_pin(frontend))
    account = Account(record_uid="ec", username="enable", endpoint=endpoint,
                      admin=AdminCredential("admin", Secret(ADMIN_PW)))
    dead = replace(account, endpoint=replace(endpoint, ssh_port=closed_port()))
    target = create_target("iosxe-enable-secret", timeout=10)

    def saved(pw: str) -> bool:
        cred = device.startup.enable_secret
        return cred is not None and cred.matches(pw)

    return Case(target, account, dead, device.check_enable, saved), frontend.stop


async def meraki_case() -> tuple[Case, Callable[[], Awaitable[None]]]:
    state = MerakiState(seed=1)
    org = state.add_org("Contract Org")
    net = state.add_network(org.id, "Contract Net")
    state.add_auth_user(net.id, "Jane.Roe@example.com", OLD)
    key = state.add_api_key()
    frontend = MerakiFrontend(state)
    port = await frontend.start("127.0.0.1", 0)

    async def verify(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"ok": state.verify_login(body["network"], body["email"], body["password"])})

    app = web.Application()
    app.router.add_post("/verify", verify)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    vport = runner.addresses[0][1]
    endpoint = Endpoint(host="127.0.0.1", base_url=f"http://127.0.0.1:{port}/api/v1", network_id=net.id,
                        org_id=org.id, options={"verify_url": f"http://127.0.0.1:{vport}/verify"})
    account = Account(record_uid="mc", username="jane.roe@EXAMPLE.com", endpoint=endpoint,
                      admin=AdminCredential("api", Secret(key)))
    dead_port = closed_port()
    dead = replace(account, endpoint=replace(endpoint, base_url=f"http://127.0.0.1:{dead_port}/api/v1",
                                             options={"verify_url": f"http://127.0.0.1:{dead_port}/verify"}))
    target = create_target("meraki-auth-user", max_5xx=2, backoff=0.01)

    async def stop() -> None:
        await runner.cleanup()
        await frontend.stop()

    case = Case(target, account, dead, lambda pw: state.verify_login(net.id, "jane.roe@example.com", pw))
    return case, stop


async def meraki_ssid_case() -> tuple[Case, Callable[[], Awaitable[None]]]:
    # meraki-ipsk is not a case: its change keeps the old passphrase working (overlap, by design).
    state = MerakiState(seed=1)
    org = state.add_org("Contract Org")
    net = state.add_network(org.id, "Contract Net")
    state.configure_ssid(net.id, 4, auth_mode="psk", psk=OLD)
    key = state.add_api_key()
    frontend = MerakiFrontend(state)
    port = await frontend.start("127.0.0.1", 0)
    endpoint = Endpoint(host="127.0.0.1", base_url=f"http://127.0.0.1:{port}/api/v1", network_id=net.id,
                        org_id=org.id)
    account = Account(record_uid="ms", username="Contract WiFi", endpoint=endpoint,
                      admin=AdminCredential("api", Secret(key)), options={"ssid": "4"})
    dead = replace(account, endpoint=replace(endpoint, base_url=f"http://127.0.0.1:{closed_port()}/api/v1"))
    target = create_target("meraki-ssid-psk", max_5xx=2, backoff=0.01)
    return Case(target, account, dead, lambda pw: state.networks[net.id].ssids[4].psk == pw), frontend.stop


CASES: dict[str, Callable[[], Awaitable[tuple[Case, Callable[[], Awaitable[None]]]]]] = {
    "iosxe-restconf/self": lambda: restconf_case(admin=False),
    "iosxe-restconf/admin": lambda: restconf_case(admin=True),
    "iosxe-ssh/self": lambda: ssh_case(admin=False),
    "iosxe-ssh/admin": lambda: ssh_case(admin=True),
    "iosxe-ssh/self-enable": lambda: ssh_case(admin=False, user="carol"),
    "iosxe-enable-secret/admin": enable_case,
    "meraki-auth-user/api-key": meraki_case,
    "meraki-ssid-psk/api-key": meraki_ssid_case,
}


@pytest.fixture(params=sorted(CASES))
async def case(request: pytest.FixtureRequest) -> AsyncIterator[Case]:
    made, stop = await CASES[request.param]()
    try:
        yield made
    finally:
        await made.target.aclose()
        await stop()


async def test_contract(case: Case) -> None:
    target, account = case.target, case.account
    assert isinstance(target, Target)
    old, new = Secret(OLD), Secret(NEW)

    # set
    await target.change(account, old, new)
    if isinstance(target, Persisting):
        await target.persist(account)
        if case.saved_has is not None:
            assert case.saved_has(NEW), "persist did not reach startup-config"
    assert case.device_has(NEW) and not case.device_has(OLD)

    # verify new OK, old REJECTED (through the verifier for Meraki)
    assert await target.verify(account, new) is Verdict.OK
    assert await target.verify(account, old) is Verdict.REJECTED

    # set the same again: idempotent (a new rotation: a fresh failed-login ledger, see ProbeLedger)
    account = replace(account, probes=ProbeLedger())
    await target.change(account, new, new)
    assert case.device_has(NEW)
    assert await target.verify(account, new) is Verdict.OK

    # unreachable: verify inconclusive, change raises TargetUnreachable (outcome unknown)
    assert await target.verify(case.unreachable, new) is Verdict.INCONCLUSIVE
    with pytest.raises(TargetUnreachable):
        await target.change(case.unreachable, new, Secret("Another-1!"))
    assert case.device_has(NEW)


async def test_wrong_current_secret_is_refused(case: Case) -> None:
    if case.account.admin is not None:
        pytest.skip("the admin path does not use the current secret")
    with pytest.raises(TargetAuthRejected):
        await case.target.change(case.account, Secret("Wrong-1!"), Secret(NEW))
    assert case.device_has(OLD)


# ---- TLS trust for RESTCONF (real TLS listener) ------------------------------------------------------

@pytest.fixture
async def tls_device(tmp_path: Path) -> AsyncIterator[tuple[int, Path, IosXeDevice]]:
    device = await _iosxe_device()
    server_ctx, ca = self_signed_context("127.0.0.1")
    frontend = RestconfFrontend(device, Faults())
    port = await frontend.start("127.0.0.1", 0, server_ctx)
    yield port, ca.write_ca(tmp_path / "ca.pem"), device
    await frontend.stop()


def _bob(endpoint: Endpoint) -> Account:
    return Account(record_uid="t", username="bob", endpoint=endpoint)


async def test_tls_ca_bundle_trusted(tls_device: tuple[int, Path, IosXeDevice]) -> None:
    port, ca_path, _ = tls_device
    target: Any = create_target("iosxe-restconf")
    endpoint = Endpoint("127.0.0.1", port, ca_bundle=str(ca_path))
    assert await target.verify(_bob(endpoint), Secret(OLD)) is Verdict.OK
    await target.aclose()


async def test_tls_untrusted_by_default_and_wrong_pin(tls_device: tuple[int, Path, IosXeDevice]) -> None:
    port, _, device = tls_device
    before = device.last_auth_failures
    for endpoint in (Endpoint("127.0.0.1", port), Endpoint("127.0.0.1", port, fingerprint="ab" * 32)):
        target: Any = create_target("iosxe-restconf", retries=1)
        with pytest.raises(TlsVerificationFailed):
            await target.change(_bob(endpoint), Secret(OLD), Secret(NEW))
        assert await target.verify(_bob(endpoint), Secret(OLD)) is Verdict.INCONCLUSIVE
        await target.aclose()
    assert device.authenticate("bob", OLD) is not None and device.last_auth_failures == before


async def test_tls_insecure_is_explicit_and_warned(tls_device: tuple[int, Path, IosXeDevice],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    port, _, _ = tls_device
    target: Any = create_target("iosxe-restconf")
    assert await target.verify(_bob(Endpoint("127.0.0.1", port, insecure=True)), Secret(OLD)) is Verdict.OK
    assert any("TLS verification is OFF" in r.getMessage() for r in caplog.records)
    await target.aclose()


async def test_tofu_fingerprint_matches_served_certificate(tls_device: tuple[int, Path, IosXeDevice]) -> None:
    port, _, _ = tls_device
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    import asyncio
    import hashlib
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    assert await fetch_fingerprint("127.0.0.1", port) == hashlib.sha256(der).hexdigest()
    with pytest.raises(TargetUnreachable):
        await fetch_fingerprint("127.0.0.1", closed_port())


# ---- Meraki through the api.meraki.com proxy: shard redirects on write ----------------------------------

@pytest.mark.parametrize("status", [302, 307])
async def test_meraki_redirect_on_write_keeps_the_put(tmp_path: Path, status: int) -> None:
    from keyturn.sim.meraki_proxy import MerakiProxy
    from keyturn.sim.tls import SimCA

    state = MerakiState(seed=2)
    org = state.add_org("Redirect Org")
    net = state.add_network(org.id, "Redirect Net")
    state.add_auth_user(net.id, "r@example.com", OLD)
    key = state.add_api_key()
    state.faults_for(org.id).update(redirect_on_write=True, redirect_status=status)
    frontend = MerakiFrontend(state)
    ca = SimCA.create()
    proxy = MerakiProxy(await frontend.start("127.0.0.1", 0), ca)
    proxy_port = await proxy.start("127.0.0.1", 0)
    endpoint = Endpoint(host="api.meraki.com", network_id=net.id, org_id=org.id,
                        ca_bundle=str(ca.write_ca(tmp_path / "ca.pem")),
                        options={"proxy": f"http://127.0.0.1:{proxy_port}"})
    account = Account(record_uid="mr", username="r@example.com", endpoint=endpoint,
                      admin=AdminCredential("api", Secret(key)))
    target: Any = create_target("meraki-auth-user")
    try:
        await target.change(account, None, Secret(NEW))
        assert state.stats_for(org.id).redirected == 1  # the PUT was redirected once, and re-sent as PUT
        assert state.verify_login(net.id, "r@example.com", NEW)
    finally:
        await target.aclose()
        await proxy.stop()
        await frontend.stop()


# ---- IOS XE error paths against the simulators ----------------------------------------------------------

@pytest.mark.parametrize("kind", ["iosxe-restconf", "iosxe-ssh"])
async def test_iosxe_refusals(kind: str) -> None:
    made, stop = await (restconf_case(admin=True) if kind == "iosxe-restconf" else ssh_case(admin=True))
    target, account = made.target, made.account
    try:
        # a user that does not exist is never created
        ghost = replace(account, username="ghost")
        with pytest.raises(AccountNotFound):
            await target.change(ghost, None, Secret(NEW))
        # the device refuses the password (policy) → ChangeRejected, nothing changed
        _faults_of(stop).update(refuse_passwords=1)
        with pytest.raises(ChangeRejected) as err:
            await target.change(account, None, Secret(NEW))
        assert NEW not in str(err.value)
        assert made.device_has(OLD)
        # a user holding a reversible password cannot be forced to a secret beside it ...
        device = _device_of(stop)
        device.delete_user("bob")
        device.set_user("bob", kind="password", clear=OLD, privilege=15)
        with pytest.raises(ChangeRejected, match="mode=password"):
            await target.change(replace(account, options={"mode": "secret"}), None, Secret(NEW))
        assert made.device_has(OLD)
        # ... and by default (mode auto) keeps its kind
        await target.change(account, None, Secret(NEW))
        assert made.device_has(NEW)
        user = device.user("bob")
        assert user is not None and user.credential is not None and user.credential.kind == "password"
    finally:
        await target.aclose()
        await stop()


async def test_ssh_drop_after_apply_is_unreachable_and_applied() -> None:
    made, stop = await ssh_case(admin=True)
    try:
        _faults_of(stop).update(drop_after_apply=1)
        with pytest.raises(TargetUnreachable):
            await made.target.change(made.account, None, Secret(NEW))
        assert made.device_has(NEW)  # outcome unknown to the caller; verify finds out
        assert await made.target.verify(made.account, Secret(NEW)) is Verdict.OK
    finally:
        await made.target.aclose()
        await stop()


def _faults_of(stop: Callable[[], Awaitable[None]]) -> Faults:
    frontend = stop.__self__  # type: ignore[attr-defined]
    assert isinstance(frontend.faults, Faults)
    return frontend.faults


def _device_of(stop: Callable[[], Awaitable[None]]) -> IosXeDevice:
    device = stop.__self__.device  # type: ignore[attr-defined]
    assert isinstance(device, IosXeDevice)
    return device


# ---- SSH host keys: pinned, refused without trust, trust on first use through the vault ----------------

async def test_ssh_host_key_pin_and_no_trust() -> None:
    device = await _iosxe_device()
    frontend = SshFrontend(device, Faults())
    port = await frontend.start("127.0.0.1", 0)
    right = str(frontend.host_key.get_fingerprint("sha256"))
    base = Endpoint(host="127.0.0.1", ssh_port=port, resource_uid="r1", resource_title="sw 1")
    admin = AdminCredential("admin", Secret(ADMIN_PW))
    target: Any = create_target("iosxe-ssh", timeout=10)
    try:
        wrong = replace(base, options={"host_key_fingerprint": "SHA256:" + "A" * 43})
        with pytest.raises(HostKeyChanged, match="CHANGED since it was pinned") as changed:
            await target.change(Account("h", "bob", wrong, admin=admin), None, Secret(NEW))
        assert (changed.value.pinned, changed.value.presented) == ("SHA256:" + "A" * 43, right)
        assert "`keyturn device trust 'sw 1' --replace`" in str(changed.value)
        assert await target.verify(Account("h", "bob", wrong), Secret(OLD)) is Verdict.INCONCLUSIVE
        # no trust at all: refused, naming the command that establishes it
        command = r"no trust .* `keyturn device trust 'sw 1'`"
        with pytest.raises(HostKeyNotTrusted, match=command) as untrusted:
            await target.change(Account("h", "bob", base, admin=admin), None, Secret(NEW))
        assert untrusted.value.presented == right and not isinstance(untrusted.value, HostKeyChanged)
        assert isinstance(untrusted.value, TargetUnreachable)  # nothing known to be changed
        assert await target.verify(Account("h", "bob", base), Secret(OLD)) is Verdict.INCONCLUSIVE
        assert device.authenticate("bob", OLD) is not None
        pinned = replace(base, options={"host_key_fingerprint": right})
        assert await target.verify(Account("h", "bob", pinned), Secret(OLD)) is Verdict.OK
        lab = replace(base, options={"ssh_host_key": "accept-any"})
        assert await target.verify(Account("h", "bob", lab), Secret(OLD)) is Verdict.OK
        # a pin wins over a stale accept-any next to it
        both = replace(base, options={"ssh_host_key": "accept-any", **wrong.options})
        assert await target.verify(Account("h", "bob", both), Secret(OLD)) is Verdict.INCONCLUSIVE
        # tofu needs somewhere to store the key: a target without a recorder refuses
        tofu = replace(base, options={"ssh_host_key": "tofu"})
        with pytest.raises(HostKeyNotTrusted, match="ssh_host_key=tofu"):
            await target.change(Account("h", "bob", tofu, admin=admin), None, Secret(NEW))
    finally:
        await target.aclose()
        await frontend.stop()


async def test_ssh_host_key_tofu_stores_through_the_recorder() -> None:
    device = await _iosxe_device()
    frontend = SshFrontend(device, Faults())
    port = await frontend.start("127.0.0.1", 0)
    right = str(frontend.host_key.get_fingerprint("sha256"))
    pins: dict[str, str] = {}
    calls: list[tuple[str, str, str]] = []

    async def recorder(resource_uid: str, where: str, fingerprint: str) -> str:
        calls.append((resource_uid, where, fingerprint))
        return pins.setdefault(resource_uid, fingerprint)

    tofu = Endpoint(host="127.0.0.1", ssh_port=port, resource_uid="r1", resource_title="sw1",
                    options={"ssh_host_key": "tofu"})
    target: Any = create_target("iosxe-ssh", timeout=10, host_keys=recorder)
    try:
        assert await target.verify(Account("h", "bob", tofu), Secret(OLD)) is Verdict.OK
        assert await target.verify(Account("h", "bob", tofu), Secret(OLD)) is Verdict.OK
        assert pins == {"r1": right} and calls == [("r1", f"127.0.0.1:{port}", right)]  # read once
        # another resource at the same address whose stored pin is a different key: refused, flagged
        pins["r2"] = "SHA256:" + "B" * 43
        other = replace(tofu, resource_uid="r2", resource_title="sw2")
        with pytest.raises(HostKeyChanged, match=r"keyturn device trust sw2 --replace"):
            await target.change(Account("h", "bob", other, admin=AdminCredential("admin", Secret(ADMIN_PW))),
                                None, Secret(NEW))
        assert device.authenticate("bob", OLD) is not None
        bad = replace(tofu, options={"ssh_host_key": "trust-me"})
        with pytest.raises(ProfileError, match="ssh_host_key must be one of tofu, accept-any"):
            await target.verify(Account("h", "bob", bad), Secret(OLD))
    finally:
        await target.aclose()
        await frontend.stop()


async def test_restconf_verify_via_ssh_for_low_privilege_users() -> None:
    device = await _iosxe_device()
    rest, ssh_front = RestconfFrontend(device, Faults()), SshFrontend(device, Faults())
    port, ssh_port = await rest.start("127.0.0.1", 0), await ssh_front.start("127.0.0.1", 0)
    endpoint = Endpoint(host="127.0.0.1", port=port, ssh_port=ssh_port, base_url=f"http://127.0.0.1:{port}",
                        options=_pin(ssh_front))
    target: Any = create_target("iosxe-restconf")
    try:
        carol = Account("v", "carol", endpoint)  # privilege 1: RESTCONF refuses even the right secret
        assert await target.verify(carol, Secret(OLD)) is Verdict.REJECTED
        via_ssh = replace(carol, options={"verify_via": "ssh"}, probes=ProbeLedger())
        assert await target.verify(via_ssh, Secret(OLD)) is Verdict.OK
        assert await target.verify(via_ssh, Secret(NEW)) is Verdict.REJECTED
    finally:
        await target.aclose()
        await rest.stop()
        await ssh_front.stop()
