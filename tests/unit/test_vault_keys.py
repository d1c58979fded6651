"""Master-key sources, sealing, and rekey (including an interrupted one)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from keyturn.config import Settings
from keyturn.errors import VaultError, VaultSealed
from keyturn.secret import Secret
from keyturn.vault import Field, Vault
from keyturn.vault.keys import KdfParams, MasterKey, create_key_file, encode_key, pending_key_file

FAST_KDF = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}


def _fill(vault: Vault, n: int) -> dict[str, str]:
    out = {}
    for i in range(n):
        pw = Field("password", None, [Secret(f"pw-{i}")])
        rec = vault.add(type="pamUser", title=f"user {i}", fields=[pw])
        out[rec.uid] = f"pw-{i}"
    return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_key_file_is_0600_and_loose_permissions_refused(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    Vault.init(settings).close()
    key_file = settings.effective_key_file
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "keyturn.db").stat().st_mode & 0o777 == 0o600
    key_file.chmod(0o644)
    with pytest.raises(VaultSealed, match=rf"fix with: chmod 600 {key_file}"):
        Vault.open(settings)


def test_wrong_master_key_is_sealed_and_writes_nothing(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    with Vault.init(settings) as v:
        _fill(v, 1)
    before = _sha(tmp_path / "keyturn.db")
    settings.effective_key_file.unlink()
    create_key_file(settings.effective_key_file)
    sealed = r"^vault is sealed: the master key does not match this vault \(key id "
    with pytest.raises(VaultSealed, match=sealed):
        Vault.open(settings)
    assert _sha(tmp_path / "keyturn.db") == before


def test_missing_key_and_no_vault(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match="keyturn init"):
        Vault.open(Settings(home=tmp_path / "nothing"))
    settings = Settings(home=tmp_path)
    Vault.init(settings).close()
    settings.effective_key_file.unlink()
    with pytest.raises(VaultSealed, match="no master key"):
        Vault.open(settings)


def test_init_refuses_existing_vault(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    Vault.init(settings).close()
    with pytest.raises(VaultError, match="already exists"):
        Vault.init(settings)


def test_env_master_key(tmp_path: Path) -> None:
    key = MasterKey.generate()
    settings = Settings(home=tmp_path, master_key=SecretStr(encode_key(key).reveal()))
    with Vault.init(settings) as v:
        uid = next(iter(_fill(v, 1)))
        assert v.key_id == key.key_id
    assert not settings.effective_key_file.exists()
    with Vault.open(settings) as v:
        assert v.secret(uid).reveal() == "pw-0"
    bad = Settings(home=tmp_path, master_key=SecretStr("not base64!"))
    with pytest.raises(VaultSealed, match="KEYTURN_MASTER_KEY is not valid base64"):
        Vault.open(bad)


def test_passphrase_argon2id(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    with Vault.init(settings, passphrase=Secret("correct horse"), kdf=KdfParams.new(**FAST_KDF)) as v:
        uid = next(iter(_fill(v, 1)))
    assert not settings.effective_key_file.exists()
    with pytest.raises(VaultSealed, match="uses a passphrase; set KEYTURN_PASSPHRASE"):
        Vault.open(settings)
    with pytest.raises(VaultSealed, match="does not match"):
        Vault.open(settings, passphrase=Secret("wrong horse"))
    with Vault.open(Settings(home=tmp_path, passphrase=SecretStr("correct horse"))) as v:
        assert v.secret(uid).reveal() == "pw-0"
    with Vault.open(settings, ask_passphrase=lambda: Secret("correct horse")) as v:
        assert v.status().passphrase


def test_interrupted_rekey_resumes_and_old_key_is_refused(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    with Vault.init(settings) as v:
        secrets = _fill(v, 5)
        old_id = v.key_id
    new_key = MasterKey.generate()
    with Vault.open(settings) as v:
        progress = v.rekey(new_key, limit=2, batch_size=1)
        assert (progress.rewrapped, progress.remaining, progress.finished) == (2, 4, False)
        # Mid-rekey the vault still reads everything (both keys loaded) and can add records.
        assert {u: v.secret(u).reveal() for u in secrets} == secrets
        pw = Field("password", None, [Secret("mid")])
        extra = v.add(type="login", title="added mid-rekey", fields=[pw])
    # Only the old key available: refused with a clear hint, not a half-readable vault.
    with pytest.raises(VaultSealed, match=rf"rekey to master key {new_key.key_id} is in progress"):
        Vault.open(settings)
    with Vault.open(settings, new_key=new_key) as v:
        assert v.status().rekey_remaining == 4  # the mid-rekey record is already under the new key
        with pytest.raises(VaultError, match="in progress"):
            v.rekey(MasterKey.generate())
        progress = v.rekey(new_key, batch_size=2)
        assert (progress.remaining, progress.finished) == (0, True)
        assert v.key_id == new_key.key_id
    with pytest.raises(VaultSealed, match=rf"does not match this vault \(key id {old_id}"):
        Vault.open(settings)
    env = Settings(home=tmp_path, master_key=SecretStr(encode_key(new_key).reveal()))
    with Vault.open(env) as v:
        assert {u: v.secret(u).reveal() for u in secrets} == secrets
        assert v.secret(extra.uid).reveal() == "mid"
        assert v.audit.verify() is None
        actions = [e.action for e in v.audit.list(limit=3)]
        assert actions[0] == "vault.rekey.done"


def test_default_rekey_file_is_adopted_after_a_crash_before_rename(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    with Vault.init(settings) as v:
        secrets = _fill(v, 2)
    pending = pending_key_file(settings.effective_key_file)
    new_key = create_key_file(pending)
    with Vault.open(settings) as v:  # picks up the pending key file automatically
        assert v.rekey(new_key).finished
    # Crash before `.new` replaced the key file: open finishes the swap.
    assert pending.exists()
    with Vault.open(settings) as v:
        assert {u: v.secret(u).reveal() for u in secrets} == secrets
    assert not pending.exists()
    assert os.stat(settings.effective_key_file).st_mode & 0o777 == 0o600
