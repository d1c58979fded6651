"""Shared HTTP plumbing for HTTP targets: TLS trust from an `Endpoint`, and the httpx error boundary.

Trust, per endpoint (DESIGN §4 "TLS"):

* default — system trust store, hostname checked;
* `ca_bundle` — only that PEM bundle is trusted (hostname still checked);
* `fingerprint` — the peer certificate's SHA-256 must equal the pin. The check runs right after the
  TLS handshake, **before any request byte (and so any credential) is sent**. With a pin alone the
  chain and hostname are not checked (the pin is the trust: devices present self-signed certs); with
  a pin and a CA bundle both must hold. Through an HTTP(S) proxy the pin is checked on the TLS
  session *inside the CONNECT tunnel* — the certificate the origin (or an intercepting proxy posing
  as it) presents — never on the proxy's own certificate, which is verified normally;
* `insecure` — no verification at all; explicit, and logged as a warning every time a client is built.

`map_httpx_errors` is the ONE place httpx exceptions become keyturn errors; targets wrap their I/O in
it and never catch httpx exceptions themselves.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import select
import socket
import ssl
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

from keyturn.errors import TargetError, TargetTimeout, TargetUnreachable, TlsVerificationFailed
from keyturn.targets import peer_trust
from keyturn.targets.base import Endpoint

log = logging.getLogger("keyturn.targets.http")


def normalize_fingerprint(value: str) -> str:
    """``"AB:CD:..."`` / ``"abcd..."`` / ``"sha256:..."`` → 64 lower-case hex digits; ValueError otherwise."""
    text = value.strip().lower()
    text = text.removeprefix("sha256:").replace(":", "").replace(" ", "")
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError("a SHA-256 fingerprint is 64 hex digits (colons optional)")
    return text


class PinMismatch(httpcore.ConnectError):
    """The peer's certificate does not match the pinned fingerprint (raised inside the transport)."""


def _readable(sock: socket.socket | None) -> bool:
    """httpcore's test of an idle kept-alive socket: readable (the peer closed it, or sent what it
    should not have) or gone counts as expired."""
    if sock is None or sock.fileno() < 0:
        return True
    poll = select.poll()
    poll.register(sock, select.POLLIN)
    return bool(poll.poll(0))


# httpcore's stream/backend interface takes `timeout` arguments (ASYNC109 is about our own APIs).
class _Stream(httpcore.AsyncNetworkStream):
    """One pooled connection's stream. With a `pin`, checks it on its TLS handshake (`skip`
    handshakes first are the proxy's own, an https proxy).

    It also answers httpcore's "is this idle connection readable" from the socket it keeps. httpcore
    1.0 asks that of every idle connection of the pool on every request, twice, and its anyio stream
    answers by building the socket's whole attribute table, `getpeername` included, each time:
    3.7-13 % of a 10-organisation Meraki fleet's CPU (bench `--only cost`, py-spy). The answer is the same
    poll of the same socket."""

    def __init__(self, inner: httpcore.AsyncNetworkStream, pin: str | None, skip: int = 0) -> None:
        self._inner = inner
        self._pin = pin
        self._skip = skip
        self._socket: socket.socket | None = None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:  # noqa: ASYNC109
        tls = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        if self._pin is None:
            return _Stream(tls, None)
        if self._skip:
            # TLS to an https proxy (verified by the proxy's own context); the origin's handshake
            # comes next, through the CONNECT tunnel, and is the one the pin is about.
            return _Stream(tls, self._pin, self._skip - 1)
        ssl_object = tls.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        seen = hashlib.sha256(der).hexdigest() if der else ""
        if not hmac.compare_digest(seen, self._pin):
            await tls.aclose()
            raise PinMismatch("the server certificate does not match the pinned SHA-256 fingerprint")
        return _Stream(tls, None)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            if self._socket is None:
                self._socket = self._inner.get_extra_info("socket")
            return _readable(self._socket)
        return self._inner.get_extra_info(info)


class _Backend(httpcore.AsyncNetworkBackend):
    """httpcore's anyio backend, its streams wrapped in `_Stream`: with a `pin`, every TCP connection
    checks it on its (first non-proxy) TLS handshake.

    Through a proxy every TCP connection goes to the proxy; `proxy_tls` says the proxy itself speaks
    TLS (an ``https://`` proxy URL), so the first handshake on each connection is skipped."""

    def __init__(self, pin: str | None, *, proxy_tls: bool = False) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._pin = pin
        self._skip = 1 if proxy_tls else 0

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _Stream(stream, self._pin, self._skip)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def ssl_context(endpoint: Endpoint) -> ssl.SSLContext:
    """The client TLS context an endpoint asks for (see the module docstring).

    Contexts are shared between endpoints with the same trust (loading a CA bundle costs a
    millisecond per device otherwise); a bundle file that changes on disk gets a new context."""
    bundle = endpoint.ca_bundle
    stamp = None
    if bundle and not endpoint.insecure:
        st = os.stat(bundle)
        stamp = (st.st_mtime_ns, st.st_size)
    return _shared_context(bool(endpoint.insecure), bundle or None, stamp,
                           bool(endpoint.fingerprint and not bundle))


@functools.lru_cache(maxsize=64)
def _shared_context(insecure: bool, ca_bundle: str | None, _stamp: tuple[int, int] | None,
                    pinned_only: bool) -> ssl.SSLContext:
    if insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()
    if pinned_only:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def build_client(endpoint: Endpoint, *, base_url: str, timeout: float,
                 headers: dict[str, str] | None = None, max_connections: int = 4,
                 proxy: str | None = None) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` for one endpoint with its TLS trust applied (pooled, keep-alive).

    Redirects are never followed automatically: targets that allow them follow them explicitly.
    `proxy` (an ``http://`` or ``https://`` proxy URL) is used as given; environment proxy variables
    are ignored. A pinned fingerprint holds through the proxy (checked inside the CONNECT tunnel).
    Raises `TlsVerificationFailed` when the trust settings or the proxy URL cannot be used.
    """
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    if endpoint.insecure:
        log.warning("TLS verification is OFF for %s (endpoint marked insecure): the peer is not "
                    "authenticated and credentials can be intercepted", endpoint.host)
    try:
        ctx = ssl_context(endpoint)
        pin = normalize_fingerprint(endpoint.fingerprint) if endpoint.fingerprint and not endpoint.insecure \
            else None
        via = httpx.Proxy(proxy) if proxy else None
    except (OSError, ValueError, ssl.SSLError) as exc:
        failure = TlsVerificationFailed(f"cannot set up TLS trust for {endpoint.host}: {exc}")
        peer_trust.note_failure(failure)
        raise failure from exc
    if via is not None and via.url.scheme not in ("http", "https"):
        raise TlsVerificationFailed(f"{endpoint.host}: proxy {via.url.scheme}:// is not supported "
                                    "(use an http:// or https:// proxy)")
    transport = httpx.AsyncHTTPTransport(verify=ctx, limits=limits, proxy=via, trust_env=False)
    # httpx has no hook to check the peer before the request is written, so its pool gets a network
    # backend that checks a pin right after the handshake, and answers the pool's idle-socket poll
    # cheaply (`_Stream`). A private attribute: the pin tests in tests/contract/test_target_contract.py
    # and tests/security/ catch any change in httpx. The pools are built with httpcore's public
    # constructors, so a renamed argument fails loudly instead of silently dropping the check.
    common: dict[str, Any] = {
        "ssl_context": ctx, "max_connections": limits.max_connections,
        "max_keepalive_connections": limits.max_keepalive_connections,
        "keepalive_expiry": limits.keepalive_expiry,
    }
    if via is None:
        transport._pool = httpcore.AsyncConnectionPool(**common, network_backend=_Backend(pin))
    else:
        transport._pool = httpcore.AsyncHTTPProxy(
            proxy_url=httpcore.URL(scheme=via.url.raw_scheme, host=via.url.raw_host, port=via.url.port,
                                   target=via.url.raw_path),
            proxy_auth=via.raw_auth, proxy_headers=via.headers.raw, **common,
            network_backend=_Backend(pin, proxy_tls=via.url.scheme == "https"),
        )
    return httpx.AsyncClient(base_url=base_url, transport=transport, timeout=timeout,
                             headers=headers or {}, follow_redirects=False)


def _tls_cause(exc: BaseException) -> str | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, PinMismatch):
            return "certificate does not match the pinned fingerprint"
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"certificate not trusted ({seen.verify_message or 'verification failed'})"
        seen = seen.__cause__ or seen.__context__
    return None


@contextmanager
def map_httpx_errors(*, target: str, record: str | None, host: str, doing: str) -> Iterator[None]:
    """Turn httpx transport errors into keyturn errors (the one httpx boundary).

    Timeouts → `TargetTimeout`; untrusted certificates → `TlsVerificationFailed`; every other
    transport failure → `TargetUnreachable`. HTTP status codes are the caller's business. Each
    attempt is noted for the engine (`keyturn.targets.peer_trust`): a trust failure, or a request that
    may have reached the peer.
    """
    try:
        yield
    except httpx.TimeoutException as exc:
        peer_trust.note_attempt()
        raise TargetTimeout(f"{host}: timed out while {doing}", target=target, record=record) from exc
    except httpx.TransportError as exc:
        tls = _tls_cause(exc)
        if tls is not None:
            failure = TlsVerificationFailed(f"{host}: {tls}", target=target, record=record)
            peer_trust.note_failure(failure)
            raise failure from exc
        peer_trust.note_attempt()
        raise TargetUnreachable(f"{host}: {type(exc).__name__} while {doing}", target=target,
                                record=record) from exc
    except httpx.InvalidURL as exc:
        raise TargetError(f"{host}: invalid URL while {doing}", target=target, record=record) from exc
    except BaseException:
        peer_trust.note_attempt()
        raise
    else:
        peer_trust.note_attempt()
