"""Suite-wide settings: property tests draw the same examples on every run (CI must not pass or
fail by the luck of the draw); ``HYPOTHESIS_PROFILE=explore`` draws fresh ones and more of them.
The sensitivity cache goes to a folder of this test session, never the user's ``~/.cache``."""

from __future__ import annotations

import os
import tempfile

from hypothesis import settings

from pmq.sensitivity.cache import CACHE_ENV

# set at import, before any test (or subprocess it starts) can read it; one folder per session, so
# repeated computations within a run still hit the cache
os.environ[CACHE_ENV] = tempfile.mkdtemp(prefix="pmq-test-cache-")

settings.register_profile("reproducible", derandomize=True, database=None)
settings.register_profile("explore", max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "reproducible"))
