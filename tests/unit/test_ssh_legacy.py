"""`ssh_algorithms=legacy`: an asyncssh server offering only what older IOS XE releases offer.

Reference field behaviour §5: older releases offer only diffie-hellman-group14-sha1 + ssh-rsa +
hmac-sha1 (ciphers AES-CTR). Without the option keyturn refuses them with a TargetUnreachable that
says which option to set; with it, they are appended last, so a modern device still negotiates a
modern algorithm.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncssh
import pytest

from keyturn.errors import ProfileError, TargetUnreachable
from keyturn.secret import Secret
from keyturn.targets.base import Account, AdminCredential, Endpoint
from keyturn.targets.iosxe_ssh import LEGACY_SSH_ALGORITHMS, IosXeSshTarget, ssh_algorithms
from keyturn.targets.tofu import fetch_host_key

# cryptography deprecates finite-field DH, which diffie-hellman-group14-sha1 is: exactly the legacy
# profile under test, so that warning (an error under `filterwarnings = error`) is expected here.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Diffie-Hellman over finite fields:cryptography.utils.CryptographyDeprecationWarning")

LEGACY_SERVER = {"kex_algs": ["diffie-hellman-group14-sha1"], "signature_algs": ["ssh-rsa"],
                 "mac_algs": ["hmac-sha1"], "encryption_algs": ["aes128-ctr", "aes256-ctr"]}
ADMIN = ("admin", "Adm1n-pw")


@dataclass
class Device:
    port: int
    fingerprint: str
    macs: list[str] = field(default_factory=list)
    ciphers: list[str] = field(default_factory=list)


class _Server(asyncssh.SSHServer):
    def __init__(self, device: Device) -> None:
        self._device = device

    def connection_made(self, conn: Any) -> None:
        self._conn = conn

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        ok = (username, password) == ADMIN
        if ok:
            self._device.macs.append(str(self._conn.get_extra_info("recv_mac")))
            self._device.ciphers.append(str(self._conn.get_extra_info("recv_cipher")))
        return ok


async def _shell(process: Any) -> None:
    # Just enough of an IOS vty for `write memory` (reference cisco-iosxe §4.1).
    process.stdout.write("sw1#")
    async for line in process.stdin:
        if line.strip() == "write memory":
            process.stdout.write("Building configuration...\r\n[OK]\r\nsw1#")
        else:
            process.stdout.write("sw1#")


async def _serve(host_key: Any, **algorithms: Any) -> tuple[Any, Device]:
    device = Device(port=0, fingerprint=str(host_key.get_fingerprint("sha256")))
    server = await asyncssh.create_server(lambda: _Server(device), "127.0.0.1", 0,
                                          server_host_keys=[host_key], process_factory=_shell, **algorithms)
    device.port = server.sockets[0].getsockname()[1]
    return server, device


@pytest.fixture(name="legacy")
async def legacy_fixture() -> AsyncIterator[Device]:
    server, device = await _serve(asyncssh.generate_private_key("ssh-rsa", key_size=2048), **LEGACY_SERVER)
    try:
        yield device
    finally:
        server.close()
        await server.wait_closed()


def _account(device: Device, **options: str) -> Account:
    endpoint = Endpoint(host="127.0.0.1", port=443, ssh_port=device.port,
                        options={"host_key_fingerprint": device.fingerprint, **options})
    return Account(record_uid="r1", username="netops", endpoint=endpoint,
                   admin=AdminCredential(ADMIN[0], Secret(ADMIN[1])))


def test_profiles_put_legacy_algorithms_last_or_nowhere() -> None:
    modern, legacy = ssh_algorithms({}), ssh_algorithms({"ssh_algorithms": "legacy"})
    for name, algs in LEGACY_SSH_ALGORITHMS.items():
        assert not set(algs) & set(modern[name])
        assert legacy[name][-len(algs):] == list(algs)
        assert legacy[name][:-len(algs)] == modern[name]
    with pytest.raises(ProfileError, match="ssh_algorithms must be one of modern, legacy, not 'old'"):
        ssh_algorithms({"ssh_algorithms": "old"})


def test_aes_gcm_is_tried_first_and_no_cipher_is_dropped() -> None:
    from asyncssh.encryption import get_default_encryption_algs

    for options in ({}, {"ssh_algorithms": "legacy"}):
        ciphers = ssh_algorithms(options)["encryption_algs"]
        assert ciphers[:2] == ["aes256-gcm@openssh.com", "aes128-gcm@openssh.com"]
        assert sorted(ciphers) == sorted(alg.decode("ascii") for alg in get_default_encryption_algs())


async def test_a_server_preferring_chacha20_still_gets_aes_gcm() -> None:
    # asyncssh's own server defaults put chacha20-poly1305 first (the simulator's default profile);
    # the client's order decides (RFC 4253 §7.1), and IOS XE 17.x offers AES-GCM (reference §5).
    server, device = await _serve(asyncssh.generate_private_key("ssh-ed25519"))
    target = IosXeSshTarget(timeout=10.0)
    try:
        await target.persist(_account(device))
    finally:
        await target.aclose()
        server.close()
        await server.wait_closed()
    assert device.ciphers == ["aes256-gcm@openssh.com"]


async def test_legacy_only_device_is_refused_with_the_option_to_set(legacy: Device) -> None:
    target = IosXeSshTarget(timeout=10.0)
    with pytest.raises(TargetUnreachable) as caught:
        await target.persist(_account(legacy))
    assert str(caught.value) == (
        "iosxe-ssh [r1]: 127.0.0.1: no SSH algorithm in common with the device while saving the "
        "configuration (No matching key exchange algorithm found; the device offers "
        "diffie-hellman-group14-sha1); if the device runs an older IOS XE "
        "release (diffie-hellman-group14-sha1, ssh-rsa, hmac-sha1 only), set ssh_algorithms=legacy on the "
        "resource record")
    assert legacy.macs == []  # refused during key exchange: no credential was sent


async def test_legacy_option_logs_in_and_saves(legacy: Device) -> None:
    target = IosXeSshTarget(timeout=10.0)
    try:
        await target.persist(_account(legacy, ssh_algorithms="legacy"))
    finally:
        await target.aclose()   # closes the admin session kept for the rest of the rotation
    assert legacy.macs == ["hmac-sha1"]


async def test_trust_reads_the_legacy_host_key_only_with_the_option(legacy: Device) -> None:
    with pytest.raises(TargetUnreachable, match=r"set ssh_algorithms=legacy on the resource record$"):
        await fetch_host_key("127.0.0.1", legacy.port)
    key = await fetch_host_key("127.0.0.1", legacy.port,
                               algorithms=ssh_algorithms({"ssh_algorithms": "legacy"}))
    assert (key.fingerprint, key.algorithm) == (legacy.fingerprint, "ssh-rsa")


async def test_legacy_option_still_prefers_modern_algorithms() -> None:
    server, device = await _serve(asyncssh.generate_private_key("ssh-rsa", key_size=2048))
    target = IosXeSshTarget(timeout=10.0)
    try:
        await target.persist(_account(device, ssh_algorithms="legacy"))
        await target.aclose()
        key = await fetch_host_key("127.0.0.1", device.port,
                                   algorithms=ssh_algorithms({"ssh_algorithms": "legacy"}))
    finally:
        server.close()
        await server.wait_closed()
    assert device.macs and device.macs[0] != "hmac-sha1"
    assert key.fingerprint == device.fingerprint
