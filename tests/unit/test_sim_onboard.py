"""`keyturn.sim.onboard`: a lab state becomes resource, admin and user records with rotation profiles
whose trust and target fit each device's profile, all in one transaction."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyturn.config import Settings
from keyturn.engine.accounts import resolve_account
from keyturn.engine.profile import RotationProfile
from keyturn.errors import DuplicateRecord, ProfileError, SimulatorError
from keyturn.sim.client import ControlClient, LabState
from keyturn.sim.onboard import OnboardedAccount, Titles, onboard_iosxe, target_for
from keyturn.vault import Vault

PIN = "ab" * 32
HOST_KEY = "SHA256:deviceownhostkey"
LAB_HOST_KEY = "SHA256:labwidehostkey"


def device(n: int, profile: dict[str, Any] | None = None, users: int = 2) -> dict[str, Any]:
    return {"name": f"sw{n:04d}", "host": "127.0.0.1", "restconf_port": 8000 + n, "ssh_port": 9000 + n,
            "admin": {"username": "admin", "password": f"Admin-pw-{n:04d}-xyz"},
            "enable_secret": f"Enable-pw-{n:04d}-xyz",
            "users": [{"username": f"netops{u}", "password": f"User-pw-{n:04d}-{u}-xy", "privilege": 15,
                       "kind": "secret", "encryption": "9"} for u in range(1, users + 1)],
            "profile": profile or {}}


ENTERPRISE = {"aaa": "tacacs-first", "max_fail": 3, "exec_authorization": True, "cert": "ios-self-signed",
              "cert_fingerprint": PIN, "ssh_profile": "ios-legacy", "ssh_host_key_fingerprint": HOST_KEY,
              "role": "tacacs-first"}
USER_EXEC = {"aaa": "local", "exec_authorization": False, "cert": "lab-ca", "ssh_profile": "ios-17",
             "role": "no-exec-authorization"}


def lab_state(*devices: dict[str, Any]) -> LabState:
    return LabState.from_dict({"control_url": "http://127.0.0.1:7000", "ca_cert": "/lab/ca.pem",
                               "ssh_host_key_fingerprint": LAB_HOST_KEY, "iosxe": list(devices)})


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    v = Vault.init(Settings(home=tmp_path))
    yield v
    v.close()


def custom_text(vault: Vault, uid: str) -> dict[str, str]:
    return {f.label: str(f.value[0]) for f in vault.get(uid).custom if f.type == "text" and f.label}


def profile_of(vault: Vault, uid: str) -> RotationProfile:
    return RotationProfile.from_meta(vault.get(uid).meta["rotation"])


def test_default_device_trusts_the_lab_ca_and_rotates_with_the_chosen_target(vault: Vault) -> None:
    state = lab_state(device(1))
    accounts = onboard_iosxe(vault, state, target="iosxe-ssh")
    assert [(a.target, a.device, a.username, a.title) for a in accounts] == [
        ("iosxe-ssh", "sw0001", "netops1", "netops1 @ sw0001"),
        ("iosxe-ssh", "sw0001", "netops2", "netops2 @ sw0001")]
    assert vault.secret(accounts[0].uid).reveal() == "User-pw-0001-1-xy"
    profile = profile_of(vault, accounts[0].uid)
    resource, admin = vault.get(profile.resource), vault.get(profile.admin)
    assert (resource.type, resource.title, resource.field("host")) == ("pamNetworkDevice", "sw0001",
                                                                       "127.0.0.1:8001")
    assert custom_text(vault, resource.uid) == {"ssh_port": "9001", "ca_bundle": "/lab/ca.pem",
                                                "host_key_fingerprint": LAB_HOST_KEY}
    assert (admin.type, admin.title, admin.field("login")) == ("login", "sw0001 admin", "admin")
    assert vault.secret(admin.uid).reveal() == "Admin-pw-0001-xyz"
    assert admin.custom_value("enable_secret").reveal() == "Enable-pw-0001-xyz"
    # Both users share one resource and one admin record.
    assert profile_of(vault, accounts[1].uid).resource == resource.uid


def test_self_signed_ios_certificate_is_pinned_and_legacy_ssh_asked_for(vault: Vault) -> None:
    state = lab_state(device(1, ENTERPRISE, users=1))
    [acct] = onboard_iosxe(vault, state, options={"verify": "auto"})
    assert acct.target == "iosxe-restconf"
    profile = profile_of(vault, acct.uid)
    assert custom_text(vault, profile.resource) == {
        "ssh_port": "9001", "fingerprint": PIN, "host_key_fingerprint": HOST_KEY, "ssh_algorithms": "legacy"}
    # What keyturn itself reads from these records: pin only (no CA bundle), options for the SSH target.
    resolved = resolve_account(vault, vault.get(acct.uid), profile)
    endpoint = resolved.account.endpoint
    assert (endpoint.host, endpoint.port, endpoint.ssh_port) == ("127.0.0.1", 8001, 9001)
    assert (endpoint.fingerprint, endpoint.ca_bundle) == (PIN, None)
    assert endpoint.options["ssh_algorithms"] == "legacy"
    assert endpoint.options["host_key_fingerprint"] == HOST_KEY
    assert resolved.account.options == {"verify": "auto"}
    assert resolved.account.admin is not None
    assert resolved.account.admin.enable_secret is not None
    assert resolved.account.admin.enable_secret.reveal() == "Enable-pw-0001-xyz"


def test_a_device_landing_in_user_exec_gets_the_ssh_target(vault: Vault) -> None:
    state = lab_state(device(1, users=1), device(2, USER_EXEC, users=1))
    accounts = onboard_iosxe(vault, state, target="iosxe-restconf")
    assert [a.target for a in accounts] == ["iosxe-restconf", "iosxe-ssh"]
    assert target_for(state.iosxe[1], "iosxe-restconf") == "iosxe-ssh"
    assert target_for(state.iosxe[0], "iosxe-ssh") == "iosxe-ssh"
    # With an admin the enable secret comes from the admin record; the user record stays bare.
    assert vault.get(accounts[1].uid).custom_value("enable_secret") is None


def test_self_service_on_a_user_exec_device_carries_its_own_enable_secret(vault: Vault) -> None:
    state = lab_state(device(1, users=1), device(2, USER_EXEC, users=1))
    plain, user_exec = onboard_iosxe(vault, state, admin=False)
    assert profile_of(vault, user_exec.uid).admin is None
    assert vault.get(user_exec.uid).custom_value("enable_secret").reveal() == "Enable-pw-0002-xyz"
    assert vault.get(plain.uid).custom_value("enable_secret") is None
    # The admin record is there all the same (tests switch a profile to it later).
    assert [r.title for r in vault.summaries() if r.title.endswith(" admin")] == ["sw0001 admin",
                                                                                  "sw0002 admin"]


def test_round_robin_targets_limits_and_titles(vault: Vault) -> None:
    state = lab_state(*(device(n, users=3) for n in range(1, 5)))
    titles = Titles(resource="{device}-{target}", admin="{device}-{target}-admin",
                    user="{device}-{target}-{username}")
    accounts = onboard_iosxe(vault, state, target=("iosxe-restconf", "iosxe-ssh"), devices=3, users=2,
                             titles=titles)
    assert [(a.device, a.target, a.username) for a in accounts] == [
        ("sw0001", "iosxe-restconf", "netops1"), ("sw0001", "iosxe-restconf", "netops2"),
        ("sw0002", "iosxe-ssh", "netops1"), ("sw0002", "iosxe-ssh", "netops2"),
        ("sw0003", "iosxe-restconf", "netops1"), ("sw0003", "iosxe-restconf", "netops2")]
    assert accounts[2].title == "sw0002-iosxe-ssh-netops1"
    assert len(vault.find(title="sw0002-iosxe-ssh-admin")) == 1
    assert not vault.find(title="sw0004-iosxe-restconf")


def test_duplicates_refused_unless_allowed_and_nothing_half_added(vault: Vault) -> None:
    state = lab_state(device(1, users=1), device(2, users=1))
    onboard_iosxe(vault, state, devices=1)
    before = len(vault.summaries())
    with pytest.raises(DuplicateRecord):
        onboard_iosxe(vault, state)             # sw0002 would be new, sw0001 is a duplicate
    assert len(vault.summaries()) == before
    again = onboard_iosxe(vault, state, allow_duplicate=True)
    assert len(again) == 2
    assert len(vault.summaries()) == before + 6


def test_unusable_lab_state_or_options_leave_the_vault_untouched(vault: Vault) -> None:
    before = len(vault.summaries())
    no_pin = {**ENTERPRISE, "cert_fingerprint": None}
    with pytest.raises(SimulatorError, match="cert_fingerprint"):
        onboard_iosxe(vault, lab_state(device(1), device(2, no_pin)))
    with pytest.raises(SimulatorError, match="certificate kind"):
        onboard_iosxe(vault, lab_state(device(1, {"cert": "letsencrypt"})))
    with pytest.raises(SimulatorError, match="unknown IOS XE target"):
        onboard_iosxe(vault, lab_state(device(1)), target="meraki-auth-user")
    with pytest.raises(ProfileError, match="verify"):
        onboard_iosxe(vault, lab_state(device(1)), options={"verify": "sometimes"})
    assert len(vault.summaries()) == before


async def test_stored_asks_the_control_api_verify() -> None:
    seen: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append({"path": request.url.path, **body})
        return httpx.Response(200, json={"ok": body["password"] == "New-secret-1", "locked": False})

    acct = OnboardedAccount(uid="u1", target="iosxe-ssh", device="sw0001", username="netops1")
    async with ControlClient("http://lab", transport=httpx.MockTransport(answer)) as ctl:
        assert await acct.stored(ctl, "New-secret-1")
        assert not await acct.stored(ctl, "Old-secret-1")
    assert seen[0] == {"path": "/verify", "kind": "iosxe", "device": "sw0001", "username": "netops1",
                       "password": "New-secret-1"}
