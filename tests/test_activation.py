"""Activations and softmax: parity with PyTorch, finite-difference gradients, stability, errors;
and the erf kernel behind the exact GELU."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinynet
import tinynet.functional as F
from helpers import arrays, away_from, check_gradients, compare_with_torch, shapes, torch
from tinynet.kernels.special import erf

TF = torch.nn.functional if torch is not None else None
DTYPES = [np.float32, np.float64]

# name -> (tinynet fn, torch fn, kinks where the derivative jumps: kept away from for gradcheck)
ELEMENTWISE = {
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), lambda x: TF.leaky_relu(x, 0.2), [0.0]),
    "leaky_relu_default": (F.leaky_relu, lambda x: TF.leaky_relu(x), [0.0]),
    "elu": (lambda x: F.elu(x, 0.7), lambda x: TF.elu(x, 0.7), [0.0]),
    "gelu": (F.gelu, lambda x: TF.gelu(x), []),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), lambda x: TF.gelu(x, approximate="tanh"), []),
    "silu": (F.silu, lambda x: TF.silu(x), []),
    "softplus": (F.softplus, lambda x: TF.softplus(x), []),
    "softplus_beta_threshold": (lambda x: F.softplus(x, 2.0, 1.0), lambda x: TF.softplus(x, 2.0, 1.0), [0.5]),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
@given(data=st.data())
def test_elementwise_matches_torch(device, dtype, name, data):
    ours, theirs, kinks = ELEMENTWISE[name]
    x = data.draw(arrays(data.draw(shapes()), dtype, low=-4, high=4))
    x = away_from(x, kinks).astype(dtype)
    compare_with_torch(ours, theirs, [x], device=device)


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
@given(data=st.data())
def test_elementwise_gradients(device, name, data):
    ours, _, kinks = ELEMENTWISE[name]
    x = away_from(data.draw(arrays(data.draw(shapes(max_side=3)), low=-4, high=4)), kinks)
    check_gradients(ours, [x], device=device)


def test_large_inputs_stay_finite(device):
    x = tinynet.tensor(np.array([-1e4, -50.0, 0.0, 50.0, 1e4]), device=device, requires_grad=True)
    for fn in (F.silu, F.softplus, F.elu, F.gelu):
        x.grad = None
        y = fn(x)
        y.sum().backward()
        assert np.isfinite(y.detach().cpu().numpy()).all(), fn.__name__
        assert np.isfinite(x.grad.cpu().numpy()).all(), fn.__name__
    np.testing.assert_allclose(F.softplus(x).detach().cpu().numpy(), [0.0, 1.9287499e-22, math.log(2), 50.0, 1e4])


# ------------------------------------------------------------------------------------ prelu
@st.composite
def prelu_operands(draw, dtype, per_channel):
    shape = draw(shapes(min_dims=2 if per_channel else 0, max_dims=4, max_side=3))
    weight_shape = (shape[1],) if per_channel else draw(st.sampled_from([(1,), ()]))
    x = away_from(draw(arrays(shape, dtype)), [0.0]).astype(dtype)
    return [x, draw(arrays(weight_shape, dtype, low=0.0, high=0.5))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("per_channel", [False, True])
@given(data=st.data())
def test_prelu_matches_torch(device, dtype, per_channel, data):
    operands = data.draw(prelu_operands(dtype, per_channel))
    compare_with_torch(F.prelu, TF.prelu, operands, device=device)


@pytest.mark.parametrize("per_channel", [False, True])
@given(data=st.data())
def test_prelu_gradients(device, per_channel, data):
    check_gradients(F.prelu, data.draw(prelu_operands(np.float64, per_channel)), device=device)


def test_prelu_errors(device):
    with pytest.raises(RuntimeError, match=r"prelu.*4 elements.*\(2, 3\).*3 channel"):
        F.prelu(tinynet.zeros(2, 3, device=device), tinynet.zeros(4, device=device))
    with pytest.raises(RuntimeError, match=r"prelu.*\(1, 3\)"):
        F.prelu(tinynet.zeros(2, 3, device=device), tinynet.zeros(1, 3, device=device))
    with pytest.raises(RuntimeError, match=r"prelu.*3 elements"):
        F.prelu(tinynet.zeros(3, device=device), tinynet.zeros(3, device=device))


# -------------------------------------------------------------------------- softmax family
@st.composite
def softmax_input(draw, dtype):
    shape = draw(shapes(min_dims=0, max_dims=3))
    dim = draw(st.integers(-max(len(shape), 1), max(len(shape), 1) - 1))
    return draw(arrays(shape, dtype, low=-5, high=5)), dim


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@given(data=st.data())
def test_softmax_matches_torch(device, dtype, name, data):
    x, dim = data.draw(softmax_input(dtype))
    compare_with_torch(lambda t: getattr(F, name)(t, dim), lambda t: getattr(TF, name)(t, dim), [x], device=device)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@given(data=st.data())
def test_softmax_gradients(device, name, data):
    x, dim = data.draw(softmax_input(np.float64))
    check_gradients(lambda t: getattr(F, name)(t, dim), [x], device=device)


def test_softmax_methods_and_dtype_argument(device):
    x = tinynet.tensor(np.array([[1.0, 2.0, 3.0]], dtype=np.float32), device=device)
    expected = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    np.testing.assert_allclose(x.softmax(1).cpu().numpy()[0], expected, rtol=1e-6)
    np.testing.assert_allclose(x.log_softmax(-1).cpu().numpy()[0], np.log(expected), rtol=1e-6)
    assert F.softmax(x, 1, dtype=tinynet.float64).dtype == tinynet.float64


def test_softmax_of_huge_logits_is_finite(device):
    x = tinynet.tensor(np.array([[1e4, 0.0, -1e4], [1e4, 1e4, 1e4]]), device=device, requires_grad=True)
    p = F.softmax(x, 1)
    logp = F.log_softmax(x, 1)
    np.testing.assert_allclose(p.detach().cpu().numpy(), [[1, 0, 0], [1 / 3] * 3], atol=1e-12)
    np.testing.assert_allclose(logp.detach().cpu().numpy()[0], [0.0, -1e4, -2e4])
    (logp * tinynet.tensor(np.arange(6.0).reshape(2, 3), device=device)).sum().backward()
    assert np.isfinite(x.grad.cpu().numpy()).all()


def test_softmax_implicit_dim_warns_like_torch(device):
    x = tinynet.tensor(np.arange(6.0).reshape(2, 3), device=device)
    with pytest.warns(UserWarning, match="Implicit dimension"):
        y = F.softmax(x)
    np.testing.assert_allclose(y.cpu().numpy().sum(axis=1), [1.0, 1.0])  # dim 1 for 2-D, as PyTorch


def test_softmax_dim_out_of_range(device):
    with pytest.raises(IndexError, match=r"softmax.*\[-2, 1\].*2"):
        F.softmax(tinynet.zeros(2, 3, device=device), 2)
    with pytest.raises(IndexError, match="log_softmax"):
        F.log_softmax(tinynet.zeros(2, 3, device=device), -3)


# ---------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("name", ["leaky_relu", "elu", "gelu", "silu", "softplus"])
def test_integer_input_raises(device, name):
    with pytest.raises(NotImplementedError, match=f"{name}.*int64"):
        getattr(F, name)(tinynet.tensor([1, 2], device=device))


def test_softmax_integer_input_raises(device):
    with pytest.raises(NotImplementedError, match="softmax.*int64"):
        F.softmax(tinynet.tensor([1, 2], device=device), 0)


def test_gelu_bad_approximate(device):
    with pytest.raises(RuntimeError, match="gelu.*'sigmoid'"):
        F.gelu(tinynet.zeros(2, device=device), approximate="sigmoid")


def test_inplace_outside_graph_writes_input(device):
    x = tinynet.tensor(np.array([-2.0, 3.0]), device=device)
    with tinynet.no_grad():
        y = F.leaky_relu(x, 0.5, inplace=True)
    assert y is x
    np.testing.assert_array_equal(x.cpu().numpy(), [-1.0, 3.0])
    # While recording, the result is a new tensor and the input is untouched.
    w = tinynet.tensor(np.array([-2.0, 3.0]), device=device, requires_grad=True)
    z = F.elu(w, inplace=True)
    assert z is not w
    np.testing.assert_array_equal(w.detach().cpu().numpy(), [-2.0, 3.0])


# ---------------------------------------------------------------------------------- kernel
@pytest.mark.parametrize("dtype", DTYPES + [np.float16])
def test_erf_kernel(device, dtype):
    values = np.array([-3.0, -1.0, -0.25, 0.0, 0.5, 2.0, 6.0])
    x = tinynet.tensor(values.astype(dtype), device=device).data
    y = erf(x)
    assert y.dtype == dtype and y.shape == values.shape
    tol = {np.float16: 1e-3, np.float32: 1e-6, np.float64: 1e-15}[dtype]
    np.testing.assert_allclose(tinynet.Tensor(y).cpu().numpy().astype(np.float64),
                               [math.erf(float(np.asarray(v, dtype))) for v in values], atol=tol)
    assert erf(x[3]).shape == ()  # a 0-d array stays an array


def test_erf_kernel_rejects_integers():
    with pytest.raises(TypeError, match="erf.*int64"):
        erf(np.arange(3))
