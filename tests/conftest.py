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
