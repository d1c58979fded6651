"""The pooled connections of `build_client`: a kept-alive connection the peer closed while it was
idle is noticed before a request is written on it (httpcore's idle-socket poll, answered by
`keyturn.targets.http._Stream` from the socket it keeps), over real sockets on loopback."""

from __future__ import annotations

import asyncio
import socket

import httpx

from keyturn.targets.base import Endpoint
from keyturn.targets.http import _readable, build_client

_OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


async def _server(close_after_reply: bool) -> tuple[asyncio.Server, list[asyncio.Event]]:
    """A plain HTTP/1.1 server; with `close_after_reply` it closes each connection right after its
    first reply, announcing nothing (as a device whose idle timer fired). One event per connection,
    set when the server has closed it."""
    connections: list[asyncio.Event] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        done = asyncio.Event()
        connections.append(done)
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(_OK)
                await writer.drain()
                if close_after_reply:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()
        await writer.wait_closed()
        done.set()

    return await asyncio.start_server(serve, "127.0.0.1", 0), connections


def _client(server: asyncio.Server) -> httpx.AsyncClient:
    """keyturn's pooled client for the server's address (plain HTTP: the pool is the same)."""
    port = server.sockets[0].getsockname()[1]
    return build_client(Endpoint(host="127.0.0.1", port=port), base_url=f"http://127.0.0.1:{port}",
                        timeout=5.0)


async def test_a_connection_the_peer_closed_while_idle_is_replaced_not_used() -> None:
    server, connections = await _server(close_after_reply=True)
    client = _client(server)
    try:
        async with server:
            for _ in range(3):
                got = await client.get("/")
                assert got.text == "ok"
                await asyncio.wait_for(connections[-1].wait(), 5)   # the server closed it
    finally:
        await client.aclose()
    assert len(connections) == 3   # each request found the previous connection closed


async def test_a_connection_left_open_is_reused() -> None:
    server, connections = await _server(close_after_reply=False)
    client = _client(server)
    try:
        async with server:
            for _ in range(3):
                assert (await client.get("/")).text == "ok"
            await client.aclose()
            await asyncio.wait_for(connections[0].wait(), 5)
    finally:
        await client.aclose()
    assert len(connections) == 1


def test_readable_counts_a_gone_or_closed_socket_as_expired() -> None:
    a, b = socket.socketpair()
    try:
        assert _readable(a) is False     # idle, nothing to read: usable
        b.sendall(b"x")
        assert _readable(a) is True      # the peer sent something unasked: not usable
    finally:
        a.close()
        b.close()
    assert _readable(a) is True          # closed (fileno -1)
    assert _readable(None) is True       # no socket known
