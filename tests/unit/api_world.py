"""Shared fixtures for the API unit tests: a fresh vault world (engine_world) behind the real app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from keyturn.api.app import create_app
from keyturn.api.tokens import Role, TokenStore
from keyturn.engine.rotate import RotationEngine, TargetPool
from tests.unit.engine_world import World


@dataclass
class Api:
    world: World
    app: Any
    client: httpx.AsyncClient
    tokens: dict[str, str]

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    async def wait_rotation(self, rid: str, role: str = "admin") -> dict[str, Any]:
        """Poll until the rotation has an outcome (each poll yields to the background task)."""
        for _ in range(2000):
            r = await self.client.get(f"/rotations/{rid}", headers=self.auth(role))
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            # Finished: the outcome is recorded, then the final "audit" step (or a job that never ran).
            steps = [s["step"] for s in body["steps"]]
            if body["outcome"] is not None and (steps[-1:] == ["audit"] or not steps):
                return body
            await asyncio.sleep(0.005)
        raise AssertionError(f"rotation {rid} did not finish")


async def open_api(world: World, **kw: Any) -> AsyncIterator[Api]:
    engines: list[RotationEngine] = []

    def factory(actor: str) -> RotationEngine:
        engine = RotationEngine(world.vault, targets=TargetPool(lambda kind: world.targets[kind]),
                                actor=actor, backoff=0.0)
        engines.append(engine)
        return engine

    app = create_app(world.vault, engine_factory=factory, **kw)
    store = TokenStore(world.vault.engine)
    tokens = {role.value: store.create(role, name=f"t-{role.value}")[1].reveal() for role in Role}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield Api(world, app, client, tokens)
        await app.state.ctx.runner.drain(30)
        await app.state.ctx.runner.aclose()
