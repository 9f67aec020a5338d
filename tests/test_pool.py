"""max_pool2d, avg_pool2d, adaptive_avg_pool2d: gradients (finite differences) and parity with
PyTorch over hypothesis-drawn shapes, kernels, strides, paddings, dilations and ceil_mode;
ties in max pooling (the first maximum gets the gradient, as in PyTorch); and the errors."""
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import tinynet
import tinynet.nn.functional  # noqa: F401  (tinynet.nn.functional.max_pool2d, as torch's)
from helpers import check_gradients, compare_with_torch, requires_torch, to_numpy, torch

DTYPES = [np.float32, np.float64]
seeds = st.integers(0, 2**32 - 1)


def functional(m):
    return m.nn.functional


@st.composite
def pool_configs(draw, with_dilation=True):
    """``(input shape, keyword arguments)`` of a valid pooling call with sides <= 5."""
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)  # PyTorch: pad <= kernel // 2
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if with_dilation else (1, 1)
    span = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    size = tuple(draw(st.integers(max(1, s - 2 * p), 5)) for s, p in zip(span, padding))
    batch = draw(st.sampled_from([None, 1, 2]))  # None: unbatched (C, H, W)
    shape = ((batch,) if batch else ()) + (draw(st.integers(1, 3)),) + size
    kwargs = dict(kernel_size=kernel if kernel[0] != kernel[1] else kernel[0],
                  stride=draw(st.sampled_from([None, 1, 2, (1, 2), (2, 3)])),
                  padding=padding, ceil_mode=draw(st.booleans()))
    if with_dilation:
        kwargs["dilation"] = dilation
    # A dilated window can straddle the input and hold only padding; PyTorch's index is then
    # arbitrary (see test_max_pool2d_window_of_only_padding): keep such windows out.
    stride = kwargs["stride"] or kernel
    stride = (stride, stride) if isinstance(stride, int) else stride
    assume(all(every_window_holds_input(*axis, kwargs["ceil_mode"])
               for axis in zip(size, kernel, stride, padding, dilation)))
    return shape, kwargs


def every_window_holds_input(size, kernel, stride, pad, dilation, ceil_mode):
    """Whether every window along one axis has at least one element inside the input."""
    out = (size + 2 * pad - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return all(any(0 <= o * stride - pad + i * dilation < size for i in range(kernel)) for o in range(out))


def untied(shape, seed, dtype):
    """Distinct values at least 0.1 apart, so finite differences never change which one is the
    maximum and ties never happen."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.1 - 0.05 * n).reshape(shape).astype(dtype)


def uniform(shape, seed, dtype):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(dtype)


# -------------------------------------------------------------------------------- max_pool2d
@given(config=pool_configs(), seed=seeds)
def test_max_pool2d_gradients(device, config, seed):
    shape, kwargs = config
    check_gradients(lambda x: functional(tinynet).max_pool2d(x, **kwargs), [untied(shape, seed, np.float64)],
                    device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@given(config=pool_configs(), seed=seeds)
def test_max_pool2d_matches_torch_with_indices(device, dtype, config, seed):
    shape, kwargs = config
    outs = compare_with_torch(lambda x: functional(tinynet).max_pool2d(x, **kwargs, return_indices=True),
                              lambda x: functional(torch).max_pool2d(x, **kwargs, return_indices=True),
                              [untied(shape, seed, dtype)], device=device)
    assert outs[1].dtype == tinynet.int64


@pytest.mark.parametrize("dtype", DTYPES)
@given(config=pool_configs(), seed=seeds)
def test_max_pool2d_ties_send_the_gradient_to_the_first_maximum(device, dtype, config, seed):
    """Values from {0, 1, 2}: most windows hold several maxima; PyTorch picks the first."""
    shape, kwargs = config
    x = np.random.default_rng(seed).integers(0, 3, shape).astype(dtype)
    compare_with_torch(lambda x: functional(tinynet).max_pool2d(x, **kwargs, return_indices=True),
                       lambda x: functional(torch).max_pool2d(x, **kwargs, return_indices=True),
                       [x], device=device)


def test_max_pool2d_overlapping_windows_accumulate_the_gradient():
    # A 3x3 plane with its maximum in the centre: all four 2x2 windows (stride 1) pick it.
    x = tinynet.tensor(np.array([[[[0., 1, 0], [1, 5, 1], [0, 1, 0]]]]), requires_grad=True)
    out = functional(tinynet).max_pool2d(x, 2, stride=1)
    out.backward(tinynet.tensor(np.array([[[[1., 2], [3, 4]]]])))
    np.testing.assert_array_equal(to_numpy(out), np.full((1, 1, 2, 2), 5.0))
    np.testing.assert_array_equal(to_numpy(x.grad)[0, 0], [[0, 0, 0], [0, 10, 0], [0, 0, 0]])


def test_max_pool2d_padding_never_wins_over_negative_values():
    x = tinynet.tensor(-np.arange(1.0, 5.0).reshape(1, 1, 2, 2))
    out, indices = functional(tinynet).max_pool2d(x, 2, stride=1, padding=1, return_indices=True)
    np.testing.assert_array_equal(to_numpy(out)[0, 0], [[-1, -1, -2], [-1, -1, -2], [-3, -3, -4]])
    np.testing.assert_array_equal(to_numpy(indices)[0, 0], [[0, 0, 1], [0, 0, 1], [2, 2, 3]])


def test_max_pool2d_window_of_only_padding():
    # Rows -1 and 1 of a one-row input: the window holds padding only. Its maximum is -inf,
    # its index -1 (PyTorch's is arbitrary there) and it sends no gradient.
    x = tinynet.tensor(np.array([[[[2.0]]]]), requires_grad=True)
    out, indices = functional(tinynet).max_pool2d(x, (2, 1), padding=(1, 0), dilation=(2, 1), return_indices=True)
    assert to_numpy(out)[0, 0, 0, 0] == -np.inf and to_numpy(indices)[0, 0, 0, 0] == -1
    out.backward(tinynet.tensor(np.ones((1, 1, 1, 1))))
    np.testing.assert_array_equal(to_numpy(x.grad), np.zeros((1, 1, 1, 1)))


# -------------------------------------------------------------------------------- avg_pool2d
@st.composite
def avg_pool_configs(draw):
    shape, kwargs = draw(pool_configs(with_dilation=False))
    kwargs["count_include_pad"] = draw(st.booleans())
    kwargs["divisor_override"] = draw(st.sampled_from([None, None, 3, -2]))
    return shape, kwargs


@given(config=avg_pool_configs(), seed=seeds)
def test_avg_pool2d_gradients(device, config, seed):
    shape, kwargs = config
    check_gradients(lambda x: functional(tinynet).avg_pool2d(x, **kwargs), [uniform(shape, seed, np.float64)],
                    device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@given(config=avg_pool_configs(), seed=seeds)
def test_avg_pool2d_matches_torch(device, dtype, config, seed):
    shape, kwargs = config
    compare_with_torch(lambda x: functional(tinynet).avg_pool2d(x, **kwargs),
                       lambda x: functional(torch).avg_pool2d(x, **kwargs),
                       [uniform(shape, seed, dtype)], device=device)


def test_avg_pool2d_divisors_at_the_border():
    x = tinynet.tensor(np.ones((1, 1, 3, 3)))
    with_pad = functional(tinynet).avg_pool2d(x, 2, stride=2, padding=1)
    without_pad = functional(tinynet).avg_pool2d(x, 2, stride=2, padding=1, count_include_pad=False)
    np.testing.assert_array_equal(to_numpy(with_pad)[0, 0], [[0.25, 0.5], [0.5, 1.0]])
    np.testing.assert_array_equal(to_numpy(without_pad)[0, 0], np.ones((2, 2)))


# ----------------------------------------------------------------------- adaptive_avg_pool2d
@st.composite
def adaptive_configs(draw):
    shape = draw(st.sampled_from([(), (1,), (2,)])) + (draw(st.integers(1, 3)), draw(st.integers(1, 5)),
                                                      draw(st.integers(1, 5)))
    side = st.integers(1, 6)  # larger than the input too: windows then repeat input elements
    output_size = draw(st.one_of(side, st.tuples(side, side), st.tuples(st.none(), side),
                                 st.tuples(side, st.none())))
    return shape, output_size


@given(config=adaptive_configs(), seed=seeds)
def test_adaptive_avg_pool2d_gradients(device, config, seed):
    shape, output_size = config
    check_gradients(lambda x: functional(tinynet).adaptive_avg_pool2d(x, output_size),
                    [uniform(shape, seed, np.float64)], device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@given(config=adaptive_configs(), seed=seeds)
def test_adaptive_avg_pool2d_matches_torch(device, dtype, config, seed):
    shape, output_size = config
    compare_with_torch(lambda x: functional(tinynet).adaptive_avg_pool2d(x, output_size),
                       lambda x: functional(torch).adaptive_avg_pool2d(x, output_size),
                       [uniform(shape, seed, dtype)], device=device)


def test_adaptive_avg_pool2d_to_one_is_the_global_mean():
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 4))
    out = functional(tinynet).adaptive_avg_pool2d(tinynet.tensor(x), 1)
    np.testing.assert_allclose(to_numpy(out), x.mean(axis=(2, 3), keepdims=True), rtol=1e-12)


# ----------------------------------------------------------------------------------- errors
def pool(m, op, shape, *args, dtype=np.float32, **kwargs):
    return getattr(functional(m), op)(m.tensor(np.zeros(shape, dtype)), *args, **kwargs)


BAD_CALLS = {
    "max_pad_more_than_half_kernel": (lambda m: pool(m, "max_pool2d", (2, 3, 5, 5), 3, padding=2),
                                      r"^max_pool2d: pad should be at most half of kernel size.*\(2, 2\).*\(3, 3\)"),
    "avg_pad_more_than_half_kernel": (lambda m: pool(m, "avg_pool2d", (2, 3, 5, 5), 3, padding=2),
                                      r"^avg_pool2d: pad should be at most half of kernel size"),
    "max_window_larger_than_input": (lambda m: pool(m, "max_pool2d", (2, 3, 5, 5), 7),
                                     r"^max_pool2d: given input size \(3x5x5\), calculated output size "
                                     r"\(3x0x0\) is too small"),
    "avg_window_larger_than_input": (lambda m: pool(m, "avg_pool2d", (2, 3, 5, 5), (2, 6)),
                                     r"^avg_pool2d: given input size \(3x5x5\).*\(3x2x0\)"),
    "max_dilated_window_too_large": (lambda m: pool(m, "max_pool2d", (1, 1, 4, 4), 3, dilation=2),
                                     r"^max_pool2d: .*too small"),
    "max_zero_stride": (lambda m: pool(m, "max_pool2d", (2, 3, 5, 5), 2, stride=0), r"^max_pool2d: stride"),
    "avg_negative_padding": (lambda m: pool(m, "avg_pool2d", (2, 3, 5, 5), 2, padding=-1),
                             r"^avg_pool2d: pad must be non-negative"),
    "max_zero_dilation": (lambda m: pool(m, "max_pool2d", (2, 3, 5, 5), 2, dilation=0),
                          r"^max_pool2d: dilation should be greater than zero"),
    "max_kernel_of_three_values": (lambda m: pool(m, "max_pool2d", (2, 3, 5, 5), (2, 3, 4)),
                                   r"^max_pool2d: expected kernel_size .*\(2, 3, 4\)"),
    "max_input_2d": (lambda m: pool(m, "max_pool2d", (5, 5), 2), r"^max_pool2d: .*3D .* or 4D .*\[5, 5\]"),
    "max_no_channels": (lambda m: pool(m, "max_pool2d", (2, 0, 5, 5), 2), r"^max_pool2d: .*\[2, 0, 5, 5\]"),
    "avg_zero_divisor": (lambda m: pool(m, "avg_pool2d", (2, 3, 5, 5), 2, divisor_override=0),
                         r"^avg_pool2d: divisor"),
    "adaptive_input_2d": (lambda m: pool(m, "adaptive_avg_pool2d", (5, 5), 2),
                          r"^adaptive_avg_pool2d: .*\[5, 5\]"),
    "adaptive_three_sizes": (lambda m: pool(m, "adaptive_avg_pool2d", (2, 3, 5, 5), (3, 2, 1)),
                             r"^adaptive_avg_pool2d: output_size .*\(3, 2, 1\)"),
    "adaptive_negative_size": (lambda m: pool(m, "adaptive_avg_pool2d", (2, 3, 5, 5), -1),
                               r"^adaptive_avg_pool2d: output_size .*-1"),
    "adaptive_empty_plane": (lambda m: pool(m, "adaptive_avg_pool2d", (2, 3, 0, 5), 2),
                             r"^adaptive_avg_pool2d: .*\[2, 3, 0, 5\]"),
}


@pytest.mark.parametrize("case", BAD_CALLS)
def test_bad_input_raises_runtime_error_naming_the_op(case):
    call, message = BAD_CALLS[case]
    with pytest.raises(RuntimeError, match=message):
        call(tinynet)


@requires_torch
@pytest.mark.parametrize("case", BAD_CALLS)
def test_torch_rejects_the_same_calls(case):
    """The calls above are errors in PyTorch too: the tests follow PyTorch, not a guess."""
    with pytest.raises(RuntimeError):
        BAD_CALLS[case][0](torch)


@pytest.mark.parametrize("op", ["max_pool2d", "avg_pool2d"])
def test_integer_input_is_rejected(op):
    with pytest.raises(RuntimeError, match=rf"^{op}: .*floating-point.*int64"):
        pool(tinynet, op, (1, 1, 4, 4), 2, dtype=np.int64)


def test_non_tensor_input_raises_type_error():
    with pytest.raises(TypeError, match=r"^max_pool2d: .*ndarray"):
        functional(tinynet).max_pool2d(np.zeros((1, 1, 4, 4)), 2)


def test_indices_have_no_gradient_and_match_torch_layout():
    x = untied((1, 2, 4, 4), 0, np.float64)
    out, indices = functional(tinynet).max_pool2d(tinynet.tensor(x, requires_grad=True), 2, return_indices=True)
    assert out.requires_grad and not indices.requires_grad
    # indices index the flattened input plane: gathering with them gives the output back
    np.testing.assert_array_equal(np.take_along_axis(x.reshape(1, 2, 16), to_numpy(indices).reshape(1, 2, 4), 2),
                                  to_numpy(out).reshape(1, 2, 4))
