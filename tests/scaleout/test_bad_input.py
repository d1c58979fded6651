"""Bad input to the scale-out gets one clear line and loses nothing (issue 13, "Bad input"): a broker
that is down at enqueue, a worker whose code and database disagree on the schema, a worker with another
vault's master key, an unknown site, a SQLite vault with a live worker on another host."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from keyturn.config import Settings
from keyturn.dispatch.app import queue_name
from keyturn.dispatch.client import Dispatcher
from keyturn.dispatch.ledger import workers as workers_table
from keyturn.dispatch.worker import schema_revisions
from keyturn.vault import Vault
from keyturn.vault.keys import encode_key, load_key_file
from tests.lab_fixtures import running_lab
from tests.scaleout.settled import all_requests, assert_settled, lab_accounts
from tests.scaleout.workers import env_for, keyturn, redis_db, unique_site

pytestmark = pytest.mark.asyncio

DB = 13


def one_error_line(err: str) -> str:
    """The command's error line; it must be the only line about the failure (no traceback)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


async def test_broker_down_at_enqueue_refuses_every_request_and_says_so(tmp_path: Path):
    settings = Settings(home=tmp_path / "home")
    async with running_lab(tmp_path, iosxe=2, meraki_orgs=0, users_per_device=1, ssh=False) as lab:
        accts = lab_accounts(settings, lab, "default")
        env = env_for(settings.home, broker="redis://127.0.0.1:1/0", redis=redis_db(DB))
        code, out, err = await keyturn(env, "rotate", "--all", timeout=60)
        assert code == 5, out + err
        line = one_error_line(err)
        assert "broker redis://127.0.0.1:1/0 unreachable" in line, line
        assert "0 of 2 rotation(s) enqueued, 2 refused (nothing was changed for those)" in line, line
        reqs = await assert_settled(settings, lab, accts)
    # Nothing requested-but-lost: each request is final, refused, and says to request it again.
    assert sorted(str(r.state) for r in reqs.values()) == ["refused", "refused"]
    for r in reqs.values():
        assert str(r.outcome) == "failed" and "request it again" in (r.result or {})["reason"], r


def _stamp(settings: Settings, revision: str) -> None:
    engine = sa.create_engine(settings.effective_database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": revision})
    finally:
        engine.dispose()


@pytest.mark.parametrize("which", ["older", "newer"])
async def test_a_worker_refuses_a_database_at_another_schema_revision(tmp_path: Path, which: str):
    from alembic.script import ScriptDirectory

    from keyturn.vault.storage import _MIGRATIONS_DIR

    settings = Settings(home=tmp_path / "home")
    Vault.init(settings).close()
    current, head = schema_revisions(settings.effective_database_url)
    assert current == head
    older = ScriptDirectory(str(_MIGRATIONS_DIR)).get_revision(head).down_revision
    stamped = str(older) if which == "older" else "ffffffffffff"
    _stamp(settings, stamped)
    broker = redis_db(DB)
    code, out, err = await keyturn(env_for(settings.home, broker=broker, redis=broker), "worker", timeout=60)
    assert code == 1, out + err
    line = one_error_line(err)
    assert f"the database schema is at {stamped} but this keyturn needs {head}" in line, line
    # The worker migrated nothing.
    assert schema_revisions(settings.effective_database_url) == (stamped, head)


async def test_a_worker_with_another_vaults_master_key_is_sealed_and_consumes_nothing(tmp_path: Path):
    import redis

    settings = Settings(home=tmp_path / "home")
    other = Settings(home=tmp_path / "other")
    Vault.init(other).close()
    wrong = encode_key(load_key_file(other.effective_key_file)).reveal()
    broker = redis_db(DB)
    site = unique_site()
    async with running_lab(tmp_path, iosxe=1, meraki_orgs=0, users_per_device=1, ssh=False) as lab:
        accts = lab_accounts(settings, lab, site)
        vault = Vault.open(settings)
        dispatcher = Dispatcher(vault, broker)
        try:
            (rid,) = dispatcher.submit([accts[0].uid], actor="test")
        finally:
            dispatcher.close()
            vault.close()
        env = env_for(settings.home, broker=broker, redis=broker, sites=[site], KEYTURN_MASTER_KEY=wrong)
        code, out, err = await keyturn(env, "worker", "--site", site, timeout=60)
        assert code == 3, out + err
        assert "sealed" in one_error_line(err)
        client = redis.Redis.from_url(broker)
        try:
            assert client.llen(queue_name(site)) == 1 and client.zcard("unacked_index") == 0
        finally:
            client.close()
        (req,) = all_requests(settings)
        assert (req.id, str(req.state), req.deliveries) == (rid, "queued", 0)


async def test_a_worker_for_an_unknown_site_is_refused_with_the_known_sites(tmp_path: Path):
    settings = Settings(home=tmp_path / "home")
    Vault.init(settings).close()
    broker = redis_db(DB)
    env = env_for(settings.home, broker=broker, redis=broker, sites=["dc-east", "dc-west"])
    code, out, err = await keyturn(env, "worker", "--site", "dc-north", timeout=60)
    assert code == 2, out + err
    line = one_error_line(err)
    assert "unknown site 'dc-north'" in line and "known sites: default, dc-east, dc-west" in line, line


async def test_a_sqlite_vault_with_a_live_worker_on_another_host_is_refused(tmp_path: Path):
    settings = Settings(home=tmp_path / "home")
    Vault.init(settings).close()
    engine = sa.create_engine(settings.effective_database_url)
    try:
        with engine.begin() as conn:
            now = time.time()
            conn.execute(workers_table.insert().values(
                name="keyturn-default-4242@elsewhere", host="elsewhere", pid=4242, site="default",
                concurrency=32, in_flight=0, started_at=now - 5, seen_at=now))
    finally:
        engine.dispose()
    broker = redis_db(DB)
    code, out, err = await keyturn(env_for(settings.home, broker=broker, redis=broker), "worker", timeout=60)
    assert code == 1, out + err
    line = one_error_line(err)
    assert "a SQLite vault cannot serve workers on several hosts (live workers on elsewhere)" in line, line
    assert "PostgreSQL" in line
