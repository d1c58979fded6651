"""`HostKeyPins`: trust on first use stored in the vault, never over a pin that is already there."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from keyturn.config import Settings
from keyturn.engine.hostkeys import HostKeyPins
from keyturn.errors import HostKeyNotTrusted
from keyturn.vault import Field, Vault

T = TypeVar("T")
FIRST = "SHA256:" + "A" * 43
OTHER = "SHA256:" + "B" * 43


async def inline(fn: Callable[[], T]) -> T:
    return fn()


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    return Vault.init(Settings(home=tmp_path / "home"))


def _device(vault: Vault, **custom: str) -> str:
    fields = [Field("text", k, [v]) for k, v in {"ssh_port": "22", **custom}.items()]
    return vault.add(type="pamNetworkDevice", title="sw1", fields=[Field("host", None, ["10.0.0.1"])],
                     custom=fields).uid


async def test_first_key_is_stored_and_audited_then_kept(vault: Vault) -> None:
    uid = _device(vault, ssh_host_key="tofu")
    pins = HostKeyPins(vault, inline)

    assert await pins(uid, "10.0.0.1:22", FIRST) == FIRST
    assert await pins(uid, "10.0.0.1:22", OTHER) == FIRST   # a later key never replaces the pin

    assert vault.get(uid).custom_value("host_key_fingerprint") == FIRST
    entries = vault.audit.list(record_uid=uid, action="device.trust")
    assert [(e.actor, e.details) for e in entries] == [("tofu", {
        "host": "10.0.0.1:22", "host_key_fingerprint": {"old": None, "new": FIRST}, "replaced": False,
        "first_use": True})]


async def test_a_pin_a_person_set_is_returned_unchanged(vault: Vault) -> None:
    uid = _device(vault, ssh_host_key="tofu", host_key_fingerprint=OTHER)

    assert await HostKeyPins(vault, inline)(uid, "10.0.0.1:22", FIRST) == OTHER
    assert vault.audit.list(record_uid=uid, action="device.trust") == []


async def test_a_record_that_no_longer_opts_in_is_refused(vault: Vault) -> None:
    uid = _device(vault)

    with pytest.raises(HostKeyNotTrusted, match="no longer says ssh_host_key=tofu"):
        await HostKeyPins(vault, inline)(uid, "10.0.0.1:22", FIRST)
    assert vault.get(uid).custom_value("host_key_fingerprint") is None
