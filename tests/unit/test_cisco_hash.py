"""Cisco stored-credential formats: published vectors, the two parsers, and `check` never raising."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from keyturn.cisco_hash import (
    HashCheck,
    StoredCredential,
    check,
    parse_cli_username,
    parse_restconf_user,
    scrypt,
    scrypt_hashlib,
    type5_hash,
    type7_decode,
    type7_encode,
    type8_hash,
    type9_hash,
    verify_hash,
)
from keyturn.secret import Secret

# Published md5-crypt known answers (password, salt, hash):
MD5_CRYPT_VECTORS = [
    # passlib's md5_crypt documentation example
    ("password", "5pZSV9va", "$1$5pZSV9va$azfrPr6af3Fc7dLblQXVa0"),
    # FreeBSD lib/libcrypt/tests/crypt_tests.c (LEET)
    ("0.s0.l33t", "deadbeef", "$1$deadbeef$0Huu6KHrKLVWfqa4WljDE0"),
    # glibc crypt/md5c-test.c: the 10-character salt is cut to 8
    ("Hello world!", "saltstring", "$1$saltstri$YMyguxXMBpd2TEZ.vS/3q1"),
    # PHP ext/standard/tests/strings/crypt.phpt
    ("rasmuslerdorf", "rasmusle", "$1$rasmusle$rISCgZzpwk3UhDidwXvin0"),
]
# Reference "cisco-iosxe" §3.3 (recomputed there with hashlib; type 9 matches netutils).
TYPE8 = ("cisco", "dsYGNam3K1SIJO", "$8$dsYGNam3K1SIJO$7nv/35M/qr6t.dVc7UY9zrJDWRVqncHub1PE9UlMQFs")
TYPE9 = ("123456", "cvWdfQlRRDKq/U", "$9$cvWdfQlRRDKq/U$VFTPha5VHTCbSgSUAo.nPoh50ZiXOw1zmljEjXkaq1g")
# The type-7 string Cisco's own examples use for "cisco".
TYPE7_CISCO = "0822455D0A16"


TYPE7_BAD = "malformed type-7 value: not a type-7 string (two decimal digits, then pairs of hex digits)"


def cred(type_: str, value: str, kind: str = "secret") -> StoredCredential:
    return StoredCredential(kind="secret" if kind == "secret" else "password", type=type_,
                            value=Secret(value))


# ---- vectors and round trips --------------------------------------------------------------------

@pytest.mark.parametrize(("clear", "salt", "expected"), MD5_CRYPT_VECTORS)
def test_type5_md5_crypt_published_vectors(clear: str, salt: str, expected: str) -> None:
    assert type5_hash(clear, salt) == expected
    assert check(Secret(clear), cred("5", expected)).verdict == "match"
    assert check(Secret(clear + "x"), cred("5", expected)).verdict == "mismatch"
    assert verify_hash(clear, expected)


def test_type8_and_type9_vectors() -> None:
    for hasher, type_, (clear, salt, expected) in ((type8_hash, "8", TYPE8), (type9_hash, "9", TYPE9)):
        assert hasher(clear, salt) == expected
        assert check(Secret(clear), cred(type_, expected)) == HashCheck(
            "match", f"type {type_} ({'PBKDF2-SHA256' if type_ == '8' else 'scrypt'}) hash matches")
        assert check(Secret(clear.upper() + "!"), cred(type_, expected)).verdict == "mismatch"


@pytest.mark.parametrize("clear", ["123456", "", "p\u00e4ss w\u00f6rd ?!", "x" * 127, "lone \udc80"])
def test_type9_scrypt_backends_agree(clear: str) -> None:
    # type9_hash runs on `cryptography`'s Scrypt: it must give hashlib's bytes for any secret keyturn
    # can hold (lone surrogates pass through as in every other hash).
    password, salt = clear.encode("utf-8", "surrogatepass"), b"cvWdfQlRRDKq/U"
    assert scrypt(password, salt) == scrypt_hashlib(password, salt)
    assert type9_hash("123456", TYPE9[1]) == TYPE9[2]


def test_type7_vector_and_round_trip() -> None:
    assert type7_decode(TYPE7_CISCO) == "cisco"
    assert type7_encode("cisco", offset=8) == TYPE7_CISCO
    assert check(Secret("cisco"), cred("7", TYPE7_CISCO, "password")).verdict == "match"
    assert check(Secret("Cisco"), cred("7", TYPE7_CISCO, "password")).verdict == "mismatch"
    for offset in (0, 2, 9, 15):
        assert type7_decode(type7_encode("S0me pass!~", offset)) == "S0me pass!~"


def test_type0_compare() -> None:
    assert check(Secret("Old-Pass#1"), cred("0", "Old-Pass#1", "password")).verdict == "match"
    assert check(Secret("Old-Pass#2"), cred("0", "Old-Pass#1", "password")).verdict == "mismatch"
    assert check(Secret("pässwörd"), cred("0", "pässwörd", "password")).verdict == "match"


def test_fresh_hashes_round_trip_with_cisco_salts() -> None:
    for type_, hasher, salt_len in (("5", type5_hash, 4), ("8", type8_hash, 14), ("9", type9_hash, 14)):
        stored = hasher("N3w secret!")
        assert len(stored.split("$")[2]) == salt_len
        assert check(Secret("N3w secret!"), cred(type_, stored)).verdict == "match"
        assert hasher("N3w secret!") != stored  # fresh salt each time


# ---- unknown, never mismatch --------------------------------------------------------------------

@pytest.mark.parametrize(("type_", "value", "reason"), [
    ("6", "V[aP_dBKQTCgd\\KYTJPSBQR",
     "type 6 (AES, device master key) cannot be checked off the device"),
    ("4", "tnhtc92DXBhelxjYk8LWJrPV36S2i4ntXrpb4RFmfqY",
     "type 4 (deprecated unsalted SHA-256) is not supported"),
    ("11", "$11$abc", "type '11' is not a format keyturn can check"),
    ("x", "whatever", "type 'x' is not a format keyturn can check"),
    ("9", TYPE9[2][:-5], "truncated type-9 hash (38 characters, expected 43)"),
    ("8", TYPE8[2] + "AB", "overlong type-8 hash (45 characters, expected 43)"),
    ("5", "$1$5pZSV9va$azfrPr6af3Fc7dLbl", "truncated type-5 hash (17 characters, expected 22)"),
    ("5", "$1$5pZSV9va", "malformed type-5 hash (expected $1$SALT$HASH, ./0-9A-Za-z)"),
    ("9", "$9$cvWdfQlRRDKq/U$VFTPha5VHTCbSgSUAo.nPoh50ZiXOw1zmljEjXkaq1!", "malformed type-9 hash "
     "(expected $9$SALT$HASH, ./0-9A-Za-z)"),
    ("9", TYPE8[2], "type 9 value does not start with $9$"),
    ("9", "", "empty type-9 value"),
    ("0", "  ", "empty type-0 value"),
    ("7", "0822455D0A1", TYPE7_BAD),
    ("7", "08ZZ455D0A16", TYPE7_BAD),
    ("7", "x822455D0A16", TYPE7_BAD),
])
def test_malformed_values_are_unknown_with_a_reason(type_: str, value: str, reason: str) -> None:
    assert check(Secret(TYPE9[0]), cred(type_, value)) == HashCheck("unknown", reason)


def test_repr_shows_no_value() -> None:
    stored = cred("0", "Pl41n-T3xt")
    assert "Pl41n-T3xt" not in repr(stored) and "Pl41n-T3xt" not in str(stored)
    assert "Pl41n-T3xt" not in repr(parse_cli_username("username a password 0 Pl41n-T3xt"))


# ---- parse_cli_username ---------------------------------------------------------------------------

@pytest.mark.parametrize(("line", "expected"), [
    (f"username admin privilege 15 secret 9 {TYPE9[2]}", ("secret", "9", TYPE9[2])),
    (f"username viewer view RO-VIEW secret 8 {TYPE8[2]}", ("secret", "8", TYPE8[2])),
    (f"username ops privilege 15 algorithm-type md5 secret 5 {MD5_CRYPT_VECTORS[0][2]}",
     ("secret", "5", MD5_CRYPT_VECTORS[0][2])),
    (f"username netops password 7 {TYPE7_CISCO}", ("password", "7", TYPE7_CISCO)),
    ("username netops privilege 15 password 0 Old-Pass#1", ("password", "0", "Old-Pass#1")),
    ("username netops password Old-Pass#1", ("password", "0", "Old-Pass#1")),
    ("username n password 0 with  two spaces ", ("password", "0", "with  two spaces ")),
    ("username n password 6 V[aP_dBKQTCgd\\KY\r\n", ("password", "6", "V[aP_dBKQTCgd\\KY")),
    ("username a.b-c@d_e privilege 1 common-criteria-policy P secret 9 $9$x", ("secret", "9", "$9$x")),
    ("  username x secret 9", ("secret", "9", "")),  # cut after the type: kept, checks "unknown"
])
def test_parse_cli_username(line: str, expected: tuple[str, str, str]) -> None:
    got = parse_cli_username(line)
    assert got is not None
    assert (got.kind, got.type, got.value.reveal()) == expected


@pytest.mark.parametrize("line", [
    "username x nopassword",
    "username x privilege 15 autocommand show password 0 notme",
    "username x privilege 15",
    "username x password",
    "username",
    "",
    "hostname username",
    "enable secret 9 $9$abc",
])
def test_parse_cli_username_without_credential(line: str) -> None:
    assert parse_cli_username(line) is None


# ---- parse_restconf_user --------------------------------------------------------------------------

@pytest.mark.parametrize(("entry", "expected"), [
    ({"name": "u", "privilege": 15, "secret": {"encryption": "9", "secret": TYPE9[2]}},
     ("secret", "9", TYPE9[2])),
    ({"name": "u", "password": {"encryption": "7", "password": TYPE7_CISCO}}, ("password", "7", TYPE7_CISCO)),
    ({"name": "u", "password": {"password": "clear"}}, ("password", "0", "clear")),
    ({"name": "u", "secret": {"encryption": 5, "secret": "$1$ab$c"}}, ("secret", "5", "$1$ab$c")),
    ({"name": "b", "Cisco-IOS-XE-aaa:common-criteria-policy": {
        "common-criteria-policy": "P", "password": {"encryption": "0", "password": "S0me-L0ng-Pw"}}},
     ("password", "0", "S0me-L0ng-Pw")),
])
def test_parse_restconf_user(entry: dict[str, Any], expected: tuple[str, str, str]) -> None:
    got = parse_restconf_user(entry)
    assert got is not None
    assert (got.kind, got.type, got.value.reveal()) == expected


@pytest.mark.parametrize("entry", [
    {"name": "u", "privilege": 15},
    {"name": "u", "secret": "flat"},
    {"name": "u", "secret": {"encryption": "9"}},
    {"name": "u", "secret": {"encryption": ["9"], "secret": "$9$x"}},
    {"name": "u", "password": {"password": 1234}},
])
def test_parse_restconf_user_without_credential(entry: dict[str, Any]) -> None:
    assert parse_restconf_user(entry) is None


def test_parse_restconf_user_reads_the_simulator_rendering() -> None:
    from keyturn.sim.iosxe_device import IosXeDevice
    from keyturn.sim.restconf_codec import user_json

    device = IosXeDevice("r1")
    device.set_user("s", kind="secret", clear="Sekr1t!", encryption="8")
    device.set_user("p", kind="password", clear="Pa55!", encryption="7")
    for name, clear in (("s", "Sekr1t!"), ("p", "Pa55!")):
        user = device.user(name)
        assert user is not None
        stored = parse_restconf_user(user_json(user))
        assert stored is not None
        assert check(Secret(clear), stored).verdict == "match"


# ---- fuzz -----------------------------------------------------------------------------------------

_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8,
)
_keys = st.sampled_from(["name", "secret", "password", "encryption", "privilege",
                         "Cisco-IOS-XE-aaa:common-criteria-policy"])


@_FUZZ
@given(st.text(max_size=80) | st.builds(lambda t: "username " + t, st.text(max_size=80)))
def test_fuzz_cli_parser_never_raises(line: str) -> None:
    got = parse_cli_username(line)
    if got is not None:
        assert check(Secret("candidate"), got).verdict in ("match", "mismatch", "unknown")


@_FUZZ
@given(st.dictionaries(_keys, _json | st.dictionaries(_keys, _json, max_size=3), max_size=4))
def test_fuzz_restconf_parser_never_raises(entry: dict[str, Any]) -> None:
    parse_restconf_user(entry)


@_FUZZ
@given(st.sampled_from(["0", "5", "6", "7", "8", "9", "", "10"]), st.text(max_size=70), st.text(max_size=30))
def test_fuzz_check_never_raises(type_: str, value: str, candidate: str) -> None:
    assert check(Secret(candidate), cred(type_, value)).verdict in ("match", "mismatch", "unknown")


_KNOWN = [("5", MD5_CRYPT_VECTORS[0]), ("8", TYPE8), ("9", TYPE9),
          ("7", ("cisco", "", TYPE7_CISCO)), ("0", ("Old-Pass#1", "", "Old-Pass#1"))]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(_KNOWN), st.text(max_size=24))
def test_fuzz_random_candidate_never_matches(known: tuple[str, tuple[str, str, str]], candidate: str) -> None:
    type_, (clear, _salt, stored) = known
    assume(candidate != clear)
    assert check(Secret(candidate), cred(type_, stored)).verdict == "mismatch"
