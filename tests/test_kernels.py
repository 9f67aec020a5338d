"""The raw kernels in ``tinynet/kernels``: the numba versions agree with the readable references
(which run on the ``device``'s array module, so on CuPy for cuda), im2col matches its
definition, col2im is its adjoint, max-pool backward is the adjoint of gathering at the
argmax, and the public functions pick the right implementation for each array type. (The
CUDA C kernels, run by the CPU emulator, are tested in ``test_cuda_kernels.py``.)"""
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

from tinynet import backend
from tinynet.kernels import dispatch
from tinynet.kernels import im2col as k_im2col
from tinynet.kernels import pool as k_pool

DTYPES = [np.float32, np.float64]
CLOSE = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}
seeds = st.integers(0, 2**32 - 1)


@st.composite
def window_configs(draw, max_pad=2):
    """``(input shape, kernel, stride, padding, dilation)`` with asymmetric padding
    ``((top, bottom), (left, right))`` and at least one window."""
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = tuple((draw(st.integers(0, max_pad)), draw(st.integers(0, max_pad))) for _ in range(2))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    out_h, out_w = (k_im2col.output_size(n, k, s, *p, d)
                    for n, k, s, p, d in zip(shape[2:], kernel, stride, padding, dilation))
    assume(out_h >= 1 and out_w >= 1)
    return shape, kernel, stride, padding, dilation


def on_device(array, device):
    return backend.to_device(array, device)


def on_cpu(array):
    return backend.to_device(array, "cpu")


def random(shape, seed, dtype):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def n_columns(config):
    shape, kernel, stride, padding, dilation = config
    out = [k_im2col.output_size(n, k, s, *p, d) for n, k, s, p, d in zip(shape[2:], kernel, stride, padding, dilation)]
    return (shape[1] * kernel[0] * kernel[1], shape[0] * out[0] * out[1])


# -------------------------------------------------------------------------------- im2col
@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@given(config=window_configs(), seed=seeds)
def test_im2col_numba_equals_reference(device, dtype, parallel, config, seed):
    from tinynet.kernels import threads
    shape, *geometry = config
    x = random(shape, seed, dtype)
    with threads.grain(0 if parallel else 1 << 60):
        fast = k_im2col.im2col_numba(x, *geometry)
    slow = on_cpu(k_im2col.im2col_reference(on_device(x, device), *geometry))
    assert fast.dtype == slow.dtype == dtype and fast.shape == slow.shape == n_columns(config)
    np.testing.assert_array_equal(fast, slow)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("parallel", [False, True])
@given(config=window_configs(), seed=seeds)
def test_col2im_numba_equals_reference(device, dtype, parallel, config, seed):
    from tinynet.kernels import threads
    shape, *geometry = config
    cols = random(n_columns(config), seed, dtype)
    with threads.grain(0 if parallel else 1 << 60):
        fast = k_im2col.col2im_numba(cols, shape, *geometry)
    slow = on_cpu(k_im2col.col2im_reference(on_device(cols, device), shape, *geometry))
    assert fast.dtype == slow.dtype == dtype and fast.shape == slow.shape == shape
    np.testing.assert_allclose(fast, slow, **CLOSE[dtype])


@given(config=window_configs(), seed=seeds)
def test_im2col_matches_its_definition(config, seed):
    """cols[(c, i, j), (n, oh, ow)] = x_padded[n, c, oh*sh + i*dh, ow*sw + j*dw], one by one."""
    shape, kernel, stride, padding, dilation = config
    x = random(shape, seed, np.float64)
    padded = np.pad(x, ((0, 0), (0, 0)) + padding)
    cols = k_im2col.im2col(x, kernel, stride, padding, dilation)
    out_h = k_im2col.output_size(shape[2], kernel[0], stride[0], *padding[0], dilation[0])
    out_w = k_im2col.output_size(shape[3], kernel[1], stride[1], *padding[1], dilation[1])
    for n in range(shape[0]):
        for c in range(shape[1]):
            for i in range(kernel[0]):
                for j in range(kernel[1]):
                    for oh in range(out_h):
                        for ow in range(out_w):
                            expected = padded[n, c, oh * stride[0] + i * dilation[0], ow * stride[1] + j * dilation[1]]
                            row, column = (c * kernel[0] + i) * kernel[1] + j, (n * out_h + oh) * out_w + ow
                            assert cols[row, column] == expected


@pytest.mark.parametrize("implementation", ["numba", "reference"])
@given(config=window_configs(), seed=seeds)
def test_col2im_is_the_adjoint_of_im2col(device, implementation, config, seed):
    """<im2col(x), c> == <x, col2im(c)>: col2im is exactly im2col's backward pass."""
    if implementation == "numba" and device != "cpu":
        pytest.skip("the numba kernels run on the CPU only")
    shape, *geometry = config
    im2col = getattr(k_im2col, f"im2col_{implementation}")
    col2im = getattr(k_im2col, f"col2im_{implementation}")
    x = on_device(random(shape, seed, np.float64), device)
    c = on_device(random(n_columns(config), seed + 1, np.float64), device)
    lhs = float(on_cpu((im2col(x, *geometry) * c).sum()))
    rhs = float(on_cpu((x * col2im(c, shape, *geometry)).sum()))
    assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12)


def test_dispatch_rules(device):
    """numba-CPU kernels only for exactly numpy.ndarray float32/float64; the CUDA C kernels for
    CuPy arrays and for the simulated device's arrays (run by the CPU emulator, when a C++
    compiler is there); everything else, and everything inside reference_kernels(), takes the
    reference."""
    x = on_device(np.zeros((1, 1, 3, 3), np.float32), device)
    is_numpy = type(x) is np.ndarray
    assert dispatch.uses_numba(x) == is_numpy
    expected_cuda = dispatch.is_cupy_array(x) or (dispatch.is_sim_array(x) and dispatch.emulator_available())
    assert dispatch.uses_cuda(x) == expected_cuda
    assert not dispatch.uses_cuda(x.astype(np.int64)) and not dispatch.uses_cuda(x.astype(np.float16))
    assert not dispatch.uses_cuda(np.zeros(3)) and not dispatch.is_cupy_array(np.zeros(3))
    with dispatch.reference_kernels():
        assert not dispatch.uses_numba(x) and not dispatch.uses_cuda(x)


@pytest.mark.parametrize("dtype", DTYPES)
@given(config=window_configs(max_pad=1), seed=seeds)
def test_public_kernels_agree_on_every_device(device, dtype, config, seed):
    """The public functions (which pick the implementation) give the same results on the
    device's arrays as the numba kernels on NumPy arrays."""
    shape, *geometry = config
    x = random(shape, seed, dtype)
    cols = k_im2col.im2col(x, *geometry)
    np.testing.assert_array_equal(on_cpu(k_im2col.im2col(on_device(x, device), *geometry)), cols)
    np.testing.assert_allclose(on_cpu(k_im2col.col2im(on_device(cols, device), shape, *geometry)),
                               k_im2col.col2im(cols, shape, *geometry), **CLOSE[dtype])
    out, argmax = k_pool.max_pool2d_forward(x, *geometry)
    out_d, argmax_d = k_pool.max_pool2d_forward(on_device(x, device), *geometry)
    np.testing.assert_array_equal(on_cpu(out_d), out)
    np.testing.assert_array_equal(on_cpu(argmax_d), argmax)
    grad = random(out.shape, seed + 1, dtype)
    np.testing.assert_allclose(
        on_cpu(k_pool.max_pool2d_backward(on_device(grad, device), argmax_d, shape, *geometry)),
        k_pool.max_pool2d_backward(grad, argmax, shape, *geometry), **CLOSE[dtype])


def test_im2col_dispatch():
    x32 = np.zeros((1, 1, 3, 3), np.float32)
    assert k_im2col.uses_numba(x32) and k_im2col.uses_numba(x32.astype(np.float64))
    assert not k_im2col.uses_numba(x32.astype(np.float16))  # numba has no float16: the reference runs
    cols = k_im2col.im2col(np.ones((1, 1, 3, 3), np.float16), (2, 2), (1, 1), (0, 0), (1, 1))
    assert cols.dtype == np.float16 and cols.shape == (4, 4)
    with k_im2col.reference_kernels():
        assert not k_im2col.uses_numba(x32)
    assert k_im2col.uses_numba(x32)


# ------------------------------------------------------------------------------ max pool
@pytest.mark.parametrize("dtype", DTYPES)
@given(config=window_configs(max_pad=1), seed=seeds, ties=st.booleans())
def test_max_pool_forward_numba_equals_reference(device, dtype, config, seed, ties):
    shape, *geometry = config
    x = random(shape, seed, dtype)
    if ties:  # few distinct values: both must pick the first maximum of each window
        x = np.round(x).astype(dtype)
    out_fast, argmax_fast = k_pool.max_pool2d_forward_numba(x, *geometry)
    out_slow, argmax_slow = k_pool.max_pool2d_forward_reference(on_device(x, device), *geometry)
    assert out_fast.dtype == dtype and argmax_fast.dtype == on_cpu(argmax_slow).dtype == np.int64
    np.testing.assert_array_equal(out_fast, on_cpu(out_slow))
    np.testing.assert_array_equal(argmax_fast, on_cpu(argmax_slow))


@pytest.mark.parametrize("dtype", DTYPES)
@given(config=window_configs(max_pad=1), seed=seeds, ties=st.booleans())
def test_max_pool_backward_numba_equals_reference(device, dtype, config, seed, ties):
    shape, *geometry = config
    x = random(shape, seed, dtype)
    if ties:  # few distinct values: windows share maxima, overlapping windows share argmaxes
        x = np.round(x).astype(dtype)
    out, argmax = k_pool.max_pool2d_forward_numba(x, *geometry)
    grad_out = random(out.shape, seed + 1, dtype)
    fast = k_pool.max_pool2d_backward_numba(grad_out, argmax, shape)
    slow = k_pool.max_pool2d_backward_reference(on_device(grad_out, device), on_device(argmax, device), shape,
                                                *geometry)
    assert fast.dtype == dtype and fast.shape == shape
    np.testing.assert_allclose(fast, on_cpu(slow), **CLOSE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("parallel", [False, True])
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(2, 9), st.integers(2, 9)), seed=seeds,
       values=st.sampled_from(["random", "ties", "nan"]))
def test_max_pool_2x2_fast_path_equals_reference(dtype, parallel, shape, seed, values):
    """The 2x2 window with stride 2 (every report model's pooling) has its own unrolled loop in
    the numba kernel; it picks the same maxima, first-maximum ties and first NaNs as the
    reference (odd sizes drop the last row/column), in the serial and the parallel version."""
    from tinynet.kernels import threads
    x = random(shape, seed, dtype)
    if values == "ties":
        x = np.round(x).astype(dtype)
    elif values == "nan":
        x[np.random.default_rng(seed).random(shape) < 0.2] = np.nan
    geometry = ((2, 2), (2, 2), (0, 0), (1, 1))
    with threads.grain(0 if parallel else 1 << 60):
        out_fast, argmax_fast = k_pool.max_pool2d_forward_numba(x, *geometry)
        grad_out = random(out_fast.shape, seed + 1, dtype)
        grad_fast = k_pool.max_pool2d_backward_numba(grad_out, argmax_fast, shape)
    out_slow, argmax_slow = k_pool.max_pool2d_forward_reference(x, *geometry)
    np.testing.assert_array_equal(out_fast, out_slow)
    np.testing.assert_array_equal(argmax_fast, argmax_slow)
    np.testing.assert_array_equal(grad_fast, k_pool.max_pool2d_backward_reference(grad_out, argmax_slow, shape,
                                                                                  *geometry))


# ---------------------------------------------------------------------------- activations
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("parallel", [False, True])
@given(shape=st.lists(st.integers(1, 7), min_size=0, max_size=4).map(tuple), seed=seeds)
def test_activation_loops_equal_the_array_code_bit_for_bit(dtype, parallel, shape, seed):
    """The compiled CPU loops of kernels/activation.py compute the array expressions of
    functional/elementwise.py in the same order and dtype: identical results, special values
    (NaN, +-inf, -0.0) included, serial and on numba's threads."""
    from tinynet.kernels import activation as k_act, threads
    rng = np.random.default_rng(seed)
    x = random(shape, seed, dtype)
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0], dtype)
    where = rng.random(shape) < 0.3
    x[where] = rng.choice(specials, size=int(where.sum()))
    y_sigmoid = 1 / (1 + np.exp(-x.astype(np.float64))).astype(dtype)
    y_tanh = np.tanh(x)
    grad = random(shape, seed + 1, dtype)
    with threads.grain(0 if parallel else 1 << 60), np.errstate(all="ignore"):
        got = [k_act.relu_forward_numba(x), k_act.relu_backward_numba(np.maximum(x, 0), grad),
               k_act.sigmoid_backward_numba(y_sigmoid, grad), k_act.tanh_backward_numba(y_tanh, grad)]
    with np.errstate(all="ignore"):
        expected = [np.maximum(x, 0), np.where(np.maximum(x, 0) > 0, grad, 0).astype(dtype),
                    ((1 - y_sigmoid) * y_sigmoid) * grad, grad * (1 - y_tanh * y_tanh)]
    for a, b in zip(got, expected):
        assert a.dtype == dtype and a.shape == shape
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(np.signbit(a), np.signbit(b))  # -0.0 kept where NumPy keeps it


def _ulps_apart(a, b):
    """How many float32 values lie between a and b (both finite, of one sign), elementwise."""
    return np.abs(a.view(np.int32).astype(np.int64) - b.view(np.int32).astype(np.int64))


@pytest.mark.parametrize("parallel", [False, True])
def test_float32_sigmoid_loop_is_within_two_ulps_of_the_exact_value(parallel):
    """The float32 sigmoid forward computes its own exp (kernels/activation.py): over every
    2**-13 step of [-120, 120], and at the ends of exp's float32 range, it is within 2 units in
    the last place of the sigmoid computed in float64 and rounded (NumPy's float32 sigmoid is
    itself up to 2 away); below x = -88.73 it is 0 as NumPy's is, and NaN and +-inf behave."""
    from tinynet.kernels import activation as k_act, threads
    x = np.concatenate([np.arange(-120, 120, 2.0 ** -13, dtype=np.float32),
                        np.float32([-89.5, -88.73, -88.72, -88.7, -87.4, 87.4, 88.72, 89.5, 104])])
    with threads.grain(0 if parallel else 1 << 60):
        y = k_act.sigmoid_forward_numba(x)
    exact = (1 / (1 + np.exp(-x.astype(np.float64)))).astype(np.float32)
    normal = exact >= np.finfo(np.float32).tiny
    assert _ulps_apart(y[normal], exact[normal]).max() <= 2
    # Below float32's normal range (x < -87.3) NumPy's float32 sigmoid is the reference: within
    # 2 of the smallest steps, and exactly 0 where exp(-x) overflows (x < -88.73).
    with np.errstate(over="ignore"):
        numpy_float32 = 1 / (1 + np.exp(-x))
    assert _ulps_apart(y[~normal], numpy_float32[~normal]).max() <= 2
    assert np.all(y[x < -88.73] == 0)
    specials = np.float32([np.nan, np.inf, -np.inf, 0.0, -0.0])
    np.testing.assert_array_equal(k_act.sigmoid_forward_numba(specials), np.float32([np.nan, 1, 0, 0.5, 0.5]))


def test_activations_take_the_compiled_loops_on_cpu_float_arrays(monkeypatch):
    """ReLU's forward and backward, sigmoid's in float32 and its backward, and tanh's
    backward call the compiled loops for float NumPy arrays, and the array code for anything
    else (integers, a broadcast gradient, a float64 sigmoid forward)."""
    import tinynet
    from tinynet.kernels import activation as k_act
    calls = []
    for name in ("relu_forward_numba", "relu_backward_numba", "sigmoid_forward_numba", "sigmoid_backward_numba",
                 "tanh_backward_numba"):
        original = getattr(k_act, name)
        monkeypatch.setattr(k_act, name, lambda *a, _f=original, _n=name: calls.append(_n) or _f(*a))
    x = tinynet.tensor(np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4), requires_grad=True)
    for f in (tinynet.relu, tinynet.sigmoid, tinynet.tanh):
        f(x).backward(tinynet.ones(3, 4))
    assert calls == ["relu_forward_numba", "relu_backward_numba", "sigmoid_forward_numba", "sigmoid_backward_numba",
                     "tanh_backward_numba"]
    calls.clear()
    tinynet.relu(tinynet.tensor(np.arange(-3, 3)))                       # integers: NumPy's maximum
    tinynet.relu(tinynet.tensor(np.ones((4, 3), np.float32)).T)         # not C-contiguous
    tinynet.sigmoid(tinynet.tensor(np.ones((4, 3), np.float64)))        # float64: NumPy's exp
    assert calls == []


@given(config=window_configs(max_pad=1), seed=seeds)
def test_max_pool_backward_is_the_adjoint_of_gathering_the_maxima(config, seed):
    """The forward gathers ``x`` at the argmax; its backward is the transpose of that gather:
    ``<gather(x), g> == <x, backward(g)>``, and the output is the gathered input."""
    shape, *geometry = config
    x = random(shape, seed, np.float64)
    out, argmax = k_pool.max_pool2d_forward(x, *geometry)
    real = argmax >= 0
    planes = x.reshape(shape[0], shape[1], -1)
    gathered = np.take_along_axis(planes, np.where(real, argmax, 0).reshape(*shape[:2], -1), axis=2)
    gathered = np.where(real, gathered.reshape(out.shape), -np.inf)
    np.testing.assert_array_equal(out, gathered)
    g = random(out.shape, seed + 1, np.float64)
    lhs = float((np.where(real, gathered, 0) * g).sum())
    rhs = float((x * k_pool.max_pool2d_backward(g, argmax, shape, *geometry)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12)


def test_max_pool_first_maximum_wins():
    x = np.array([[[[3.0, 3.0, 1.0, 3.0]]]])
    for forward in (k_pool.max_pool2d_forward_numba, k_pool.max_pool2d_forward_reference):
        out, argmax = forward(x, (1, 2), (1, 1), (0, 0), (1, 1))
        np.testing.assert_array_equal(out[0, 0, 0], [3, 3, 3])
        np.testing.assert_array_equal(argmax[0, 0, 0], [0, 1, 3])


# ------------------------------------------------------------------------------ batch norm
@given(shape=st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 4), st.integers(1, 4)),
       affine=st.booleans(), seed=seeds)
@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_numba_matches_the_reference(dtype, shape, affine, seed):
    """tinynet/kernels/norm.py against BatchNorm's array code (run under reference_kernels)."""
    import tinynet
    from tinynet.functional.norm import BatchNorm
    from tinynet.kernels import norm as k_norm
    assume(shape[0] * shape[2] * shape[3] > 1)  # the unbiased running variance needs M > 1
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    grad = rng.standard_normal(shape).astype(dtype)
    weight = rng.standard_normal(shape[1]).astype(dtype) if affine else None
    bias = rng.standard_normal(shape[1]).astype(dtype) if affine else None

    def reference():
        with dispatch.reference_kernels():
            args = [tinynet.tensor(x, requires_grad=True)] + [
                None if a is None else tinynet.tensor(a, requires_grad=True) for a in (weight, bias)]
            mean, var = tinynet.zeros(shape[1], dtype=dtype), tinynet.ones(shape[1], dtype=dtype)
            y = BatchNorm.apply(*args, mean, var, training=True, momentum=0.1, eps=1e-5)
            y.backward(tinynet.tensor(grad))
            return y.data, [None if a is None else a.grad.data for a in args], mean.data, var.data

    y_ref, grads_ref, mean_ref, var_ref = reference()
    y, x_hat, mean, var, inv_std = k_norm.batch_norm_forward_numba(x, weight, bias, 1e-5)
    grad_x, grad_weight, grad_bias = k_norm.batch_norm_backward_numba(grad, x_hat, inv_std, weight, True)
    close = CLOSE[dtype] if dtype == np.float64 else dict(rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(y, y_ref, **close)
    np.testing.assert_allclose(grad_x, grads_ref[0], **close)
    np.testing.assert_allclose(0.9 * 0 + 0.1 * mean, mean_ref, **close)
    count = x.size // shape[1]
    np.testing.assert_allclose(0.9 + 0.1 * var * count / (count - 1), var_ref, **close)
    if affine:
        np.testing.assert_allclose(grad_weight, grads_ref[1], **close)
        np.testing.assert_allclose(grad_bias, grads_ref[2], **close)
    assert y.dtype == grad_x.dtype == dtype


def test_batch_norm_takes_the_numba_path_on_cpu_float_arrays(monkeypatch):
    import tinynet
    from tinynet.functional import norm as f_norm
    calls = []
    original = f_norm.batch_norm_forward_numba
    monkeypatch.setattr(f_norm, "batch_norm_forward_numba", lambda *a: calls.append(1) or original(*a))
    x = tinynet.randn(4, 3, 2, 2)
    tinynet.nn.functional.batch_norm(x, None, None, training=True)
    assert calls == [1]


# ---------------------------------------------------------------------- threads and grain
def numba_kernel_outputs(config, seed, dtype):
    """Every numba CPU kernel's output for one window configuration, as a flat list of arrays."""
    from tinynet.kernels import norm as k_norm
    shape, *geometry = config
    x = random(shape, seed, dtype)
    cols = k_im2col.im2col_numba(x, *geometry)
    back = k_im2col.col2im_numba(cols, shape, *geometry)
    pooled, argmax = k_pool.max_pool2d_forward_numba(x, *geometry)  # unpadded configs take the unpadded loops
    grad_in = k_pool.max_pool2d_backward_numba(random(pooled.shape, seed + 1, dtype), argmax, shape)
    y, x_hat, mean, var, inv_std = k_norm.batch_norm_forward_numba(x, None, None, 1e-5)
    grad_x, grad_w, grad_b = k_norm.batch_norm_backward_numba(random(shape, seed + 2, dtype), x_hat, inv_std, None, True)
    return [cols, back, pooled, argmax, grad_in, y, mean, var, grad_x, grad_w, grad_b]


@pytest.mark.parametrize("dtype", DTYPES)
@given(config=window_configs(), seed=st.integers(0, 2**31))
def test_parallel_and_serial_kernels_agree(dtype, config, seed):
    """Each numba kernel has a parallel and a serial version (threads.Loops), picked by the
    size of the work; forcing each in turn gives the same arrays, bit for bit: both run the same
    per-task code and no task writes where another does."""
    import numba
    from tinynet.kernels import threads
    assume(config[0][0] * config[0][2] * config[0][3] > 1)  # batch norm's variance needs 2 values
    with threads.grain(2 ** 62):
        serial = numba_kernel_outputs(config, seed, dtype)
    previous = numba.get_num_threads()
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    try:
        with threads.grain(0):
            parallel = numba_kernel_outputs(config, seed, dtype)
    finally:
        numba.set_num_threads(previous)
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)


def test_the_grain_picks_the_version(monkeypatch):
    """Below the grain the serial version runs, above it (with more than one thread) the parallel one."""
    import numba
    from tinynet.kernels import threads
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has one thread here: the parallel versions never run")
    loops = k_im2col._im2col_loops
    calls = []
    monkeypatch.setattr(loops, "serial", lambda *a: calls.append("serial"))
    monkeypatch.setattr(loops, "parallel", lambda *a: calls.append("parallel"))
    loops(threads.GRAIN - 1)
    loops(threads.GRAIN)
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        loops(threads.GRAIN)  # one thread allowed: nothing to split
    finally:
        numba.set_num_threads(previous)
    assert calls == ["serial", "parallel", "serial"]


def test_numba_uses_the_chosen_threading_layer():
    """tinynet asks numba for its TBB layer, or the workqueue where the tbb package is missing
    (see kernels/threads.py), unless the user set NUMBA_THREADING_LAYER; checked in a fresh
    process, after one parallel kernel has run. There the grain is the loaded layer's."""
    import os
    import subprocess
    import sys
    from tinynet.kernels import threads
    code = ("import numpy as np, numba; from tinynet.kernels import im2col, threads\n"
            "with threads.grain(0): im2col.im2col_numba(np.ones((2, 2, 4, 4), np.float32), (2, 2), (1, 1), (0, 0), (1, 1))\n"
            "print(numba.threading_layer(), threads.LAYER, threads.GRAIN)")
    expected_default = "tbb" if threads._tbb_installed() else "workqueue"
    for setting, expected in ((None, expected_default), ("omp", "omp"), ("workqueue", "workqueue")):
        env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_THREADING_LAYER")}
        env["NUMBA_NUM_THREADS"] = "2"
        if setting:
            env["NUMBA_THREADING_LAYER"] = setting
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        loaded, layer, grain = done.stdout.split()[-3:]
        assert loaded == layer == expected
        assert int(grain) == threads.GRAINS[expected]


def test_kernels_launched_from_several_python_threads_take_turns():
    """numba's workqueue layer aborts the process when two threads launch parallel kernels at
    once; threads.Loops lets one in at a time. In a fresh process: an abort would kill it."""
    import subprocess
    import sys
    code = ("import threading, numpy as np; from tinynet.kernels import im2col, threads\n"
            "x = np.ones((8, 4, 16, 16), np.float32)\n"
            "def work():\n"
            "    with threads.grain(0):\n"
            "        for _ in range(30): im2col.im2col_numba(x, (3, 3), (1, 1), (1, 1), (1, 1))\n"
            "ts = [threading.Thread(target=work) for _ in range(3)]\n"
            "[t.start() for t in ts]; [t.join() for t in ts]; print('done')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=dict(__import__("os").environ, NUMBA_NUM_THREADS="2"))
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr[-2000:]


# ------------------------------------------------------------------ convolution layout (CPU)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("parallel", [False, True])
@given(shape=st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 4), st.integers(1, 4)), seed=seeds,
       has_bias=st.booleans())
def test_conv_layout_loops_equal_the_array_code(dtype, parallel, shape, seed, has_bias):
    """kernels/conv.py: the GEMM's channel-major output plus the bias as NCHW (bit for bit the
    array code's ``out += bias`` then transpose), and the NCHW gradient as channel-major with its
    per-channel sum (the copy exact, the sum to rounding), serial and on numba's threads."""
    from tinynet.kernels import conv as k_conv, threads
    c, n, h, w = shape
    out = random(shape, seed, dtype)                               # (C, N, OH, OW)
    bias = random((c,), seed + 1, dtype) if has_bias else None
    grad = random((n, c, h, w), seed + 2, dtype)
    with threads.grain(0 if parallel else 1 << 60):
        y = k_conv.bias_to_nchw_numba(out, bias)
        grad_cm, grad_bias = k_conv.nchw_to_channels_numba(grad, has_bias)
    expected = out + bias.reshape(-1, 1, 1, 1) if has_bias else out
    np.testing.assert_array_equal(y, expected.transpose(1, 0, 2, 3))
    np.testing.assert_array_equal(grad_cm, grad.transpose(1, 0, 2, 3).reshape(c, -1))
    if has_bias:
        assert grad_bias.dtype == dtype
        np.testing.assert_allclose(grad_bias, grad.astype(np.float64).sum(axis=(0, 2, 3)), **CLOSE[dtype])
    else:
        assert grad_bias is None


def conv_by_definition(x, weight, bias, config):
    """conv2d(x, weight) + bias as im2col's reference and one product, in x's dtype:
    ``(y, cols, (OH, OW))`` for the kernels' tests to compare with."""
    _, kernel, stride, padding, dilation = config
    cols = k_im2col.im2col_reference(x, kernel, stride, padding, dilation)
    out_hw = tuple(k_im2col.output_size(n, k, s, *p, d) for n, k, s, p, d in zip(x.shape[2:], kernel, stride, padding,
                                                                                  dilation))
    c_out = weight.shape[0]
    y = (weight.reshape(c_out, -1) @ cols).reshape((c_out, x.shape[0]) + out_hw).transpose(1, 0, 2, 3)
    return (y if bias is None else y + bias.reshape(1, -1, 1, 1)), cols, out_hw


# ------------------------------------------------------- shallow convolutions, image by image
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("parallel", [False, True])
@given(config=window_configs(), c_out=st.integers(1, 5), batch=st.integers(1, 9), seed=seeds,
       has_bias=st.booleans())
def test_shallow_conv_loops_equal_im2col_and_a_product(dtype, parallel, config, c_out, batch, seed, has_bias):
    """kernels/shallow_conv.py against the definition (im2col reference, one product): the
    forward with its bias, dW and db, serial and on numba's threads (batches of up to 9 images:
    several tasks of IMAGES_PER_TASK, one partly filled), to rounding."""
    from tinynet.kernels import shallow_conv, threads
    shape, kernel, stride, padding, dilation = config
    shape = (batch,) + shape[1:]
    x = random(shape, seed, dtype)
    weight = random((c_out, shape[1]) + kernel, seed + 1, dtype)
    bias = random((c_out,), seed + 2, dtype) if has_bias else None
    expected, cols, out_hw = conv_by_definition(x, weight, bias, config)
    grad = random(expected.shape, seed + 3, dtype)
    with threads.grain(0 if parallel else 1 << 60):
        y = shallow_conv.shallow_conv_forward_numba(x, weight, bias, out_hw, stride, padding, dilation)
        grad_weight, grad_bias = shallow_conv.shallow_conv_weight_grad_numba(grad, x, kernel, stride, padding, dilation)
        no_weight, only_bias = shallow_conv.shallow_conv_weight_grad_numba(grad, None, kernel, stride, padding,
                                                                           dilation, need_weight=False)
    close = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else CLOSE[dtype]
    assert y.dtype == dtype and y.shape == expected.shape and y.flags.c_contiguous
    np.testing.assert_allclose(y, expected, **close)
    grad_cm = grad.transpose(1, 0, 2, 3).reshape(c_out, -1)
    np.testing.assert_allclose(grad_weight, grad_cm @ cols.T, **close)
    np.testing.assert_allclose(grad_bias, grad.astype(np.float64).sum(axis=(0, 2, 3)), **CLOSE[dtype])
    assert grad_weight.dtype == grad_bias.dtype == dtype and no_weight is None
    np.testing.assert_array_equal(only_bias, grad_bias)


def test_shallow_layers_take_the_image_by_image_path(monkeypatch):
    """Conv2d on float CPU arrays: a window of at most SHALLOW_DEPTH values without groups goes
    image by image and saves x (no cols); deeper windows and groups keep im2col + GEMM."""
    import tinynet
    from tinynet.kernels import shallow_conv
    calls = []
    real = shallow_conv.shallow_conv_forward_numba
    monkeypatch.setattr(shallow_conv, "shallow_conv_forward_numba", lambda *a: calls.append(1) or real(*a))
    x = tinynet.tensor(np.ones((2, 1, 8, 8), np.float32))
    for layer, expected in [(tinynet.nn.Conv2d(1, 4, 5), 1), (tinynet.nn.Conv2d(1, 4, 3, padding=1), 1),
                            (tinynet.nn.Conv2d(1, 4, 7).double(), 0)]:       # 49 values per window
        before = len(calls)
        y = layer(x.double() if expected == 0 else x)
        assert len(calls) - before == expected, layer
        assert (y.grad_fn.saved_tensors[0].shape == x.shape) == bool(expected)  # else im2col's cols
    # A frozen weight: x is not saved, and the bias gradient needs none: 2 images of 6x6 ones each.
    layer = tinynet.nn.Conv2d(1, 4, 3)
    layer.weight.requires_grad_(False)
    layer(x).sum().backward()
    assert layer.weight.grad is None and np.allclose(layer.bias.grad.numpy(), 72.0)
    grouped = tinynet.nn.Conv2d(2, 4, 3, groups=2)
    before = len(calls)
    grouped(tinynet.tensor(np.ones((2, 2, 8, 8), np.float32)))
    assert len(calls) == before


# ------------------------------------------------- few filters: vector tiles without cols
@pytest.mark.parametrize("parallel", [False, True])
@given(config=window_configs(), c_out=st.integers(1, 40), batch=st.integers(1, 9), seed=seeds,
       has_bias=st.booleans())
def test_direct_conv_tiles_equal_im2col_and_a_product(parallel, config, c_out, batch, seed, has_bias):
    """kernels/direct_conv.py against the definition (im2col reference, one product, in
    float64), float32: the forward with its bias and dW, for any stride, asymmetric padding and
    dilation, 1-40 filters (one, two and three blocks of 16, partly filled), batches of up to 9
    images (weight-gradient tasks of IMAGES_PER_TASK, one partly filled), serial and on numba's
    threads, to float32 rounding."""
    from tinynet.kernels import direct_conv, threads
    shape, kernel, stride, padding, dilation = config
    shape = (batch,) + shape[1:]
    x = random(shape, seed, np.float32)
    weight = random((c_out, shape[1]) + kernel, seed + 1, np.float32)
    bias = random((c_out,), seed + 2, np.float32) if has_bias else None
    expected, cols, out_hw = conv_by_definition(x.astype(np.float64), weight, bias, config)
    grad = random(expected.shape, seed + 3, np.float32)
    with threads.grain(0 if parallel else 1 << 60):
        y = direct_conv.direct_conv_forward_numba(x, weight, bias, out_hw, stride, padding, dilation)
        grad_weight = direct_conv.direct_conv_weight_grad_numba(grad, x, kernel, stride, padding, dilation)
    assert y.dtype == grad_weight.dtype == np.float32 and y.shape == expected.shape and y.flags.c_contiguous
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    expected_weight = (grad.transpose(1, 0, 2, 3).reshape(c_out, -1).astype(np.float64) @ cols.T).reshape(weight.shape)
    np.testing.assert_allclose(grad_weight, expected_weight, rtol=1e-4, atol=1e-3)


@st.composite
def stride_one_configs(draw):
    """``(input shape, kernel, (1, 1), padding, dilation)`` with asymmetric padding of at most
    the kernel's span minus one on each side (the convolutions whose dx is a forward pass)."""
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = tuple((draw(st.integers(0, d * (k - 1))), draw(st.integers(0, d * (k - 1))))
                    for k, d in zip(kernel, dilation))
    # at least one output: H + top + bottom >= the kernel's span
    size = [draw(st.integers(max(1, d * (k - 1) + 1 - sum(p)), 9)) for k, d, p in zip(kernel, dilation, padding)]
    return (1, 1, *size), kernel, (1, 1), padding, dilation


@pytest.mark.parametrize("parallel", [False, True])
@given(config=stride_one_configs(), channels=st.integers(1, 40), c_out=st.integers(1, 20), batch=st.integers(1, 5),
       seed=seeds)
def test_direct_conv_input_grad_equals_col2im_of_a_product(parallel, config, channels, c_out, batch, seed):
    """kernels/direct_conv.py's dx of a stride-1 convolution (the forward tiles run on dY with
    the flipped, transposed kernels) against the definition, col2im(W.T @ dY) in float64, for
    any kernel up to 5x5, dilation, asymmetric padding up to the kernel's span minus one
    ("full" at the top), 1-40 channels of x (one to three blocks of 16 lanes, partly filled),
    serial and on numba's threads, to float32 rounding."""
    from tinynet.kernels import direct_conv, threads
    shape, kernel, stride, padding, dilation = config
    shape = (batch, channels) + shape[2:]
    weight = random((c_out, channels) + kernel, seed + 1, np.float32)
    out_hw = tuple(k_im2col.output_size(n, k, 1, *p, d) for n, k, p, d in zip(shape[2:], kernel, padding, dilation))
    grad = random((batch, c_out) + out_hw, seed + 3, np.float32)
    grad_cm = grad.transpose(1, 0, 2, 3).reshape(c_out, -1).astype(np.float64)
    expected = k_im2col.col2im_reference(weight.reshape(c_out, -1).T.astype(np.float64) @ grad_cm, shape, kernel,
                                         stride, padding, dilation)
    with threads.grain(0 if parallel else 1 << 60):
        grad_x = direct_conv.direct_conv_input_grad_numba(grad, weight, shape[2:], padding, dilation)
    assert grad_x.dtype == np.float32 and grad_x.shape == shape and grad_x.flags.c_contiguous
    np.testing.assert_allclose(grad_x, expected, rtol=1e-4, atol=1e-4)


def test_few_filters_take_the_vector_tiles_in_float32_only(monkeypatch):
    """Conv2d on the CPU: float32 layers with at most MAX_FILTERS filters, at least
    MIN_POSITIONS outputs per map, no groups and a window too deep for the shallow path take
    kernels/direct_conv.py and save x (no cols); float64, groups, wider layers and small maps
    keep im2col + GEMM. (test_conv.py's float32 parity with PyTorch runs through both.)"""
    import tinynet
    from tinynet.kernels import direct_conv
    calls = []
    for name in ("direct_conv_forward_numba", "direct_conv_weight_grad_numba"):
        real = getattr(direct_conv, name)
        monkeypatch.setattr(direct_conv, name, lambda *a, _f=real, _n=name: calls.append(_n) or _f(*a))
    x = tinynet.tensor(np.ones((2, 6, 12, 12), np.float32))
    layer = tinynet.nn.Conv2d(6, 16, 5)
    y = layer(x)
    assert y.grad_fn.saved_tensors[0].shape == x.shape
    y.sum().backward()
    assert calls == ["direct_conv_forward_numba", "direct_conv_weight_grad_numba"]
    calls.clear()
    tinynet.nn.Conv2d(6, 16, 5).double()(tinynet.tensor(np.ones((2, 6, 12, 12))))     # float64
    tinynet.nn.Conv2d(6, 16, 5, groups=2)(x)                                            # groups
    tinynet.nn.Conv2d(6, direct_conv.MAX_FILTERS + 1, 5)(x)                            # wider
    assert direct_conv.MIN_POSITIONS > 9
    tinynet.nn.Conv2d(6, 16, 3, padding=1)(tinynet.tensor(np.ones((2, 6, 3, 3), np.float32)))  # 9 positions
    assert calls == []
    tinynet.nn.Conv2d(6, 16, 3, padding=1)(tinynet.tensor(np.ones((2, 6, 4, 4), np.float32)))  # 16: lenet_resnet's
    assert calls == ["direct_conv_forward_numba"]


def test_input_grad_takes_the_vector_tiles_where_they_waste_little(monkeypatch):
    """Conv2d's dx on the CPU runs as a forward pass on the tiles (direct_conv_input_grad_numba)
    for float32 stride-1 layers without groups, at most MAX_FILTERS channels in and out and at
    most MAX_WASTE times GEMM + col2im's multiply-adds; else GEMM + col2im. Either way dx is
    the same to rounding."""
    import tinynet
    from tinynet.kernels import direct_conv
    calls = []
    real = direct_conv.direct_conv_input_grad_numba
    monkeypatch.setattr(direct_conv, "direct_conv_input_grad_numba", lambda *a: calls.append(a[1].shape) or real(*a))

    def input_grad(layer, shape, dtype=np.float32):
        x = tinynet.tensor(np.random.default_rng(0).standard_normal(shape).astype(dtype), requires_grad=True)
        y = layer(x)
        (y * y).sum().backward()
        return x.grad.numpy()

    tinynet.manual_seed(0)
    res = tinynet.nn.Conv2d(16, 16, 3, padding=1, bias=False)     # lenet_resnet's block: waste 1
    tiled = input_grad(res, (3, 16, 4, 4))
    assert calls == [(16, 16, 3, 3)]
    monkeypatch.setattr(direct_conv, "MAX_WASTE", 0)               # the same layer through col2im
    np.testing.assert_allclose(tiled, input_grad(res, (3, 16, 4, 4)), rtol=1e-5, atol=1e-5)
    assert len(calls) == 1
    monkeypatch.setattr(direct_conv, "MAX_WASTE", 3)
    assert direct_conv._waste(6, (12, 12), (8, 8)) == 16 / 6 * 144 / 64 > direct_conv.MAX_WASTE
    input_grad(tinynet.nn.Conv2d(6, 16, 5), (2, 6, 12, 12))                          # LeNet's second: waste 6
    input_grad(tinynet.nn.Conv2d(16, 16, 3, stride=2, padding=1), (2, 16, 8, 8))     # stride 2
    input_grad(tinynet.nn.Conv2d(16, 16, 3, padding=1, groups=2), (2, 16, 4, 4))    # groups
    input_grad(tinynet.nn.Conv2d(16, direct_conv.MAX_FILTERS + 1, 3, padding=1), (2, 16, 4, 4))  # dY too deep
    input_grad(tinynet.nn.Conv2d(16, 16, 3, padding=3), (2, 16, 4, 4))               # padding > k - 1
    input_grad(tinynet.nn.Conv2d(16, 16, 3, padding=1).double(), (2, 16, 4, 4), np.float64)
    assert len(calls) == 1


# --------------------------------------------------------------- products with a tiny side
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("parallel", [False, True])
@given(m=st.integers(1, 8), k=st.integers(1, 30), long=st.integers(1, 5000), seed=seeds, batched=st.booleans())
def test_narrow_products_equal_numpys(dtype, parallel, m, k, long, seed, batched):
    """kernels/narrow_matmul.py: ``few_rows`` (a small (M, K) times a wide (K, N)) and
    ``few_outputs`` (a long inner dimension, a small (M, N) result, the right operand a
    transposed row-major matrix, as cols.T) agree with numpy.matmul to rounding, for any length
    (blocks and a partial last block), serial and on numba's threads, written into ``out`` or not."""
    from tinynet.kernels import narrow_matmul as nm, threads
    a = random((m, k), seed, dtype)
    wide = random((k, long), seed + 1, dtype)
    g = random((m, long), seed + 2, dtype)
    cols = random((k, long), seed + 3, dtype)
    lead = (1,) if batched else ()
    with threads.grain(0 if parallel else 1 << 60):
        got_rows = nm.few_rows(a.reshape(lead + a.shape), wide.reshape(lead + wide.shape))
        out = np.full(lead + (m, k), np.nan, dtype)
        got_outputs = nm.few_outputs(g.reshape(lead + g.shape), cols.reshape(lead + cols.shape).swapaxes(-1, -2), out)
    assert got_rows.shape == lead + (m, long) and got_outputs is out
    tolerance = dict(rtol=1e-4, atol=1e-4 * k) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10 * long)
    np.testing.assert_allclose(got_rows.reshape(m, long), a @ wide, **tolerance)
    tolerance = dict(rtol=1e-4, atol=1e-5 * long) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12 * long)
    np.testing.assert_allclose(out.reshape(m, k), g @ cols.T, **tolerance)


def test_matmul_takes_the_narrow_kernels_only_where_they_fit():
    """gemm.matmul sends a small convolution's products (LeNet's first layer) to the narrow
    kernels when numba has threads to split them over, and everything else (square products, a
    non-contiguous long side, integers, batches of more than one, one thread) to NumPy's BLAS."""
    import numba
    from tinynet.kernels import narrow_matmul as nm
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has one thread here: the narrow kernels are never chosen")
    f32 = np.float32
    weight, cols, grad = np.ones((6, 25), f32), np.ones((25, 147456), f32), np.ones((6, 147456), f32)
    assert nm.choose(weight, cols, None) == "few_rows"
    assert nm.choose(grad, cols.T, None) == "few_outputs"
    assert nm.choose(weight[None], cols[None], None) == "few_rows"                  # a group of one
    assert nm.choose(np.ones((64, 64), f32), np.ones((64, 64), f32), None) is None  # square: BLAS
    assert nm.choose(weight, np.asfortranarray(cols), None) is None                 # long side strided
    assert nm.choose(weight.astype(np.int64), cols.astype(np.int64), None) is None
    assert nm.choose(np.ones((2, 6, 25), f32), np.ones((2, 25, 147456), f32), None) is None
    assert nm.choose(grad, cols.T, np.ones((6, 25), np.float64)) is None            # out of another dtype
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        assert nm.choose(weight, cols, None) is None                                # one thread: BLAS
    finally:
        numba.set_num_threads(previous)
