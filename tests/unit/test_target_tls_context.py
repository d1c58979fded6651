"""TLS contexts are shared between endpoints with the same trust, and rebuilt when the CA bundle
changes on disk (a renewed CA must not need a restart)."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
import trustme

from keyturn.errors import TlsVerificationFailed
from keyturn.targets.base import Endpoint
from keyturn.targets.http import build_client, ssl_context


def _bundle(path: Path) -> Path:
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


def test_same_trust_shares_one_context(tmp_path: Path) -> None:
    bundle = str(_bundle(tmp_path / "ca.pem"))
    a = ssl_context(Endpoint(host="10.0.0.1", ca_bundle=bundle))
    b = ssl_context(Endpoint(host="10.0.0.2", port=8443, ca_bundle=bundle))
    assert a is b
    assert a.verify_mode is ssl.CERT_REQUIRED and a.check_hostname
    assert ssl_context(Endpoint(host="10.0.0.1")) is not a          # system trust is another context


def test_a_changed_bundle_gets_a_new_context(tmp_path: Path) -> None:
    path = _bundle(tmp_path / "ca.pem")
    before = ssl_context(Endpoint(host="h", ca_bundle=str(path)))
    _bundle(path)                                                   # a new CA in the same file
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    after = ssl_context(Endpoint(host="h", ca_bundle=str(path)))
    assert after is not before
    assert len(after.get_ca_certs()) == 1


def test_insecure_and_pinned_only_contexts_do_not_verify_the_chain(tmp_path: Path) -> None:
    insecure = ssl_context(Endpoint(host="h", insecure=True))
    pinned = ssl_context(Endpoint(host="h", fingerprint="AB" * 32))
    assert insecure.verify_mode is ssl.CERT_NONE and not insecure.check_hostname
    assert pinned.verify_mode is ssl.CERT_NONE                       # the pin is checked after the handshake
    bundle = str(_bundle(tmp_path / "ca.pem"))
    both = ssl_context(Endpoint(host="h", fingerprint="AB" * 32, ca_bundle=bundle))
    assert both.verify_mode is ssl.CERT_REQUIRED                      # a bundle keeps chain verification on


def test_a_missing_bundle_is_a_clear_tls_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(TlsVerificationFailed, match="cannot set up TLS trust for sw01"):
        build_client(Endpoint(host="sw01", ca_bundle=missing), base_url="https://sw01", timeout=1.0)
