"""Shared test settings: hypothesis profiles and the ``device`` fixture.

Tests that take ``device`` run once per device: ``cpu`` always, ``cuda`` only where CuPy sees
a GPU (otherwise they are skipped with the reason).
"""
import os

import pytest
from hypothesis import HealthCheck, settings

import tinynet

settings.register_profile("default", max_examples=20, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

_CUDA = tinynet.cuda.is_available()
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda",
                 marks=pytest.mark.skipif(not _CUDA, reason="needs CuPy and an NVIDIA GPU")),
]


@pytest.fixture(scope="session", params=DEVICES)
def device(request):
    return request.param


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same seed, so failures reproduce."""
    tinynet.manual_seed(0)
    yield
