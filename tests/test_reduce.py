"""Reductions: sum, mean, var, std, max/min, amax/amin, argmax/argmin, logsumexp.

Each differentiable reduction is gradchecked in float64 and compared with PyTorch in float32
and float64 over hypothesis-drawn shapes, dims (None, an int, a tuple, negative) and keepdim.
Max/min inputs are tie-free by construction there (a max over ties has no derivative); the
tie rules (amax splits evenly, max(dim) sends all to the returned index) have their own test.
"""
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinynet
from tests.helpers import arrays, check_gradients, compare_with_torch, shapes, torch

FLOATS = [np.float32, np.float64]


# ------------------------------------------------------------------------------ strategies
@st.composite
def reduction_cases(draw, dim_kinds=("none", "int", "tuple"), min_dims=0):
    """(shape, dim, keepdim): dim is None, an int or a tuple of distinct axes, each int
    possibly negative."""
    shape = draw(shapes(min_dims=min_dims, max_dims=3))
    ndim = len(shape)
    kinds = [k for k in dim_kinds if not (k == "tuple" and ndim == 0)]
    kind = draw(st.sampled_from(kinds))
    if kind == "none":
        dim = None
    elif kind == "int":
        size = max(ndim, 1)  # a 0-d tensor takes dim 0 and -1, as in PyTorch
        dim = draw(st.integers(-size, size - 1))
    else:
        axes = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
        dim = tuple(a - ndim if draw(st.booleans()) else a for a in axes)
    return shape, dim, draw(st.booleans())


@st.composite
def distinct_arrays(draw, shape, dtype=np.float64):
    """Arrays whose values are all different (spaced 0.37 apart), so max/min have no ties."""
    n = int(np.prod(shape))
    order = draw(st.permutations(range(n)))
    return ((np.array(order, dtype=np.float64) - n / 2) * 0.37).reshape(shape).astype(dtype)


def _reduced_count(shape, dim):
    if dim is None:
        return int(np.prod(shape))
    dims = dim if isinstance(dim, tuple) else (dim,)
    return int(np.prod([shape[d] for d in dims])) if shape else 1


# A name, a tinynet call and the same call in torch, for each differentiable reduction that
# takes (input, dim, keepdim); ``amax``/``amin`` use dim=() for "all dims", as torch allows.
SMOOTH_OPS = {
    "sum": (lambda x, d, k: tinynet.sum(x, d, k), lambda x, d, k: torch.sum(x, d, k)),
    "mean": (lambda x, d, k: tinynet.mean(x, d, k), lambda x, d, k: torch.mean(x, d, k)),
    "logsumexp": (lambda x, d, k: tinynet.logsumexp(x, d, k), lambda x, d, k: torch.logsumexp(x, d, k)),
}
EXTREMUM_OPS = {
    "amax": (lambda x, d, k: tinynet.amax(x, () if d is None else d, k),
             lambda x, d, k: torch.amax(x, () if d is None else d, k)),
    "amin": (lambda x, d, k: tinynet.amin(x, () if d is None else d, k),
             lambda x, d, k: torch.amin(x, () if d is None else d, k)),
}


def _dims_for(name):
    # torch.logsumexp needs a dim; tinynet mirrors that (dim=None raises, tested below).
    return ("int", "tuple") if name == "logsumexp" else ("none", "int", "tuple")


# ------------------------------------------------------------------------------ gradients (float64)
@pytest.mark.parametrize("name", sorted(SMOOTH_OPS))
@given(data=st.data())
def test_gradcheck_smooth(device, name, data):
    shape, dim, keepdim = data.draw(reduction_cases(_dims_for(name)))
    x = data.draw(arrays(shape))
    fn = SMOOTH_OPS[name][0]
    check_gradients(lambda t: fn(t, dim, keepdim), [x], device=device)


@pytest.mark.parametrize("name", sorted(EXTREMUM_OPS))
@given(data=st.data())
def test_gradcheck_amax_amin(device, name, data):
    shape, dim, keepdim = data.draw(reduction_cases())
    x = data.draw(distinct_arrays(shape))
    fn = EXTREMUM_OPS[name][0]
    check_gradients(lambda t: fn(t, dim, keepdim), [x], device=device)


@pytest.mark.parametrize("op", ["var", "std"])
@given(data=st.data())
def test_gradcheck_var_std(device, op, data):
    shape, dim, keepdim = data.draw(reduction_cases())
    correction = data.draw(st.sampled_from([0, 1]))
    if _reduced_count(shape, dim) <= correction:
        correction = 0  # n - correction must be positive for a finite gradient
    # Distinct values: std is not differentiable where all reduced values are equal.
    x = data.draw(distinct_arrays(shape))
    fn = getattr(tinynet, op)
    check_gradients(lambda t: fn(t, dim, keepdim=keepdim, correction=correction), [x], device=device)


@pytest.mark.parametrize("op", ["max", "min"])
@given(data=st.data())
def test_gradcheck_max_min(device, op, data):
    shape, dim, keepdim = data.draw(reduction_cases(("none", "int")))
    x = data.draw(distinct_arrays(shape))
    fn = getattr(tinynet, op)
    if dim is None:
        check_gradients(lambda t: fn(t), [x], device=device)
    else:
        check_gradients(lambda t: fn(t, dim, keepdim).values, [x], device=device)


# ------------------------------------------------------------------------------ parity with torch
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", sorted(SMOOTH_OPS))
@given(data=st.data())
def test_matches_torch_smooth(device, name, dtype, data):
    shape, dim, keepdim = data.draw(reduction_cases(_dims_for(name)))
    x = data.draw(arrays(shape, dtype))
    ours, theirs = SMOOTH_OPS[name]
    compare_with_torch(lambda t: ours(t, dim, keepdim), lambda t: theirs(t, dim, keepdim), [x], device=device)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", sorted(EXTREMUM_OPS))
@given(data=st.data())
def test_matches_torch_amax_amin(device, name, dtype, data):
    shape, dim, keepdim = data.draw(reduction_cases())
    x = data.draw(distinct_arrays(shape, dtype))
    ours, theirs = EXTREMUM_OPS[name]
    compare_with_torch(lambda t: ours(t, dim, keepdim), lambda t: theirs(t, dim, keepdim), [x], device=device)


@pytest.mark.filterwarnings("ignore:.*degrees of freedom")  # n <= correction: nan, in both
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("op", ["var", "std"])
@pytest.mark.parametrize("mode", ["default", "unbiased=False", "correction=0", "correction=1"])
@given(data=st.data())
def test_matches_torch_var_std(device, op, mode, dtype, data):
    shape, dim, keepdim = data.draw(reduction_cases())
    x = data.draw(distinct_arrays(shape, dtype))
    ours, theirs = getattr(tinynet, op), getattr(torch, op)
    if mode == "default":
        call = lambda fn, t: fn(t, dim, keepdim=keepdim)  # noqa: E731
    elif mode == "unbiased=False":
        call = lambda fn, t: fn(t, dim, False, keepdim)  # noqa: E731
    else:
        c = int(mode[-1])
        call = lambda fn, t: fn(t, dim, keepdim=keepdim, correction=c)  # noqa: E731
    compare_with_torch(lambda t: call(ours, t), lambda t: call(theirs, t), [x], device=device)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("op", ["max", "min"])
@given(data=st.data())
def test_matches_torch_max_min(device, op, dtype, data):
    shape, dim, keepdim = data.draw(reduction_cases(("none", "int")))
    x = data.draw(distinct_arrays(shape, dtype))
    ours, theirs = getattr(tinynet, op), getattr(torch, op)
    if dim is None:
        compare_with_torch(ours, theirs, [x], device=device)
        return
    compare_with_torch(lambda t: ours(t, dim, keepdim), lambda t: theirs(t, dim, keepdim), [x], device=device)
    # The namedtuple of torch.return_types.max/min: fields by name, int64 indices.
    result = ours(tinynet.tensor(x, device=device), dim=dim, keepdim=keepdim)
    expected = theirs(torch.tensor(x), dim=dim, keepdim=keepdim)
    assert type(result).__name__ == op and result._fields == ("values", "indices")
    assert result.indices.dtype == tinynet.int64
    np.testing.assert_array_equal(result.indices.cpu().numpy(), expected.indices.numpy())


@pytest.mark.parametrize("op", ["argmax", "argmin"])
@given(data=st.data())
def test_matches_torch_argmax_argmin(device, op, data):
    shape, dim, keepdim = data.draw(reduction_cases(("none", "int")))
    # Small integers as floats: many ties, where both must pick the first occurrence.
    x = np.asarray(np.round(data.draw(arrays(shape, np.float32, low=-2, high=2))))
    ours, theirs = getattr(tinynet, op), getattr(torch, op)
    compare_with_torch(lambda t: ours(t, dim, keepdim), lambda t: theirs(t, dim, keepdim), [x],
                       device=device, grad=False)


# Deliberate ties: amax/amin and max() split the gradient evenly; max(dim)/min(dim) send it
# all to the returned (first) index. The comparison checks both values and gradients.
TIES = np.array([[1.0, 3.0, 3.0, -1.0], [2.0, 2.0, 0.0, 2.0], [-1.0, 3.0, -1.0, 3.0]])
TIE_CASES = {
    "amax(dim=1)": (lambda t: tinynet.amax(t, 1), lambda t: torch.amax(t, 1)),
    "amin((0, 1))": (lambda t: tinynet.amin(t, (0, 1)), lambda t: torch.amin(t, (0, 1))),
    "max()": (lambda t: tinynet.max(t), lambda t: torch.max(t)),
    "min()": (lambda t: tinynet.min(t), lambda t: torch.min(t)),
    "max(dim=1)": (lambda t: tinynet.max(t, 1), lambda t: torch.max(t, 1)),
    "min(dim=0, keepdim)": (lambda t: tinynet.min(t, 0, True), lambda t: torch.min(t, 0, True)),
}


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", sorted(TIE_CASES))
def test_ties_match_torch(device, case, dtype):
    ours, theirs = TIE_CASES[case]
    compare_with_torch(ours, theirs, [TIES.astype(dtype)], device=device)


@pytest.mark.parametrize("dtype", FLOATS)
def test_std_of_constant_values_has_zero_gradient(device, dtype):
    # sqrt is not differentiable at 0; torch (and tinynet) take the gradient as 0 there.
    x = np.array([[2.0, 2.0, 2.0], [1.0, 2.0, 4.0]], dtype=dtype)
    out = compare_with_torch(lambda t: tinynet.std(t, 1), lambda t: torch.std(t, 1), [x], device=device)
    assert out[0].detach().cpu().numpy()[0] == 0
    t = tinynet.tensor(x, device=device, requires_grad=True)
    tinynet.std(t, 1).sum().backward()
    assert not np.any(t.grad.cpu().numpy()[0])


def test_amax_splits_ties_evenly_and_max_dim_picks_one(device):
    x = tinynet.tensor(TIES, device=device, requires_grad=True)
    tinynet.amax(x, 1).sum().backward()
    np.testing.assert_allclose(x.grad.cpu().numpy()[0], [0, 0.5, 0.5, 0])
    x.grad = None
    tinynet.max(x, 1).values.sum().backward()
    np.testing.assert_allclose(x.grad.cpu().numpy()[0], [0, 1, 0, 0])


@pytest.mark.parametrize("dtype", FLOATS)
def test_logsumexp_large_values_and_infinite_rows(device, dtype):
    big = (1e4 + np.arange(12).reshape(3, 4) * 0.5).astype(dtype)
    compare_with_torch(lambda t: tinynet.logsumexp(t, 1), lambda t: torch.logsumexp(t, 1), [big],
                       device=device)
    inf = np.inf
    rows = np.array([[-inf, -inf, -inf], [1.0, 2.0, 3.0], [inf, 1.0, -inf]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # log(0) and inf - inf, as intended
        out = compare_with_torch(lambda t: tinynet.logsumexp(t, -1, True), lambda t: torch.logsumexp(t, -1, True),
                                 [rows], device=device)
    result = out[0].detach().cpu().numpy()
    assert result[0, 0] == -inf and result[2, 0] == inf


def test_dtypes_match_torch(device):
    ints = np.arange(-3, 9).reshape(3, 4)
    f32 = ints.astype(np.float32)
    cases = [
        (lambda t: tinynet.sum(t), lambda t: torch.sum(t), ints),
        (lambda t: tinynet.sum(t, 1), lambda t: torch.sum(t, 1), ints.astype(np.int32)),
        (lambda t: tinynet.sum(t, 1), lambda t: torch.sum(t, 1), (ints + 3).astype(np.uint8)),
        (lambda t: tinynet.sum(t > 0, 0), lambda t: torch.sum(t > 0, 0), ints),
        (lambda t: tinynet.sum(t, dtype=tinynet.float64), lambda t: torch.sum(t, dtype=torch.float64), ints),
        (lambda t: tinynet.mean(t, 0, dtype=tinynet.float32), lambda t: torch.mean(t, 0, dtype=torch.float32), ints),
        (lambda t: tinynet.amax(t, 1), lambda t: torch.amax(t, 1), ints),
        (lambda t: tinynet.max(t, 1), lambda t: torch.max(t, 1), ints),
        (lambda t: tinynet.logsumexp(t, 1), lambda t: torch.logsumexp(t, 1), ints),
    ]
    for ours, theirs, x in cases:
        compare_with_torch(ours, theirs, [x], device=device)
    # float32 input summed in float64: the gradient comes back as float32, as in torch.
    compare_with_torch(lambda t: tinynet.sum(t, 0, dtype=tinynet.float64),
                       lambda t: torch.sum(t, 0, dtype=torch.float64), [f32], device=device)


@pytest.mark.filterwarnings("ignore:.*degrees of freedom")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_var_with_no_degrees_of_freedom_matches_torch(device):
    x = np.array([[1.0, 2.0], [3.0, 3.0]])
    for op in ("var", "std"):
        ours, theirs = getattr(tinynet, op), getattr(torch, op)
        compare_with_torch(lambda t: ours(t, 1, correction=2), lambda t: theirs(t, 1, correction=2), [x],
                           device=device)


def test_empty_reductions_match_torch(device):
    x = np.zeros((0, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mean of nothing is nan
        for name in ("sum", "mean", "logsumexp", "amax"):
            for dim in (0, 1) if name != "amax" else (1,):
                compare_with_torch(lambda t: getattr(tinynet, name)(t, dim),
                                   lambda t: getattr(torch, name)(t, dim), [x], device=device)


def test_tensor_methods_and_zero_dim(device):
    x = tinynet.tensor([[1.0, 5.0, 2.0], [4.0, 0.0, 3.0]], device=device)
    assert x.sum(1).tolist() == [8.0, 7.0]
    assert x.mean(dim=(0, 1), keepdim=True).shape == (1, 1)
    np.testing.assert_allclose(x.var(0, correction=0).tolist(), [2.25, 6.25, 0.25])
    values, indices = x.max(-1)
    assert values.tolist() == [5.0, 4.0] and indices.tolist() == [1, 0]
    assert x.argmin().tolist() == 4 and x.argmax(keepdim=True).shape == (1, 1)
    assert x.amin(dim=()).tolist() == 0.0
    s = tinynet.tensor(2.5, device=device)
    assert s.sum(0, keepdim=True).shape == () and s.max(-1).indices.tolist() == 0
    assert s.argmax(0).shape == () and s.logsumexp(0).tolist() == 2.5


def test_max_with_a_tensor_is_maximum(device):
    if not hasattr(tinynet.functional, "maximum"):
        pytest.skip("tinynet.functional.maximum is not written yet")
    a = tinynet.tensor([1.0, 5.0, -2.0], device=device)
    b = tinynet.tensor([3.0, 0.0, -1.0], device=device)
    assert tinynet.max(a, b).tolist() == [3.0, 5.0, -1.0]
    assert tinynet.min(a, b).tolist() == [1.0, 0.0, -2.0]


# ------------------------------------------------------------------------------ bad input
OUT_OF_RANGE = [
    ("sum", lambda x: tinynet.sum(x, 2)),
    ("mean", lambda x: tinynet.mean(x, (0, -3))),
    ("var", lambda x: tinynet.var(x, 5)),
    ("std", lambda x: tinynet.std(x, -3)),
    ("amax", lambda x: tinynet.amax(x, 2)),
    ("amin", lambda x: tinynet.amin(x, (1, 2))),
    ("max", lambda x: tinynet.max(x, 2)),
    ("min", lambda x: tinynet.min(x, -3)),
    ("argmax", lambda x: tinynet.argmax(x, 2)),
    ("argmin", lambda x: tinynet.argmin(x, -3)),
    ("logsumexp", lambda x: tinynet.logsumexp(x, 2)),
]


@pytest.mark.parametrize("op,call", OUT_OF_RANGE, ids=[op for op, _ in OUT_OF_RANGE])
def test_out_of_range_dim_raises_index_error(op, call):
    x = tinynet.zeros(2, 3)
    with pytest.raises(IndexError, match=rf"^{op}: dim -?\d+ is out of range for a tensor with 2 dim"):
        call(x)


def test_bad_dtypes_raise():
    ints = tinynet.tensor([[1, 2], [3, 4]])
    with pytest.raises(RuntimeError, match=r"^mean: .*int64"):
        tinynet.mean(ints)
    with pytest.raises(RuntimeError, match=r"^mean: .*int64"):
        tinynet.mean(tinynet.tensor([1.0, 2.0]), dtype=tinynet.int64)
    with pytest.raises(RuntimeError, match=r"^var: .*int64"):
        tinynet.var(ints)
    with pytest.raises(RuntimeError, match=r"^std: .*int64"):
        ints.std(0)


def test_bad_dims_and_inputs_raise():
    x = tinynet.zeros(2, 3)
    with pytest.raises(RuntimeError, match=r"^sum: dim 0 appears multiple times"):
        tinynet.sum(x, (0, -2))
    with pytest.raises(TypeError, match=r"^max: dim must be an int, got \(0, 1\)"):
        tinynet.max(x, (0, 1))
    with pytest.raises(TypeError, match=r"^argmax: dim must be an int"):
        tinynet.argmax(x, (0,))
    with pytest.raises(TypeError, match=r"^amax: dim must be an int, a tuple of ints or None, got 1.5"):
        tinynet.amax(x, 1.5)
    with pytest.raises(TypeError, match=r"^sum: dim must be .* got True"):
        tinynet.sum(x, True)
    with pytest.raises(TypeError, match=r"^logsumexp: dim must be"):
        tinynet.logsumexp(x, None)
    with pytest.raises(TypeError, match=r"^sum: expected a Tensor as input, got list"):
        tinynet.sum([1.0, 2.0])


def test_empty_max_raises():
    empty = tinynet.zeros(0, 3)
    with pytest.raises(RuntimeError, match=r"^max: .*empty tensor of shape \(0, 3\)"):
        tinynet.max(empty)
    with pytest.raises(RuntimeError, match=r"^amin: .*empty tensor of shape \(0, 3\)"):
        tinynet.amin(empty)
    with pytest.raises(IndexError, match=r"^min: expected reduction dim 0 to have non-zero size"):
        tinynet.min(empty, 0)
    with pytest.raises(IndexError, match=r"^argmax: expected reduction dim 0 to have non-zero size"):
        tinynet.argmax(empty)
