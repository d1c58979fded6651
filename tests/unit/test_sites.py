"""Sites on records (issue 13, item 3): names, configuration, where an account's site comes from, and
that every way into the vault (profile, import, API) refuses an unknown site with the known ones."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from keyturn.config import Settings, load_settings
from keyturn.engine.profile import check_options, set_profile
from keyturn.errors import ConfigError, ImportFailed, ProfileError
from keyturn.scripts.attachments import ScriptAttachment, to_meta
from keyturn.sites import (
    DEFAULT_SITE,
    check_site,
    known_sites,
    profile_options,
    site_and_source,
    site_from_metas,
    site_of,
    site_setting,
)
from keyturn.vault import Vault
from keyturn.vault.importers import parse
from tests.unit.api_world import Api, open_api
from tests.unit.engine_world import World

SITES = ["dc-east", "dc-west"]
CONFIGURED = Settings(home=Path("unused"), sites=SITES)


# --- names and configuration -------------------------------------------------------------------------


def test_default_is_always_known_and_first() -> None:
    assert known_sites(Settings(home=Path("unused"))) == [DEFAULT_SITE]
    assert known_sites(Settings(home=Path("unused"), sites=["dc-west", "default", "dc-west"])) == \
        ["default", "dc-west"]
    assert known_sites(CONFIGURED) == ["default", "dc-east", "dc-west"]


def test_check_site_accepts_known_names() -> None:
    assert check_site("dc-east", CONFIGURED) == "dc-east"
    assert check_site(" dc-west ", CONFIGURED) == "dc-west"
    assert check_site("default", CONFIGURED) == "default"


def test_unknown_site_lists_the_known_ones_and_how_to_add_one() -> None:
    with pytest.raises(ConfigError) as err:
        check_site("dc-north", CONFIGURED)
    assert str(err.value) == (
        "unknown site 'dc-north'; known sites: default, dc-east, dc-west; to add one, list it in "
        "KEYTURN_SITES (comma-separated) or in `sites = [...]` under [keyturn] in keyturn.toml")


@pytest.mark.parametrize("name", ["DC-East", "dc east", "-dc", ".dc", "dc/east", "dc:east", "a" * 64,
                                  "dc\n", "dc\u202e", "é"])
def test_malformed_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(ConfigError, match="is not valid: a lowercase letter or digit, then up to 62 of"):
        check_site(name, CONFIGURED)


def test_longest_name_is_63_characters() -> None:
    name = "d" * 63
    assert known_sites(Settings(home=Path("x"), sites=[name]))[1] == name
    with pytest.raises(ValueError, match="is not valid"):
        Settings(home=Path("x"), sites=[name + "d"])


def test_site_setting_clears_with_empty_or_default() -> None:
    assert site_setting(None, CONFIGURED) is None
    assert site_setting("", CONFIGURED) is None
    assert site_setting("  ", CONFIGURED) is None
    assert site_setting("default", CONFIGURED) is None
    assert site_setting("dc-east", CONFIGURED) == "dc-east"
    with pytest.raises(ConfigError, match="unknown site 'nowhere'"):
        site_setting("nowhere", CONFIGURED)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("KEYTURN_SITES", "KEYTURN_CONFIG", "KEYTURN_HOME"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "home"
    path.mkdir(mode=0o700)
    return path


def test_env_is_a_comma_separated_list(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYTURN_SITES", " dc-east , dc-west,,")
    assert load_settings(home=home).sites == SITES
    monkeypatch.setenv("KEYTURN_SITES", "")
    assert known_sites(load_settings(home=home)) == ["default"]
    monkeypatch.setenv("KEYTURN_SITES", "dc-east,DC West")
    with pytest.raises(ConfigError, match=r"invalid setting sites: .*site name 'DC West' is not valid"):
        load_settings(home=home)


def test_toml_list_under_keyturn_and_env_wins(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / "keyturn.toml").write_text('[keyturn]\nsites = ["dc-east", "lab.1"]\n')
    assert known_sites(load_settings(home=home)) == ["default", "dc-east", "lab.1"]
    monkeypatch.setenv("KEYTURN_SITES", "dc-west")
    assert load_settings(home=home).sites == ["dc-west"]
    monkeypatch.delenv("KEYTURN_SITES")
    (home / "keyturn.toml").write_text('[keyturn]\nsites = ["dc-east", 5]\n')
    with pytest.raises(ConfigError, match="invalid setting sites"):
        load_settings(home=home)


# --- where an account's site comes from --------------------------------------------------------------


class MetaOnly:
    """A vault of plain metadata that counts its reads (`site_of` needs only `meta`)."""

    def __init__(self, metas: dict[str, dict[str, Any]]) -> None:
        self.metas = metas
        self.reads: list[str] = []

    def meta(self, ref: str) -> tuple[str, dict[str, Any]]:
        from keyturn.errors import RecordNotFound

        self.reads.append(ref)
        if ref not in self.metas:
            raise RecordNotFound(ref)
        return ref, self.metas[ref]


class Rec:
    def __init__(self, meta: dict[str, Any]) -> None:
        self.meta = meta


def _user(resource: str | None, site: str | None = None) -> dict[str, Any]:
    options = {"site": site} if site is not None else {}
    return {"rotation": {"target": "fake", "resource": resource, "options": options}}


def test_profile_override_wins_and_reads_nothing_more() -> None:
    vault = MetaOnly({"sw1": {"site": "dc-east"}})
    user = Rec(_user("sw1", site="dc-west"))
    assert site_and_source(vault, user) == ("dc-west", "profile")
    assert vault.reads == []


def test_resource_site_with_one_metadata_read() -> None:
    vault = MetaOnly({"sw1": {"site": "dc-east"}, "u1": _user("sw1")})
    assert site_of(vault, Rec(_user("sw1"))) == "dc-east"
    assert vault.reads == ["sw1"]
    vault.reads.clear()
    assert site_and_source(vault, "u1") == ("dc-east", "resource")   # a reference: its meta is read too
    assert vault.reads == ["u1", "sw1"]


def test_default_without_site_profile_resource_or_when_the_resource_is_gone() -> None:
    vault = MetaOnly({"sw1": {}, "sw2": {"site": None}})
    assert site_and_source(vault, Rec(_user("sw1"))) == ("default", "default")
    assert site_of(vault, Rec(_user("sw2"))) == "default"        # cleared
    assert site_of(vault, Rec(_user(None))) == "default"         # noop profile without a resource
    assert site_of(vault, Rec({})) == "default"                  # no profile at all
    assert site_of(vault, Rec(_user("gone"))) == "default"


def test_an_explicit_default_override_pins_the_account() -> None:
    vault = MetaOnly({"sw1": {"site": "dc-east"}})
    assert site_and_source(vault, Rec(_user("sw1", site="default"))) == ("default", "profile")


def test_site_from_metas_for_batches() -> None:
    assert site_from_metas(_user("sw1"), {"site": "dc-east"}) == "dc-east"
    assert site_from_metas(_user("sw1", site="dc-west"), {"site": "dc-east"}) == "dc-west"
    assert site_from_metas(_user("sw1"), None) == "default"
    assert site_from_metas({}, {}) == "default"
    with pytest.raises(ConfigError, match="resource record holds a malformed site"):
        site_from_metas(_user("sw1"), {"site": "Not A Queue"})


# --- profiles ----------------------------------------------------------------------------------------


def test_site_is_an_allowed_profile_option_of_queue_name_shape() -> None:
    assert check_options({"site": "dc-east"}) == {"site": "dc-east"}
    with pytest.raises(ProfileError, match="profile option site must be a known site name"):
        check_options({"site": "DC East"})


def test_profile_options_folds_in_site() -> None:
    assert profile_options({"mode": "secret"}, "dc-east", CONFIGURED) == {"mode": "secret", "site": "dc-east"}
    with pytest.raises(ConfigError, match="disagree"):
        profile_options({"site": "dc-east"}, "", CONFIGURED)
    assert profile_options({}, "", CONFIGURED) == {}
    assert profile_options({}, "default", CONFIGURED) == {"site": "default"}
    assert profile_options({"site": "dc-west"}, None, CONFIGURED) == {"site": "dc-west"}
    with pytest.raises(ConfigError, match="unknown site 'dc-north'"):
        profile_options({"site": "dc-north"}, None, CONFIGURED)
    with pytest.raises(ConfigError, match="disagree"):
        profile_options({"site": "dc-west"}, "dc-east", CONFIGURED)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    vault = Vault.init(Settings(home=tmp_path / "home", sites=SITES))
    try:
        yield World(tmp_path, vault)
    finally:
        vault.close()


def _noop_user(world: World, title: str) -> str:
    uid = world.add_user(title, "netops", None)
    world.vault.set_meta(uid, "scripts", to_meta([ScriptAttachment(script="/bin/true")]))
    world.vault.set_meta(uid, "rotation", None)
    return uid


def test_set_profile_refuses_an_unknown_site_and_stores_a_known_one(world: World) -> None:
    uid = _noop_user(world, "u2")
    with pytest.raises(ConfigError, match="unknown site 'dc-north'; known sites: default, dc-east, dc-west"):
        set_profile(world.vault, uid, target="noop", resource="sw1", options={"site": "dc-north"})
    assert world.vault.get(uid).meta["rotation"] is None
    set_profile(world.vault, uid, target="noop", resource="sw1", options={"site": "dc-west"})
    world.vault.set_meta(world.resource.uid, "site", "dc-east")
    assert site_and_source(world.vault, world.vault.get(uid)) == ("dc-west", "profile")
    set_profile(world.vault, uid, target="noop", resource="sw1")
    assert site_and_source(world.vault, uid) == ("dc-east", "resource")


# --- import ------------------------------------------------------------------------------------------


def _doc(meta: dict[str, Any]) -> str:
    return json.dumps({"records": [{"title": "sw9", "type": "pamNetworkDevice", "meta": meta}]})


def test_import_refuses_an_unknown_site_and_takes_a_known_one() -> None:
    with pytest.raises(ImportFailed) as err:
        parse(_doc({"site": "dc-north"}), "keyturn", sites=known_sites(CONFIGURED))
    assert str(err.value).startswith("import file: record #1 ('sw9'): unknown site 'dc-north'; known "
                                     "sites: default, dc-east, dc-west; to add one")
    [rec] = parse(_doc({"site": "dc-east"}), "keyturn", sites=known_sites(CONFIGURED))
    assert rec.meta == {"site": "dc-east"}


def test_import_without_known_sites_accepts_only_default() -> None:
    parse(_doc({"site": "default"}), "keyturn")
    with pytest.raises(ImportFailed, match="unknown site 'dc-east'; known sites: default;"):
        parse(_doc({"site": "dc-east"}), "keyturn")


@pytest.mark.parametrize(("meta", "message"), [
    ({"site": "DC"}, "site name 'DC' is not valid"),
    ({"site": 3}, '"meta.site" must be text, not int'),
    ({"rotation": {"target": "noop", "options": {"site": "dc-north"}}}, "unknown site 'dc-north'"),
    ({"rotation": {"target": "noop", "options": {"site": ["dc-east"]}}},
     "the rotation profile's site option must be text, not list"),
])
def test_import_checks_every_site_in_the_metadata(meta: dict[str, Any], message: str) -> None:
    with pytest.raises(ImportFailed, match=re.escape(message)):
        parse(_doc(meta), "keyturn", sites=known_sites(CONFIGURED))


# --- API ---------------------------------------------------------------------------------------------


@pytest.fixture
async def api(world: World) -> AsyncIterator[Api]:
    async for a in open_api(world):
        yield a


async def test_api_record_site_create_patch_clear_and_refusal(api: Api) -> None:
    admin = api.auth("admin")
    bad = await api.client.post("/records", headers=admin,
                                json={"type": "pamNetworkDevice", "title": "sw2", "site": "dc-north"})
    assert bad.status_code == 422
    assert bad.json()["detail"].startswith("unknown site 'dc-north'; known sites: default, dc-east, dc-west")
    assert (await api.client.get("/records/sw2", headers=admin)).status_code == 404
    r = await api.client.post("/records", headers=admin,
                              json={"type": "pamNetworkDevice", "title": "sw2", "site": "dc-east"})
    assert r.status_code == 201, r.text
    assert r.json()["meta"] == {"site": "dc-east"}
    uid = r.json()["uid"]
    r = await api.client.patch(f"/records/{uid}", headers=admin, json={"site": "dc-west"})
    assert r.status_code == 200 and r.json()["meta"] == {"site": "dc-west"}
    r = await api.client.patch(f"/records/{uid}", headers=admin, json={"site": "nope"})
    assert r.status_code == 422 and "known sites: default, dc-east, dc-west" in r.json()["detail"]
    r = await api.client.patch(f"/records/{uid}", headers=admin, json={"title": "sw2b"})
    assert r.json()["meta"] == {"site": "dc-west"} and r.json()["title"] == "sw2b"   # omitted: kept
    r = await api.client.patch(f"/records/{uid}", headers=admin, json={"site": "default"})
    assert r.status_code == 200 and r.json()["meta"] == {"site": None}
    assert site_of(api.world.vault, Rec({"rotation": {"resource": uid}})) == "default"


async def test_api_profile_site_option_is_checked(api: Api) -> None:
    uid = _noop_user(api.world, "u3")
    r = await api.client.put(f"/records/{uid}/rotation", headers=api.auth("operator"),
                             json={"target": "noop", "resource": "sw1", "options": {"site": "dc-north"}})
    assert r.status_code == 422
    assert r.json()["detail"].startswith("unknown site 'dc-north'; known sites: default, dc-east, dc-west")
    r = await api.client.put(f"/records/{uid}/rotation", headers=api.auth("operator"),
                             json={"target": "noop", "resource": "sw1", "options": {"site": "dc-east"}})
    assert r.status_code == 200, r.text
    assert r.json()["options"] == {"site": "dc-east"}
    assert site_of(api.world.vault, uid) == "dc-east"
