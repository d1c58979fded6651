from __future__ import annotations

import pytest

from keyturn.errors import ProfileError
from keyturn.secret import Secret
from keyturn.targets.base import Account, Endpoint, Persisting, Target, Verdict
from keyturn.targets.noop import NoopTarget
from keyturn.targets.registry import TARGETS, create_target, kinds, target_class


@pytest.mark.parametrize("kind", sorted(TARGETS))
def test_every_kind_loads_and_names_itself(kind: str) -> None:
    cls = target_class(kind)
    assert cls.kind == kind
    target = create_target(kind)
    assert isinstance(target, Target)
    assert target.constraints.max_length >= target.constraints.min_length


def test_persisting_capability() -> None:
    persisting = {k for k in TARGETS if isinstance(create_target(k), Persisting)}
    assert persisting == {"iosxe-restconf", "iosxe-ssh", "iosxe-enable-secret"}


def test_unknown_kind_suggests() -> None:
    with pytest.raises(ProfileError, match="did you mean 'iosxe-ssh'"):
        target_class("iosxe-shh")
    with pytest.raises(ProfileError, match="known: "):
        target_class("zzz")
    assert kinds() == sorted(TARGETS)


def test_injected_io_reaches_the_constructor() -> None:
    target = create_target("iosxe-restconf", retries=7)
    assert target._retries == 7  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        create_target("noop", bogus=1)


async def test_noop_changes_nothing_and_cannot_verify() -> None:
    target = NoopTarget()
    account = Account(record_uid="n", username="x", endpoint=Endpoint(host=""))
    await target.change(account, None, Secret("new"))
    assert target.can_verify is False
    assert await target.verify(account, Secret("new")) is Verdict.INCONCLUSIVE
    await target.aclose()
