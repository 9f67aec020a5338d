"""Shape and indexing ops: float64 gradchecks over hypothesis-drawn shapes, dims and indices;
parity with PyTorch (outputs and gradients, float32 and float64); the errors."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import tinynet
import tinynet.nn.functional as F
from helpers import arrays, check_gradients, compare_with_torch, requires_torch, shapes, to_numpy

try:
    import torch
    import torch.nn.functional as TF
except ImportError:
    torch = TF = None

DTYPES = [np.float32, np.float64]


def _random(shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def dims_of(ndim, extra=0):
    """Valid dims, negative ones included, of a tensor with ``ndim`` dims (``extra=1`` for ops
    such as unsqueeze that may insert after the last)."""
    n = max(ndim + extra, 1)
    return st.integers(-n, n - 1)


# ==================================================================================== gradcheck
@given(data=st.data())
def test_gradcheck_reshape_and_view(device, data):
    shape = data.draw(shapes(min_dims=0))
    size = math.prod(shape)
    target = data.draw(st.sampled_from([(-1,), shape[::-1], shape + (1,), (1, -1), (size,), (-1, 1)]))
    method = data.draw(st.sampled_from(["reshape", "view"]))
    x = data.draw(arrays(shape))
    check_gradients(lambda x: getattr(x, method)(target), [x], device=device)
    check_gradients(lambda x: tinynet.reshape(x, target), [x], device=device)


@given(data=st.data())
def test_gradcheck_flatten(device, data):
    shape = data.draw(shapes(min_dims=0))
    n = max(len(shape), 1)
    start = data.draw(st.integers(0, n - 1))
    end = data.draw(st.integers(start, n - 1))
    start, end = [d - n if data.draw(st.booleans()) else d for d in (start, end)]  # negative spellings too
    x = data.draw(arrays(shape))
    check_gradients(lambda x: tinynet.flatten(x, start, end), [x], device=device)


@given(data=st.data())
def test_gradcheck_squeeze(device, data):
    shape = data.draw(shapes(min_dims=0, max_side=2))  # plenty of size-1 dims
    dim = data.draw(st.one_of(st.none(), dims_of(len(shape)),
                              st.lists(dims_of(len(shape)), max_size=3, unique_by=lambda d: d % max(len(shape), 1))
                              .map(tuple)))
    x = data.draw(arrays(shape))
    check_gradients(lambda x: x.squeeze(dim), [x], device=device)


@given(data=st.data())
def test_gradcheck_unsqueeze(device, data):
    shape = data.draw(shapes(min_dims=0))
    dim = data.draw(dims_of(len(shape), extra=1))
    check_gradients(lambda x: x.unsqueeze(dim), [data.draw(arrays(shape))], device=device)


@given(data=st.data())
def test_gradcheck_transpose(device, data):
    shape = data.draw(shapes(min_dims=1))
    d0, d1 = data.draw(dims_of(len(shape))), data.draw(dims_of(len(shape)))
    check_gradients(lambda x: x.transpose(d0, d1), [data.draw(arrays(shape))], device=device)


@given(data=st.data())
def test_gradcheck_permute(device, data):
    shape = data.draw(shapes(min_dims=1, max_dims=4, max_side=3))
    dims = data.draw(st.permutations(range(len(shape))))
    dims = [d - len(shape) if data.draw(st.booleans()) else d for d in dims]
    check_gradients(lambda x: x.permute(*dims), [data.draw(arrays(shape))], device=device)


@given(data=st.data())
def test_gradcheck_t(device, data):
    shape = data.draw(shapes(min_dims=0, max_dims=2))
    check_gradients(lambda x: x.t(), [data.draw(arrays(shape))], device=device)


@given(data=st.data())
def test_gradcheck_expand(device, data):
    shape = data.draw(shapes(min_dims=0, max_side=3).map(lambda s: tuple(1 if n == 2 else n for n in s)))
    sizes = [data.draw(st.sampled_from([1, 2, 3, -1]) if n == 1 else st.sampled_from([n, -1])) for n in shape]
    leading = data.draw(st.lists(st.integers(1, 3), max_size=2))
    check_gradients(lambda x: x.expand(*leading, *sizes), [data.draw(arrays(shape))], device=device)


@given(data=st.data())
def test_gradcheck_contiguous(device, data):
    shape = data.draw(shapes(min_dims=2))
    check_gradients(lambda x: x.transpose(0, 1).contiguous(), [data.draw(arrays(shape))], device=device)


def _positive_steps(index):
    """PyTorch rejects negative slice steps; flip any that hypothesis drew."""
    def fix(item):
        if isinstance(item, slice) and item.step is not None and item.step < 0:
            return slice(item.start, item.stop, -item.step)
        return item
    return tuple(fix(i) for i in index) if isinstance(index, tuple) else fix(index)


@st.composite
def advanced_indices(draw, shape):
    """A tuple mixing integer arrays (repeats and negatives allowed), ints, slices and None, with
    at least one array; or a bool mask over the leading dims followed by slices."""
    if draw(st.booleans()):
        k = draw(st.integers(1, len(shape)))
        mask = draw(hnp.arrays(bool, shape[:k]))
        return (mask,) + (slice(None),) * draw(st.integers(0, len(shape) - k))
    items = []
    index_shape = draw(st.sampled_from([(3,), (2, 2)]))  # the arrays of one index must broadcast
    for i, n in enumerate(shape[:draw(st.integers(1, len(shape)))]):
        if draw(st.integers(0, 4)) == 0:
            items.append(None)  # consumes no dim
        array = hnp.arrays(np.int64, st.sampled_from([(), index_shape]), elements=st.integers(-n, n - 1))
        items.append(draw(array if i == 0 else st.one_of(array, st.integers(-n, n - 1), st.just(slice(None)))))
    return tuple(items)


def _on(lib, index, device):
    """The same index for tinynet or torch: arrays become that library's tensors."""
    make = (lambda a: tinynet.tensor(a, device=device)) if lib is tinynet else torch.tensor
    items = index if isinstance(index, tuple) else (index,)
    items = tuple(make(i) if isinstance(i, np.ndarray) else i for i in items)
    return items if isinstance(index, tuple) else items[0]


@given(data=st.data())
def test_gradcheck_getitem_basic(device, data):
    shape = data.draw(shapes(min_dims=1))
    index = _positive_steps(data.draw(hnp.basic_indices(shape, allow_newaxis=True)))
    check_gradients(lambda x: x[index], [data.draw(arrays(shape))], device=device)


@given(data=st.data())
def test_gradcheck_getitem_advanced(device, data):
    shape = data.draw(shapes(min_dims=1))
    index = _on(tinynet, data.draw(advanced_indices(shape)), device)
    check_gradients(lambda x: x[index], [data.draw(arrays(shape))], device=device)


@st.composite
def cat_inputs(draw, max_tensors=3):
    shape = draw(shapes(min_dims=1))
    dim = draw(dims_of(len(shape)))
    sizes = draw(st.lists(st.integers(0, 3), min_size=1, max_size=max_tensors))
    parts = [shape[:dim % len(shape)] + (s,) + shape[dim % len(shape) + 1:] for s in sizes]
    return [draw(arrays(p)) for p in parts], dim


@given(data=st.data())
def test_gradcheck_cat(device, data):
    parts, dim = data.draw(cat_inputs())
    check_gradients(lambda *xs: tinynet.cat(xs, dim), parts, device=device)


@given(data=st.data())
def test_gradcheck_stack(device, data):
    shape = data.draw(shapes(min_dims=0))
    xs = [data.draw(arrays(shape)) for _ in range(data.draw(st.integers(1, 3)))]
    dim = data.draw(dims_of(len(shape), extra=1))
    check_gradients(lambda *xs: tinynet.stack(xs, dim), xs, device=device)


@given(data=st.data())
def test_gradcheck_split(device, data):
    shape = data.draw(shapes(min_dims=1))
    dim = data.draw(dims_of(len(shape)))
    n = shape[dim]
    sections = data.draw(st.one_of(
        st.integers(1, n + 1),
        st.lists(st.integers(0, n), min_size=1, max_size=3).filter(lambda s: sum(s) <= n).map(
            lambda s: s + [n - sum(s)])))
    check_gradients(lambda x: tinynet.split(x, sections, dim), [data.draw(arrays(shape))], device=device)


@given(data=st.data())
def test_gradcheck_chunk(device, data):
    shape = data.draw(shapes(min_dims=1))
    dim, chunks = data.draw(dims_of(len(shape))), data.draw(st.integers(1, 5))
    check_gradients(lambda x: tinynet.chunk(x, chunks, dim), [data.draw(arrays(shape))], device=device)


@given(data=st.data())
def test_gradcheck_pad(device, data):
    shape = data.draw(shapes(min_dims=1))
    amounts = []
    for n in shape[::-1][:data.draw(st.integers(1, len(shape)))]:  # last dim first, as PyTorch lists them
        lo = data.draw(st.integers(-n, 2))
        amounts += [lo, data.draw(st.integers(-(n - max(-lo, 0)), 2))]
    value = data.draw(st.sampled_from([0.0, 1.5]))
    check_gradients(lambda x: F.pad(x, amounts, value=value), [data.draw(arrays(shape))], device=device)


# ==================================================================================== parity
# One function used in both frameworks: the Tensor methods have the same names.
METHOD_CASES = [
    ("reshape(-1, 2)", lambda x: x.reshape(-1, 2), (3, 4)),
    ("reshape((2, 6))", lambda x: x.reshape((2, 6)), (3, 4)),
    ("reshape(()) of one element", lambda x: x.reshape(()), (1, 1)),
    ("view(4, 3)", lambda x: x.view(4, 3), (3, 4)),
    ("view(-1) after transpose", lambda x: x.transpose(0, 1).reshape(-1), (3, 4)),
    ("view_as", lambda x: x.view_as(x.t()), (3, 4)),
    ("flatten()", lambda x: x.flatten(), (2, 3, 4)),
    ("flatten(1)", lambda x: x.flatten(1), (2, 3, 4)),
    ("flatten(-3, -2)", lambda x: x.flatten(-3, -2), (2, 3, 4)),
    ("flatten() of 0-d", lambda x: x.flatten(), ()),
    ("squeeze()", lambda x: x.squeeze(), (1, 3, 1, 2)),
    ("squeeze(-2)", lambda x: x.squeeze(-2), (1, 3, 1, 2)),
    ("squeeze(1) of size 3 is a no-op", lambda x: x.squeeze(1), (1, 3, 1, 2)),
    ("squeeze((0, 2, 3))", lambda x: x.squeeze((0, 2, 3)), (1, 3, 1, 2)),
    ("squeeze(0) of 0-d", lambda x: x.squeeze(0), ()),
    ("unsqueeze(0)", lambda x: x.unsqueeze(0), (3, 4)),
    ("unsqueeze(-1)", lambda x: x.unsqueeze(-1), (3, 4)),
    ("unsqueeze(1)", lambda x: x.unsqueeze(1), (3, 4)),
    ("unsqueeze(0) of 0-d", lambda x: x.unsqueeze(0), ()),
    ("transpose(0, -1)", lambda x: x.transpose(0, -1), (2, 3, 4)),
    ("transpose(1, 1)", lambda x: x.transpose(1, 1), (2, 3, 4)),
    ("permute(2, 0, 1)", lambda x: x.permute(2, 0, 1), (2, 3, 4)),
    ("permute((-1, 0, 1))", lambda x: x.permute((-1, 0, 1)), (2, 3, 4)),
    ("t()", lambda x: x.t(), (3, 4)),
    ("t() of 1-D", lambda x: x.t(), (3,)),
    (".T", lambda x: x.T, (3, 4)),
    ("expand(2, 3, 4)", lambda x: x.expand(2, 3, 4), (3, 1)),
    ("expand(-1, 4)", lambda x: x.expand(-1, 4), (3, 1)),
    ("expand((2, 2)) of 0-d", lambda x: x.expand((2, 2)), ()),
    ("expand_as", lambda x: x.expand_as(x.expand(2, 3, 5)), (3, 1)),
    ("contiguous() of a transpose", lambda x: x.transpose(0, 1).contiguous(), (3, 4)),
    ("contiguous()", lambda x: x.contiguous(), (3, 4)),
]


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, fn, shape", METHOD_CASES, ids=[c[0] for c in METHOD_CASES])
def test_methods_match_torch(device, dtype, name, fn, shape):
    compare_with_torch(fn, fn, [_random(shape, dtype)], device=device)


INDEX_CASES = [
    ("x[1]", lambda x: x[1]),
    ("x[-1]", lambda x: x[-1]),
    ("x[1, -2]", lambda x: x[1, -2]),
    ("x[:, 1:3]", lambda x: x[:, 1:3]),
    ("x[::2]", lambda x: x[::2]),
    ("x[1::2, :, ::3]", lambda x: x[1::2, :, ::3]),
    ("x[-3:-1]", lambda x: x[-3:-1]),
    ("x[..., None]", lambda x: x[..., None]),
    ("x[None, 1, ..., 2]", lambda x: x[None, 1, ..., 2]),
    ("x[..., -1]", lambda x: x[..., -1]),
    ("x[[0, 2, 0]] (list, repeated)", lambda x: x[[0, 2, 0]]),
    ("x[:, [1, 1, -1]]", lambda x: x[:, [1, 1, -1]]),
    ("x[[0, 1], :, [2, 2]] (separated arrays)", lambda x: x[[0, 1], :, [2, 2]]),
    ("x[[]]", lambda x: x[[]]),
    ("x[1:, [0, 0]]", lambda x: x[1:, [0, 0]]),
    ("x[0, :, [1, 2]] (int then array: PyTorch's order)", lambda x: x[0, :, [1, 2]]),
    ("x[None, 1, None, [0, 0, 2]]", lambda x: x[None, 1, None, [0, 0, 2]]),
    ("x[[0, 1], 2, mask]", lambda x: x[[0, 1], 2, [True, False, False, True, False]]),
    ("x[True]", lambda x: x[True]),
    ("x[()]", lambda x: x[()]),
]


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, fn", INDEX_CASES, ids=[c[0] for c in INDEX_CASES])
def test_indexing_matches_torch(device, dtype, name, fn):
    compare_with_torch(fn, fn, [_random((4, 3, 5), dtype)], device=device)


# Index tensors travel as the second array: compare_with_torch makes them tinynet / torch tensors.
TENSOR_INDEX_CASES = [
    ("x[idx] repeated", lambda x, i: x[i], np.array([0, 2, 0, 0, -1])),
    ("x[idx] 2-D", lambda x, i: x[i], np.array([[3, 3], [1, 0]])),
    ("x[idx] 0-d", lambda x, i: x[i], np.array(2)),
    ("x[:, idx]", lambda x, i: x[:, i], np.array([1, 1, 0])),
    ("x[idx] int32", lambda x, i: x[i], np.array([1, 1, 3], dtype=np.int32)),
    ("x[mask] rows", lambda x, m: x[m], np.array([True, False, True, True])),
    ("x[mask] full", lambda x, m: x[m], np.random.default_rng(1).random((4, 3, 5)) > 0.5),
    ("x[:, mask]", lambda x, m: x[:, m], np.array([False, True, True])),
    ("x[mask, 1:]", lambda x, m: x[m, 1:], np.array([[True, False, True]] * 4)),
    ("x[mask] all False", lambda x, m: x[m], np.zeros(4, bool)),
    ("x[idx0d, :, [1, 1]] (0-d acts as an int)", lambda x, i: x[i, :, [1, 1]], np.array(3)),
]


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, fn, index", TENSOR_INDEX_CASES, ids=[c[0] for c in TENSOR_INDEX_CASES])
def test_tensor_indexing_matches_torch(device, dtype, name, fn, index):
    compare_with_torch(fn, fn, [_random((4, 3, 5), dtype), index], device=device)


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_indexing_rows_and_cols_matches_torch(device, dtype):
    rows, cols = np.array([0, 2, 2, -1]), np.array([1, 1, 1, 0])
    compare_with_torch(lambda x, r, c: x[r, c], lambda x, r, c: x[r, c], [_random((3, 4), dtype), rows, cols],
                       device=device)


@requires_torch
@given(data=st.data())
def test_drawn_indices_match_torch(device, data):
    shape = data.draw(shapes(min_dims=1))
    index = data.draw(st.one_of(hnp.basic_indices(shape, allow_newaxis=True).map(_positive_steps),
                                advanced_indices(shape)))
    compare_with_torch(lambda x: x[_on(tinynet, index, device)], lambda x: x[_on(torch, index, device)],
                       [_random(shape)], device=device)


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cat_matches_torch(device, dtype, dim):
    shapes_ = [(2, 3, 4), (2, 3, 4), (2, 3, 4)]
    shapes_ = [s[:dim % 3] + (k,) + s[dim % 3 + 1:] for s, k in zip(shapes_, (1, 3, 2))]
    xs = [_random(s, dtype, seed=i) for i, s in enumerate(shapes_)]
    compare_with_torch(lambda *a: tinynet.cat(a, dim), lambda *a: torch.cat(a, dim), xs, device=device)
    compare_with_torch(lambda *a: tinynet.concat(list(a), dim=dim), lambda *a: torch.concat(list(a), dim=dim), xs,
                       device=device)


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_cat_and_stack_with_only_some_inputs_requiring_grad(device, dtype):
    xs = [_random((2, 3), dtype, seed=i) for i in range(3)]
    for tn_fn, th_fn in [(tinynet.cat, torch.cat), (tinynet.stack, torch.stack)]:
        out = compare_with_torch(lambda *a: tn_fn(a, 1), lambda *a: th_fn(a, 1), xs, device=device,
                                 requires_grad=[True, False, True])
        assert out[0].requires_grad


def test_cat_gradients_reach_each_input(device):
    a = tinynet.tensor(np.ones((2, 2)), device=device, requires_grad=True)
    b = tinynet.tensor(np.ones((1, 2)), device=device)
    c = tinynet.tensor(np.ones((3, 2)), device=device, requires_grad=True)
    out = tinynet.cat([a, b, c])
    out.backward(tinynet.tensor(np.arange(12.0).reshape(6, 2), device=device))
    np.testing.assert_array_equal(to_numpy(a.grad), [[0, 1], [2, 3]])
    np.testing.assert_array_equal(to_numpy(c.grad), [[6, 7], [8, 9], [10, 11]])
    assert b.grad is None


@requires_torch
def test_cat_promotes_dtypes_and_skips_empty_1d(device):
    a, b = _random((2, 3), np.float32), _random((1, 3), np.float64)
    compare_with_torch(lambda a, b: tinynet.cat([a, b]), lambda a, b: torch.cat([a, b]), [a, b], device=device)
    empty = np.zeros((0,), np.float32)
    compare_with_torch(lambda e, a: tinynet.cat([e, a], 1), lambda e, a: torch.cat([e, a], 1), [empty, a],
                       device=device)


@requires_torch
def test_cat_stack_of_integer_tensors(device):
    a, b = np.arange(6).reshape(2, 3), np.arange(3).reshape(1, 3)
    compare_with_torch(lambda a, b: tinynet.cat([a, b]), lambda a, b: torch.cat([a, b]), [a, b], device=device)
    compare_with_torch(lambda a: tinynet.stack([a, a], -1), lambda a: torch.stack([a, a], -1), [a], device=device)


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [0, 1, 2, -1, -3])
def test_stack_matches_torch(device, dtype, dim):
    xs = [_random((2, 3), dtype, seed=i) for i in range(3)]
    compare_with_torch(lambda *a: tinynet.stack(a, dim), lambda *a: torch.stack(a, dim), xs, device=device)


SPLIT_CASES = [(2, 0), (3, 1), (5, -1), (1, 2), ([1, 2, 1], 0), ((0, 3), 1), ([4, 1], -1)]


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sections, dim", SPLIT_CASES)
def test_split_matches_torch(device, dtype, sections, dim):
    compare_with_torch(lambda x: tinynet.split(x, sections, dim), lambda x: torch.split(x, sections, dim),
                       [_random((4, 3, 5), dtype)], device=device)


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size, chunks, dim", [(6, 4, 0), (5, 4, 0), (5, 2, 0), (1, 3, 0), (0, 3, 0), (6, 3, -1)])
def test_chunk_matches_torch(device, dtype, size, chunks, dim):
    out = compare_with_torch(lambda x: tinynet.chunk(x, chunks, dim), lambda x: torch.chunk(x, chunks, dim),
                             [_random((size, 2) if dim == 0 else (2, size), dtype)], device=device)
    assert isinstance(out, tuple)


def test_split_pieces_missing_from_the_loss_get_zero_gradient(device):
    x = tinynet.tensor(np.ones((5, 2)), device=device, requires_grad=True)
    pieces = tinynet.split(x, 2)
    assert isinstance(pieces, tuple) and [p.shape for p in pieces] == [(2, 2), (2, 2), (1, 2)]
    pieces[1].backward(tinynet.tensor(np.full((2, 2), 3.0), device=device))
    np.testing.assert_array_equal(to_numpy(x.grad), [[0, 0], [0, 0], [3, 3], [3, 3], [0, 0]])


PAD_CASES = [
    ((1, 2), 0.0),
    ((0, 1, 2, 0), 0.0),
    ((1, 1, 1, 1, 1, 1), -1.5),
    ((-1, 2), 0.0),
    ((-2, -1, 1, -1), 0.5),
    ((0, 0, -1, -2, 1, 0), 0.0),
    ((-3, 1), None),
]


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("amounts, value", PAD_CASES)
def test_pad_matches_torch(device, dtype, amounts, value):
    compare_with_torch(lambda x: F.pad(x, amounts, value=value), lambda x: TF.pad(x, amounts, value=value),
                       [_random((2, 4, 3), dtype)], device=device)
    compare_with_torch(lambda x: F.pad(x, amounts, "constant", value), lambda x: TF.pad(x, amounts, "constant", value),
                       [_random((2, 4, 3), dtype)], device=device)


@requires_torch
def test_pad_integer_tensor_matches_torch(device):
    compare_with_torch(lambda x: F.pad(x, (1, 1), value=7), lambda x: TF.pad(x, (1, 1), value=7),
                       [np.arange(6).reshape(2, 3)], device=device)


# ==================================================================================== behaviour
def test_getitem_accumulates_repeated_indices(device):
    x = tinynet.tensor(np.zeros((3, 2)), device=device, requires_grad=True)
    idx = tinynet.tensor(np.array([0, 0, 2, 0]), device=device)
    x[idx].backward(tinynet.tensor(np.ones((4, 2)), device=device))
    np.testing.assert_array_equal(to_numpy(x.grad), [[3, 3], [0, 0], [1, 1]])
    x.grad = None
    x[[1, 1], [0, 0]].backward(tinynet.tensor(np.ones(2), device=device))
    np.testing.assert_array_equal(to_numpy(x.grad), [[0, 0], [2, 0], [0, 0]])


def test_contiguous_copies_only_when_needed(device):
    x = tinynet.tensor(np.arange(6.0).reshape(2, 3), device=device, requires_grad=True)
    assert x.contiguous() is x
    y = x.t()
    z = y.contiguous()
    assert z is not y and z.data.flags.c_contiguous and z.grad_fn is not None
    np.testing.assert_array_equal(to_numpy(z), to_numpy(x).T)
    z.backward(tinynet.tensor(np.ones((3, 2)), device=device))
    np.testing.assert_array_equal(to_numpy(x.grad), np.ones((2, 3)))


def test_shape_ops_keep_integer_tensors_out_of_the_graph(device):
    x = tinynet.tensor(np.arange(6).reshape(2, 3), device=device)
    for out in (x.reshape(3, 2), x[0], x[[0, 0]], x.t(), F.pad(x, (1, 0)), tinynet.stack([x, x])):
        assert out.dtype == np.int64 and not out.requires_grad


def test_index_tensor_devices():  # on the GPU, or on the simulated one
    x_cpu = tinynet.tensor(np.arange(6.0))
    idx_cuda = tinynet.tensor(np.array([0, 1]), device="cuda")
    with pytest.raises(RuntimeError, match=r"^getitem: .*same device.*cuda"):
        x_cpu[idx_cuda]
    # As in PyTorch, a CPU index may index a CUDA tensor (it is copied over, and range-checked).
    x_cuda = tinynet.tensor(np.arange(6.0), device="cuda")
    np.testing.assert_array_equal(to_numpy(x_cuda[tinynet.tensor(np.array([5, 0]))]), [5.0, 0.0])
    with pytest.raises(IndexError, match=r"^getitem: index 6 .*size 6"):
        x_cuda[tinynet.tensor(np.array([6]))]


# ==================================================================================== errors
def _x(*shape):
    return tinynet.tensor(np.zeros(shape))


ERROR_CASES = [
    # (id, call, error type, regex the message must match from its start)
    ("reshape to incompatible size", lambda: _x(2, 3).reshape(4, 2), RuntimeError,
     r"reshape: shape \[4, 2\] is invalid for input of shape \(2, 3\)"),
    ("view to incompatible size", lambda: _x(2, 3).view(5, -1), RuntimeError, r"view: .*\(2, 3\)"),
    ("reshape with two -1", lambda: _x(2, 3).reshape(-1, -1), RuntimeError, r"reshape: only one dimension"),
    ("reshape with -2", lambda: _x(2, 3).reshape(-2, -3), RuntimeError, r"reshape: invalid shape dimension -2"),
    ("reshape with a float", lambda: tinynet.reshape(_x(2, 3), (2.0, 3)), TypeError, r"reshape: shape must be"),
    ("flatten start after end", lambda: _x(2, 3, 4).flatten(2, 1), RuntimeError, r"flatten: start_dim"),
    ("flatten bad dim", lambda: _x(2, 3).flatten(0, 2), IndexError, r"flatten: dimension out of range.*got 2"),
    ("squeeze bad dim", lambda: _x(1, 3).squeeze(2), IndexError, r"squeeze: dimension out of range"),
    ("unsqueeze bad dim", lambda: _x(2, 3).unsqueeze(3), IndexError,
     r"unsqueeze: dimension out of range \(expected to be in range of \[-3, 2\], but got 3\)"),
    ("transpose bad dim", lambda: _x(2, 3).transpose(0, 2), IndexError,
     r"transpose: dimension out of range \(expected to be in range of \[-2, 1\], but got 2\)"),
    ("transpose bad negative dim", lambda: _x(2, 3).transpose(-3, 0), IndexError, r"transpose: .*got -3"),
    ("permute wrong length", lambda: _x(2, 3).permute(0, 1, 2), RuntimeError, r"permute: .*\(2, 3\)"),
    ("permute duplicate", lambda: _x(2, 3).permute(1, -1), RuntimeError, r"permute: duplicate dims"),
    ("t of 3-D", lambda: _x(2, 3, 4).t(), RuntimeError, r"t: expects a tensor with <= 2 dimensions.*\(2, 3, 4\)"),
    ("expand non-singleton", lambda: _x(2, 3).expand(2, 4), RuntimeError,
     r"expand: the expanded size \(4\) must match the existing size \(3\)"),
    ("expand too few sizes", lambda: _x(2, 3).expand(3), RuntimeError, r"expand: the number of sizes"),
    ("expand -1 in new dim", lambda: _x(2, 3).expand(-1, 2, 3), RuntimeError, r"expand: size -1"),
    ("index out of range", lambda: _x(3, 4)[5], IndexError,
     r"getitem: index 5 is out of bounds for dimension 0 with size 3"),
    ("negative index out of range", lambda: _x(3, 4)[:, -5], IndexError,
     r"getitem: index -5 is out of bounds for dimension 1 with size 4"),
    ("index array out of range", lambda: _x(3, 4)[tinynet.tensor([0, 7])], IndexError,
     r"getitem: index 7 is out of bounds for dimension 0 with size 3"),
    ("index list out of range", lambda: _x(3, 4)[..., [4]], IndexError,
     r"getitem: index 4 is out of bounds for dimension 1 with size 4"),
    ("too many indices", lambda: _x(3, 4)[0, 0, 0], IndexError, r"getitem: too many indices for tensor of dimension 2"),
    ("two ellipses", lambda: _x(3, 4)[..., ...], IndexError, r"getitem: an index can only have a single ellipsis"),
    ("float index", lambda: _x(3, 4)[1.5], IndexError, r"getitem: only integers"),
    ("float index tensor", lambda: _x(3, 4)[tinynet.tensor([0.0, 1.0])], IndexError,
     r"getitem: tensors used as indices must be long, int, byte or bool tensors, got dtype float32"),
    ("mask of wrong shape", lambda: _x(3, 4)[tinynet.tensor([True, False])], IndexError,
     r"getitem: the shape of the mask \[2\] does not match the shape \[3\]"),
    ("negative step", lambda: _x(3, 4)[::-1], ValueError, r"getitem: step must be greater than zero"),
    ("cat mismatched shapes", lambda: tinynet.cat([_x(2, 3), _x(3, 3)], 1), RuntimeError,
     r"cat: sizes of tensors must match except in dimension 1, but got shapes \(2, 3\) and \(3, 3\)"),
    ("cat mismatched ndim", lambda: tinynet.cat([_x(2, 3), _x(3)]), RuntimeError, r"cat: .*\(2, 3\) and \(3,\)"),
    ("cat empty list", lambda: tinynet.cat([]), ValueError, r"cat: expected a non-empty list"),
    ("cat of 0-d", lambda: tinynet.cat([_x(), _x()]), RuntimeError, r"cat: zero-dimensional"),
    ("cat bad dim", lambda: tinynet.cat([_x(2, 3), _x(2, 3)], 2), IndexError, r"cat: dimension out of range"),
    ("cat of non-tensors", lambda: tinynet.cat([_x(2), np.zeros(2)]), TypeError,
     r"cat: expected a sequence of Tensors"),
    ("stack unequal", lambda: tinynet.stack([_x(2, 3), _x(3, 3)]), RuntimeError,
     r"stack: expects each tensor to be equal size, but got \(2, 3\) at entry 0 and \(3, 3\) at entry 1"),
    ("stack bad dim", lambda: tinynet.stack([_x(2, 3), _x(2, 3)], 3), IndexError, r"stack: dimension out of range"),
    ("split sizes not summing", lambda: tinynet.split(_x(3, 2), [1, 1]), RuntimeError,
     r"split: split sizes must be non-negative and sum exactly to 3"),
    ("split size 0", lambda: tinynet.split(_x(3, 2), 0), RuntimeError, r"split: split_size must be positive"),
    ("split negative size", lambda: tinynet.split(_x(3, 2), -1), RuntimeError, r"split: .*got -1"),
    ("chunk 0", lambda: tinynet.chunk(_x(3, 2), 0), RuntimeError, r"chunk: expects chunks to be greater than 0"),
    ("pad odd length", lambda: F.pad(_x(2, 3), (1,)), RuntimeError, r"pad: padding length must be divisible by 2"),
    ("pad too long", lambda: F.pad(_x(2, 3), (1, 1, 1, 1, 1, 1)), RuntimeError, r"pad: padding length 6 .*\(2, 3\)"),
    ("pad crops too much", lambda: F.pad(_x(2, 3), (-2, -2)), RuntimeError,
     r"pad: negative padding \(-2, -2\) crops more than the size 3 of dimension 1"),
    ("pad reflect", lambda: F.pad(_x(2, 3), (1, 1), mode="reflect"), NotImplementedError, r"pad: mode 'reflect'"),
    ("pad circular", lambda: F.pad(_x(2, 3), (1, 1), mode="circular"), NotImplementedError, r"pad: mode 'circular'"),
    ("pad float amount", lambda: F.pad(_x(2, 3), (1.5, 1)), TypeError, r"pad: pad must be a tuple of ints"),
]


@pytest.mark.parametrize("name, call, error, message", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_errors(name, call, error, message):
    with pytest.raises(error, match="^" + message):
        call()


@requires_torch
@pytest.mark.parametrize("name, call, error, message", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_torch_raises_the_same_error_type(name, call, error, message):
    """Each bad input is also bad for PyTorch, with the same exception type."""
    if name in ("two ellipses", "pad reflect", "pad circular"):
        pytest.skip("PyTorch accepts these; tinynet rejects them")
    th_call = _as_torch(call)
    with pytest.raises(error):
        th_call()


def _as_torch(call):
    """Run ``call`` with tinynet's functions swapped for torch's (same names, same arguments)."""
    def run():
        globals_ = dict(call.__globals__, tinynet=torch, F=TF,
                        _x=lambda *s: torch.zeros(s, dtype=torch.float64))
        return type(call)(call.__code__, globals_)()
    return run
