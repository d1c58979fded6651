"""Suite-wide settings.

Property-based tests (hypothesis) draw fresh examples on every local run, so a developer keeps finding
new cases; under CI (`CI` set, as `.ci/run` runs) they are derandomized — the same examples every run —
so a green main stays green and a red one is reproducible. Set `HYPOTHESIS_PROFILE=explore` to hunt
with many more examples.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", max_examples=2_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "default"))


# `make test` runs the suite on two processes (pytest-xdist, `--dist loadgroup`). A module's tests stay
# together on one process (their module-scoped labs, servers and browsers are built once), and the tests
# that share a machine-wide service — RabbitMQ (restarted by a failure test), Redis databases flushed by
# their fixtures, the workers' brokers — run one after another in one group.
_SHARED_SERVICES = (
    "tests/scaleout/",
    "tests/integration/test_shared_limits.py",
    "tests/integration/test_discover_cli.py",
    "tests/unit/test_doctor.py",
    "tests/unit/test_dispatch_runtime.py",
    "tests/integration/test_chaos_short.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        group = "shared-services" if path.startswith(_SHARED_SERVICES) else path
        item.add_marker(pytest.mark.xdist_group(group))
