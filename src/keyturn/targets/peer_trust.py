"""Trust failures seen while talking to a peer, told to the engine (issue 12, item 13).

A target's `verify`/`check` never raises: an untrusted certificate becomes an INCONCLUSIVE verdict with
a message, which the engine used to read as "unreachable; will retry". But an untrusted peer is not a
flaky one — retrying waits for nothing, and the person must fix the trust material (or find the
interceptor). So the one place that raises `TlsVerificationFailed` (`keyturn.targets.http`) also
notes it here, with every other request attempt, and the engine watches around a verification or a
change:

    watch = Watch()
    with watch:
        check = await target.check(account, secret)
    if watch.failures:          # the peer was not trusted
        ...
    watch.nothing_sent          # True: every request attempted died in the TLS handshake

Notes go to every watch active in the current task (watches nest; tasks and threads started inside
inherit them), so a watch in the engine sees what any target did on its behalf.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from types import TracebackType

from keyturn.errors import TargetError

_ACTIVE: ContextVar[tuple[Watch, ...]] = ContextVar("keyturn_peer_trust", default=())


class Watch:
    """Trust failures and other request attempts noted while the watch is active (a context manager)."""

    def __init__(self) -> None:
        self.failures: list[TargetError] = []
        self.attempts = 0          # requests that got past the TLS handshake (or failed otherwise)
        self._token: Token[tuple[Watch, ...]] | None = None

    def __enter__(self) -> Watch:
        self._token = _ACTIVE.set((*_ACTIVE.get(), self))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._token is not None:
            _ACTIVE.reset(self._token)
            self._token = None

    @property
    def nothing_sent(self) -> bool:
        """A trust failure ended it, and no request got past a TLS handshake before (so no request
        byte — no credential, no new secret — reached any peer)."""
        return bool(self.failures) and self.attempts == 0

    def reason(self) -> str:
        """The first failure, as the rotation reports it."""
        first = self.failures[0] if self.failures else "the peer is not trusted"
        return (f"trust failure: {first}; nothing was sent to it. Check the certificate / host key "
                "the device presents and the trust set on the resource record (`keyturn device trust "
                "RECORD` pins it); retrying will not help")


def note_failure(exc: TargetError) -> None:
    """A peer was not trusted (its certificate chain, pin or host key did not verify)."""
    for watch in _ACTIVE.get():
        watch.failures.append(exc)


def note_attempt() -> None:
    """A request passed the trust check (or failed for another reason): it may have been sent."""
    for watch in _ACTIVE.get():
        watch.attempts += 1


__all__ = ["Watch", "note_attempt", "note_failure"]
