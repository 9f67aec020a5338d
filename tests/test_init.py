"""nn.init: gains and fans as PyTorch computes them, and each initialiser's bounds and
standard deviation against PyTorch's formulas (and against torch's own samples)."""
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinynet
import tinynet.nn as nn
from tinynet.nn import init
from helpers import requires_torch, to_numpy, torch

NONLINEARITIES = [("linear", None), ("conv2d", None), ("conv_transpose2d", None), ("sigmoid", None),
                  ("tanh", None), ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", 1),
                  ("selu", None)]


@requires_torch
@pytest.mark.parametrize("nonlinearity,param", NONLINEARITIES)
def test_calculate_gain_matches_pytorch(nonlinearity, param):
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(torch.nn.init.calculate_gain(nonlinearity, param))


def test_calculate_gain_values_and_errors():
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(1 / 3))
    with pytest.raises(ValueError, match="nonlinearity"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="negative_slope"):
        init.calculate_gain("leaky_relu", True)


@requires_torch
@pytest.mark.parametrize("shape", [(3, 5), (8, 4, 3, 3), (6, 2, 5), (1, 7, 1, 2)])
def test_fans_match_pytorch(shape):
    ours = init._calculate_fan_in_and_fan_out(tinynet.empty(shape))
    assert ours == torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


def test_fans_need_two_dimensions():
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(tinynet.empty(5))
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        init.kaiming_uniform_(tinynet.empty(3, 3), mode="fan_avg")


def _check(values, *, bound=None, std=None, mean=0.0, tol=0.08):
    values = np.asarray(values, dtype=np.float64).ravel()
    if bound is not None:
        assert np.abs(values - mean).max() <= bound * (1 + 1e-6)
        assert np.abs(values - mean).max() > 0.95 * bound
        std = bound / math.sqrt(3)  # the std of U(-b, b)
    assert abs(values.mean() - mean) < 4 * std / math.sqrt(values.size) + 1e-7
    assert abs(values.std() / std - 1) < tol


SHAPE = (128, 64, 3, 3)  # fan_in = 576, fan_out = 1152, ~74k samples: tight estimates
FAN_IN, FAN_OUT = 64 * 9, 128 * 9


def test_xavier_uniform_and_normal_follow_the_glorot_formula(device):
    t = tinynet.empty(SHAPE, device=device)
    assert init.xavier_uniform_(t, gain=2.0) is t
    _check(to_numpy(t), bound=2.0 * math.sqrt(6 / (FAN_IN + FAN_OUT)))
    _check(to_numpy(init.xavier_normal_(t)), std=math.sqrt(2 / (FAN_IN + FAN_OUT)))


@pytest.mark.parametrize("mode,fan", [("fan_in", FAN_IN), ("fan_out", FAN_OUT)])
@pytest.mark.parametrize("nonlinearity,a,gain", [("relu", 0, math.sqrt(2)), ("leaky_relu", 0.1, math.sqrt(2 / 1.01)),
                                                 ("linear", 0, 1.0)])
def test_kaiming_uniform_and_normal_follow_the_he_formula(mode, fan, nonlinearity, a, gain, device):
    t = tinynet.empty(SHAPE, device=device)
    _check(to_numpy(init.kaiming_uniform_(t, a=a, mode=mode, nonlinearity=nonlinearity)),
           bound=gain * math.sqrt(3 / fan))
    _check(to_numpy(init.kaiming_normal_(t, a=a, mode=mode, nonlinearity=nonlinearity)), std=gain / math.sqrt(fan))


@requires_torch
@pytest.mark.parametrize("name,kwargs", [("xavier_uniform_", {}), ("xavier_normal_", {"gain": 0.5}),
                                         ("kaiming_uniform_", {"a": math.sqrt(5)}),
                                         ("kaiming_normal_", {"mode": "fan_out", "nonlinearity": "relu"}),
                                         ("uniform_", {"a": -0.3, "b": 0.7}), ("normal_", {"mean": 1.0, "std": 0.2}),
                                         ("trunc_normal_", {"std": 0.5, "a": -0.4, "b": 0.6})])
def test_samples_have_the_same_distribution_as_pytorchs(name, kwargs):
    torch.manual_seed(0)
    shape = (64, 32, 3, 3)
    ours = to_numpy(getattr(init, name)(tinynet.empty(shape), **kwargs)).ravel()
    theirs = getattr(torch.nn.init, name)(torch.empty(shape), **kwargs).numpy().ravel()
    quantiles = [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99]
    if "normal" not in name or "trunc" in name:
        quantiles = [0.0, *quantiles, 1.0]  # bounded distributions: the extremes are the bounds
    spread = theirs.std()
    np.testing.assert_allclose(np.quantile(ours, quantiles), np.quantile(theirs, quantiles), atol=0.05 * spread)


def test_uniform_normal_constant_ones_zeros_eye(device):
    t = tinynet.empty(200, 100, device=device)
    _check(to_numpy(init.uniform_(t, -2.0, 4.0)), bound=3.0, mean=1.0)
    _check(to_numpy(init.normal_(t, 3.0, 0.5)), std=0.5, mean=3.0)
    assert np.all(to_numpy(init.constant_(t, 0.7)) == np.float32(0.7))
    assert np.all(to_numpy(init.ones_(t)) == 1) and np.all(to_numpy(init.zeros_(t)) == 0)
    np.testing.assert_array_equal(to_numpy(init.eye_(tinynet.empty(3, 4, device=device))), np.eye(3, 4))
    with pytest.raises(ValueError, match="2 dimensions"):
        init.eye_(tinynet.empty(2, 2, 2))


def test_trunc_normal_stays_in_its_interval():
    values = to_numpy(init.trunc_normal_(tinynet.empty(20000), mean=1.0, std=2.0, a=0.0, b=1.5))
    assert values.min() >= 0.0 and values.max() <= 1.5 and values.min() < 0.01 and values.max() > 1.49
    # N(1, 2) restricted to [0, 1.5] is nearly flat there, slightly peaked at 1: mean just under 0.76.
    assert 0.73 < values.mean() < 0.78


def test_init_works_on_parameters_outside_no_grad_and_is_seeded():
    layer = nn.Linear(4, 4)
    tinynet.manual_seed(7)
    first = to_numpy(init.kaiming_normal_(layer.weight)).copy()
    assert layer.weight.requires_grad and layer.weight.grad_fn is None
    tinynet.manual_seed(7)
    np.testing.assert_array_equal(to_numpy(init.kaiming_normal_(layer.weight)), first)
    gen = tinynet.Generator().manual_seed(1)
    a = to_numpy(init.xavier_uniform_(tinynet.empty(3, 3), generator=gen)).copy()
    gen.manual_seed(1)
    np.testing.assert_array_equal(to_numpy(init.xavier_uniform_(tinynet.empty(3, 3), generator=gen)), a)


def test_init_keeps_dtype_and_warns_on_empty_tensors():
    t = tinynet.empty(5, 5, dtype=tinynet.float64)
    assert init.kaiming_uniform_(t).dtype == tinynet.float64
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        init.kaiming_uniform_(tinynet.empty(0, 3))
    assert any("zero-element" in str(w.message) for w in caught)


@given(out_f=st.integers(1, 12), in_f=st.integers(1, 12), kernel=st.lists(st.integers(1, 3), max_size=2),
       a=st.floats(0, 3))
def test_kaiming_uniform_never_exceeds_its_bound(out_f, in_f, kernel, a):
    t = init.kaiming_uniform_(tinynet.empty(out_f, in_f, *kernel), a=a)
    bound = math.sqrt(2 / (1 + a * a)) * math.sqrt(3 / (in_f * math.prod(kernel)))
    assert np.abs(to_numpy(t)).max() <= bound * (1 + 1e-6)
