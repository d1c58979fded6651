"""Vault records and secret versions on an embedded SQLite vault (real database file, no mocks)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from keyturn.config import Settings
from keyturn.errors import AmbiguousRecord, DuplicateRecord, RecordNotFound, VaultError
from keyturn.secret import Secret
from keyturn.vault import Field, Vault, VersionState


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    v = Vault.init(Settings(home=tmp_path, history_depth=2))
    yield v
    v.close()


def _user(vault: Vault, title: str = "sw1 admin", pw: str = "old-pw") -> str:
    rec = vault.add(
        type="pamUser", title=title,
        fields=[Field("login", None, ["admin"]), Field("password", None, [Secret(pw)])],
        custom=[Field("text", "host_endpoint", ["10.0.0.1"]), Field("secret", "enable", ["en-pw"])],
    )
    return rec.uid


def test_init_creates_default_pam_configuration(vault: Vault) -> None:
    rec = vault.get("Default PAM Configuration")
    assert rec.type == "pamConfiguration"
    assert len(rec.uid) == 22


def test_add_and_get_round_trip(vault: Vault) -> None:
    uid = _user(vault)
    rec = vault.get(uid)
    assert rec.title == "sw1 admin"
    assert rec.field("login") == "admin"
    pw = rec.field("password")
    assert isinstance(pw, Secret) and pw.reveal() == "old-pw"
    assert rec.custom_value("host_endpoint") == "10.0.0.1"
    assert rec.custom_value("HOST_ENDPOINT") == "10.0.0.1"
    assert rec.custom_value("enable").reveal() == "en-pw"
    assert vault.secret(uid, "enable").reveal() == "en-pw"
    assert "old-pw" not in repr(rec)
    assert rec.created_at.tzinfo is not None


def test_lookup_by_title_is_case_insensitive(vault: Vault) -> None:
    uid = _user(vault)
    assert vault.get("SW1 Admin").uid == uid


def test_duplicate_title_refused_unless_allowed(vault: Vault) -> None:
    _user(vault)
    with pytest.raises(DuplicateRecord, match="already exists"):
        _user(vault, title="SW1 admin")
    vault.add(type="login", title="sw1 admin", allow_duplicate=True)
    with pytest.raises(AmbiguousRecord) as err:
        vault.get("sw1 admin")
    assert len(err.value.candidates) == 2
    assert "pamUser" in str(err.value) and "login" in str(err.value)


def test_unknown_record(vault: Vault) -> None:
    with pytest.raises(RecordNotFound, match="keyturn record list"):
        vault.get("no such thing")


def test_find_by_type_title_and_custom(vault: Vault) -> None:
    _user(vault, "sw1 admin")
    _user(vault, "sw2 admin")
    assert [r.title for r in vault.find(type="pamUser")] == ["sw1 admin", "sw2 admin"]
    assert [r.title for r in vault.find(title="W2")] == ["sw2 admin"]
    assert len(vault.find(custom={"host_endpoint": "10.0.0.1"})) == 2
    assert vault.find(custom={"host_endpoint": "10.9.9.9"}) == []
    assert vault.find(title="%") == []  # LIKE wildcards are escaped


def test_update_password_makes_new_current_version(vault: Vault) -> None:
    uid = _user(vault)
    rec = vault.get(uid)
    fields = [f if f.type != "password" else Field("password", None, [Secret("new-pw")]) for f in rec.fields]
    vault.update(uid, title="sw1 root", fields=fields)
    assert vault.secret(uid).reveal() == "new-pw"
    states = [(v.version, v.state) for v in vault.versions(uid)]
    assert states == [(2, VersionState.CURRENT), (1, VersionState.PREVIOUS)]
    assert vault.get("sw1 root").uid == uid
    # Same value again: no new version.
    vault.update(uid, fields=vault.get(uid).fields)
    assert len(vault.versions(uid)) == 2


def test_pending_promote_and_history_trim(vault: Vault) -> None:
    uid = _user(vault)
    for i in range(4):
        v = vault.add_version(uid, Secret(f"cand-{i}"), rotation_id=f"rot-{i}")
        assert vault.versions(uid)[0].state is VersionState.PENDING
        assert vault.secret(uid).reveal() == ("old-pw" if i == 0 else f"cand-{i - 1}")
        vault.promote(uid, v)
    infos = vault.versions(uid)
    # history_depth=2: current + 2 previous kept, older previous trimmed.
    assert [(i.version, i.state) for i in infos] == [
        (5, VersionState.CURRENT), (4, VersionState.PREVIOUS), (3, VersionState.PREVIOUS),
    ]
    assert infos[0].rotation_id == "rot-3"
    assert vault.version_secret(uid, 4).reveal() == "cand-2"


def test_failed_version_and_current_cannot_be_demoted(vault: Vault) -> None:
    uid = _user(vault)
    v = vault.add_version(uid, Secret("bad"), rotation_id="r1")
    vault.set_version_state(uid, v, VersionState.FAILED)
    assert vault.secret(uid).reveal() == "old-pw"
    with pytest.raises(VaultError, match="promote another version"):
        vault.set_version_state(uid, 1, VersionState.PREVIOUS)
    vault.set_version_state(uid, v, VersionState.CURRENT)
    assert vault.secret(uid).reveal() == "bad"


def test_add_version_on_field_the_record_lacks(vault: Vault) -> None:
    rec = vault.add(type="pamUser", title="no pw yet", fields=[Field("login", None, ["bob"])])
    assert vault.secret(rec.uid) is None
    assert vault.versions(rec.uid) == []
    v = vault.add_version(rec.uid, Secret("first"), state=VersionState.CURRENT)
    assert v == 1
    assert vault.get(rec.uid).field("password").reveal() == "first"
    vault.add_version(rec.uid, Secret("en"), field="enable_secret", state=VersionState.CURRENT)
    assert vault.get(rec.uid).custom_value("enable_secret").reveal() == "en"


def test_exactly_one_current_under_concurrent_promotes(vault: Vault) -> None:
    uid = _user(vault)
    versions = [vault.add_version(uid, Secret(f"c{i}")) for i in range(8)]
    barrier = threading.Barrier(len(versions))
    errors: list[BaseException] = []

    def promote(v: int) -> None:
        barrier.wait()
        try:
            vault.promote(uid, v)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=promote, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    currents = [i for i in vault.versions(uid) if i.state is VersionState.CURRENT]
    assert len(currents) == 1
    assert vault.audit.verify() is None


def test_meta_remove_and_reveal_audited(vault: Vault) -> None:
    uid = _user(vault)
    vault.set_meta(uid, "rotation", {"target": "noop"})
    assert vault.get(uid).meta == {"rotation": {"target": "noop"}}
    with pytest.raises(Exception, match="secret"):
        vault.set_meta(uid, "oops", Secret("x"))
    assert vault.reveal(uid, actor="tester").reveal() == "old-pw"
    last = vault.audit.list(limit=1)[0]
    assert (last.action, last.actor, last.record_uid) == ("reveal", "tester", uid)
    assert "old-pw" not in str(last.details)
    vault.remove(uid)
    with pytest.raises(RecordNotFound):
        vault.get(uid)
    assert vault.audit.verify() is None


def test_hmac_value_matches_without_storing(vault: Vault) -> None:
    a = vault.hmac_value(Secret("x"))
    assert a == vault.hmac_value("x")
    assert a != vault.hmac_value("y")
    assert len(a) == 64


# ---- what a write may store (records.check_fields / validate_title; issue 12, item 15) ------------------


def test_helpers_for_quoting_names() -> None:
    from keyturn.vault.records import describe_char, escaped, shorten, shown

    assert shorten("x" * 60) == "x" * 60 and shorten("x" * 61) == "x" * 60 + "\u2026"
    assert shown("a\u202eb\n" + "c" * 100) == repr("a\u202eb\n" + "c" * 56 + "\u2026")
    assert "\u202e" not in shown("a\u202eb")
    assert escaped("a\x00b\u2066c\ud800 é\ttab") == "a\\x00b\\u2066c\\ud800 é\\ttab"
    assert describe_char("\x0a") == "U+000A LINE FEED"
    assert describe_char("\u200f") == "U+200F RIGHT-TO-LEFT MARK"
    assert describe_char("\x9e") == "U+009E"


def test_check_value_is_a_loop_not_recursion() -> None:
    from keyturn.vault.records import check_value

    deep: object = "leaf"
    for _ in range(200_000):  # past any recursion limit: a recursive walk would crash here
        deep = [deep]
    with pytest.raises(VaultError, match="nested more than 8 levels deep"):
        check_value(deep, "field host", depth=8)
    check_value({"a": [1, 2.5, True, None, {"b": "c"}]}, "v", depth=3)
    for bad, message in [(float("nan"), "nan is not a JSON number"), ({1: "x"}, "keys must be text"),
                         ({"k\ud800": 1}, "a key contains a lone surrogate"), (b"x", "is not a JSON value"),
                         (["ok", "bad\udfff"], r"v\[1\] contains a lone surrogate")]:
        with pytest.raises(VaultError, match=message):
            check_value(bad, "v", depth=3)


def test_check_fields_skips_what_is_stored_unchanged() -> None:
    from keyturn.vault.records import check_fields

    stored = [Field("login", None, ["ad\u200bmin"]), Field("text", "la\nbel", ["x"])]
    check_fields(stored, [], unchanged=stored)
    with pytest.raises(VaultError, match="U\\+200B"):
        check_fields(stored, [])
    with pytest.raises(VaultError, match="U\\+200B"):  # a changed login is checked
        check_fields([Field("login", None, ["ad\u200bmin2"])], [], unchanged=stored)
    with pytest.raises(VaultError, match="lone surrogate"):  # a secret is always checked
        check_fields([Field("password", None, [Secret("p\ud800")])], [],
                     unchanged=[Field("password", None, [Secret("old")])])
    with pytest.raises(VaultError, match="must not be a Secret"):
        check_fields([Field("login", None, [Secret("x")])], [])


def test_refused_title_writes_nothing(vault: Vault) -> None:
    before = (vault.status(), [s.uid for s in vault.summaries()])
    with pytest.raises(VaultError, match="U\\+000A LINE FEED, at character 3"):
        vault.add(type="login", title="ab\ncd")
    with pytest.raises(VaultError, match="201 characters long"):
        vault.add(type="login", title="x" * 201)
    assert (vault.status(), [s.uid for s in vault.summaries()]) == before
