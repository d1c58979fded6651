"""Red-team fixtures: the vault world of the unit tests behind the real API app, with real targets
from the registry next to the fake device, and a `catcher` — a TCP listener on 127.0.0.1 that records
every byte anyone sends it (the attacker's endpoint in exfiltration attempts)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from keyturn.targets.registry import create_target
from tests.unit.api_world import Api, open_api
from tests.unit.engine_world import World, open_world

# Real targets an attacker would aim a profile at; the fake device stays for the rest.
REAL_TARGETS = ("meraki-auth-user", "iosxe-restconf")


@dataclass
class Catcher:
    """What reached the listener: one bytes object per connection (headers and body)."""

    port: int
    received: list[bytes] = field(default_factory=list)

    def url(self, path: str = "/steal") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def saw(self, needle: str) -> bool:
        return any(needle.encode() in data for data in self.received)


async def _serve_one(catcher: Catcher, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    data = b""
    with contextlib.suppress(Exception):
        data = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in data.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        data += await reader.readexactly(length)
    catcher.received.append(data)
    body = b'{"ok": true}'
    with contextlib.suppress(Exception):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        await writer.drain()
    writer.close()


@pytest.fixture
async def catcher() -> AsyncIterator[Catcher]:
    found = Catcher(port=0)
    server = await asyncio.start_server(lambda r, w: _serve_one(found, r, w), "127.0.0.1", 0)
    found.port = server.sockets[0].getsockname()[1]
    try:
        yield found
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from open_world(tmp_path)


@pytest.fixture
async def api(world: World) -> AsyncIterator[Api]:
    for kind in REAL_TARGETS:
        world.targets[kind] = create_target(kind)
    async for a in open_api(world):
        yield a
