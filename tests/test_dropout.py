"""dropout and dropout2d: statistics of the mask, exact scaling, seeding, gradients through the
same mask, whole-channel dropping, eval-mode identity, and bad p."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinynet
import tinynet.functional as F
from helpers import arrays, check_gradients, compare_with_torch, shapes, torch
from tinynet.functional.dropout import Dropout

DTYPES = [np.float32, np.float64]


def _numpy(t):
    return t.detach().cpu().numpy()


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_fraction_zeroed_is_close_to_p(device, p):
    x = tinynet.ones(100, 200, device=device)
    zeroed = (_numpy(F.dropout(x, p)) == 0).mean()
    sigma = np.sqrt(p * (1 - p) / x.numel())
    assert abs(zeroed - p) < 5 * sigma


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.2, 0.75])
def test_survivors_scaled_exactly(device, dtype, p):
    x = np.random.default_rng(0).uniform(1.0, 2.0, (50, 40)).astype(dtype)
    y = _numpy(F.dropout(tinynet.tensor(x, device=device), p))
    kept = y != 0
    assert kept.any() and not kept.all()
    assert y.dtype == dtype
    np.testing.assert_array_equal(y[kept], x[kept] * dtype(1 / (1 - p)))


def test_same_seed_same_mask(device):
    x = tinynet.ones(30, 30, device=device)
    tinynet.manual_seed(123)
    first = _numpy(F.dropout(x, 0.5))
    second = _numpy(F.dropout(x, 0.5))  # the generator moved on: a new mask
    tinynet.manual_seed(123)
    again = _numpy(F.dropout(x, 0.5))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, second)


def test_eval_mode_and_p0_are_identity(device):
    x = tinynet.randn(4, 5, device=device)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    assert F.dropout2d(tinynet.randn(2, 3, 4, 4, device=device), 0.5, training=False).shape == (2, 3, 4, 4)


def test_p1_gives_zeros_and_zero_gradient(device):
    x = tinynet.tensor(np.ones((3, 4)), device=device, requires_grad=True)
    y = F.dropout(x, 1.0)
    np.testing.assert_array_equal(_numpy(y), np.zeros((3, 4)))
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.cpu().numpy(), np.zeros((3, 4)))


def test_backward_uses_the_forward_mask(device):
    x = tinynet.tensor(np.ones((20, 20)), device=device, requires_grad=True)
    y = F.dropout(x, 0.3)
    y.sum().backward()
    # d(sum y)/dx = mask = y itself here, since x is all ones.
    np.testing.assert_array_equal(x.grad.cpu().numpy(), _numpy(y))


@given(x=shapes(min_dims=1).flatmap(arrays))
def test_dropout_gradients_with_a_fixed_mask(device, x):
    def seeded_dropout(t):
        tinynet.manual_seed(7)  # every evaluation of gradcheck draws the same mask
        return F.dropout(t, 0.4)
    check_gradients(seeded_dropout, [x], device=device)


@given(x=shapes(min_dims=4, max_dims=4, max_side=3).flatmap(arrays))
def test_dropout2d_gradients_with_a_fixed_mask(device, x):
    def seeded_dropout2d(t):
        tinynet.manual_seed(7)
        return F.dropout2d(t, 0.5)
    check_gradients(seeded_dropout2d, [x], device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_dropout_function_matches_torch_for_a_given_mask(device, dtype, data):
    x = data.draw(arrays(data.draw(shapes(min_dims=1)), dtype))
    mask = (data.draw(arrays(x.shape, dtype, 0.0, 1.0)) >= 0.5).astype(dtype) * dtype(2.0)
    mask_dev = tinynet.tensor(mask, device=device).data
    compare_with_torch(lambda t: Dropout.apply(t, mask_dev), lambda t: t * torch.tensor(mask, device=t.device),
                       [x], device=device)


def test_eval_mode_matches_torch(device):
    x = np.random.default_rng(0).standard_normal((3, 4))
    compare_with_torch(lambda t: F.dropout(t, 0.3, training=False),
                       lambda t: torch.nn.functional.dropout(t, 0.3, training=False), [x], device=device)


# -------------------------------------------------------------------------------- dropout2d
def test_dropout2d_zeroes_whole_channels(device):
    x = tinynet.ones(8, 16, 3, 3, device=device)
    y = _numpy(F.dropout2d(x, 0.5))
    per_channel = y.reshape(8, 16, 9)
    # Each (n, c) map is entirely dropped (all 0) or entirely kept (all 2).
    assert np.all((per_channel == 0).all(axis=2) | (per_channel == 2).all(axis=2))
    dropped = (per_channel == 0).all(axis=2).mean()
    assert 0.3 < dropped < 0.7


def test_dropout2d_unbatched_zeroes_whole_channels(device):
    y = _numpy(F.dropout2d(tinynet.ones(64, 2, 2, device=device), 0.5))
    per_channel = y.reshape(64, 4)
    assert np.all((per_channel == 0).all(axis=1) | (per_channel == 2).all(axis=1))
    assert 0 < (per_channel == 0).all(axis=1).sum() < 64


def test_dropout2d_gradient_drops_whole_channels(device):
    x = tinynet.tensor(np.ones((2, 6, 2, 2)), device=device, requires_grad=True)
    y = F.dropout2d(x, 0.5)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.cpu().numpy(), _numpy(y))


# ----------------------------------------------------------------------------------- inplace
def test_inplace_outside_graph_writes_input(device):
    x = tinynet.ones(10, 10, device=device)
    with tinynet.no_grad():
        y = F.dropout(x, 0.5, inplace=True)
    assert y is x
    assert (_numpy(x) == 0).any()


# ------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("op", ["dropout", "dropout2d"])
@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_p_outside_0_1_raises(device, op, p):
    with pytest.raises(ValueError, match=rf"{op}.*{p}"):
        getattr(F, op)(tinynet.ones(2, 3, 4, 4, device=device), p)


def test_integer_input_raises(device):
    with pytest.raises(RuntimeError, match="dropout.*int64"):
        F.dropout(tinynet.tensor([1, 2, 3], device=device))


def test_dropout2d_needs_at_least_2_dims(device):
    with pytest.warns(UserWarning, match="dropout2d"):
        with pytest.raises(RuntimeError, match=r"dropout2d.*\(5,\)"):
            F.dropout2d(tinynet.ones(5, device=device))
