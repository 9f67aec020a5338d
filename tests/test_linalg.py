"""matmul and linear: parity with PyTorch, finite-difference gradients, shape errors."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinynet
import tinynet.functional as F
from helpers import arrays, broadcastable_shapes, check_gradients, compare_with_torch, torch

DTYPES = [np.float32, np.float64]


@st.composite
def matmul_shapes(draw):
    """Operand shapes covering every matmul case: vector/matrix on either side, and batched
    operands whose batch dims broadcast."""
    n, k, m = (draw(st.integers(1, 4)) for _ in range(3))
    a_kind, b_kind = draw(st.sampled_from(["vector", "matrix", "batch"])), \
        draw(st.sampled_from(["vector", "matrix", "batch"]))
    batch_a, batch_b = draw(broadcastable_shapes(min_dims=1, max_dims=2, max_side=3))
    a = {"vector": (k,), "matrix": (n, k), "batch": tuple(batch_a) + (n, k)}[a_kind]
    b = {"vector": (k,), "matrix": (k, m), "batch": tuple(batch_b) + (k, m)}[b_kind]
    return a, b


@st.composite
def matmul_operands(draw, dtype):
    a, b = draw(matmul_shapes())
    return draw(arrays(a, dtype)), draw(arrays(b, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_matmul_matches_torch(device, dtype, data):
    a, b = data.draw(matmul_operands(dtype))
    compare_with_torch(F.matmul, torch.matmul, [a, b], device=device)


@given(operands=matmul_operands(np.float64))
def test_matmul_gradients(device, operands):
    check_gradients(F.matmul, list(operands), device=device)


def test_matmul_operator_and_method(device):
    a = tinynet.tensor(np.arange(6.0).reshape(2, 3), device=device)
    b = tinynet.tensor(np.arange(3.0), device=device)
    expected = np.arange(6.0).reshape(2, 3) @ np.arange(3.0)
    np.testing.assert_allclose((a @ b).cpu().numpy(), expected)
    np.testing.assert_allclose(a.matmul(b).cpu().numpy(), expected)


def test_matmul_vector_dot_is_0d(device):
    a = tinynet.tensor(np.array([1.0, 2.0, 3.0]), device=device, requires_grad=True)
    b = tinynet.tensor(np.array([4.0, 5.0, 6.0]), device=device)
    y = F.matmul(a, b)
    assert y.shape == ()
    assert y.item() == 32.0
    y.backward()
    np.testing.assert_array_equal(a.grad.cpu().numpy(), [4.0, 5.0, 6.0])


def test_matmul_integer_and_mixed_dtypes(device):
    a = tinynet.tensor(np.arange(6).reshape(2, 3), device=device)
    b = tinynet.tensor(np.ones(3, dtype=np.int64), device=device)
    y = F.matmul(a, b)
    assert y.dtype == tinynet.int64 and y.tolist() == [3, 12]
    # Mixed float dtypes are promoted (PyTorch would raise).
    c = F.matmul(tinynet.ones(2, 3, device=device), tinynet.ones(3, dtype=tinynet.float64, device=device))
    assert c.dtype == tinynet.float64


@pytest.mark.parametrize("a_shape,b_shape", [((2, 3), (4, 5)), ((3,), (4,)), ((2, 2, 3), (3, 3, 4)),
                                             ((5, 3), (2,))])
def test_matmul_shape_errors_name_op_and_shapes(device, a_shape, b_shape):
    a, b = tinynet.zeros(a_shape, device=device), tinynet.zeros(b_shape, device=device)
    with pytest.raises(RuntimeError, match="matmul") as info:
        F.matmul(a, b)
    assert str(a_shape) in str(info.value) and str(b_shape) in str(info.value)


def test_matmul_0d_raises(device):
    with pytest.raises(RuntimeError, match="matmul.*at least 1-D"):
        F.matmul(tinynet.tensor(2.0, device=device), tinynet.ones(3, device=device))


def test_matmul_non_tensor_raises():
    with pytest.raises(TypeError, match="matmul"):
        F.matmul(np.ones((2, 2)), tinynet.ones(2, 2))


# ------------------------------------------------------------------------------------ linear
@st.composite
def linear_operands(draw, dtype, bias=True):
    batch = draw(st.sampled_from([(), (3,), (2, 3)]))
    n_in, n_out = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    x = draw(arrays(batch + (n_in,), dtype))
    w = draw(arrays((n_out, n_in), dtype))
    return [x, w] + ([draw(arrays((n_out,), dtype))] if bias else [])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@given(data=st.data())
def test_linear_matches_torch(device, dtype, bias, data):
    operands = data.draw(linear_operands(dtype, bias))
    compare_with_torch(F.linear, torch.nn.functional.linear, operands, device=device)


@pytest.mark.parametrize("bias", [True, False])
@given(data=st.data())
def test_linear_gradients(device, bias, data):
    check_gradients(F.linear, data.draw(linear_operands(np.float64, bias)), device=device)


@pytest.mark.parametrize("bias_shape", [(1, 3), (), (2, 3)])
def test_linear_gradients_with_a_broadcast_bias(device, bias_shape):
    """A bias of another shape than (out,) is added after the GEMM (not in it), and its gradient
    summed back to its shape by the engine."""
    rng = np.random.default_rng(0)
    check_gradients(F.linear, [rng.standard_normal((2, 4)), rng.standard_normal((3, 4)),
                               rng.standard_normal(bias_shape)], device=device)


def test_linear_frozen_weight_bias_gradient(device):
    """Weight without grad: db (the rows' sum of dy) without the weight-gradient GEMM."""
    x = tinynet.tensor(np.ones((2, 5, 3)), device=device)
    w = tinynet.tensor(np.ones((4, 3)), device=device)
    b = tinynet.tensor(np.zeros(4), device=device, requires_grad=True)
    F.linear(x, w, b).sum().backward()
    np.testing.assert_array_equal(b.grad.cpu().numpy(), np.full(4, 10.0))


def test_linear_only_weight_needs_grad(device):
    x = tinynet.tensor(np.ones((2, 3)), device=device)
    w = tinynet.tensor(np.ones((4, 3)), device=device, requires_grad=True)
    F.linear(x, w).sum().backward()
    np.testing.assert_array_equal(w.grad.cpu().numpy(), np.full((4, 3), 2.0))


def test_linear_errors(device):
    x = tinynet.zeros(3, 4, device=device)
    with pytest.raises(RuntimeError, match=r"linear.*\(3, 4\).*\(5, 6\)"):
        F.linear(x, tinynet.zeros(5, 6, device=device))
    with pytest.raises(RuntimeError, match=r"linear.*weight.*\(4,\)"):
        F.linear(x, tinynet.zeros(4, device=device))
    with pytest.raises(RuntimeError, match=r"linear.*bias.*\(3,\)"):
        F.linear(x, tinynet.zeros(5, 4, device=device), tinynet.zeros(3, device=device))
