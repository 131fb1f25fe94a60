"""Hypothesis settings for this test suite: derandomised under CI (the CI runner sets CI=true),
so a CI result is reproducible; randomised locally, so local runs keep exploring."""

import os

from hypothesis import settings

settings.register_profile("ci-derandomized", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci-derandomized")
