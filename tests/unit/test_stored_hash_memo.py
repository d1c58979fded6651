"""One slow hash per rotation (issue 14): `StoredHashMemo` lets `prove` skip the scrypt of a secret whose
stored hash keyturn proved before, only while the device still shows exactly that stored text — and
never turns a mismatch into a match (issue 11's lockout safety: a secret the device does not store is
still never tried). The device is the in-memory `FakeDevice` of the verify tests; digests are keyed by
a real HMAC, as the engine keys them with the vault."""

from __future__ import annotations

import hashlib
import hmac

from keyturn.cisco_hash import StoredCredential, type9_hash
from keyturn.secret import Secret
from keyturn.targets.base import Account, Proof, Verdict
from keyturn.targets.iosxe_verify import LEDGER_MEMO, StoredHashMemo, prove
from tests.unit.test_target_iosxe_verify import BAD, GOOD, LOCAL_FIRST, FakeDevice, account


def _digest(secret: Secret, stored: str) -> str:
    return hmac.new(b"k" * 32, f"{secret.reveal()}\0{stored}".encode(), hashlib.sha256).hexdigest()


def _with_memo(memo: StoredHashMemo, **options: str) -> Account:
    acct = account(verify="hash", **options)
    acct.probes.device[LEDGER_MEMO] = memo
    return acct


async def test_a_proved_stored_hash_is_remembered_and_spares_the_next_scrypt() -> None:
    dev, good = FakeDevice(), Secret(GOOD)
    first = StoredHashMemo(_digest)
    check = await prove(_with_memo(first), good, dev)
    assert (check.verdict, check.proof, first.skipped) == (Verdict.OK, Proof.STORED_HASH, 0)
    seen = first.proved_for(good)
    assert seen is not None and GOOD not in seen
    # The next rotation remembers it: same secret, same stored text -> a compare, same verdict.
    second = StoredHashMemo(_digest, {seen})
    check = await prove(_with_memo(second), Secret(GOOD), dev)
    assert (check.verdict, check.proof, second.skipped) == (Verdict.OK, Proof.STORED_HASH, 1)


async def test_a_changed_stored_hash_is_checked_in_full() -> None:
    dev = FakeDevice()
    memo = StoredHashMemo(_digest)
    await prove(_with_memo(memo), Secret(GOOD), dev)
    seen = memo.proved_for(next(s for s, _ in memo.proved))
    assert seen is not None
    # Someone set another secret on the device (new salt and hash): the memo does not apply.
    dev.stored = StoredCredential("secret", "9", Secret(type9_hash(BAD)))
    again = StoredHashMemo(_digest, {seen})
    check = await prove(_with_memo(again), Secret(GOOD), dev)
    assert (check.verdict, again.skipped, again.proved) == (Verdict.REJECTED, 0, [])


async def test_a_remembered_digest_never_vouches_for_another_secret() -> None:
    dev = FakeDevice()
    memo = StoredHashMemo(_digest)
    await prove(_with_memo(memo), Secret(GOOD), dev)
    known = {d for _, d in memo.proved}
    again = StoredHashMemo(_digest, known)
    check = await prove(_with_memo(again), Secret(BAD), dev)
    assert (check.verdict, again.skipped) == (Verdict.REJECTED, 0)


async def test_the_memo_keeps_the_login_proof_and_its_lockout_safety() -> None:
    """verify=login on a local-first device: the remembered hash spares the scrypt, the proof is
    still a login; a secret the device does not store is refused without one."""
    dev = FakeDevice(aaa=LOCAL_FIRST, local_login=True)
    memo = StoredHashMemo(_digest)
    acct = account(verify="login")
    acct.probes.device[LEDGER_MEMO] = memo
    assert (await prove(acct, Secret(GOOD), dev)).verdict is Verdict.OK
    again = StoredHashMemo(_digest, {d for _, d in memo.proved})
    acct = account(verify="login")
    acct.probes.device[LEDGER_MEMO] = again
    check = await prove(acct, Secret(GOOD), dev)
    assert (check.verdict, check.proof, again.skipped) == (Verdict.OK, Proof.BOTH, 1)
    acct = account(verify="login")
    acct.probes.device[LEDGER_MEMO] = StoredHashMemo(_digest, {d for _, d in memo.proved})
    logins = len(dev.logins)
    assert (await prove(acct, Secret(BAD), dev)).verdict is Verdict.REJECTED
    assert len(dev.logins) == logins
