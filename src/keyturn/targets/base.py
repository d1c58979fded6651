"""The target contract: how keyturn changes and checks one account on one kind of system.

A target is a small class per platform (one module each under `keyturn.targets`):

    class Target(Protocol):
        kind: ClassVar[str]                 # "iosxe-restconf"
        constraints: ClassVar[SecretRules]  # what the platform accepts
        can_verify: ClassVar[bool]          # False when the platform cannot test a login
        async def verify(self, account: Account, secret: Secret) -> Verdict
        async def change(self, account: Account, old: Secret | None, new: Secret) -> None
        async def aclose(self) -> None

Guarantees every target gives:

* `verify` has **no side effects** on the account and answers one of three verdicts:
  `OK` (the secret logs in), `REJECTED` (the device positively refused it), `INCONCLUSIVE`
  (unreachable, timeout, 5xx, rate limited — nothing can be concluded; never guess).
* `change` is **idempotent**: setting the secret the account already has succeeds. It never creates an
  account (missing user → `AccountNotFound`). It raises `ChangeRejected` when the device refused the
  new secret (nothing changed), `TargetAuthRejected` when the credential used to connect was refused,
  `TargetUnreachable` / `TargetTimeout` when the outcome is unknown, `RateLimited` for a 429.
  When `account.admin` is set, the change is made through the admin credential (reconcile path);
  otherwise the account changes its own secret using `old`.
* `aclose` releases pooled connections; targets are reused across many accounts of the same kind.
* Targets receive their I/O (an `httpx.AsyncClient` factory, an SSH connect function) from the caller,
  so tests point them at simulators or `httpx.MockTransport`.

Optional capabilities are separate Protocols (`Persisting`, `Discovering`, `Checking`,
`Generating`) — check with isinstance. A `Checking` target also says *how* it proved a verdict (a
login, or the device's stored hash read through the admin session) and respects the account's
`ProbeLedger`: the failed logins keyturn may still cause on that account during one rotation.

How to add a target: create `keyturn/targets/<name>.py` with a class implementing `Target`, add
`"<kind>": "keyturn.targets.<name>:<Class>"` to `registry.TARGETS`, and run the shared contract suite
in `tests/contract/` against its simulator.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol, runtime_checkable

from keyturn.secret import Secret


class Verdict(enum.StrEnum):
    OK = "ok"
    REJECTED = "rejected"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True, slots=True)
class SecretRules:
    """What a platform accepts for a secret; intersected with the user's policy by `keyturn.policy`."""

    min_length: int = 1
    max_length: int = 127
    allowed: str | None = None        # None = printable ASCII 0x21-0x7E
    forbidden: str = ""               # characters never to generate
    no_leading_space: bool = True
    no_trailing_space: bool = True


@dataclass(frozen=True, slots=True)
class AdminCredential:
    """A credential other than the account's own that may change it (reconcile / admin path)."""

    username: str
    secret: Secret
    enable_secret: Secret | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the resource lives and how to trust it. Built from the resource record."""

    host: str
    port: int | None = None
    ssh_port: int | None = None
    base_url: str | None = None            # Meraki region / simulator base URL
    network_id: str | None = None          # Meraki
    org_id: str | None = None              # Meraki
    ca_bundle: str | None = None           # path to a PEM bundle to trust
    fingerprint: str | None = None         # pinned SHA-256 of the peer certificate (hex, colons optional)
    insecure: bool = False                 # explicit, audited, warned
    options: Mapping[str, str] = field(default_factory=dict)  # other custom fields of the resource
    resource_uid: str | None = None        # the resource record (SSH trust on first use stores the key there)
    resource_title: str | None = None      # for messages: `keyturn device trust TITLE`


class Proof(enum.StrEnum):
    """How a verdict was reached (recorded on the rotation and in the audit trail)."""

    LOGIN = "login"                     # authenticated as the user
    STORED_HASH = "stored hash"         # the device's stored credential checked locally
    BOTH = "login and stored hash"
    READ_BACK = "read back"             # the platform returned the stored secret itself (Meraki PSKs)
    NONE = "none"                       # nothing could be tried (see the check's detail)


@dataclass(frozen=True, slots=True)
class Check:
    """A verdict with its proof and, when useful, why (e.g. "device in login quiet mode")."""

    verdict: Verdict
    proof: Proof = Proof.LOGIN
    detail: str = ""
    warning: str = ""     # something a person must know whatever the verdict (e.g. the user is locked out)


@dataclass(slots=True)
class ProbeLedger:
    """What keyturn's probes of one account may cost and have learnt, for one rotation or recovery.

    `failed_login_limit` is the most failed logins keyturn may cause on the account (DESIGN §3: a
    login probe that fails counts toward the device's lockout); targets lower it below the device's
    `max-fail` when they know it. `device` caches what a target read about the device (its AAA
    configuration) so it is read once per rotation.
    """

    failed_login_limit: int = 1
    failed_logins: int = 0
    device: dict[str, Any] = field(default_factory=dict)

    def may_fail_login(self, device_max_fail: int | None = None) -> bool:
        """Whether one more login that might fail stays within the budget (and under max-fail)."""
        limit = self.failed_login_limit
        if device_max_fail is not None:
            limit = min(limit, device_max_fail - 1)
        return self.failed_logins < limit


@dataclass(frozen=True, slots=True)
class Account:
    """One account on one resource: what a target needs to verify or change it."""

    record_uid: str
    username: str                          # login (Meraki: the user's e-mail)
    endpoint: Endpoint
    admin: AdminCredential | None = None
    enable_secret: Secret | None = None    # IOS enable secret for the account's own session
    options: Mapping[str, str] = field(default_factory=dict)  # profile options, e.g. {"mode": "password"}
    probes: ProbeLedger = field(default_factory=ProbeLedger, compare=False)  # fresh per rotation

    @property
    def lock_key(self) -> str:
        """Identity of the account on the device, used for the rotation lock."""
        # Meraki identities are org-wide; a device is its address with *both* ports, so two SSH-only
        # devices on one host (no RESTCONF port) never share a lock.
        ep = self.endpoint
        ssid = self.options.get("ssid")
        if ssid is not None and ep.network_id:
            # an SSID (its PSK, its identity PSKs) belongs to one network, not to the organisation
            return f"{ep.network_id}/ssid{ssid}/{self.username.lower()}"
        scope = ep.org_id or ep.network_id or f"{ep.host}:{ep.port or ''}:{ep.ssh_port or ''}"
        return f"{scope}/{self.username.lower()}"


@runtime_checkable
class Target(Protocol):
    kind: ClassVar[str]
    constraints: ClassVar[SecretRules]
    can_verify: ClassVar[bool]

    async def verify(self, account: Account, secret: Secret) -> Verdict: ...

    async def change(self, account: Account, old: Secret | None, new: Secret) -> None: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Persisting(Protocol):
    """A target whose change lands in volatile state and must be saved (IOS XE startup-config).

    `secret` is the credential to log in with when the account saves its own change (self-service:
    after a change the *new* secret is the one that works); None = use the admin credential.
    """

    async def persist(self, account: Account, secret: Secret | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class FoundAccount:
    """One account a `Discovering` target found on a resource (never its secret).

    `kind`/`type`: how the device stores the credential (IOS ``secret``/``password`` and its type,
    e.g. ``"9"``; Meraki: the user's ``accountType``). `rotatable` False with `note` saying why (a
    Dashboard administrator, a user without a credential). `details` are plain facts for the plan
    (Meraki: the user's id and name)."""

    username: str
    privilege: int | None = None
    kind: str = ""
    type: str = ""
    rotatable: bool = True
    note: str = ""
    details: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class Discovering(Protocol):
    """A target that can list the accounts present on a resource, through the admin credential.

    Read-only: `discover` changes nothing on the resource. It raises what `change` raises for the
    connection (`TargetUnreachable`, `TargetAuthRejected`, `RateLimited`, ...), so a caller walking
    many resources can report the ones it could not read and carry on.
    """

    async def discover(self, endpoint: Endpoint, admin: AdminCredential) -> list[FoundAccount]: ...


@runtime_checkable
class Checking(Protocol):
    """A target that reports how it verified (`Check`); the engine prefers `check` over `verify`.

    Same contract as `verify` (no side effects but the failed logins the ledger allows, never raises).
    """

    async def check(self, account: Account, secret: Secret) -> Check: ...


@dataclass(frozen=True, slots=True)
class Issued:
    """One secret the platform holds for the account, as the platform names it (never the secret):
    Meraki lists an identity's API keys by `handle` = the key's last four characters."""

    handle: str
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Propagation:
    """How long a freshly generated secret may take to work: verify up to `tries` times, waiting
    `backoff` seconds doubled each time, for at most `timeout` seconds in all."""

    tries: int = 10
    backoff: float = 2.0
    timeout: float = 360.0


@runtime_checkable
class Generating(Protocol):
    """A target whose platform, not keyturn, makes the new secret (a Meraki Dashboard API key).

    `using` is the secret that authenticates the call (the account's own current one). The engine
    calls `generate` once per rotation and never retries it: the value exists only in its answer.
    `generate` raises `ChangeRejected` when the platform refused (nothing made), `TargetAuthRejected`
    when `using` was refused, `RateLimited` for a 429, and `TargetUnreachable`/`TargetTimeout` when the
    outcome is unknown (a secret may exist that keyturn never saw: recovery revokes it). `retire`
    revokes the secret named `handle` and is idempotent (an unknown handle is already gone). At most
    `limit` secrets may exist at once. `verify` (of `Target`) proves a secret authenticates.
    """

    limit: ClassVar[int]

    def handle(self, secret: Secret) -> str: ...

    def propagation(self, account: Account) -> Propagation: ...

    async def issued(self, account: Account, using: Secret) -> list[Issued]: ...

    async def generate(self, account: Account, using: Secret) -> Secret: ...

    async def retire(self, account: Account, using: Secret, handle: str) -> None: ...


@runtime_checkable
class Prechecking(Protocol):
    """A target that can tell, when a profile is set, that the account cannot be rotated as configured
    (a Meraki SSID not in PSK mode): `precheck` raises what `change` would (`AccountNotRotatable`,
    `AccountNotFound`, ...) and changes nothing. Unreachable is not a refusal: the rotation checks again."""

    async def precheck(self, account: Account) -> None: ...
