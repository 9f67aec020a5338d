"""Elementwise ops: gradients (finite differences), parity with PyTorch, kinks and ties,
PyTorch's dtype rules, comparisons and logic, and the errors raised on bad input.

Each op is written once as ``lambda m, *args: m.<op>(...)`` and run with ``m = tinynet`` and
``m = torch``: tinynet's API mirrors PyTorch's, so one spec serves both frameworks.
"""
import functools
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinynet
import tinynet.functional as F
from helpers import (arrays, away_from, broadcastable_shapes, check_gradients, compare_with_torch,
                     shapes, to_numpy, torch)

DTYPES = [np.float32, np.float64]


def on_tinynet(spec):
    """The tinynet version of a spec ``lambda m, *args``."""
    return functools.partial(spec, tinynet)


def both(spec):
    """(tinynet version, torch version) of a spec ``lambda m, *args``."""
    return functools.partial(spec, tinynet), functools.partial(spec, torch)


def quantised(values, offset=0.0, dtype=None):
    """Values rounded to multiples of 1/4 plus ``offset``, as an array of ``dtype`` (default: the
    input's). Arrays with different offsets never tie: they stay at least the difference of
    offsets apart, far more than the finite-difference step."""
    values = np.asarray(values)
    return np.asarray(np.round(values * 4) / 4 + offset, dtype=dtype or values.dtype)


# ----------------------------------------------------------------------------- unary ops
# name -> (spec, low, high, kinks): inputs are drawn in [low, high] and moved off the kinks.
UNARY = {
    "neg": (lambda m, x: m.neg(x), -2, 2, []),
    "neg_operator": (lambda m, x: -x, -2, 2, []),
    "exp": (lambda m, x: m.exp(x), -2, 2, []),
    "log": (lambda m, x: m.log(x), 0.125, 3, []),
    "sqrt": (lambda m, x: m.sqrt(x), 0.125, 3, []),
    "rsqrt": (lambda m, x: m.rsqrt(x), 0.125, 3, []),
    "abs": (lambda m, x: m.abs(x), -2, 2, [0]),
    "abs_operator": (lambda m, x: abs(x), -2, 2, [0]),
    "square": (lambda m, x: m.square(x), -2, 2, []),
    "sign": (lambda m, x: m.sign(x), -2, 2, [0]),
    "sin": (lambda m, x: m.sin(x), -3, 3, []),
    "cos": (lambda m, x: m.cos(x), -3, 3, []),
    "tanh": (lambda m, x: m.tanh(x), -3, 3, []),
    "sigmoid": (lambda m, x: m.sigmoid(x), -6, 6, []),
    "relu": (lambda m, x: m.relu(x), -2, 2, [0]),
    "pow_scalar_exponent": (lambda m, x: x ** 3, -2, 2, []),
    "pow_fractional_exponent": (lambda m, x: m.pow(x, 0.5), 0.125, 3, []),
    "scalar_base_pow": (lambda m, x: 2.5 ** x, -2, 2, []),
    "clamp": (lambda m, x: m.clamp(x, -0.5, 0.75), -2, 2, [-0.5, 0.75]),
    "clamp_min": (lambda m, x: m.clamp(x, min=-0.5), -2, 2, [-0.5]),
    "clamp_max": (lambda m, x: m.clamp(x, max=0.5), -2, 2, [0.5]),
    "clip": (lambda m, x: m.clip(x, -1, 1), -2, 2, [-1, 1]),
    "clamp_method": (lambda m, x: x.clamp(min=0.25), -2, 2, [0.25]),
    "mul_scalar": (lambda m, x: x * 2.5, -2, 2, []),
    "rsub_scalar": (lambda m, x: 1.5 - x, -2, 2, []),
    "rdiv_scalar": (lambda m, x: 3 / x, 0.5, 2, []),
    "add_scalar_alpha": (lambda m, x: m.add(x, 2, alpha=-0.5), -2, 2, []),
}


@st.composite
def unary_input(draw, name, dtype=np.float64):
    _, low, high, kinks = UNARY[name]
    x = draw(arrays(draw(shapes()), dtype, low, high))
    return away_from(x, kinks, margin=1e-2).astype(dtype) if kinks else x


@pytest.mark.parametrize("name", UNARY)
@given(data=st.data())
def test_unary_gradients(device, name, data):
    x = data.draw(unary_input(name))
    check_gradients(on_tinynet(UNARY[name][0]), [x], device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", UNARY)
@given(data=st.data())
def test_unary_matches_torch(device, name, dtype, data):
    x = data.draw(unary_input(name, dtype))
    compare_with_torch(*both(UNARY[name][0]), [x], device=device)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_and_tanh_are_stable_for_large_inputs(device, dtype):
    x = np.array([-1e4, -100.0, -30.0, 0.0, 30.0, 100.0, 1e4, -np.inf, np.inf], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning from exp
        out = compare_with_torch(*both(lambda m, x: m.sigmoid(x)), [x], device=device)
        compare_with_torch(*both(lambda m, x: m.tanh(x)), [x], device=device)
    y = to_numpy(out[0])
    assert y[0] == 0 and y[-3] == 1 and not np.isnan(y).any()


# ----------------------------------------------------------------------------- binary ops
# name -> (spec, strategy of the two inputs' values as (low, high) or "untied").
BINARY = {
    "add": (lambda m, a, b: m.add(a, b), None),
    "add_alpha": (lambda m, a, b: m.add(a, b, alpha=-2.0), None),
    "add_operator": (lambda m, a, b: a + b, None),
    "sub": (lambda m, a, b: m.sub(a, b), None),
    "sub_alpha": (lambda m, a, b: m.sub(a, b, alpha=0.5), None),
    "sub_operator": (lambda m, a, b: a - b, None),
    "mul": (lambda m, a, b: m.mul(a, b), None),
    "mul_operator": (lambda m, a, b: a * b, None),
    "div": (lambda m, a, b: m.div(a, b), "positive_b"),
    "true_divide": (lambda m, a, b: m.true_divide(a, b), "positive_b"),
    "div_operator": (lambda m, a, b: a / b, "positive_b"),
    "pow": (lambda m, a, b: m.pow(a, b), "positive_a"),
    "pow_operator": (lambda m, a, b: a ** b, "positive_a"),
    "maximum": (lambda m, a, b: m.maximum(a, b), "untied"),
    "minimum": (lambda m, a, b: m.minimum(a, b), "untied"),
    "maximum_method": (lambda m, a, b: a.maximum(b), "untied"),
    "clamp_tensor_min": (lambda m, a, b: m.clamp(a, min=b), "untied"),
    "clamp_tensor_max": (lambda m, a, b: m.clamp(a, max=b), "untied"),
}


@st.composite
def binary_inputs(draw, name, dtype=np.float64):
    shape_a, shape_b = draw(broadcastable_shapes())
    a, b = draw(arrays(shape_a, dtype)), draw(arrays(shape_b, dtype))
    kind = BINARY[name][1]
    if kind == "positive_b":
        b = np.asarray(np.abs(b) + 0.5, dtype=dtype)
    elif kind == "positive_a":
        a = np.asarray(np.abs(a) + 0.5, dtype=dtype)
    elif kind == "untied":
        a, b = quantised(a), quantised(b, 0.125)
    return a, b


@pytest.mark.parametrize("name", BINARY)
@given(data=st.data())
def test_binary_gradients(device, name, data):
    check_gradients(on_tinynet(BINARY[name][0]), list(data.draw(binary_inputs(name))), device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", BINARY)
@given(data=st.data())
def test_binary_matches_torch(device, name, dtype, data):
    compare_with_torch(*both(BINARY[name][0]), list(data.draw(binary_inputs(name, dtype))), device=device)


@st.composite
def clamp_inputs(draw, dtype=np.float64):
    """x, low, high with bounds that broadcast to x's shape, no value of x on a bound, sometimes
    low > high. (Bounds larger than x also work in tinynet, but PyTorch's backward fails there.)"""
    shape, low_shape = draw(broadcastable_shapes())
    x_shape = np.broadcast_shapes(shape, low_shape)
    x = quantised(draw(arrays(x_shape, dtype)), 0.125)
    low = quantised(draw(arrays(low_shape, dtype)))
    high = quantised(draw(arrays(draw(st.sampled_from([(), low_shape])), dtype)), 0.0625)
    return [x, low, high]


def clamp_both(m, x, low, high):
    return m.clamp(x, low, high)


@given(inputs=clamp_inputs())
def test_clamp_tensor_bounds_gradients(device, inputs):
    check_gradients(on_tinynet(clamp_both), inputs, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_clamp_tensor_bounds_match_torch(device, dtype, data):
    compare_with_torch(*both(clamp_both), data.draw(clamp_inputs(dtype)), device=device)


# ----------------------------------------------------------------------------- where
@st.composite
def where_inputs(draw, dtype=np.float64):
    shape_c, shape_a = draw(broadcastable_shapes())
    shape_b = draw(st.sampled_from([shape_a, shape_c, ()]))
    condition = draw(arrays(shape_c, np.float64, 0, 1)) > 0.5
    return [np.asarray(condition), draw(arrays(shape_a, dtype)), draw(arrays(shape_b, dtype))]


def where_spec(m, c, a, b):
    return m.where(c, a, b)


@given(inputs=where_inputs())
def test_where_gradients(device, inputs):
    check_gradients(on_tinynet(where_spec), inputs, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_where_matches_torch(device, dtype, data):
    compare_with_torch(*both(where_spec), data.draw(where_inputs(dtype)), device=device)


@pytest.mark.parametrize("spec", [
    lambda m, c, x: m.where(c, x, 0.0),
    lambda m, c, x: m.where(c, -1, x),
    lambda m, c, x: m.where(c, 2.5, -1.0) * x,
    lambda m, c, x: x.masked_fill(c, 3.0),
    lambda m, c, x: x.where(c, 0.5),
])
@pytest.mark.parametrize("dtype", DTYPES)
def test_where_with_numbers_matches_torch(device, dtype, spec):
    c = np.array([[True, False, True], [False, False, True]])
    x = np.array([[1.0, -2.0, 3.0], [0.5, 0.0, -1.5]], dtype=dtype)
    compare_with_torch(*both(spec), [c, x], device=device)


def test_where_unselected_inf_gives_no_nan_gradient(device):
    c = np.array([True, False, True])
    a = np.array([1.0, np.inf, 2.0])
    b = np.array([-np.inf, 3.0, np.nan])
    compare_with_torch(*both(where_spec), [c, a, b], device=device)
    # An infinite incoming gradient where the other branch is selected: masking it by
    # multiplication would give 0 * inf = NaN; where gives 0.
    ta = tinynet.tensor(a, device=device, requires_grad=True)
    tb = tinynet.tensor(b, device=device, requires_grad=True)
    y = tinynet.where(tinynet.tensor(c, device=device), ta, tb)
    y.backward(tinynet.tensor([np.inf, 1.0, np.inf], device=device))
    np.testing.assert_array_equal(to_numpy(ta.grad), [np.inf, 0.0, np.inf])
    np.testing.assert_array_equal(to_numpy(tb.grad), [0.0, 1.0, 0.0])


# ----------------------------------------------------------------------------- kinks and ties
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spec", [
    lambda m, x: m.relu(x),
    lambda m, x: m.abs(x),
    lambda m, x: m.sign(x),
    lambda m, x: m.clamp(x, -1.0, 1.0),
    lambda m, x: m.clamp(x, min=0.0),
    lambda m, x: m.clamp(x, max=0.0),
    lambda m, x: m.clamp(x, 1.0, -1.0),  # min > max: the result is max everywhere
    lambda m, x: x ** 0,
    lambda m, x: m.sqrt(x * x + 1),
])
def test_kinks_match_torch(device, dtype, spec):
    x = np.array([-2.0, -1.0, 0.0, 1.0, 2.0, -0.0], dtype=dtype)
    compare_with_torch(*both(spec), [x], device=device)


def test_relu_abs_clamp_gradient_at_kinks(device):
    x = tinynet.tensor([0.0, -1.0, 1.0], device=device, requires_grad=True)
    for op, expected in [(tinynet.relu, [0, 0, 1]), (tinynet.abs, [0, -1, 1]),
                         (lambda t: tinynet.clamp(t, -1, 1), [1, 1, 1]),
                         (lambda t: tinynet.clamp(t, 0.5, -0.5), [0, 0, 0])]:
        x.grad = None
        y = op(x)
        y.backward(tinynet.ones_like(y))
        np.testing.assert_array_equal(to_numpy(x.grad), expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spec", [
    lambda m, a, b: m.maximum(a, b),
    lambda m, a, b: m.minimum(a, b),
    lambda m, a, b: m.clamp(a, min=b),
    lambda m, a, b: m.clamp(a, max=b),
    lambda m, a, b: m.clamp(a, b, b + 1),
    lambda m, a, b: m.clamp(a, b + 1, b),  # min > max: the gradient goes to max
    lambda m, a, b: m.pow(a, b),
])
def test_ties_match_torch(device, dtype, spec):
    a = np.array([1.0, 2.0, 3.0, 0.0, 0.5], dtype=dtype)
    b = np.array([1.0, 1.0, 4.0, 0.0, 0.0], dtype=dtype)
    compare_with_torch(*both(spec), [a, b], device=device)


def test_maximum_minimum_split_ties_evenly(device):
    a = tinynet.tensor([1.0, 2.0], device=device, requires_grad=True)
    b = tinynet.tensor([1.0, 1.0], device=device, requires_grad=True)
    for op, grad_a, grad_b in [(tinynet.maximum, [0.5, 1.0], [0.5, 0.0]),
                               (tinynet.minimum, [0.5, 0.0], [0.5, 1.0])]:
        a.grad = b.grad = None
        op(a, b).backward(tinynet.ones(2, dtype=tinynet.float32, device=device))
        np.testing.assert_array_equal(to_numpy(a.grad), grad_a)
        np.testing.assert_array_equal(to_numpy(b.grad), grad_b)


def test_pow_zero_to_zero_has_finite_gradients(device):
    a = tinynet.tensor([0.0, 2.0], dtype=tinynet.float64, device=device, requires_grad=True)
    b = tinynet.tensor([0.0, 0.0], dtype=tinynet.float64, device=device, requires_grad=True)
    y = a ** b
    y.backward(tinynet.ones_like(y))
    np.testing.assert_array_equal(to_numpy(a.grad), [0.0, 0.0])
    np.testing.assert_allclose(to_numpy(b.grad), [0.0, np.log(2.0)])


# ----------------------------------------------------------------------------- dtype rules
@pytest.mark.parametrize("spec, arrays_, expected", [
    (lambda m, a: a * 2.5, [np.array([1, 2])], "float32"),
    (lambda m, a, b: a / b, [np.array([1, 3]), np.array([2, 2])], "float32"),
    (lambda m, a, b: a + b, [np.array([1.0], np.float32), np.array([2.0], np.float64)], "float64"),
    (lambda m, a, b: a + b, [np.array([1, 2]), np.array([0.5, 1.5], np.float32)], "float32"),
    (lambda m, a: a * 2.5, [np.array([1.0], np.float32)], "float32"),
    (lambda m, a: 2 ** a, [np.array([1, 3])], "int64"),
    (lambda m, a: a * 2, [np.array([True, False])], "int64"),
    (lambda m, a, b: a * b, [np.ones((2, 2), np.float32), np.array(3.0)], "float32"),  # 0-d float64
    (lambda m, a, b: a * b, [np.array([1, 2]), np.array(0.5)], "float64"),  # 0-d of higher category
    (lambda m, a, b: a - b, [np.array([1, 2], np.int32), np.array(7)], "int32"),
    (lambda m, a, b: a + b, [np.array([1, 2], np.uint8), np.array([1, 2], np.int8)], "int16"),
    (lambda m, a: m.clamp(a, min=0.5), [np.array([0, 1, 2])], "float32"),
    (lambda m, a: m.clamp(a, 0, 1), [np.array([-1, 1, 2])], "int64"),
    (lambda m, a: m.abs(a), [np.array([-1, 1], np.int32)], "int32"),
    (lambda m, a: m.relu(a), [np.array([-1, 1])], "int64"),
    (lambda m, a: m.square(a), [np.array([-1, 3])], "int64"),
    (lambda m, a: m.sqrt(a), [np.array([1, 4])], "float32"),
    (lambda m, a: m.sigmoid(a), [np.array([1, 4], np.int32)], "float32"),
    (lambda m, a: m.exp(a), [np.array([True, False])], "float32"),
    (lambda m, a, b: m.maximum(a, b), [np.array([1, 4]), np.array([2.0, 3.0], np.float32)], "float32"),
    (lambda m, c: m.where(c, 1, 0), [np.array([True, False])], "int64"),
    (lambda m, c: m.where(c, 1.0, 0), [np.array([True, False])], "float32"),
    (lambda m, c, a: m.where(c, a, 2.5), [np.array([True, False]), np.array([1, 2])], "float32"),
])
def test_dtype_promotion_matches_torch(device, spec, arrays_, expected):
    out = compare_with_torch(*both(spec), arrays_, device=device)
    assert to_numpy(out[0]).dtype == np.dtype(expected)


def test_float32_tensor_times_python_float_keeps_float32_and_gradient_dtype(device):
    x = tinynet.tensor([1.0, 2.0], device=device, requires_grad=True)
    y = (x * 2.5 + 1.0) / 3.0
    assert y.dtype == tinynet.float32
    y.backward(tinynet.ones_like(y))
    assert x.grad.dtype == tinynet.float32


def test_gradient_flows_back_through_promotion(device):
    a = tinynet.tensor([1.0, 2.0], dtype=tinynet.float32, device=device, requires_grad=True)
    b = tinynet.tensor([3.0, 4.0], dtype=tinynet.float64, device=device, requires_grad=True)
    y = a * b
    assert y.dtype == tinynet.float64
    y.backward(tinynet.ones_like(y))
    assert a.grad.dtype == tinynet.float32 and b.grad.dtype == tinynet.float64
    np.testing.assert_array_equal(to_numpy(a.grad), [3.0, 4.0])


# ----------------------------------------------------------------------------- comparisons, logic
COMPARISONS = {
    "eq": lambda m, a, b: m.eq(a, b), "ne": lambda m, a, b: m.ne(a, b),
    "lt": lambda m, a, b: m.lt(a, b), "le": lambda m, a, b: m.le(a, b),
    "gt": lambda m, a, b: m.gt(a, b), "ge": lambda m, a, b: m.ge(a, b),
    "==": lambda m, a, b: a == b, "!=": lambda m, a, b: a != b, "<": lambda m, a, b: a < b,
    "<=": lambda m, a, b: a <= b, ">": lambda m, a, b: a > b, ">=": lambda m, a, b: a >= b,
    "lt_method": lambda m, a, b: a.lt(b),
    "logical_and": lambda m, a, b: m.logical_and(a, b),
    "logical_or": lambda m, a, b: m.logical_or(a, b),
    "logical_not": lambda m, a, b: m.logical_not(a),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", COMPARISONS)
@given(data=st.data())
def test_comparisons_match_torch(device, name, dtype, data):
    shape_a, shape_b = data.draw(broadcastable_shapes())
    # Coarse values so that equal elements, and zeros for the logical ops, are common.
    a, b = (quantised(data.draw(arrays(s, dtype, -1, 1)) / 2, dtype=dtype) for s in (shape_a, shape_b))
    out = compare_with_torch(*both(COMPARISONS[name]), [a, b], device=device, grad=False)
    assert out[0].dtype == tinynet.bool_ and not out[0].requires_grad


@pytest.mark.parametrize("spec", [
    lambda m, a: a < 2.5,  # the int tensor is compared as float: 2 < 2.5
    lambda m, a: m.eq(a, 2.0),
    lambda m, a: 1 <= a,
    lambda m, a: m.ne(a, True),
    lambda m, a: m.logical_not(a),
    lambda m, a: ~(a > 1),
    lambda m, a: (a > 0) & (a < 3),
    lambda m, a: (a < 1) | (a > 2),
])
def test_comparisons_with_numbers_and_int_tensors(device, spec):
    compare_with_torch(*both(spec), [np.array([-1, 0, 1, 2, 3])], device=device)


def test_comparison_promotes_like_torch(device):
    # int64 vs float32 compares in float32, where 2**24 + 1 rounds to 2**24 (NumPy would use float64).
    a, b = np.array([2**24 + 1, 5]), np.array([2.0**24, 5.0], np.float32)
    out = compare_with_torch(*both(lambda m, a, b: m.eq(a, b)), [a, b], device=device, grad=False)
    np.testing.assert_array_equal(to_numpy(out[0]), [True, True])


def test_comparison_result_works_as_mask(device):
    x = tinynet.tensor([-1.0, 2.0, -3.0, 4.0], device=device, requires_grad=True)
    mask = x > 0
    y = tinynet.where(mask, x, tinynet.zeros_like(x)) + x.masked_fill(~mask, 0.0) * 0.5
    y.backward(tinynet.ones_like(y))
    np.testing.assert_array_equal(to_numpy(y), [0.0, 3.0, 0.0, 6.0])
    np.testing.assert_array_equal(to_numpy(x.grad), [0.0, 1.5, 0.0, 1.5])
    both_masks = mask & (x < 3)
    assert both_masks.dtype == tinynet.bool_
    np.testing.assert_array_equal(to_numpy(both_masks), [False, True, False, False])


def test_relu_inplace():
    x = tinynet.tensor([-1.0, 2.0])
    assert F.relu(x, inplace=True) is x
    np.testing.assert_array_equal(to_numpy(x), [0.0, 2.0])
    w = tinynet.tensor([-1.0, 2.0], requires_grad=True)
    y = F.relu(w, inplace=True)  # recorded: computed out of place so that backward works
    y.backward(tinynet.ones_like(y))
    np.testing.assert_array_equal(to_numpy(w.grad), [0.0, 1.0])


# ----------------------------------------------------------------------------- bad input
BROADCASTING_OPS = {
    "add": lambda a, b: a + b, "sub": lambda a, b: tinynet.sub(a, b), "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b, "pow": lambda a, b: a ** b, "maximum": tinynet.maximum,
    "minimum": tinynet.minimum, "eq": lambda a, b: a == b, "lt": tinynet.lt, "ge": lambda a, b: a >= b,
    "logical_and": tinynet.logical_and, "logical_or": tinynet.logical_or,
    "clamp": lambda a, b: tinynet.clamp(a, min=b), "where": lambda a, b: tinynet.where(a > 0, a, b),
}


@pytest.mark.parametrize("op", BROADCASTING_OPS)
def test_broadcasting_mismatch_names_op_and_shapes(op):
    with pytest.raises(RuntimeError, match=rf"^{op}: .*\(2, 3\).*\(4,\)"):
        BROADCASTING_OPS[op](tinynet.ones(2, 3), tinynet.ones(4))


def test_where_condition_shape_mismatch():
    with pytest.raises(RuntimeError, match=r"^where: .*\(3,\).*\(2,\)"):
        tinynet.where(tinynet.ones(3) > 0, tinynet.ones(2), 0.0)


@pytest.mark.parametrize("op, call", [
    ("add", lambda x: x + "a"), ("sub", lambda x: "a" - x), ("mul", lambda x: x * [1, 2]),
    ("div", lambda x: x / None), ("pow", lambda x: x ** "2"), ("eq", lambda x: tinynet.eq(x, "a")),
    ("lt", lambda x: tinynet.lt(x, object())), ("where", lambda x: tinynet.where(x > 0, x, "a")),
    ("where", lambda x: tinynet.where(x > 0, "a", 1.0)), ("clamp", lambda x: tinynet.clamp(x, min="0")),
    ("maximum", lambda x: tinynet.maximum(x, 1.0)), ("minimum", lambda x: tinynet.minimum(2, x)),
    ("logical_and", lambda x: tinynet.logical_and(x, "a")),
    ("exp", lambda x: tinynet.exp(1.0)), ("log", lambda x: tinynet.log([1.0])),
    ("abs", lambda x: tinynet.abs("x")), ("sigmoid", lambda x: tinynet.sigmoid(np.ones(2))),
    ("relu", lambda x: tinynet.relu(0.5)), ("logical_not", lambda x: tinynet.logical_not(True)),
    ("add", lambda x: tinynet.add(1, 2)),
])
def test_non_number_operand_raises_type_error(op, call):
    with pytest.raises(TypeError, match=rf"^{op}: "):
        call(tinynet.ones(2))


def test_where_needs_bool_condition():
    with pytest.raises(RuntimeError, match=r"^where: .*bool.*float32"):
        tinynet.where(tinynet.ones(2), tinynet.ones(2), 0.0)
    with pytest.raises(TypeError, match=r"^where: .*condition"):
        tinynet.where([True, False], tinynet.ones(2), 0.0)


def test_clamp_needs_a_bound():
    with pytest.raises(RuntimeError, match=r"^clamp: .*min.*max"):
        tinynet.clamp(tinynet.ones(2))


def test_integer_to_negative_power_raises():
    with pytest.raises(RuntimeError, match=r"^pow: .*negative"):
        tinynet.tensor([1, 2]) ** -1


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(RuntimeError, match="floating"):
        tinynet.tensor([1, 2], requires_grad=True)
