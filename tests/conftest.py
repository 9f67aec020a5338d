"""Shared test settings: hypothesis profiles and the ``device`` fixture.

Tests that take ``device`` run once per device: ``cpu``, and ``cuda``: on a real GPU when CuPy
sees one, otherwise on the simulated device (``tinynet.sim``, switched on here for the whole
session), so every device-parametrized test proves the CUDA code path (device propagation,
no implicit host reads) in CI too. The simulator tests plumbing only, not CUDA kernels' numbers
or speed. Tests about the "no GPU" error switch it off locally with
``tinynet.backend.simulate_cuda(False)``.
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

REAL_GPU = tinynet.backend.cuda_available()
tinynet.backend.simulate_cuda(True)  # used only when there is no GPU
DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda")]


@pytest.fixture(scope="session", params=DEVICES)
def device(request):
    return request.param


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same seed, so failures reproduce."""
    tinynet.manual_seed(0)
    yield
