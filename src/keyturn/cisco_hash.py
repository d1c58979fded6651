"""Cisco's stored-credential formats: parse what a device shows, check a candidate against it.

A device never gives a password back; it shows what it stores (`show running-config`, or a RESTCONF
GET of `/native/username`). Checking a candidate against that stored form locally proves the device
*stores* the candidate without logging in, so it costs no failed login. Formats (reference
"cisco-iosxe" §3.3, field behaviour §3):

| type | stored as                      | checked by                                           |
|------|--------------------------------|------------------------------------------------------|
| 0    | clear text                     | constant-time compare                                |
| 7    | `OFFSET` + hex (Vigenere XOR)  | decode, compare                                      |
| 5    | `$1$SALT$HASH` (md5-crypt)     | md5-crypt with SALT (≤ 8 characters; Cisco uses 4)   |
| 8    | `$8$SALT$HASH`                 | PBKDF2-HMAC-SHA256, 20,000 iterations, dklen 32      |
| 9    | `$9$SALT$HASH`                 | scrypt N=16384 r=1 p=1, dklen 32                     |
| 6    | AES with the device master key | cannot be checked off the device → "unknown"         |

`check()` never raises and never says "mismatch" unless it computed the hash and it differed: a value it
cannot read (type 6, an unknown type, a truncated or malformed hash) is "unknown" with the reason, so a
caller never rolls back a rotation because of a format it does not understand.

    >>> cred = parse_cli_username("username ops privilege 15 secret 5 $1$5pZSV9va$azfrPr6af3Fc7dLblQXVa0")
    >>> check(Secret("password"), cred).verdict
    'match'
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from keyturn.secret import Secret

try:  # `cryptography` is a dependency; its wheel's OpenSSL runs scrypt ~10 % faster than hashlib's
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt as _Scrypt
except ImportError:  # pragma: no cover - a build without it falls back to hashlib
    _Scrypt = None  # type: ignore[assignment,misc]

__all__ = [
    "HashCheck",
    "StoredCredential",
    "check",
    "parse_cli_username",
    "parse_restconf_user",
    "scrypt",
    "scrypt_hashlib",
    "type5_hash",
    "type7_decode",
    "type7_encode",
    "type8_hash",
    "type9_hash",
    "verify_hash",
]

CredentialKind = Literal["password", "secret"]
Verdict = Literal["match", "mismatch", "unknown"]

# crypt(3)'s alphabet ("./0-9A-Za-z"): Cisco uses it for type 5/8/9 salts and hashes.
CRYPT_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Type 8/9 hashes are standard base64 of the digest with the alphabet swapped (and no padding);
# md5-crypt has its own little-endian 6-bit packing (`_md5_crypt_b64`).
_STD_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_TO_CISCO = str.maketrans(_STD_B64, CRYPT_ALPHABET)
# The well-known type-7 key (reference §3.3; netutils `encrypt_cisco_type7`).
TYPE7_KEY = "dsfd;kfoA,.iyewrkldJKDHSUBsgvca69834ncxv9873254k;fg87"

SALT_LENGTH = 14        # type 8/9 salts as IOS XE draws them
TYPE5_SALT_LENGTH = 4   # IOS draws 4-character md5-crypt salts; md5-crypt itself allows up to 8
PBKDF2_ITERATIONS = 20_000
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 1, 1

_C = "[./0-9A-Za-z]"
# type → (regex of a well-formed value, hash length after the salt, algorithm name)
_HASH_FORMS: dict[str, tuple[re.Pattern[str], int, str]] = {
    "5": (re.compile(rf"\$1\$({_C}{{0,8}})\$({_C}*)"), 22, "md5-crypt"),
    "8": (re.compile(rf"\$8\$({_C}{{1,64}})\$({_C}*)"), 43, "PBKDF2-SHA256"),
    "9": (re.compile(rf"\$9\$({_C}{{1,64}})\$({_C}*)"), 43, "scrypt"),
}
_TYPE7_FORM = re.compile(r"([0-9]{2})((?:[0-9A-Fa-f]{2})*)")

_NOT_CHECKABLE = {
    "6": "type 6 (AES, device master key) cannot be checked off the device",
    "4": "type 4 (deprecated unsalted SHA-256) is not supported",
}

# `username NAME ...` keywords before the credential: how many argument tokens each takes. A keyword
# in _REST_OF_LINE swallows the rest of the line (so "autocommand show password" is no credential).
_ONE_ARGUMENT = frozenset({
    "privilege", "view", "algorithm-type", "common-criteria-policy", "access-class",
    "callback-dialstring", "callback-line", "callback-rotary", "user-maxlinks", "dnis", "mac",
})
_REST_OF_LINE = frozenset({"autocommand", "description"})
_NO_CREDENTIAL = frozenset({"nopassword"})
# A user holds one or the other (IOS refuses both); secret first as the stronger form.
_KINDS: tuple[CredentialKind, ...] = ("secret", "password")


@dataclass(frozen=True, slots=True)
class StoredCredential:
    """A credential as the device stores it: `kind` is IOS's `password` or `secret` keyword."""

    kind: CredentialKind
    type: str
    value: Secret


@dataclass(frozen=True, slots=True)
class HashCheck:
    """The result of `check`; `reason` says how it was decided (or, for "unknown", why not)."""

    verdict: Verdict
    reason: str


# ---- hash functions ---------------------------------------------------------------------------

def new_salt(length: int = SALT_LENGTH) -> str:
    """A random salt in Cisco's alphabet (14 characters for type 8/9)."""
    return "".join(secrets.choice(CRYPT_ALPHABET) for _ in range(length))


def cisco_b64(raw: bytes) -> str:
    """Base64 as type 8/9 hashes write it: alphabet `./0-9A-Za-z`, no padding."""
    return base64.b64encode(raw).decode().rstrip("=").translate(_TO_CISCO)


def _encode(text: str) -> bytes:
    # A Secret may hold any str; lone surrogates must not make a check raise.
    return text.encode("utf-8", "surrogatepass")


def scrypt_hashlib(password: bytes, salt: bytes) -> bytes:
    """Type 9's scrypt (N=16384 r=1 p=1, 32 bytes) through hashlib (the interpreter's OpenSSL)."""
    return hashlib.scrypt(password, salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)


def scrypt(password: bytes, salt: bytes) -> bytes:
    """Type 9's scrypt, through `cryptography` when it offers it: the same bytes as `scrypt_hashlib`,
    ~10 % less CPU here (issue 14: one type-9 check per rotation in keyturn, one hash in the simulator),
    and it too releases the GIL, so hashes in worker threads still run in parallel."""
    if _Scrypt is None:  # pragma: no cover
        return scrypt_hashlib(password, salt)
    return _Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(password)


def type9_hash(clear: str, salt: str | None = None) -> str:
    """`$9$SALT$HASH`: scrypt N=16384 r=1 p=1 over the UTF-8 password and the salt's text."""
    salt = salt or new_salt()
    return f"$9${salt}${cisco_b64(scrypt(_encode(clear), salt.encode()))}"


def type8_hash(clear: str, salt: str | None = None) -> str:
    """`$8$SALT$HASH`: PBKDF2-HMAC-SHA256, 20,000 iterations, 32 bytes."""
    salt = salt or new_salt()
    raw = hashlib.pbkdf2_hmac("sha256", _encode(clear), salt.encode(), PBKDF2_ITERATIONS, 32)
    return f"$8${salt}${cisco_b64(raw)}"


def _md5_crypt_b64(final: bytes) -> str:
    # md5-crypt writes the digest as 24-bit groups in this byte order, each low 6 bits first.
    out = []
    for a, b, c in ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)):
        v = final[a] << 16 | final[b] << 8 | final[c]
        for _ in range(4):
            out.append(CRYPT_ALPHABET[v & 0x3F])
            v >>= 6
    v = final[11]
    for _ in range(2):
        out.append(CRYPT_ALPHABET[v & 0x3F])
        v >>= 6
    return "".join(out)


def type5_hash(clear: str, salt: str | None = None) -> str:
    """`$1$SALT$HASH`: md5-crypt (Poul-Henning Kamp's FreeBSD algorithm), salt cut to 8 characters.

    Implemented here with hashlib because the stdlib `crypt` module is deprecated (PEP 594) and
    removed in Python 3.13, and passlib is unmaintained; the algorithm is small and fixed, and the
    published FreeBSD/glibc vectors pin it in the tests.
    """
    salt = (new_salt(TYPE5_SALT_LENGTH) if salt is None else salt).split("$", 1)[0][:8]
    pw, s, magic = _encode(clear), salt.encode(), b"$1$"
    # usedforsecurity=False: this reproduces a legacy device format, it protects nothing of ours
    # (and keeps working where a FIPS build refuses MD5 for new security uses).
    alternate = hashlib.md5(pw + s + pw, usedforsecurity=False).digest()
    ctx = hashlib.md5(pw + magic + s, usedforsecurity=False)
    for i in range(len(pw), 0, -16):
        ctx.update(alternate[: min(16, i)])
    i = len(pw)
    while i:
        ctx.update(b"\0" if i & 1 else pw[:1])
        i >>= 1
    final = ctx.digest()
    # 1,000 rounds, "to make brute force more expensive" in 1994.
    for r in range(1000):
        step = hashlib.md5(pw if r & 1 else final, usedforsecurity=False)
        if r % 3:
            step.update(s)
        if r % 7:
            step.update(pw)
        step.update(final if r & 1 else pw)
        final = step.digest()
    return f"$1${salt}${_md5_crypt_b64(final)}"


def type7_encode(clear: str, offset: int = 2) -> str:
    """Type 7: a two-digit key offset, then each character XOR the key, as hex."""
    out = f"{offset:02d}"
    for i, ch in enumerate(clear):
        out += f"{ord(ch) ^ ord(TYPE7_KEY[(offset + i) % len(TYPE7_KEY)]):02X}"
    return out


def type7_decode(encoded: str) -> str:
    """The clear text of a type-7 string. Raises ValueError when it is not one."""
    m = _TYPE7_FORM.fullmatch(encoded.strip())
    if m is None:
        raise ValueError("not a type-7 string (two decimal digits, then pairs of hex digits)")
    offset, data = int(m.group(1)), bytes.fromhex(m.group(2))
    return "".join(chr(b ^ ord(TYPE7_KEY[(offset + i) % len(TYPE7_KEY)])) for i, b in enumerate(data))


def verify_hash(clear: str, stored: str) -> bool:
    """True when `clear` hashes to `stored` (a `$1$`, `$8$` or `$9$` hash); False otherwise."""
    kind = {"$1$": "5", "$8$": "8", "$9$": "9"}.get(stored[:3])
    if kind is None:
        return False
    return check(Secret(clear), StoredCredential("secret", kind, Secret(stored))).verdict == "match"


# ---- check ------------------------------------------------------------------------------------

def _compare(candidate: str, stored: str) -> bool:
    return hmac.compare_digest(_encode(candidate), _encode(stored))


def _check_hash(candidate: str, type_: str, value: str) -> HashCheck:
    pattern, length, algorithm = _HASH_FORMS[type_]
    prefix = f"${'1' if type_ == '5' else type_}$"
    if not value.startswith(prefix):
        return HashCheck("unknown", f"type {type_} value does not start with {prefix}")
    m = pattern.fullmatch(value)
    if m is None:
        return HashCheck("unknown", f"malformed type-{type_} hash (expected {prefix}SALT$HASH, ./0-9A-Za-z)")
    salt, digest = m.group(1), m.group(2)
    if len(digest) != length:
        what = "truncated" if len(digest) < length else "overlong"
        return HashCheck("unknown", f"{what} type-{type_} hash ({len(digest)} characters, expected {length})")
    if type_ == "5":
        computed = type5_hash(candidate, salt)
    elif type_ == "8":
        computed = type8_hash(candidate, salt)
    else:
        computed = type9_hash(candidate, salt)
    if _compare(computed, value):
        return HashCheck("match", f"type {type_} ({algorithm}) hash matches")
    return HashCheck("mismatch", f"type {type_} ({algorithm}) hash differs")


def check(candidate: Secret, stored: StoredCredential) -> HashCheck:
    """Whether `candidate` is what the device stores. Never raises.

    "match"/"mismatch" only when the stored value was read and the candidate compared (type 0),
    decoded (7) or hashed with the stored salt (5, 8, 9). Type 6, types keyturn does not know and
    malformed, truncated or empty values are "unknown" with the reason — never "mismatch".
    """
    type_, value, clear = stored.type.strip(), stored.value.reveal(), candidate.reveal()
    if type_ in _NOT_CHECKABLE:
        return HashCheck("unknown", _NOT_CHECKABLE[type_])
    if not value.strip():
        return HashCheck("unknown", f"empty type-{type_ or '?'} value")
    if type_ == "0":
        if _compare(clear, value):
            return HashCheck("match", "type 0 (clear text) matches")
        return HashCheck("mismatch", "type 0 (clear text) differs")
    if type_ == "7":
        try:
            plain = type7_decode(value)
        except ValueError as exc:
            return HashCheck("unknown", f"malformed type-7 value: {exc}")
        if _compare(clear, plain):
            return HashCheck("match", "type 7 (reversible) decodes to the candidate")
        return HashCheck("mismatch", "type 7 (reversible) decodes to something else")
    if type_ in _HASH_FORMS:
        return _check_hash(clear, type_, value.strip())
    shown = type_ if len(type_) <= 16 else type_[:16] + "…"
    return HashCheck("unknown", f"type {shown!r} is not a format keyturn can check")


# ---- parsers ----------------------------------------------------------------------------------

def _credential(kind: CredentialKind, type_: str, value: str) -> StoredCredential:
    return StoredCredential(kind=kind, type=type_, value=Secret(value))


def parse_cli_username(line: str) -> StoredCredential | None:
    """The credential on one `username ...` running-config line, or None when it carries none.

    Form: `username NAME [privilege N] [view V] [algorithm-type md5|sha256|scrypt] {secret|password}
    [TYPE] VALUE`. Without TYPE the value is type 0; the value is the rest of the line (a type-0
    password may contain spaces). `nopassword`, `autocommand ...` and lines that are not `username`
    lines give None. Never raises.
    """
    text = line.rstrip("\r\n").lstrip()
    head, _, rest = text.partition(" ")
    if head != "username":
        return None
    # Tokens after the name; `rest` keeps the original spacing for the value.
    rest = rest.lstrip(" ")
    _name, _, rest = rest.partition(" ")
    if not _name:
        return None
    while True:
        rest = rest.lstrip(" ")
        if not rest:
            return None
        word, _, after = rest.partition(" ")
        if word in _NO_CREDENTIAL or word in _REST_OF_LINE:
            return None
        if word in ("password", "secret"):
            kind: CredentialKind = "password" if word == "password" else "secret"
            after = after.lstrip(" ")
            first, _, value = after.partition(" ")
            if first.isdigit() and first.isascii():
                # The running config always shows the type; a line cut after it keeps the type and
                # an empty value, which `check` answers "unknown" rather than comparing "9" as clear.
                type_ = first
            else:
                type_, value = "0", after
            if type_ != "0":
                value = value.strip()
            elif not value:
                return None
            return _credential(kind, type_, value)
        rest = after
        if word in _ONE_ARGUMENT:
            rest = rest.lstrip(" ").partition(" ")[2]


def _container(entry: Mapping[str, Any], kind: CredentialKind) -> StoredCredential | None:
    box = entry.get(kind)
    if not isinstance(box, Mapping):
        return None
    value = box.get(kind)
    if not isinstance(value, str) or not value:
        return None
    encryption = box.get("encryption")
    if encryption is None:
        type_ = "0"
    elif isinstance(encryption, (str, int)) and not isinstance(encryption, bool):
        type_ = str(encryption)
    else:
        return None
    return _credential(kind, type_, value)


def parse_restconf_user(entry: Mapping[str, Any]) -> StoredCredential | None:
    """The credential of one `Cisco-IOS-XE-native:username` list entry, or None when it has none.

    Reads `secret: {encryption, secret}` or `password: {encryption, password}` (encryption absent =
    type 0), and the same containers under `Cisco-IOS-XE-aaa:common-criteria-policy` (reference §1.6:
    a user bound to a password policy keeps its password there). Never raises.
    """
    if not isinstance(entry, Mapping):
        return None
    for kind in _KINDS:
        found = _container(entry, kind)
        if found is not None:
            return found
    policy = entry.get("Cisco-IOS-XE-aaa:common-criteria-policy")
    if isinstance(policy, Mapping):
        for kind in _KINDS:
            found = _container(policy, kind)
            if found is not None:
                return found
    return None
