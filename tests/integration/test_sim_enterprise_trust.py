"""Trust material as stock IOS XE presents it (reference §5), over real sockets: the SAN-less
`CN=IOS-Self-Signed-Certificate-<n>` certificate that only a pinned fingerprint can trust, and the
`ios-17` / `ios-legacy` SSH algorithm sets with an RSA host key (netmiko, scrapli and asyncssh on
`ios-17`; a client without group14-sha1 cannot reach `ios-legacy`)."""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from keyturn.sim.client import IosXeEntry
from keyturn.sim.tls import der_fingerprint
from tests.lab_fixtures import RunningLab, running_lab

USERS = "/data/Cisco-IOS-XE-native:native/username"


async def peer_certificate(entry: IosXeEntry) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE   # fetch it to pin it, as `device trust` does
    _, writer = await asyncio.open_connection(entry.host, entry.restconf_port, ssl=ctx)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    return bytes(der)


@pytest.fixture
async def ios_lab(tmp_path: Path) -> AsyncIterator[RunningLab]:
    async with running_lab(tmp_path, iosxe=2, meraki_orgs=0, seed=8,
                           profile={"cert": "ios-self-signed", "ssh_profile": "ios-17"}) as running:
        yield running


async def test_ios_self_signed_certificate_has_the_real_subject_and_no_san(ios_lab: RunningLab) -> None:
    seen = set()
    for entry in ios_lab.state.iosxe:
        der = await peer_certificate(entry)
        cert = x509.load_der_x509_certificate(der)
        (cn,) = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        assert re.fullmatch(r"IOS-Self-Signed-Certificate-\d{10}", str(cn.value))
        assert cert.issuer == cert.subject
        assert entry.profile["cert_subject"] == f"CN={cn.value}"
        with pytest.raises(x509.ExtensionNotFound):
            cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert der_fingerprint(der) == entry.profile["cert_fingerprint"]
        assert entry.profile["cert"] == "ios-self-signed"
        seen.add(entry.profile["cert_fingerprint"])
    assert len(seen) == 2                                   # one certificate per device


async def test_ios_self_signed_certificate_fails_hostname_verification(ios_lab: RunningLab) -> None:
    entry = ios_lab.state.iosxe[0]
    cert_file = Path(ios_lab.state_file).with_name("device.pem")
    cert_file.write_text(ssl.DER_cert_to_PEM_cert(await peer_certificate(entry)))
    auth = (entry.admin.username, entry.admin.password)
    # Neither the lab CA nor the device's own certificate as a trust anchor passes: no SAN for the host.
    for cafile in (ios_lab.state.ca_cert, str(cert_file)):
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=cafile), auth=auth) as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(entry.restconf_url + USERS)
    # Trusting the pinned certificate without hostname checks works (what fingerprint pinning amounts to).
    pinned = ssl.create_default_context(cafile=str(cert_file))
    pinned.check_hostname = False
    async with httpx.AsyncClient(verify=pinned, auth=auth) as http:
        assert (await http.get(entry.restconf_url + USERS)).status_code == 200


async def test_ios_17_ssh_profile_rsa_host_key_and_real_clients(ios_lab: RunningLab) -> None:
    entry = ios_lab.state.iosxe[0]
    async with asyncssh.connect(entry.host, entry.ssh_port, username=entry.admin.username,
                                password=entry.admin.password, known_hosts=None) as conn:
        key = conn.get_server_host_key()
        assert key is not None and key.get_algorithm() == "ssh-rsa"
        assert key.get_fingerprint("sha256") == entry.profile["ssh_host_key_fingerprint"]
        assert "Current privilege level is 15" in str((await conn.run("show privilege")).stdout)

    def with_netmiko() -> str:
        from netmiko import ConnectHandler

        conn = ConnectHandler(device_type="cisco_xe", host=entry.host, port=entry.ssh_port,
                              username=entry.admin.username, password=entry.admin.password)
        try:
            return str(conn.find_prompt())
        finally:
            conn.disconnect()

    assert (await asyncio.to_thread(with_netmiko)).endswith("#")
    from scrapli.driver.core import AsyncIOSXEDriver

    scrapli = AsyncIOSXEDriver(host=entry.host, port=entry.ssh_port, auth_username=entry.admin.username,
                               auth_password=entry.admin.password, auth_secondary=entry.enable_secret,
                               auth_strict_key=False, transport="asyncssh", timeout_ops=20)
    await scrapli.open()
    try:
        assert (await scrapli.get_prompt()).endswith("#")
    finally:
        await scrapli.close()


async def test_legacy_ssh_profile_needs_group14_sha1(tmp_path: Path) -> None:
    async with running_lab(tmp_path, iosxe=1, meraki_orgs=0, restconf=False,
                           profile={"ssh_profile": "ios-legacy"}) as lab:
        entry = lab.state.iosxe[0]
        login = {"username": entry.admin.username, "password": entry.admin.password, "known_hosts": None}
        modern = ["curve25519-sha256", "ecdh-sha2-nistp256", "diffie-hellman-group14-sha256"]
        with pytest.raises(asyncssh.KeyExchangeFailed):
            await asyncssh.connect(entry.host, entry.ssh_port, kex_algs=modern, **login)
        # A client that still offers the legacy set gets in, over ssh-rsa and hmac-sha1.
        async with asyncssh.connect(entry.host, entry.ssh_port, **login) as conn:
            assert conn.get_extra_info("recv_mac") in ("hmac-sha1", b"hmac-sha1")
            key = conn.get_server_host_key()
            assert key is not None
            assert key.get_fingerprint("sha256") == entry.profile["ssh_host_key_fingerprint"]

        def with_paramiko() -> None:
            import paramiko

            client = paramiko.SSHClient()
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
            try:
                client.connect(entry.host, port=entry.ssh_port or 0, username=entry.admin.username,
                               password=entry.admin.password, look_for_keys=False, allow_agent=False,
                               timeout=10)
            finally:
                client.close()

        # paramiko 5 (netmiko's transport) dropped group14-sha1 and ssh-rsa: as in the field, it
        # cannot reach a legacy device at all.
        with pytest.raises(Exception, match=r"(?i)incompatible|kex"):
            await asyncio.to_thread(with_paramiko)
