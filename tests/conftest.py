"""Suite-wide settings: property tests draw the same examples on every run (CI must not pass or
fail by the luck of the draw); ``HYPOTHESIS_PROFILE=explore`` draws fresh ones and more of them."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("reproducible", derandomize=True, database=None)
settings.register_profile("explore", max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "reproducible"))
