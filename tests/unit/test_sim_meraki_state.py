"""Rules of the Meraki simulator state, without HTTP."""

from __future__ import annotations

import pytest

from keyturn.errors import SimulatedApiError, SimulatorError
from keyturn.sim.meraki_state import (
    FIRST_TOKEN,
    LAST_TOKEN,
    MESSAGES,
    AdminIdentity,
    MerakiState,
    auth_user_id,
    paginate,
)


@pytest.fixture
def world() -> tuple[MerakiState, str, str, AdminIdentity]:
    state = MerakiState(seed=7)
    org = state.add_org("Lab", org_id="2930418")
    net = state.add_network(org.id, "Branch", network_id="N_24329156")
    who = state.authenticate(state.add_api_key())
    assert who is not None
    return state, org.id, net.id, who


def test_ids_keys_and_seeded_reproducibility() -> None:
    a, b = MerakiState(seed=1), MerakiState(seed=1)
    assert a.add_org("x").id == b.add_org("x").id
    key = a.add_api_key()
    assert len(key) == 40 and all(c in "0123456789abcdef" for c in key)
    assert auth_user_id("hi@hi.com") == "aGlAaGkuY29t"  # the spec's example id


def test_password_update_is_hashed_org_wide_and_counted(world: tuple) -> None:
    state, org_id, net_id, who = world
    net2 = state.add_network(org_id, "Branch 2").id
    state.add_auth_user(net_id, "jane@example.com", "old-pw")
    state.add_auth_user(net2, "jane@example.com", "old-pw")
    user = state.find_auth_user(net_id, "jane@example.com")
    assert user is not None and b"old-pw" not in user.password_hash
    out = state.update_auth_user(net_id, user.id, {"password": "new-pw"}, who)
    assert out["email"] == "jane@example.com" and "password" not in out
    assert state.verify_login(net_id, "jane@example.com", "new-pw")
    assert state.verify_login(net2, "jane@example.com", "new-pw")  # one identity per org
    assert not state.verify_login(net_id, "jane@example.com", "old-pw")
    assert user.password_changes == 1 and state.emailed_passwords == 0


def test_admin_users_refuse_name_and_password(world: tuple) -> None:
    state, _, net_id, who = world
    admin = state.add_auth_user(net_id, "boss@example.com", "pw", is_admin=True)
    for body in ({"password": "x-new"}, {"name": "Boss"}):
        with pytest.raises(SimulatedApiError) as exc:
            state.update_auth_user(net_id, admin.id, body, who)
        assert exc.value.status == 400 and exc.value.errors == [MESSAGES["admin_immutable"]]
    assert state.verify_login(net_id, "boss@example.com", "pw")


def test_refuse_passwords_fault_leaves_password_alone(world: tuple) -> None:
    state, org_id, net_id, who = world
    user = state.add_auth_user(net_id, "jane@example.com", "old-pw")
    state.faults_for(org_id).update(refuse_passwords=1, refuse_message="Too short for policy P")
    with pytest.raises(SimulatedApiError) as exc:
        state.update_auth_user(net_id, user.id, {"password": "new-pw"}, who)
    assert exc.value.errors == ["Too short for policy P"]
    assert state.verify_login(net_id, "jane@example.com", "old-pw")
    state.update_auth_user(net_id, user.id, {"password": "new-pw"}, who)  # only the next one was refused
    assert state.verify_login(net_id, "jane@example.com", "new-pw")
    assert state.stats_for(org_id).refused_passwords == 1


def test_drift_and_expired_authorizations(world: tuple) -> None:
    state, _, net_id, who = world
    user = state.add_auth_user(net_id, "guest@example.com", "pw-1", account_type="Guest")
    state.set_password_out_of_band(net_id, "guest@example.com", "user-chose-this")
    assert state.verify_login(net_id, "guest@example.com", "user-chose-this")
    assert user.password_changes == 0  # drift is invisible to the API's counters
    state.update_auth_user(net_id, user.id, {"authorizations": [
        {"ssidNumber": 0, "expiresAt": "2001-01-01T00:00:00Z"}]}, who)
    assert not state.verify_login(net_id, "guest@example.com", "user-chose-this")


def test_create_rules_and_email_password_recorded(world: tuple) -> None:
    state, _, net_id, who = world
    body = {"email": "new@example.com", "name": "New", "password": "pw-new-1", "accountType": "Guest",
            "emailPasswordToUser": True, "authorizations": [{"ssidNumber": 2}]}
    out = state.create_auth_user(net_id, body, who)
    assert out["authorizations"][0]["ssidNumber"] == 2
    assert out["authorizations"][0]["expiresAt"] == "Never"
    assert out["authorizations"][0]["authorizedByEmail"] == who.email
    assert state.emailed_passwords == 1
    with pytest.raises(SimulatedApiError, match="already been taken"):
        state.create_auth_user(net_id, body, who)
    for bad in ({**body, "email": "b@example.com", "accountType": "Admin"},
                {**body, "email": "c@example.com", "password": None},
                {**body, "email": "d@example.com", "authorizations": [{}]},
                {"email": "e@example.com"}):
        with pytest.raises(SimulatedApiError) as exc:
            state.create_auth_user(net_id, bad, who)
        assert exc.value.status == 400


def test_delete_semantics(world: tuple) -> None:
    state, org_id, net_id, who = world
    net2 = state.add_network(org_id, "Branch 2").id
    dot1x = state.add_auth_user(net_id, "r@example.com", "pw", account_type="802.1X")
    vpn = state.add_auth_user(net_id, "v@example.com", "pw")
    state.add_auth_user(net2, "v@example.com", "pw")
    state.delete_auth_user(net_id, dot1x.id, who, delete=False)
    assert state.find_auth_user(net_id, "r@example.com") is None  # 802.1X always deleted
    state.delete_auth_user(net_id, vpn.id, who, delete=True)
    assert state.find_auth_user(net_id, "v@example.com") is not None  # still authorised on net2
    assert [u["email"] for u in state.list_auth_users(net2, who)] == ["v@example.com"]
    state.delete_auth_user(net2, vpn.id, who, delete=True)
    assert state.find_auth_user(net_id, "v@example.com") is None
    with pytest.raises(SimulatedApiError) as exc:
        state.get_auth_user(net_id, vpn.id, who)
    assert exc.value.status == 404


def test_api_keys_max_two_and_revoke(world: tuple) -> None:
    state, _, _, who = world
    first = who.keys[0].key
    second = state.generate_api_key(who)["key"]
    with pytest.raises(SimulatedApiError) as exc:
        state.generate_api_key(who)
    assert exc.value.status == 400
    assert {k["suffix"] for k in state.list_api_keys(who)} == {first[-4:], second[-4:]}
    state.revoke_api_key(who, first[-4:])
    assert state.authenticate(first) is None and state.authenticate(second) is who
    with pytest.raises(SimulatedApiError) as exc:
        state.revoke_api_key(who, "zzzz")
    assert exc.value.status == 404


def test_scoped_key_sees_only_its_orgs(world: tuple) -> None:
    state, _, net_id, _ = world
    other = state.add_org("Other")
    scoped = state.authenticate(state.add_api_key([other.id]))
    assert scoped is not None
    assert [o.id for o in state.list_orgs(scoped)] == [other.id]
    with pytest.raises(SimulatedApiError) as exc:
        state.list_auth_users(net_id, scoped)
    assert exc.value.status == 404


def test_lab_helpers_refuse_unknown_things() -> None:
    state = MerakiState()
    with pytest.raises(SimulatorError):
        state.add_network("nope", "x")
    org = state.add_org("x", org_id="1")
    with pytest.raises(SimulatorError):
        state.add_org("dup", org_id="1")
    net = state.add_network(org.id, "n")
    with pytest.raises(SimulatorError):
        state.set_password_out_of_band(net.id, "ghost@example.com", "pw")
    assert not state.verify_login("N_0", "ghost@example.com", "pw")


@pytest.mark.parametrize(("kwargs", "ids", "prev", "nxt"), [
    ({}, ["1", "2", "3"], False, True),
    ({"starting_after": "3"}, ["4", "5", "10"], True, True),
    ({"starting_after": "10"}, ["11"], True, False),
    ({"starting_after": FIRST_TOKEN}, ["1", "2", "3"], False, True),
    ({"ending_before": LAST_TOKEN}, ["5", "10", "11"], True, False),
    ({"ending_before": "4"}, ["1", "2", "3"], False, True),
])
def test_paginate_windows(kwargs: dict, ids: list[str], prev: bool, nxt: bool) -> None:
    items = ["1", "2", "3", "4", "5", "10", "11"]  # numeric order, not lexical
    page = paginate(items, lambda i: i, per_page=3, **kwargs)
    assert (page.items, page.has_prev, page.has_next) == (ids, prev, nxt)
