"""Shared fixtures: `world` (a vault with one device, its admin and one user) and `api` (the FastAPI
app over that world, with a token per role). A module may override either."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.unit.api_world import Api, open_api
from tests.unit.engine_world import World, open_world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from open_world(tmp_path)


@pytest.fixture
async def api(world: World) -> AsyncIterator[Api]:
    async for a in open_api(world):
        yield a
