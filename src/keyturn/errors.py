"""The whole keyturn exception tree. Every error keyturn raises derives from `KeyturnError`.

    KeyturnError
    ├── ConfigError(location=...)
    ├── VaultError
    │   ├── VaultSealed            no master key / key does not match the vault
    │   ├── DecryptionFailed       a blob failed authentication (names record + field)
    │   ├── RecordNotFound
    │   ├── AmbiguousRecord        a title matches several records (lists candidates)
    │   ├── DuplicateRecord
    │   ├── StorageUnavailable     database locked / unreachable
    │   ├── ImportFailed           malformed import file (names line / record)
    │   ├── RecordTampered         a record's fields/metadata fail their integrity tag (names it)
    │   ├── ScriptsNotAllowed      a script attachment / Shell field from a path that may not add one
    │   ├── VaultKeyRetired        this process holds a master key a finished rekey retired
    │   └── RekeyLocked            another `vault rekey` holds the rekey lease
    ├── AuditError
    │   ├── AuditChainBroken
    │   └── AuditSinkUnavailable(delivered)  a sink refused / could not take a batch (spooled, retried)
    │       └── NotificationUnavailable  a notification target (Slack webhook, SMTP) did not take it
    ├── PolicyError                impossible password policy (refused when set)
    ├── TargetError(target, record)
    │   ├── TargetUnreachable      connect failed, reset, 5xx before the change is known
    │   │   ├── TlsVerificationFailed  the peer's certificate is not trusted (CA / pinned fingerprint)
    │   │   └── HostKeyNotTrusted      no trust for the SSH host key: refused before any credential was sent
    │   │       └── HostKeyChanged     it differs from the pinned one (pinned, presented)
    │   ├── TargetTimeout          (also a TimeoutError)
    │   ├── TargetAuthRejected     the credential used was refused
    │   ├── AccountNotFound        the user does not exist on the device
    │   │   └── AmbiguousAccount   several accounts match (lists their ids)
    │   ├── ChangeRejected         the device refused the new secret
    │   │   └── AccountNotRotatable  the platform does not let this account's secret be set
    │   └── RateLimited(retry_after)
    ├── RotationError
    │   ├── RotationLocked         another rotation holds the account
    │   ├── RotationInterrupted
    │   ├── RollbackFailed
    │   ├── ProfileError           missing / invalid rotation profile
    │   └── LeaseLost              the account lock passed to another rotation: this one may not commit
    ├── DispatchError              scale-out (Celery): enqueueing or running rotations on workers
    │   ├── BrokerUnavailable      the broker did not take the request (nothing recorded as requested)
    │   └── WorkerRefused          a worker will not start (schema, key, storage): says why
    ├── ScriptError(exit_code)
    ├── LimitError                 limits shared by every worker (in Redis)
    │   ├── LimitsUnavailable      their store cannot be reached: nothing is granted without it
    │   └── DeviceBusy(device)     a device's slots stayed taken past the wait (also a TimeoutError)
    └── SimulatorError
        └── SimulatedApiError(status, errors)   a simulated API refusing a request (HTTP 4xx)

Foreign exceptions are mapped at exactly one boundary per library (`raise ... from exc`). Messages are
one clear line for a person and never contain a secret value.
"""

from __future__ import annotations


class KeyturnError(Exception):
    """Root of every keyturn error; `str(err)` is a one-line message safe to show and log."""


class ConfigError(KeyturnError):
    def __init__(self, message: str, *, location: str | None = None) -> None:
        super().__init__(f"{location}: {message}" if location else message)
        self.location = location


class VaultError(KeyturnError):
    pass


class VaultSealed(VaultError):
    pass


class DecryptionFailed(VaultError):
    def __init__(self, message: str, *, record_uid: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.record_uid = record_uid
        self.field = field


class RecordNotFound(VaultError):
    """`suggestions`: titles close to the one asked for (the message already names them)."""

    def __init__(self, message: str, *, suggestions: list[str] | None = None) -> None:
        super().__init__(message)
        self.suggestions = suggestions or []


class AmbiguousRecord(VaultError):
    def __init__(self, message: str, *, candidates: list[str] | None = None) -> None:
        super().__init__(message)
        self.candidates = candidates or []


class DuplicateRecord(VaultError):
    pass


class StorageUnavailable(VaultError):
    pass


class ImportFailed(VaultError):
    pass


class RecordTampered(VaultError):
    """A record's type, title, fields or metadata do not match their integrity tag: they were changed
    outside keyturn (direct database write). The record is refused until an admin restores or reseals it."""

    def __init__(self, message: str, *, record_uid: str) -> None:
        super().__init__(message)
        self.record_uid = record_uid


class ScriptsNotAllowed(VaultError):
    """A post-rotation script attachment or `Shell` field arrived through the API or an import without
    an admin's confirmation (they run with the passwords)."""


class VaultKeyRetired(VaultError):
    """This process wraps with a master key that a finished `vault rekey` retired, and the new key is not
    available to it (restart it with the new key)."""


class RekeyLocked(VaultError):
    """Another `keyturn vault rekey` holds the rekey lease."""


class AuditError(KeyturnError):
    pass


class AuditChainBroken(AuditError):
    def __init__(self, message: str, *, entry_id: int | None = None) -> None:
        super().__init__(message)
        self.entry_id = entry_id


class AuditSinkUnavailable(AuditError):
    """An audit sink could not take (all of) a batch; `delivered` leading messages did arrive."""

    def __init__(self, message: str, *, delivered: int = 0) -> None:
        super().__init__(message)
        self.delivered = delivered


class NotificationUnavailable(AuditSinkUnavailable):
    """A notification target (`keyturn.notify`) did not take (all of) a batch; spooled, retried."""


class PolicyError(KeyturnError):
    pass


class TargetError(KeyturnError):
    def __init__(self, message: str, *, target: str | None = None, record: str | None = None) -> None:
        prefix = " ".join(p for p in (target, f"[{record}]" if record else None) if p)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.target = target
        self.record = record


class TargetUnreachable(TargetError):
    pass


class TlsVerificationFailed(TargetUnreachable):
    pass


class HostKeyNotTrusted(TargetUnreachable):
    """keyturn has no trust for the SSH server's host key (none pinned on the resource, or not in its
    known_hosts file): refused during the key exchange, before any credential was sent. A person must
    establish trust (`keyturn device trust RECORD`); retrying does not help. `presented` is the
    ``SHA256:...`` fingerprint the server showed, when known."""

    def __init__(self, message: str, *, presented: str | None = None, target: str | None = None,
                 record: str | None = None) -> None:
        super().__init__(message, target=target, record=record)
        self.presented = presented


class HostKeyChanged(HostKeyNotTrusted):
    """The SSH server presents a host key other than the one pinned on the resource (a replaced key,
    or someone in the path); nothing was sent."""

    def __init__(self, message: str, *, pinned: str, presented: str, target: str | None = None,
                 record: str | None = None) -> None:
        super().__init__(message, presented=presented, target=target, record=record)
        self.pinned = pinned


class TargetTimeout(TargetError, TimeoutError):
    pass


class TargetAuthRejected(TargetError):
    pass


class AccountNotFound(TargetError):
    pass


class AmbiguousAccount(AccountNotFound):
    pass


class ChangeRejected(TargetError):
    pass


class AccountNotRotatable(ChangeRejected):
    pass


class RateLimited(TargetError):
    def __init__(
        self, message: str, *, retry_after: float | None = None, target: str | None = None,
        record: str | None = None,
    ) -> None:
        super().__init__(message, target=target, record=record)
        self.retry_after = retry_after


class RotationError(KeyturnError):
    pass


class RotationLocked(RotationError):
    pass


class RotationInterrupted(RotationError):
    pass


class RollbackFailed(RotationError):
    pass


class ProfileError(RotationError):
    pass


class LeaseLost(RotationError):
    """The rotation's account lock expired and another rotation took it over: fencing refuses every
    later write of this one (the new holder settles the account)."""


class DispatchError(KeyturnError):
    pass


class BrokerUnavailable(DispatchError):
    pass


class WorkerRefused(DispatchError):
    pass


class ScriptError(KeyturnError):
    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class LimitError(KeyturnError):
    pass


class LimitsUnavailable(LimitError):
    """The store of the limits shared across workers (Redis) cannot be reached. Nothing is granted
    without it: running unlimited would break the organisation budget and the per-device limit."""


class DeviceBusy(LimitError, TimeoutError):
    """Every concurrency slot of `device` stayed held by other workers for the whole wait."""

    def __init__(self, message: str, *, device: str) -> None:
        super().__init__(message)
        self.device = device


class SimulatorError(KeyturnError):
    pass


class SimulatedApiError(SimulatorError):
    """A simulated device API refuses a request: HTTP `status` and the device's own error strings."""

    def __init__(self, status: int, *errors: str) -> None:
        super().__init__(f"HTTP {status}: {'; '.join(errors)}" if errors else f"HTTP {status}")
        self.status = status
        self.errors = list(errors)
