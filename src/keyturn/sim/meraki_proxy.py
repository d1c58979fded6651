"""HTTPS CONNECT proxy that makes `https://api.meraki.com` reach the local Meraki simulator.

Unmodified clients keep their hard-coded Meraki URLs (reference §4.7 B/C): the SDK with
`requests_proxy=` + `certificate_path=`, `requests` with `HTTPS_PROXY` + `REQUESTS_CA_BUNDLE`, httpx with
`proxy=` + `verify=`. Two modes on one listener:

* `CONNECT api.meraki.com:443` (any Meraki API host: shards `nNNN.meraki.com`, regional hosts): answer
  200, terminate TLS with a leaf from the given `SimCA` (SANs: every Meraki host pattern), and pipe the
  decrypted bytes to the `MerakiFrontend`. The Host header inside stays `api.meraki.com`, so Link URLs
  and redirect Locations stay on Meraki hosts as in production.
* Absolute-form plain HTTP (`GET http://x.meraki.com/api/v1/... HTTP/1.1`): one request per connection,
  rewritten to origin form with `X-Forwarded-Proto: http` and `Connection: close`, then piped.

Any other host gets 403; malformed requests 400. A connection the simulator aborts (reset / drop
faults) is aborted towards the client too, so clients see the failure the fault means.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

from keyturn.errors import SimulatorError
from keyturn.sim.meraki import MERAKI_DOMAINS, is_meraki_host
from keyturn.sim.tls import SimCA

# SANs of the proxy's leaf: each Meraki API domain and its subdomains (shards, api.*)
CERT_HOSTS = tuple(h for d in MERAKI_DOMAINS for h in (d, f"*.{d}"))
_HEAD_LIMIT = 64 * 1024
_CHUNK = 64 * 1024


def _reply(status: str) -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()


class MerakiProxy:
    """HTTPS CONNECT proxy: CONNECT api.meraki.com:443 (or *.meraki.com) → TLS terminated with a cert from
    the given SimCA (SANs api.meraki.com, *.meraki.com) → the MerakiFrontend (tunnel the decrypted bytes to
    it). Also absolute-form plain-HTTP proxy requests for http://*.meraki.com. Other hosts → 403."""

    def __init__(self, upstream_port: int, ca: SimCA, *, upstream_host: str = "127.0.0.1") -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self._ca = ca
        self._tls: ssl.SSLContext | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.refused: list[str] = []  # hosts answered 403 (tests assert nothing leaked past the proxy)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on host:port (0 = ephemeral); returns the bound port."""
        if self._server is not None:
            raise SimulatorError("Meraki proxy already started")
        self._tls = self._ca.server_context(*CERT_HOSTS)
        try:
            self._server = await asyncio.start_server(self._client, host, port, limit=_HEAD_LIMIT)
        except OSError as exc:
            raise SimulatorError(f"Meraki proxy cannot listen on {host}:{port}: {exc.strerror}") from exc
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ssl.SSLError):
            writer.transport.abort()
        except asyncio.CancelledError:
            # stop() cancels open tunnels; ending quietly keeps asyncio from logging each one
            writer.transport.abort()
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, _, rest = head.partition(b"\r\n")
        try:
            method, target, version = request_line.decode("latin-1").split(" ")
        except ValueError:
            writer.write(_reply("400 Bad Request"))
            return
        if method.upper() == "CONNECT":
            await self._connect(target, reader, writer)
            return
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            writer.write(_reply("400 Bad Request"))
            return
        if not is_meraki_host(parts.hostname):
            self.refused.append(parts.hostname)
            writer.write(_reply("403 Forbidden"))
            return
        origin = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = [h for h in rest.decode("latin-1").split("\r\n") if h and not h.lower().startswith(
            ("connection:", "proxy-connection:", "x-forwarded-proto:", "keep-alive:"))]
        new_head = "\r\n".join([f"{method} {origin} {version}", *headers, "X-Forwarded-Proto: http",
                                "Connection: close", "", ""]).encode("latin-1")
        await self._tunnel(reader, writer, new_head)

    async def _connect(self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host = target.rsplit(":", 1)[0] if ":" in target else target
        if not is_meraki_host(host):
            self.refused.append(host)
            writer.write(_reply("403 Forbidden"))
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        assert self._tls is not None
        await writer.start_tls(self._tls)
        await self._tunnel(reader, writer, b"")

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first: bytes) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        if first:
            up_writer.write(first)
        upstream = asyncio.create_task(_pump(reader, up_writer))
        downstream = asyncio.create_task(_pump(up_reader, writer))
        try:
            done, _ = await asyncio.wait({upstream, downstream}, return_when=asyncio.FIRST_COMPLETED)
            if downstream in done:
                # The simulator finished (or aborted): mirror that to the client, then stop reading it.
                if downstream.result() == "reset":
                    writer.transport.abort()
                upstream.cancel()
            else:
                # The client stopped sending; let the answer in flight finish.
                await downstream
            await asyncio.gather(upstream, downstream, return_exceptions=True)
        finally:
            for pump in (upstream, downstream):
                pump.cancel()
            up_writer.close()


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> str:
    """Copy until EOF ("eof") or a reset on either side ("reset")."""
    try:
        while data := await source.read(_CHUNK):
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            # pass the half-close on, so the simulator ends a kept-alive connection the client left
            sink.write_eof()
    except (ConnectionError, ssl.SSLError):
        return "reset"
    return "eof"
