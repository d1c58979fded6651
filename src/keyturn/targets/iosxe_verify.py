"""How the IOS XE targets prove a secret: by login, by the device's stored hash, or both (DESIGN §3).

Why not always log in: with ``aaa authentication login default group tacacs+ local`` a *local* user is
consulted only when every TACACS+ server is unreachable, not when TACACS+ rejects the name, so the
local break-glass account keyturn rotates cannot log in while TACACS+ is up — a login probe would
reject every good rotation. And every failed login counts toward ``aaa local authentication attempts
max-fail`` and ``login block-for`` (reference iosxe-field-behaviour.md §1-2).

The stored-hash proof reads the user's stored credential through the admin session (RESTCONF GET of
``username=NAME``, SSH ``show running-config | include ^username NAME``) and checks the candidate
locally (`keyturn.cisco_hash`: types 0/5/7/8/9). It proves the device *stores* exactly this secret,
costs no login, and so can never lock anyone out.

The profile option ``verify`` picks the proof:

    login   log in as the user (the only proof for self-service profiles, which have no admin)
    hash    stored hash through the admin credential
    both    both must pass (hash first: a mismatch costs no login)
    auto    (default) read the device's AAA configuration once per rotation and pick ``hash`` when a
            remote group (TACACS+/RADIUS/LDAP) comes before ``local``, ``login`` when the local database
            decides (AAA off, ``local`` first, ``ip http authentication local`` for RESTCONF), ``both``
            when the configuration cannot be classified (the check says why)

Lockout safety: with an admin credential the stored hash is read first whatever the proof, so a secret
the device does not store is refused without a login (a `login` proof then tries only a secret the device
holds). A login that may fail is only tried while the account's `ProbeLedger` allows one more
failed login (default 1 per rotation, the profile option ``failed_login_budget`` changes it) and stays
below the device's ``max-fail``; past that, an admin credential proves by stored hash instead, and
without one the verdict is `inconclusive` with the reason. A refused connection on a device configured
with ``login block-for`` is reported as probable quiet mode (`inconclusive`: the device refuses every
login for the window), never as a rejection.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from keyturn import cisco_hash
from keyturn.cisco_hash import StoredCredential
from keyturn.errors import AccountNotFound, KeyturnError, ProfileError, TargetError
from keyturn.secret import Secret
from keyturn.targets.base import Account, Check, Proof, Verdict

VERIFY_MODES = ("auto", "login", "hash", "both")
Path = Literal["ssh", "http"]
# First methods of a login list that send a login elsewhere before the local database (Cisco-IOS-XE-aaa
# `auth-login-choice`): a reject there is final, local is only the fallback for an unreachable server.
REMOTE_METHODS = ("group", "cache")
LOCAL_METHODS = ("local", "local-case")
# Hash types whose check is slow by design (md5-crypt 1,000 rounds, PBKDF2 20,000, scrypt 2^14): run off
# the event loop so a batch keeps its other devices moving.
SLOW_TYPES = frozenset({"5", "8", "9"})
LEDGER_AAA = "aaa"
LEDGER_MEMO = "stored_hash_memo"   # ProbeLedger.device key of the rotation's `StoredHashMemo`

# The running-config lines `aaa_from_cli` reads (show running-config | include ^aaa |^login |^ip http auth).
AAA_SHOW = "show running-config | include ^aaa |^login |^ip http auth"
_LOGIN_LIST = re.compile(r"^aaa authentication login (\S+)\s+(.*)$")
_MAX_FAIL = re.compile(r"^aaa local authentication attempts max-fail (\d+)")
_BLOCK_FOR = re.compile(r"^login block-for (\d+) attempts (\d+) within (\d+)")
_HTTP_AUTH = re.compile(r"^ip http authentication (aaa|local|enable)\b")


@dataclass(frozen=True, slots=True)
class AaaConfig:
    """The part of a device's AAA configuration that decides who checks a login."""

    new_model: bool = False
    login_methods: tuple[str, ...] = ()      # `aaa authentication login default` methods, in order
    http_auth: str | None = None             # `ip http authentication` (None: not shown / not readable)
    max_fail: int | None = None              # `aaa local authentication attempts max-fail`
    block_for: tuple[int, int, int] | None = None   # `login block-for S attempts N within T`

    def local_decides(self, path: Path) -> bool | None:
        """True: the local database checks logins on `path`; False: a remote group comes first;
        None: the method list cannot be classified (none/line/enable/krb5 first)."""
        if path == "http" and self.http_auth == "local":
            return True
        if not self.new_model or not self.login_methods:
            return True  # AAA off, or new-model without a default list: the local database
        first = self.login_methods[0].split()[0]
        if first in REMOTE_METHODS:
            return False
        if first in LOCAL_METHODS:
            return True
        return None

    def describe(self) -> str:
        if not self.new_model:
            return "AAA off (no aaa new-model)"
        methods = " ".join(self.login_methods) or "(no default list: local)"
        return f"aaa authentication login default {methods}"


def aaa_from_cli(output: str) -> AaaConfig:
    """Parse ``show running-config | include ^aaa |^login |^ip http auth`` output."""
    new_model = False
    methods: tuple[str, ...] = ()
    http_auth = max_fail = block = None
    for raw in output.replace("\r", "").split("\n"):
        line = raw.strip()
        if line == "aaa new-model":
            new_model = True
        elif (m := _LOGIN_LIST.match(line)) and m.group(1) == "default":
            methods = _cli_methods(m.group(2))
        elif m := _MAX_FAIL.match(line):
            max_fail = int(m.group(1))
        elif m := _BLOCK_FOR.match(line):
            block = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
        elif m := _HTTP_AUTH.match(line):
            http_auth = m.group(1)
    return AaaConfig(new_model=new_model, login_methods=methods, http_auth=http_auth, max_fail=max_fail,
                     block_for=block)


def _cli_methods(text: str) -> tuple[str, ...]:
    """``group tacacs+ local`` → ("group tacacs+", "local")."""
    words, out, i = text.split(), [], 0
    while i < len(words):
        if words[i] in REMOTE_METHODS and i + 1 < len(words):
            out.append(f"{words[i]} {words[i + 1]}")
            i += 2
        else:
            out.append(words[i])
            i += 1
    return tuple(out)


def _strip(doc: Any) -> Any:
    """Drop RFC 7951 module prefixes from member names (``Cisco-IOS-XE-aaa:new-model`` → ``new-model``)."""
    if isinstance(doc, Mapping):
        return {str(k).split(":", 1)[-1]: _strip(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_strip(v) for v in doc]
    return doc


def aaa_from_restconf(aaa_doc: Any, login_doc: Any = None) -> AaaConfig:
    """Parse ``GET native/aaa`` and ``GET native/login`` (RFC 7951, Cisco-IOS-XE-aaa / -native).

    Raises ValueError when the documents do not have the model's shape."""
    aaa = _strip(aaa_doc or {}).get("aaa", {}) if aaa_doc else {}
    login = _strip(login_doc or {}).get("login", {}) if login_doc else {}
    if not isinstance(aaa, Mapping) or not isinstance(login, Mapping):
        raise ValueError("unexpected AAA document shape")
    methods: tuple[str, ...] = ()
    authn = aaa.get("authentication") or {}
    for entry in authn.get("login") or [] if isinstance(authn, Mapping) else []:
        if isinstance(entry, Mapping) and entry.get("name") == "default":
            choices = [entry.get(f"a{i}") for i in range(1, 5)]
            methods = tuple(_restconf_method(c) for c in choices if isinstance(c, Mapping))
    max_fail = (((aaa.get("local") or {}).get("authentication") or {}).get("attempts") or {}).get("max-fail")
    block = login.get("block-config") or {}
    block_for = None
    if isinstance(block, Mapping) and block.get("block-for") is not None:
        block_for = (int(block["block-for"]), int(block.get("attempts") or 0), int(block.get("within") or 0))
    return AaaConfig(new_model="new-model" in aaa, login_methods=methods,
                     max_fail=int(max_fail) if max_fail is not None else None, block_for=block_for)


def _restconf_method(choice: Mapping[str, Any]) -> str:
    """``{"group": "tacacs+"}`` → "group tacacs+"; ``{"local": [null]}`` → "local"."""
    for key, value in choice.items():
        return f"{key} {value}" if key in REMOTE_METHODS else str(key)
    return "?"


@dataclass(frozen=True, slots=True)
class DeviceView:
    """What one admin read of the device returned (either part may be absent when not asked for).

    `lockout` is the device's own row for the user from ``show aaa local user lockout`` when it is
    locked out (max-fail), None when it is not or the target cannot tell (RESTCONF)."""

    aaa: AaaConfig | None = None
    stored: StoredCredential | None = None
    lockout: str | None = None


LOCKOUT_SHOW = "show aaa local user lockout"


def lockout_row(output: str, username: str) -> str | None:
    """The user's row of ``show aaa local user lockout`` (Cisco "Login Password Retry Lockout":
    a ``Local-user  Lock time`` header, one row per locked user), or None."""
    for raw in output.replace("\r", "").split("\n"):
        words = raw.split()
        if words and words[0] == username:
            return " ".join(words)
    return None


@dataclass
class StoredHashMemo:
    """What keyturn proved before about a secret and the device's stored hash, so a second check of the
    same secret against the same stored text is a compare instead of a slow hash (issue 14: one scrypt
    per rotation instead of two). Set by the engine in `ProbeLedger.device[LEDGER_MEMO]`.

    `digest(secret, stored_text)` is a keyed HMAC (the vault's `hmac_value`): it binds the secret and
    the exact text, so a match is the same proof as before — the device still stores the value keyturn
    hashed and found equal to this secret — and a changed stored hash (or another secret) is checked in
    full. It never turns a mismatch into a match, so issue 11's lockout safety is untouched: a secret
    the device does not store is still never tried. `known`: digests remembered for the secrets of
    this rotation (the current version's); `proved`: digest → the last match this rotation proved."""

    digest: Callable[[Secret, str], str]
    known: set[str] = field(default_factory=set)
    proved: list[tuple[Secret, str]] = field(default_factory=list)   # (secret object, its digest)
    skipped: int = 0                                                 # slow hashes a known digest spared

    def proved_for(self, secret: Secret) -> str | None:
        """The digest of the last match proved for this very `secret` object, if any."""
        return next((d for s, d in reversed(self.proved) if s is secret), None)


def memo_of(account: Account) -> StoredHashMemo | None:
    memo = account.probes.device.get(LEDGER_MEMO)
    return memo if isinstance(memo, StoredHashMemo) else None


def _check_stored(account: Account, secret: Secret, stored: StoredCredential) -> cisco_hash.HashCheck:
    """`cisco_hash.check`, through the rotation's memo when the stored type is a slow one."""
    memo = memo_of(account) if stored.type in SLOW_TYPES else None
    if memo is None:
        return cisco_hash.check(secret, stored)
    digest = memo.digest(secret, stored.value.reveal())
    if digest in memo.known:
        memo.skipped += 1
        memo.proved.append((secret, digest))
        return cisco_hash.HashCheck("match", "the device still stores the hash keyturn proved for it")
    result = cisco_hash.check(secret, stored)
    if result.verdict == "match":
        memo.proved.append((secret, digest))
    return result


class Prover(Protocol):
    """What a target supplies to `prove`: its login probe and its admin read of the device."""

    @property
    def path(self) -> Path:
        """The login path the device's AAA applies to this target (vty or HTTP server)."""
        ...

    async def login(self, account: Account, secret: Secret) -> tuple[Verdict, str]:
        """Log in as the user: the verdict and, for inconclusive, why. Never raises."""
        ...

    async def read_device(self, account: Account, *, aaa: bool, user: bool) -> DeviceView:
        """Through the admin credential: the AAA configuration and/or the user's stored credential.
        Raises `AccountNotFound` for a missing user, other `TargetError`s for trouble."""
        ...


def validate_options(options: Mapping[str, str]) -> None:
    """Refuse bad ``verify`` / ``failed_login_budget`` profile options when the profile is set."""
    mode = options.get("verify", "auto")
    if mode not in VERIFY_MODES:
        raise ProfileError(f"profile option verify must be one of {', '.join(VERIFY_MODES)}, not {mode!r}")
    budget = options.get("failed_login_budget")
    if budget is not None and (not budget.isdigit() or int(budget) > 100):
        raise ProfileError(f"profile option failed_login_budget must be a whole number 0-100, not {budget!r}")


def check_mode(account: Account) -> str:
    mode = account.options.get("verify", "auto")
    if mode not in VERIFY_MODES:
        raise ValueError(f"profile option verify must be one of {', '.join(VERIFY_MODES)}, not {mode!r}")
    return mode


def choose(aaa: AaaConfig | None, path: Path) -> tuple[str, str]:
    """`auto`: the proof for a device with this AAA configuration, and why."""
    if aaa is None:
        return "both", "the AAA configuration could not be read, so both proofs are required"
    local = aaa.local_decides(path)
    if local is True:
        return "login", f"the local database checks logins ({aaa.describe()})"
    if local is False:
        return "hash", f"a remote group comes before local ({aaa.describe()}): a local user cannot log in"
    return "both", f"AAA login list not classified ({aaa.describe()}), so both proofs are required"


async def prove(account: Account, secret: Secret, prover: Prover) -> Check:
    """Verify `secret` for `account` the way the profile's ``verify`` option says (see module doc)."""
    try:
        mode = check_mode(account)
    except ValueError as exc:
        return Check(Verdict.INCONCLUSIVE, Proof.NONE, str(exc))
    if account.admin is None:
        note = ("self-service profile: no admin credential to read the stored hash, verified by login"
                if mode in ("hash", "both") else "")
        return await _by_login(account, secret, prover, None, note)
    ledger = account.probes
    cached: AaaConfig | None = ledger.device.get(LEDGER_AAA)
    view: DeviceView | None = None
    why = ""
    if cached is None and mode != "hash":  # `hash` needs no AAA facts: no login is ever tried
        try:
            view = await prover.read_device(account, aaa=True, user=mode != "login")
        except AccountNotFound as exc:
            return Check(Verdict.REJECTED, Proof.STORED_HASH, str(exc))
        except (KeyturnError, ValueError) as exc:
            if mode == "auto":
                return Check(Verdict.INCONCLUSIVE, Proof.NONE, f"could not read the device's AAA "
                             f"configuration: {_describe(exc)}")
        else:
            cached = view.aaa
            if cached is not None:
                ledger.device[LEDGER_AAA] = cached
    if mode == "auto":
        mode, why = choose(cached, prover.path)
    hashed = await _by_hash(account, secret, prover, view)
    if mode == "login":
        # The proof is a login; the stored hash, read first through the admin credential, only spares a
        # login that would fail (and count toward max-fail / block-for): a secret the device does not
        # store is refused without trying it.
        if hashed.verdict is Verdict.REJECTED or hashed.warning:   # not stored, or the user is locked out
            return _with(hashed, _join(why, "no login tried"))
        logged = await _by_login(account, secret, prover, cached, why)
        if hashed.verdict is Verdict.OK and logged.verdict is Verdict.OK and logged.proof is Proof.LOGIN:
            return Check(Verdict.OK, Proof.BOTH, logged.detail, logged.warning)
        return logged
    if mode == "hash" or hashed.verdict is Verdict.REJECTED:
        return _with(hashed, why)
    logged = await _by_login(account, secret, prover, cached, why)
    warning = _join(hashed.warning, logged.warning) if hashed.warning != logged.warning else logged.warning
    if logged.verdict is not Verdict.OK or hashed.verdict is not Verdict.OK:
        worst = logged if logged.verdict is Verdict.REJECTED or hashed.verdict is Verdict.OK else hashed
        return Check(worst.verdict, Proof.BOTH, _join(worst.detail, why), warning)
    return Check(Verdict.OK, Proof.BOTH, why, warning)


async def _by_login(account: Account, secret: Secret, prover: Prover, aaa: AaaConfig | None,
                    why: str) -> Check:
    ledger = account.probes
    limit = _budget(account)
    ledger.failed_login_limit = limit
    max_fail = aaa.max_fail if aaa is not None else None
    if not ledger.may_fail_login(max_fail):
        spent = (f"keyturn already caused {ledger.failed_logins} failed login(s) on this account in this "
                 f"rotation (budget {limit}" + (f", device max-fail {max_fail}" if max_fail else "") + ")")
        if account.admin is not None:
            hashed = await _by_hash(account, secret, prover, None)
            return _with(hashed, f"not logging in: {spent}")
        return Check(Verdict.INCONCLUSIVE, Proof.NONE, f"not logging in: {spent}; retry later")
    verdict, detail = await prover.login(account, secret)
    warning = ""
    if verdict is Verdict.REJECTED:
        ledger.failed_logins += 1
        if account.admin is not None:
            warning = await _lockout_note(account, prover)
    if verdict is Verdict.INCONCLUSIVE and aaa is not None and aaa.block_for is not None:
        seconds, attempts, within = aaa.block_for
        detail = _join(detail, f"the device has `login block-for {seconds} attempts {attempts} within "
                               f"{within}`: it is probably in quiet mode (every login refused for up to "
                               f"{seconds} s); retry after the window")
    return Check(verdict, Proof.LOGIN, _join(detail, why), warning=warning)


def _budget(account: Account) -> int:
    text = account.options.get("failed_login_budget")
    if text is None:
        return account.probes.failed_login_limit
    try:
        return max(0, int(text))
    except ValueError:
        return account.probes.failed_login_limit


async def _by_hash(account: Account, secret: Secret, prover: Prover, view: DeviceView | None) -> Check:
    stored = view.stored if view is not None else None
    if stored is None:
        try:
            view = await prover.read_device(account, aaa=False, user=True)
            stored = view.stored
        except AccountNotFound as exc:
            return Check(Verdict.REJECTED, Proof.STORED_HASH, str(exc))
        except KeyturnError as exc:
            return Check(Verdict.INCONCLUSIVE, Proof.STORED_HASH, f"could not read the stored credential: "
                                                                  f"{_describe(exc)}")
    if stored is None:
        return Check(Verdict.INCONCLUSIVE, Proof.STORED_HASH,
                     f"the device shows no stored credential for {account.username!r}")
    if stored.type in SLOW_TYPES:
        result = await asyncio.to_thread(_check_stored, account, secret, stored)
    else:
        result = cisco_hash.check(secret, stored)
    locked = _locked(account, view)
    if result.verdict == "match":
        return Check(Verdict.OK, Proof.STORED_HASH, f"type {stored.type} {stored.kind}", warning=locked)
    if result.verdict == "mismatch":
        return Check(Verdict.REJECTED, Proof.STORED_HASH, f"the stored type {stored.type} {stored.kind} "
                                                          "does not match", warning=locked)
    return Check(Verdict.INCONCLUSIVE, Proof.STORED_HASH, result.reason, warning=locked)


def _locked(account: Account, view: DeviceView | None) -> str:
    if view is None or view.lockout is None:
        return ""
    return (f"the device reports {account.username!r} locked out (`{LOCKOUT_SHOW}`: {view.lockout}); "
            f"`clear aaa local user lockout username {account.username}` unlocks it")


async def _lockout_note(account: Account, prover: Prover) -> str:
    """After a refused login: is the user locked out? In the device's own words, if it can say."""
    try:
        return _locked(account, await prover.read_device(account, aaa=False, user=True))
    except KeyturnError:
        return ""


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, KeyturnError | TargetError) else f"{type(exc).__name__}: {exc}"


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _with(check: Check, why: str) -> Check:
    return Check(check.verdict, check.proof, _join(check.detail, why), check.warning)


class Proving:
    """Mixin for an IOS XE target that is its own `Prover`: `verify`/`check` go through `prove`, and the
    profile options are validated when a profile is set (`engine.profile.set_profile`)."""

    async def verify(self, account: Account, secret: Secret) -> Verdict:
        """The verdict of `check`."""
        return (await self.check(account, secret)).verdict

    @staticmethod
    def validate_options(options: Mapping[str, str]) -> None:
        """Profile options checked when the profile is set."""
        validate_options(options)

    async def check(self, account: Account, secret: Secret) -> Check:
        """Prove `secret` by login and/or stored hash (profile option ``verify``, default ``auto``)."""
        prover: Prover = self  # type: ignore[assignment]  # the concrete target supplies login/read_device
        return await prove(account, secret, prover)
