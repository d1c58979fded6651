"""Suite-wide settings.

Property-based tests (hypothesis) draw fresh examples on every local run, so a developer keeps finding
new cases; under CI (`CI` set, as `.ci/run` runs) they are derandomized — the same examples every run —
so a green main stays green and a red one is reproducible. Set `HYPOTHESIS_PROFILE=explore` to hunt
with many more examples.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", max_examples=2_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "default"))


# `make test` runs the suite on two processes (pytest-xdist, `--dist loadfile`): a module's tests stay
# together on one process (their module-scoped labs, servers and browsers are built once) and modules run
# in parallel. So a module that flushes a Redis database owns it: 9 chaos workers, 10 shared limits,
# 11 worker flow, 12 serve + workers, 13 bad input, 14 doctor, 6 RabbitMQ failures' limits, 7 Redis
# failures, 8 PostgreSQL workers. Only tests/scaleout/test_failures_rabbit.py uses (and restarts) RabbitMQ.
