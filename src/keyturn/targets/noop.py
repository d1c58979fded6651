"""`noop`: a target that changes nothing itself — the profile's post-rotation scripts do the change.

This is KeeperPAM's "NOOP" / "run scripts only" mode: the engine generates and write-aheads the
candidate, then the scripts apply it wherever it belongs (a system keyturn has no target for). The
target cannot test a login, so `verify` is always INCONCLUSIVE and `can_verify` is False; a profile
may name a real target as its verifier (`verify_with`) to check the result.
"""

from __future__ import annotations

from typing import ClassVar

from keyturn.secret import Secret
from keyturn.targets.base import Account, SecretRules, Verdict


class NoopTarget:
    kind: ClassVar[str] = "noop"
    constraints: ClassVar[SecretRules] = SecretRules(min_length=1, max_length=4096)
    can_verify: ClassVar[bool] = False

    async def verify(self, account: Account, secret: Secret) -> Verdict:
        return Verdict.INCONCLUSIVE

    async def change(self, account: Account, old: Secret | None, new: Secret) -> None:
        """Nothing to do here: the scripts are the change."""

    async def aclose(self) -> None:
        return None
