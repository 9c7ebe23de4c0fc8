"""Suite-wide settings: the hypothesis profile `make test` uses."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

#: examples for the decoder fuzz tests (issue: at least 10,000 in the profile make test uses)
FUZZ_EXAMPLES = int(os.environ.get("PCG_FUZZ_EXAMPLES", "10000"))
