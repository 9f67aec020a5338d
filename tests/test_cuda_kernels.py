"""The CUDA C kernels of ``tinynet/kernels/cuda``, proven without a GPU.

* Their numbers: the same C source that CuPy compiles for a GPU is compiled for the CPU by the
  emulator (``tinynet/kernels/cuda/emulate.py``) and run on simulated CUDA arrays, then checked
  against the NumPy references over hypothesis-drawn shapes, in float32 and float64.
* The emulator itself: barriers, shared memory, the grid-stride loops, and every launch it must
  refuse (an argument that does not match the kernel's C parameter, too many threads, too much
  shared memory), each with an error that names the module, kernel, parameter and types.
* That every registered source compiles for a GPU: NVRTC (CUDA's runtime compiler, which
  ``nvidia-cuda-nvrtc-cu12`` installs without a GPU or a driver) compiles each module for
  float32 and float64, and rejects a syntax error with its log.

What this cannot show: speed, and races that only parallel hardware exposes (the emulator runs
one thread at a time). The emulator tests skip where no C++ compiler is installed, the NVRTC
tests where NVRTC cannot be loaded.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import tinynet
import tinynet.nn.functional as F
from tinynet import sim
from tinynet.kernels import im2col as k_im2col, pool as k_pool
from tinynet.kernels.cuda import conv as c_conv, dropout as c_dropout, emulate, im2col as c_im2col, pool as c_pool
from tinynet.kernels.cuda.launch import (MAX_BLOCKS, THREADS, CudaModule, LaunchError, blocks_for, parse_kernels,
                                         registered_modules)
from tinynet.kernels.philox import dropout_mask_reference, philox4x32

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLOSE = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}
DTYPES = [np.float32, np.float64]
FEW = settings(max_examples=8, deadline=None)
needs_emulator = pytest.mark.skipif(not emulate.available(), reason=f"{emulate.unavailable_reason()}")

# Philox-4x32-10 known-answer vectors from Random123 (counter, key, result).
PHILOX_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def random(shape, seed, dtype=np.float64, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def dev(a):
    """A host array on the simulated device (what the emulator runs on)."""
    return sim.cupy.asarray(a)


def host(a):
    return a.get()


def run_python(code: str, **env_changes) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TINYNET_SIMULATE_CUDA",)}
    env.update(env_changes)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


# ============================================================================ host side
def test_blocks_for():
    assert blocks_for(0) == 1 and blocks_for(1) == 1 and blocks_for(THREADS) == 1
    assert blocks_for(THREADS + 1) == 2 and blocks_for(10 ** 12) == MAX_BLOCKS


def test_parameter_lists_are_parsed():
    kernels = parse_kernels("demo", r"""
        // a comment mentioning __syncthreads must not count
        __device__ void wait_here() { __syncthreads(); }
        extern "C" __global__ void __launch_bounds__(256) a(const T* __restrict__ x, unsigned long long n,
                                                            void* any, float s) { wait_here(); }
        extern "C" __global__ void b(long long* out, int k) { out[0] = k; }
    """)
    assert [(p.ctype, p.name, p.pointer) for p in kernels["a"].params] == [
        ("const T*", "x", True), ("unsigned long long", "n", False), ("void*", "any", True), ("float", "s", False)]
    assert kernels["a"].uses_barrier and not kernels["b"].uses_barrier   # through the device function
    assert kernels["b"].params[0].dtype(np.float32) == np.int64
    with pytest.raises(ValueError, match=r"demo.*kernel c.*T\*\* x"):
        parse_kernels("demo", 'extern "C" __global__ void c(T** x) {}')


def test_cpu_path_imports_neither_numba_cuda_nor_cupy():
    """Conv, pooling, batch norm, cross-entropy, dropout and both optimisers on the CPU."""
    result = run_python("""if True:
        import sys
        import tinynet, tinynet.nn.functional as F
        x = tinynet.randn(2, 3, 6, 6, requires_grad=True)
        w = tinynet.randn(4, 3, 3, 3, requires_grad=True)
        y = F.batch_norm(F.max_pool2d(F.conv2d(x, w, padding=1), 2), None, None, training=True)
        y = F.dropout(F.avg_pool2d(y, 2)).reshape(2, -1)
        F.cross_entropy(y, tinynet.tensor([0, 1])).backward()
        tinynet.optim.SGD([x], lr=0.1, momentum=0.9).step()
        tinynet.optim.Adam([w]).step()
        assert "numba.cuda" not in sys.modules and "cupy" not in sys.modules, "imported on the CPU path"
    """)
    assert result.returncode == 0, result.stderr[-4000:]


@needs_emulator
def test_gpu_path_works_without_numba_cuda():
    """The simulated device's conv, pooling and dropout run the CUDA C kernels with
    ``numba.cuda`` unimportable (as on a machine where numba-cuda is missing or broken)."""
    result = run_python("""if True:
        import sys
        sys.modules["numba.cuda"] = None   # any import of numba.cuda now raises ImportError
        import tinynet, tinynet.nn.functional as F
        from tinynet import sim
        tinynet.backend.simulate_cuda(True)
        x = tinynet.randn(2, 3, 6, 6, device="cuda", requires_grad=True)
        w = tinynet.randn(4, 3, 3, 3, device="cuda", requires_grad=True)
        F.dropout(F.max_pool2d(F.conv2d(x, w, padding=1), 2)).sum().backward()
        names = set(sim.stats.launch_names)
        assert {"conv.conv_forward", "conv.conv_backward_input", "conv.conv_backward_weight",
                "pool.max_pool_forward", "pool.max_pool_backward", "dropout.dropout_forward"} <= names, names
    """)
    assert result.returncode == 0, result.stderr[-4000:]


def test_without_a_compiler_the_simulated_device_runs_the_references():
    """No C++ compiler: the emulator says why, dispatch sends simulated arrays to the
    references, and the ops still work."""
    result = run_python(f"""if True:
        import tinynet, tinynet.nn.functional as F
        from tinynet import sim
        from tinynet.kernels import dispatch
        from tinynet.kernels.cuda import emulate
        assert not emulate.available() and "no C++ compiler" in emulate.unavailable_reason()
        tinynet.backend.simulate_cuda(True)
        x = tinynet.randn(1, 2, 5, 5, device="cuda", requires_grad=True)
        assert not dispatch.uses_cuda(x.data)
        F.max_pool2d(F.conv2d(x, tinynet.randn(3, 2, 3, 3, device="cuda")), 2).sum().backward()
        assert not [name for name in sim.stats.launch_names if name.startswith(("im2col.", "pool."))]
    """, PATH="/nonexistent", CXX="")
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.mark.parametrize("counter, key, expected", PHILOX_KAT)
def test_philox_reference_known_answers(counter, key, expected):
    np.testing.assert_array_equal(philox4x32(np.array(counter), np.array(key)), np.array(expected, np.uint32))


# ================================================================================ NVRTC
def _nvrtc():
    try:
        from cupy_backends.cuda.libs import nvrtc
        nvrtc.getVersion()
        return nvrtc
    except Exception as exc:  # CuPy or the NVRTC library missing
        pytest.skip(f"NVRTC cannot be loaded here ({type(exc).__name__}: {exc}); "
                    "pip install cupy-cuda12x nvidia-cuda-nvrtc-cu12")


def _every_module():
    """Import every kernel module of tinynet.kernels.cuda (each registers its CudaModule)."""
    import tinynet.kernels.cuda as package
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")
    return registered_modules()


def _compile_ptx(nvrtc, source: str, name: str) -> str:
    program = nvrtc.createProgram(source, f"{name}.cu", [], [])
    try:
        nvrtc.compileProgram(program, ["--std=c++14", "--gpu-architecture=compute_80"])
    except nvrtc.NVRTCError as exc:
        raise AssertionError(f"NVRTC rejected {name}:\n{nvrtc.getProgramLog(program)}") from exc
    ptx = nvrtc.getPTX(program)
    return ptx.decode() if isinstance(ptx, bytes) else ptx


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_module_compiles_with_nvrtc(dtype):
    nvrtc = _nvrtc()
    modules = _every_module()
    assert {"im2col", "pool", "dropout"} <= set(modules)
    for name, module in modules.items():
        ptx = _compile_ptx(nvrtc, module.source_for(dtype), name)
        for kernel in module.kernels:
            assert f".entry {kernel}(" in ptx, f"{name}.{kernel} missing from the PTX"
        if dtype == np.float32 and name in ("im2col", "pool", "dropout"):
            # float32 kernels stay in float32: a stray double constant would promote the
            # arithmetic (correct, but up to 64x slower on most GPUs)
            assert ".f64" not in ptx, f"{name}: float64 arithmetic in the float32 build"


def test_nvrtc_compiles_the_common_prelude():
    nvrtc = _nvrtc()
    module = CudaModule("prelude_for_test", r"""
        extern "C" __global__ void k(T* x, long long n) {
            GRID_STRIDE_LOOP(i, n) { x[i] = i % 2 ? (T)TN_NAN : -(T)TN_INFINITY; }
        }""", register=False)
    for dtype in DTYPES:
        assert ".entry k(" in _compile_ptx(nvrtc, module.source_for(dtype), module.name)


def test_nvrtc_rejects_a_syntax_error_with_its_log():
    nvrtc = _nvrtc()
    module = CudaModule("broken_syntax_for_test", 'extern "C" __global__ void k(T* x) { x[0] = 1 }',
                        register=False)
    with pytest.raises(AssertionError, match=r"(?s)NVRTC rejected.*expected a \";\""):
        _compile_ptx(nvrtc, module.source_for(np.float32), module.name)


def test_importing_cupy_without_a_driver_finds_no_gpu():
    result = run_python("""if True:
        try:
            import cupy
        except ImportError:
            pass
        import tinynet
        assert not tinynet.backend.cuda_available()
    """)
    assert result.returncode == 0, result.stderr[-4000:]


# ============================================================ the kernels, emulated
@st.composite
def window_configs(draw, max_pad=2):
    """``(input shape, kernel, stride, padding, dilation)`` with asymmetric padding."""
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = tuple((draw(st.integers(0, max_pad)), draw(st.integers(0, max_pad))) for _ in range(2))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    outs = [k_im2col.output_size(n, k, s, *p, d) for n, k, s, p, d in zip(shape[2:], kernel, stride, padding,
                                                                            dilation)]
    assume(min(outs) >= 1)
    return shape, kernel, stride, padding, dilation


def cols_shape(config):
    shape, kernel, stride, padding, dilation = config
    out = [k_im2col.output_size(n, k, s, *p, d) for n, k, s, p, d in zip(shape[2:], kernel, stride, padding,
                                                                           dilation)]
    return shape[1] * kernel[0] * kernel[1], shape[0] * out[0] * out[1]


@needs_emulator
@pytest.mark.parametrize("dtype", DTYPES)
@FEW
@given(config=window_configs(), seed=st.integers(0, 2**16))
def test_im2col_equals_reference(dtype, config, seed):
    shape, *geometry = config
    x = random(shape, seed, dtype)
    cols = host(c_im2col.im2col_cuda(dev(x), *geometry))
    assert cols.dtype == dtype and cols.shape == cols_shape(config)
    np.testing.assert_array_equal(cols, k_im2col.im2col_reference(x, *geometry))


@needs_emulator
@pytest.mark.parametrize("dtype", DTYPES)
@FEW
@given(config=window_configs(), seed=st.integers(0, 2**16))
def test_col2im_gather_equals_reference(dtype, config, seed):
    shape, *geometry = config
    cols = random(cols_shape(config), seed, dtype)
    x = host(c_im2col.col2im_cuda(dev(cols), shape, *geometry))
    assert x.dtype == dtype and x.shape == shape
    np.testing.assert_allclose(x, k_im2col.col2im_reference(cols, shape, *geometry), **CLOSE[dtype])


def conv_reference(x, weight, bias, geometry, groups):
    """y, and a function of dY giving (dx, dW, db), of a convolution by im2col and NumPy products."""
    kernel, stride, padding, dilation = geometry
    n, c_out = x.shape[0], weight.shape[0]
    cols = k_im2col.im2col_reference(x, *geometry).reshape(groups, -1, cols_shape((x.shape, *geometry))[1])
    w = weight.reshape(groups, c_out // groups, -1)
    out_h, out_w = (k_im2col.output_size(size, k, s, *p, d)
                    for size, k, s, p, d in zip(x.shape[2:], kernel, stride, padding, dilation))
    y = (w @ cols).reshape(c_out, n, out_h, out_w).transpose(1, 0, 2, 3) + bias.reshape(1, -1, 1, 1)

    def backward(grad):
        grad_cm = grad.transpose(1, 0, 2, 3).reshape(groups, c_out // groups, -1)
        grad_cols = (w.transpose(0, 2, 1) @ grad_cm).reshape(-1, grad_cm.shape[2])
        grad_x = k_im2col.col2im_reference(grad_cols, x.shape, *geometry)
        return grad_x, (grad_cm @ cols.transpose(0, 2, 1)).reshape(weight.shape), grad.sum(axis=(0, 2, 3))
    return y, backward


def check_conv_kernels(x, weight, bias, geometry, groups, seed, dtype):
    """The three implicit-GEMM kernels of ``tinynet/kernels/cuda/conv.py`` against conv_reference."""
    kernel, stride, padding, dilation = geometry
    y_expected, backward = conv_reference(x, weight, bias, geometry, groups)
    y = host(c_conv.conv2d_forward_cuda(dev(x), dev(weight), dev(bias), y_expected.shape[2:], stride, padding,
                                        dilation, groups))
    tolerance = CLOSE[dtype] if dtype == np.float64 else dict(rtol=1e-4, atol=1e-4)
    assert y.dtype == dtype and y.shape == y_expected.shape
    np.testing.assert_allclose(y, y_expected, **tolerance)
    grad = random(y.shape, seed + 1, dtype)
    dx_expected, dw_expected, db_expected = backward(grad)
    dx = host(c_conv.conv2d_backward_input_cuda(dev(grad), dev(weight), x.shape, stride, padding, dilation, groups))
    np.testing.assert_allclose(dx, dx_expected, **tolerance)
    dw, db = c_conv.conv2d_backward_weight_cuda(dev(grad), dev(x), x.shape, weight.shape, stride, padding, dilation,
                                                groups)
    np.testing.assert_allclose(host(dw), dw_expected, **tolerance)
    np.testing.assert_allclose(host(db), db_expected, **tolerance)
    # Each output alone, as the backward asks when only one needs a gradient.
    dw_only, none = c_conv.conv2d_backward_weight_cuda(dev(grad), dev(x), x.shape, weight.shape, stride, padding,
                                                       dilation, groups, need_bias=False)
    none_too, db_only = c_conv.conv2d_backward_weight_cuda(dev(grad), None, x.shape, weight.shape, stride, padding,
                                                           dilation, groups, need_weight=False)
    assert none is None and none_too is None
    np.testing.assert_array_equal(host(dw_only), host(dw))
    np.testing.assert_allclose(host(db_only), db_expected, **tolerance)


@needs_emulator
@pytest.mark.parametrize("dtype", DTYPES)
@FEW
@given(config=window_configs(), groups=st.sampled_from([1, 2]), c_out=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_conv_kernels_equal_reference(dtype, config, groups, c_out, seed):
    shape, *geometry = config
    shape = (shape[0], shape[1] * groups) + shape[2:]
    x = random(shape, seed, dtype)
    weight = random((c_out * groups, shape[1] // groups) + geometry[0], seed + 2, dtype)
    check_conv_kernels(x, weight, random(c_out * groups, seed + 3, dtype), tuple(geometry), groups, seed, dtype)


@needs_emulator
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_kernels_over_several_tiles_and_split_sums(dtype):
    """Rows and columns past one 64 x 64 tile, and dW's sum split over blocks (the last block of
    each tile adding the shares), run both ways round: the same numbers whichever block ends last."""
    x = random((2, 8, 16, 16), 0, dtype)
    weight = random((70, 4, 3, 3), 1, dtype)                  # 2 groups: 35 rows, 37 columns with db
    geometry = ((3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1))
    depth = 2 * 16 * 16
    assert c_conv.weight_splits(35, 37, 2, depth) > 1 and c_conv.weight_splits(70, 73, 1, depth) > 1
    with emulate.thread_order_check():
        check_conv_kernels(x, weight, random(70, 2, dtype), geometry, 2, 0, dtype)
        check_conv_kernels(x, random((70, 8, 3, 3), 3, dtype), random(70, 4, dtype), geometry, 1, 0, dtype)


def test_conv_kernels_refuse_products_past_32_bit_indices():
    geometry = ((1, 1), ((0, 0), (0, 0)), (1, 1))
    with pytest.raises(RuntimeError, match=r"conv2d: input \[65536, 1, 256, 256\].*32-bit indices.*batch\*OH\*OW"):
        c_conv._args((65536, 1, 256, 256), (1, 1, 1, 1), (256, 256), *geometry, 1)
    assert len(c_conv._args((2, 1, 256, 256), (1, 1, 1, 1), (256, 256), *geometry, 1)) == 16


@needs_emulator
def test_kernels_cover_any_grid():
    """The grid-stride loops: a grid much smaller than the work still covers all of it."""
    x = random((2, 3, 7, 6), 0)
    geometry = ((3, 2), (1, 2), ((1, 0), (2, 1)), (2, 1))
    out_h, out_w, (top, _), (left, _) = k_im2col._geometry(x.shape, *geometry)
    window = tuple(np.int32(v) for v in (3, 7, 6, 3, 2, 1, 2, top, left, 2, 1, out_h, out_w))
    cols = dev(np.full(cols_shape((x.shape, *geometry)), np.nan))
    c_im2col.MODULE.launch("im2col", np.float64, 2, 32,
                           (dev(x), cols, np.int64(cols.size), np.int64(cols.shape[1]), *window))
    np.testing.assert_array_equal(host(cols), k_im2col.im2col_reference(x, *geometry))
    back = dev(np.full(x.shape, np.nan))
    c_im2col.MODULE.launch("col2im", np.float64, (1, 1, 1), (64, 1, 1),
                           (cols, back, np.int64(back.size), np.int64(cols.shape[1]), *window))
    np.testing.assert_allclose(host(back), k_im2col.col2im_reference(host(cols), x.shape, *geometry),
                               **CLOSE[np.float64])


@needs_emulator
@pytest.mark.parametrize("dtype", DTYPES)
@FEW
@given(config=window_configs(max_pad=1), seed=st.integers(0, 2**16), ties=st.booleans())
def test_max_pool_forward_and_backward_equal_reference(dtype, config, seed, ties):
    shape, *geometry = config
    x = random(shape, seed, dtype, scale=1.0 if not ties else 0.7)
    if ties:  # few distinct values: first maximum wins; overlapping windows share an argmax
        x = np.round(x).astype(dtype)
    out, argmax = c_pool.max_pool2d_forward_cuda(dev(x), *geometry)
    ref_out, ref_argmax = k_pool.max_pool2d_forward_reference(x, *geometry)
    assert out.dtype == dtype and argmax.dtype == np.int64
    np.testing.assert_array_equal(host(out), ref_out)
    np.testing.assert_array_equal(host(argmax), ref_argmax)
    grad_out = random(out.shape, seed + 1, dtype)
    grad_in = host(c_pool.max_pool2d_backward_cuda(dev(grad_out), argmax, shape, *geometry))
    assert grad_in.dtype == dtype and grad_in.shape == shape
    np.testing.assert_allclose(grad_in, k_pool.max_pool2d_backward_reference(grad_out, ref_argmax, shape, *geometry),
                               **CLOSE[dtype])


@needs_emulator
def test_max_pool_of_infinities_and_nans():
    x = np.array([[[[-np.inf, -np.inf], [-np.inf, -np.inf]], [[1.0, np.nan], [np.nan, 2.0]]]], np.float32)
    geometry = ((2, 2), (1, 1), ((1, 0), (1, 0)), (1, 1))
    out, argmax = c_pool.max_pool2d_forward_cuda(dev(x), *geometry)
    ref_out, ref_argmax = k_pool.max_pool2d_forward_reference(x, *geometry)
    np.testing.assert_array_equal(host(out), ref_out)
    np.testing.assert_array_equal(host(argmax), ref_argmax)


def _mask(state, shape, p, dtype):
    """The dropout mask of ``shape`` that the one-launch dropout kernel draws from ``state``."""
    return c_dropout.dropout_cuda(state, dev(np.ones(shape, dtype)), p)[1]


@needs_emulator
@pytest.mark.parametrize("dtype", DTYPES)
@FEW
@given(seed=st.integers(0, 2**64 - 1), offset=st.integers(0, 2**40), size=st.integers(1, 70),
       p=st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]))
def test_dropout_mask_is_the_reference_philox_mask(dtype, seed, offset, size, p):
    state = dev(np.array([seed, offset, 0], np.uint64))
    mask = _mask(state, (size,), p, dtype)
    assert mask.dtype == dtype
    np.testing.assert_array_equal(host(mask), dropout_mask_reference(seed, offset, size, p, dtype))
    assert host(state).tolist() == [seed, offset + 1, 0]   # the offset advanced on the device, by the same launch


@needs_emulator
def test_one_launch_draws_a_mask_and_advances_the_offset():
    """Over many blocks (the last one advances the offset) and for an empty mask."""
    state = c_dropout.philox_state(sim.cupy, 99)
    before = sim.stats.launch_names["dropout.dropout_forward"]
    for k, size in enumerate([5000, 0, 3]):     # 5000 elements: 5 blocks of 256 threads
        mask = _mask(state, (size,), 0.5, np.float64)
        np.testing.assert_array_equal(host(mask), dropout_mask_reference(99, k, size, 0.5, np.float64))
        assert host(state).tolist() == [99, k + 1, 0]
    assert sim.stats.launch_names["dropout.dropout_forward"] - before == 3


@needs_emulator
@pytest.mark.parametrize("dtype", DTYPES)
@FEW
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=3), seed=st.integers(0, 2**64 - 1),
       offset=st.integers(0, 2**40), p=st.sampled_from([0.1, 0.5, 1.0]))
def test_dropout_forward_kernel_applies_the_reference_mask(dtype, shape, seed, offset, p):
    x = random(shape, seed % 2**32, dtype)
    x.reshape(-1)[0] = np.inf   # inf * 0 is NaN, as in the reference x * mask
    state = dev(np.array([seed, offset, 0], np.uint64))
    y, mask = c_dropout.dropout_cuda(state, dev(x), p)
    expected_mask = dropout_mask_reference(seed, offset, x.size, p, dtype).reshape(shape)
    np.testing.assert_array_equal(host(mask), expected_mask)
    with np.errstate(invalid="ignore"):   # inf * 0
        np.testing.assert_array_equal(host(y), x * expected_mask)
    assert host(state).tolist() == [seed, offset + 1, 0]


@needs_emulator
@pytest.mark.parametrize("dtype", DTYPES)
@FEW
@given(shape=st.lists(st.integers(0, 6), min_size=2, max_size=4), channel_dims=st.integers(1, 2),
       seed=st.integers(0, 2**64 - 1), offset=st.integers(0, 2**40), p=st.sampled_from([0.1, 0.5, 1.0]))
def test_dropout_forward_kernel_per_channel_applies_the_reference_mask(dtype, shape, channel_dims, seed, offset, p):
    """dropout2d's one launch: mask value e (of the first channel_dims dims) is the reference's
    e-th, and scales its whole channel; with an empty channel (a 0 in the spatial dims) the mask
    is still drawn."""
    x = random(shape, seed % 2**32, dtype)
    state = dev(np.array([seed, offset, 0], np.uint64))
    y, mask = c_dropout.dropout_cuda(state, dev(x), p, channel_dims)
    channels = int(np.prod(shape[:channel_dims]))
    expected_mask = dropout_mask_reference(seed, offset, channels, p, dtype).reshape(
        tuple(shape[:channel_dims]) + (1,) * (len(shape) - channel_dims))
    np.testing.assert_array_equal(host(mask), expected_mask)
    np.testing.assert_array_equal(host(y), x * expected_mask)
    assert host(state).tolist() == [seed, offset + 1, 0]


@needs_emulator
def test_dropout2d_op_on_the_device_is_one_launch_and_its_gradient_is_the_mask():
    x = tinynet.randn(3, 5, 4, 4, device="cuda", requires_grad=True)
    F.dropout2d(x, 0.5)  # the generator's first draw makes its device state (a host-to-device copy)
    tinynet.manual_seed(7)
    before = dict(sim.stats.launch_names)
    y = F.dropout2d(x, 0.5)
    launched = {k: v - before.get(k, 0) for k, v in sim.stats.launch_names.items() if v != before.get(k, 0)}
    assert launched == {"dropout.dropout_forward": 1}, launched
    y.backward(tinynet.ones(3, 5, 4, 4, device="cuda"))
    mask = np.broadcast_to(dropout_mask_reference(7, 0, 15, 0.5).reshape(3, 5, 1, 1), (3, 5, 4, 4))
    np.testing.assert_array_equal(x.grad.cpu().numpy(), mask)
    np.testing.assert_array_equal(y.detach().cpu().numpy(), x.detach().cpu().numpy() * mask)


@needs_emulator
def test_dropout_op_on_the_device_is_one_launch_and_its_gradient_is_the_mask():
    x = tinynet.randn(6, 7, device="cuda", requires_grad=True)
    tinynet.manual_seed(3)
    before = dict(sim.stats.launch_names)
    y = F.dropout(x, 0.4)
    launched = {k: v - before.get(k, 0) for k, v in sim.stats.launch_names.items() if v != before.get(k, 0)}
    assert launched == {"dropout.dropout_forward": 1}, launched
    y.backward(tinynet.ones(6, 7, device="cuda"))
    mask = dropout_mask_reference(3, 0, 42, 0.4).reshape(6, 7)
    np.testing.assert_array_equal(x.grad.cpu().numpy(), mask)
    np.testing.assert_array_equal(y.detach().cpu().numpy(), x.detach().cpu().numpy() * mask)


@needs_emulator
def test_philox_kernel_known_answers():
    counters = np.array([c for c, _, _ in PHILOX_KAT], np.uint32)
    keys = np.array([k for _, k, _ in PHILOX_KAT], np.uint32)
    words = host(c_dropout.philox_words_cuda(dev(counters), dev(keys)))
    np.testing.assert_array_equal(words, np.array([e for _, _, e in PHILOX_KAT], np.uint32))


@needs_emulator
def test_dropout_masks_repeat_for_a_state_and_change_with_the_offset():
    state = c_dropout.philox_state(sim.cupy, 1234)
    first = host(_mask(state, (8, 9), 0.3, np.float32))
    second = host(_mask(state, (8, 9), 0.3, np.float32))
    assert host(state)[1] == 2 and not np.array_equal(first, second)
    c_dropout.reseed(state, 1234)
    np.testing.assert_array_equal(host(_mask(state, (8, 9), 0.3, np.float32)), first)
    assert set(np.unique(first)) <= {0, np.float32(1 / 0.7)}


@needs_emulator
def test_dropout_keep_fraction():
    p = 0.3
    mask = host(_mask(c_dropout.philox_state(sim.cupy, 5), (20000,), p, np.float32))
    kept = (mask != 0).mean()
    assert abs(kept - (1 - p)) < 4 * np.sqrt(p * (1 - p) / mask.size)   # 4 standard deviations


@needs_emulator
def test_dropout_op_on_the_device_uses_its_generator():
    """F.dropout on the (simulated) GPU: reseeding repeats the masks, the next call changes
    them, and each mask is the reference Philox mask of the generator's seed and offset."""
    x = tinynet.ones(4, 50, device="cuda")
    tinynet.manual_seed(42)
    first = F.dropout(x, 0.5).cpu().numpy()
    second = F.dropout(x, 0.5).cpu().numpy()
    tinynet.manual_seed(42)
    again = F.dropout(x, 0.5).cpu().numpy()
    channels = F.dropout2d(tinynet.ones(3, 4, 2, 2, device="cuda"), 0.5).cpu().numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first.reshape(-1), dropout_mask_reference(42, 0, 200, 0.5))
    np.testing.assert_array_equal(second.reshape(-1), dropout_mask_reference(42, 1, 200, 0.5))
    assert (channels == channels[:, :, :1, :1]).all()   # whole channels kept or dropped


@needs_emulator
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=4, deadline=None)
@given(config=window_configs(max_pad=1), seed=st.integers(0, 2**16))
def test_conv_and_pooling_ops_on_the_device_equal_the_cpu(dtype, config, seed):
    """conv2d, max_pool2d and avg_pool2d forward and backward on the simulated GPU (im2col,
    col2im and max-pool kernels, emulated) vs the CPU."""
    shape, kernel, stride, padding, dilation = config
    padding = tuple(min(p) for p in padding)   # the ops take symmetric padding
    assume(all(2 * p <= k for p, k in zip(padding, kernel)))
    assume(all(n + 2 * p >= d * (k - 1) + 1 for n, p, d, k in zip(shape[2:], padding, dilation, kernel)))
    x = random(shape, seed, dtype)
    w = random((2, shape[1]) + kernel, seed + 1, dtype)

    def run(device):
        xt = tinynet.tensor(x, device=device, requires_grad=True)
        wt = tinynet.tensor(w, device=device, requires_grad=True)
        y = F.conv2d(xt, wt, stride=stride, padding=padding, dilation=dilation)
        z = F.max_pool2d(xt, kernel, stride, padding, dilation)
        a = F.avg_pool2d(xt, kernel, stride, padding)
        ((y * y).sum() + (z * z).sum() + (a * a).sum()).backward()
        return [t.detach().cpu().numpy() for t in (y, z, a, xt.grad, wt.grad)]

    launches = sim.stats.launch_names["im2col.col2im"], sim.stats.launch_names["pool.max_pool_backward"]
    got = run("cuda")
    assert sim.stats.launch_names["im2col.col2im"] > launches[0]   # the kernels ran, not the references
    assert sim.stats.launch_names["pool.max_pool_backward"] > launches[1]
    for a, e in zip(got, run("cpu")):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, e, **CLOSE[dtype])


# ============================================================== the emulator itself
_TEST_SOURCE = r"""
#define BLOCK 64
extern "C" __global__ void reverse_in_block(const T* x, T* y) {
    __shared__ T buf[BLOCK];
    int t = threadIdx.x, base = blockIdx.x * blockDim.x;
    buf[t] = x[base + t];
    __syncthreads();                       // without it, thread t reads buf[n-1-t] before it is written
    y[base + t] = buf[blockDim.x - 1 - t];
}

extern "C" __global__ void block_sums(const T* x, T* out, long long n) {
    extern __shared__ T partial[];         // blockDim.x values, dynamic shared memory
    int t = threadIdx.x;
    T sum = 0;
    for (long long i = (long long)blockIdx.x * blockDim.x + t; i < n; i += (long long)blockDim.x * gridDim.x)
        sum += x[i];
    partial[t] = sum;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (t < half) partial[t] += partial[t + half];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = partial[0];
}

extern "C" __global__ void read_uninitialised_shared(T* out) {
    __shared__ T buf[BLOCK];
    if (blockIdx.x == 0) buf[threadIdx.x] = (T)1;        // block 0 writes; block 1 must not see it
    out[blockIdx.x * blockDim.x + threadIdx.x] = buf[threadIdx.x];
}

extern "C" __global__ void diverging_barrier(T* out) {
    if (threadIdx.x == 0) return;
    __syncthreads();
    out[threadIdx.x] = (T)1;
}

extern "C" __global__ void thread_coordinates(int* out) {
    long long t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    long long b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    long long i = b * blockDim.x * blockDim.y * blockDim.z + t;
    out[6 * i] = threadIdx.x; out[6 * i + 1] = threadIdx.y; out[6 * i + 2] = threadIdx.z;
    out[6 * i + 3] = blockIdx.x; out[6 * i + 4] = blockIdx.y; out[6 * i + 5] = blockIdx.z;
}

extern "C" __global__ void typed(const float* x, double* y, int a, long long b, unsigned long long c, T d) {
    y[0] = (double)x[0] + (double)a + (double)b + (double)c + (double)d;
}

extern "C" __global__ void huge_shared(T* out) {
    __shared__ double big[6200];           // 49600 bytes: over the 48 KiB a block may use
    big[threadIdx.x] = 1;
    out[0] = big[0];
}

extern "C" __global__ void counts(int* counter, T* sum, const T* x) {
    atomicAdd(counter, 1);
    atomicAdd(sum, x[blockIdx.x * blockDim.x + threadIdx.x]);
}
"""
_test_module = None


def emulator_module():
    global _test_module
    if _test_module is None:
        _test_module = CudaModule("emulator_test", _TEST_SOURCE, register=False)
    return _test_module


@needs_emulator
@pytest.mark.parametrize("dtype", DTYPES)
def test_syncthreads_is_a_barrier(dtype):
    x = np.arange(3 * 64, dtype=dtype)
    y = dev(np.zeros_like(x))
    emulator_module().launch("reverse_in_block", dtype, 3, 64, (dev(x), y))
    np.testing.assert_array_equal(host(y), x.reshape(3, 64)[:, ::-1].reshape(-1))


@needs_emulator
@pytest.mark.parametrize("dtype", DTYPES)
@FEW
@given(n=st.integers(1, 3000), blocks=st.integers(1, 5), threads=st.sampled_from([1, 2, 32, 128, 256]),
       seed=st.integers(0, 2**16))
def test_block_reduction_with_dynamic_shared_memory(dtype, n, blocks, threads, seed):
    x = random(n, seed, dtype)
    out = dev(np.zeros(blocks, dtype))
    emulator_module().launch("block_sums", dtype, blocks, threads, (dev(x), out, np.int64(n)),
                         shared_mem=threads * np.dtype(dtype).itemsize)
    np.testing.assert_allclose(host(out).sum(), x.sum(), rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-4)


@needs_emulator
def test_shared_memory_starts_poisoned_in_every_block():
    out = dev(np.zeros(2 * 64, np.float32))
    emulator_module().launch("read_uninitialised_shared", np.float32, 2, 64, (out,))
    values = host(out)
    assert (values[:64] == 1).all() and np.isnan(values[64:]).all()


@needs_emulator
def test_threads_leaving_before_a_barrier_are_an_error():
    with pytest.raises(emulate.EmulatorError, match=r"emulator_test.diverging_barrier: .*diverged at __syncthreads"):
        emulator_module().launch("diverging_barrier", np.float32, 1, 32, (dev(np.zeros(32, np.float32)),))


@needs_emulator
def test_three_dimensional_grids_and_blocks():
    grid, block = (2, 3, 1), (4, 2, 3)
    count = 6 * 24
    out = dev(np.zeros(6 * count, np.int32))
    emulator_module().launch("thread_coordinates", np.float32, grid, block, (out,))
    rows = host(out).reshape(count, 6)
    expected = [(tx, ty, tz, bx, by, bz) for bz in range(1) for by in range(3) for bx in range(2)
                for tz in range(3) for ty in range(2) for tx in range(4)]
    assert [tuple(r) for r in rows] == expected


@needs_emulator
def test_atomics_and_launch_counting():
    counter, total = dev(np.zeros(1, np.int32)), dev(np.zeros(1, np.float64))
    before = sim.stats.launch_names["emulator_test.counts"]
    emulator_module().launch("counts", np.float64, 3, 10, (counter, total, dev(np.arange(30.0))))
    assert host(counter)[0] == 30 and host(total)[0] == 435.0
    assert sim.stats.launch_names["emulator_test.counts"] == before + 1


@needs_emulator
def test_scalar_widths_reach_the_kernel():
    y = dev(np.zeros(1, np.float64))
    emulator_module().launch("typed", np.float32, 1, 1, (dev(np.array([0.5], np.float32)), y, np.int32(-3),
                                                     np.int64(-2 ** 40), np.uint64(2 ** 33 + 1), np.float32(0.25)))
    assert host(y)[0] == 0.5 - 3 - 2 ** 40 + 2 ** 33 + 1 + 0.25   # exact in float64: every bit arrived


def _typed_args(**changes):
    args = dict(x=dev(np.zeros(1, np.float32)), y=dev(np.zeros(1, np.float64)), a=np.int32(1), b=np.int64(2),
                c=np.uint64(3), d=np.float32(4))
    args.update(changes)
    return tuple(args.values())


@needs_emulator
@pytest.mark.parametrize("change, message", [
    (dict(a=5), r"argument 2 \(int a\) must be a numpy.int32 scalar .*got a Python int"),
    (dict(b=np.int32(2)), r"argument 3 \(long long b\) must be a numpy.int64 scalar .*got a numpy.int32 scalar"),
    (dict(c=3), r"argument 4 \(unsigned long long c\) must be a numpy.uint64 .*got a Python int"),
    (dict(d=4.0), r"argument 5 \(T d\) must be a numpy.float32 scalar .*got a Python float"),
    (dict(d=np.float64(4)), r"argument 5 \(T d\) must be a numpy.float32 .*got a numpy.float64 scalar"),
    (dict(x=dev(np.zeros(1, np.float64))), r"argument 0 \(const float\* x\) must be an array of float32, "
                                           r"got tinynet.sim.SimArray of float64"),
    (dict(y=np.zeros(1, np.float64)), r"argument 1 \(double\* y\) must be a tinynet.sim.SimArray of float64, "
                                      r"got numpy.ndarray"),
    (dict(x=dev(np.zeros((2, 2), np.float32))[:, 0]), r"argument 0 \(const float\* x\) must be C-contiguous"),
    (dict(a=np.int32(1), x=np.float32(1)), r"argument 0 \(const float\* x\) must be a tinynet.sim.SimArray"),
])
def test_launches_with_mismatched_arguments_are_refused(change, message):
    with pytest.raises(LaunchError, match=r"emulator_test.typed: " + message):
        emulator_module().launch("typed", np.float32, 1, 1, _typed_args(**change))


@needs_emulator
def test_launches_beyond_a_gpus_limits_are_refused():
    module, y = emulator_module(), dev(np.zeros(4, np.float32))
    with pytest.raises(LaunchError, match=r"emulator_test.typed: takes 6 arguments \(const float\* x, double\* y, "
                                          r"int a, .*got 5"):
        module.launch("typed", np.float32, 1, 1, _typed_args()[:5])
    with pytest.raises(LaunchError, match=r"emulator_test.reverse_in_block: block size 1025 along x .* 1..1024"):
        module.launch("reverse_in_block", np.float32, 1, (1025,), (y, y))
    with pytest.raises(LaunchError, match=r"emulator_test.reverse_in_block: 2048 threads per block .* at most 1024"):
        module.launch("reverse_in_block", np.float32, 1, (32, 32, 2), (y, y))
    with pytest.raises(LaunchError, match=r"block size 65 along z"):
        module.launch("reverse_in_block", np.float32, 1, (1, 1, 65), (y, y))
    with pytest.raises(LaunchError, match=r"emulator_test.huge_shared: 49600 bytes of static and 0 of dynamic "
                                          r"shared memory .* at most 49152"):
        module.launch("huge_shared", np.float32, 1, 1, (y,))
    module.launch("block_sums", np.float32, 1, 1, (y, y, np.int64(4)), shared_mem=49152)   # just fits
    with pytest.raises(LaunchError, match=r"emulator_test.reverse_in_block: 256 bytes of static and 48897 of dynamic"):
        module.launch("reverse_in_block", np.float32, 1, 1, (y, y), shared_mem=48897)
    with pytest.raises(LaunchError, match=r"emulator_test: no kernel 'nope'"):
        module.launch("nope", np.float32, 1, 1, (y,))
    with pytest.raises(LaunchError, match=r"grid must be an int or a tuple of 1-3 ints, got \(2.0,\)"):
        module.launch("reverse_in_block", np.float32, 2.0, 1, (y, y))


@needs_emulator
def test_unsupported_features_are_named():
    module = CudaModule("warp_shuffle_for_test", r"""
        extern "C" __global__ void k(T* x) { x[threadIdx.x] = __shfl_down_sync(0xffffffff, x[threadIdx.x], 1); }""",
        register=False)
    with pytest.raises(emulate.EmulatorError, match=r"warp_shuffle_for_test.*does not support '__shfl_down_sync'"):
        module.launch("k", np.float32, 1, 32, (dev(np.zeros(32, np.float32)),))


@needs_emulator
def test_builds_are_cached(monkeypatch):
    """A second build of the same source loads the cached library without running the compiler."""
    source = 'extern "C" __global__ void k(T* x) { x[threadIdx.x] = (T)threadIdx.x; }'
    first = CudaModule("cache_probe_for_test", source, register=False)
    first.launch("k", np.float64, 1, 4, (dev(np.zeros(4)),))

    def no_compiler(*args, **kwargs):
        raise AssertionError("the compiler ran again")
    monkeypatch.setattr(emulate.subprocess, "run", no_compiler)
    again = emulate.EmulatedModule(first, np.float64)
    assert again.static_shared("k") == 0


@needs_emulator
def test_a_barrier_inside_a_macro_is_still_a_barrier():
    module = CudaModule("macro_barrier_for_test", r"""
        #define SYNC() __syncthreads()
        extern "C" __global__ void k(const T* x, T* y) {
            __shared__ T buf[32];
            buf[threadIdx.x] = x[threadIdx.x];
            SYNC();
            y[threadIdx.x] = buf[31 - threadIdx.x];
        }""", register=False)
    assert module.kernels["k"].uses_barrier
    y = dev(np.zeros(32))
    module.launch("k", np.float64, 1, 32, (dev(np.arange(32.0)), y))
    np.testing.assert_array_equal(host(y), np.arange(32.0)[::-1])


# ====================================================== the GPU path, with a stand-in CuPy
class _FakeDeviceArray:
    """A stand-in for ``cupy.ndarray`` (host memory; only what the launch path reads)."""

    def __init__(self, a):
        self._a = a
        self.dtype, self.shape, self.flags, self.size = a.dtype, a.shape, a.flags, a.size


def _fake_cupy(monkeypatch):
    """A ``cupy`` module whose RawModule records what it was asked to compile and launch."""
    import types
    compiled, launched = [], []

    class RawModule:
        def __init__(self, code, options=()):
            compiled.append((code, options))

        def get_function(self, name):
            def function(grid, block, args, shared_mem=0):
                if type(grid) is not tuple or type(block) is not tuple:   # as CuPy 14's Function
                    raise TypeError(f"Argument 'grid' has incorrect type (expected tuple, got {type(grid)})")
                if any(type(a) is sim.SimArray for a in args):
                    raise TypeError("Unsupported type <class 'tinynet.sim.SimArray'>")   # as CuPy does
                launched.append((name, grid, block, args, shared_mem))
            return function

    fake = types.ModuleType("cupy")
    fake.ndarray, fake.RawModule = _FakeDeviceArray, RawModule
    monkeypatch.setitem(sys.modules, "cupy", fake)
    return compiled, launched


def test_gpu_launches_compile_once_per_dtype_and_go_straight_to_cupy(monkeypatch):
    from tinynet.kernels import dispatch
    compiled, launched = _fake_cupy(monkeypatch)
    module = CudaModule("gpu_path_for_test", 'extern "C" __global__ void k(T* x, int n) { x[0] = n; }',
                        register=False)
    x32, x64 = _FakeDeviceArray(np.zeros(4, np.float32)), _FakeDeviceArray(np.zeros(4))
    assert dispatch.uses_cuda(x32) and dispatch.is_cupy_array(x32)
    for _ in range(3):
        module.launch("k", x32.dtype, 1, 32, (x32, np.int32(4)))
    module.launch("k", x64.dtype, (2, 1), (64,), (x64, np.int32(4)), shared_mem=16)
    assert [options for _, options in compiled] == [("--std=c++14",)] * 2   # once per dtype
    assert compiled[0][0] == module.source_for(np.float32) and "typedef double T;" in compiled[1][0]
    assert [(name, grid, block, shared) for name, grid, block, _, shared in launched] == \
        [("k", (1,), (32,), 0)] * 3 + [("k", (2, 1), (64,), 16)]
    # A simulated array reaching a kernel that CuPy already compiled goes to the emulator.
    if emulate.available():
        y = dev(np.zeros(4, np.float32))
        module.launch("k", np.dtype(np.float32), 1, 1, (y, np.int32(7)))
        assert host(y)[0] == 7


def test_gpu_launch_checks_when_asked(monkeypatch):
    """TINYNET_CHECK_LAUNCHES=1: a GPU launch is checked like an emulated one, before CuPy."""
    from tinynet.kernels.cuda import launch as launch_module
    compiled, launched = _fake_cupy(monkeypatch)
    monkeypatch.setattr(launch_module, "_CHECK_ON_GPU", True)
    module = CudaModule("gpu_check_for_test", 'extern "C" __global__ void k(T* x, int n) { x[0] = n; }',
                        register=False)
    x = _FakeDeviceArray(np.zeros(4, np.float32))
    with pytest.raises(LaunchError, match=r"gpu_check_for_test.k: argument 1 \(int n\) must be a numpy.int32 "
                                          r"scalar .*got a Python int"):
        module.launch("k", x.dtype, 1, 1, (x, 4))
    assert not launched
    module.launch("k", x.dtype, 1, 1, (x, np.int32(4)))
    assert len(launched) == 1


@needs_emulator
def test_c_library_constants_nvrtc_lacks_fail_in_the_emulator_too():
    """NVRTC has no <cmath>: NAN fails there, so it must fail here; TN_NAN works in both."""
    bad = CudaModule("nan_macro_for_test", 'extern "C" __global__ void k(T* x) { x[0] = NAN; }', register=False)
    with pytest.raises(emulate.EmulatorError, match=r"(?s)rejected nan_macro_for_test.*NAN"):
        bad.launch("k", np.float32, 1, 1, (dev(np.zeros(1, np.float32)),))
    good = CudaModule("tn_nan_for_test", 'extern "C" __global__ void k(T* x) { x[0] = (T)TN_NAN; '
                      'x[1] = -(T)TN_INFINITY; }', register=False)
    x = dev(np.zeros(2))
    good.launch("k", np.float64, 1, 1, (x,))
    assert np.isnan(host(x)[0]) and host(x)[1] == -np.inf


@pytest.fixture(autouse=True)
def _threads_in_both_orders():
    """Every emulated launch in this file runs its threads first-to-last and last-to-first,
    and must give the same results (no races)."""
    with emulate.thread_order_check():
        yield


@needs_emulator
def test_a_race_between_threads_is_found():
    module = CudaModule("race_for_test", r"""
        extern "C" __global__ void last_writer_wins(int* out) { out[0] = threadIdx.x + blockIdx.x; }
        extern "C" __global__ void no_race(int* out) { out[blockIdx.x * blockDim.x + threadIdx.x] = threadIdx.x; }
        """, register=False)
    out = dev(np.zeros(64, np.int32))
    module.launch("no_race", np.float32, 2, 32, (out,))
    with pytest.raises(emulate.EmulatorError, match=r"race_for_test.last_writer_wins: what it writes to out depends "
                                                     r"on the order"):
        module.launch("last_writer_wins", np.float32, 2, 32, (out,))
    with emulate.thread_order_check(False):
        module.launch("last_writer_wins", np.float32, 2, 32, (out,))   # one order: no way to see it
    assert host(out)[0] == 31 + 1


@needs_emulator
def test_the_order_check_restores_buffers_written_through_a_pointer_table():
    """A multi-tensor kernel writes through device pointers it reads from a table: the second
    (reversed) run must start from the same memory, and a race there is still found."""
    module = CudaModule("pointer_table_for_test", r"""
        extern "C" __global__ void add_one(const unsigned long long* table, long long n) {
            T* x = (T*)table[blockIdx.x];
            for (long long i = threadIdx.x; i < n; i += blockDim.x) x[i] += (T)1;
        }
        extern "C" __global__ void racy(const unsigned long long* table) { ((T*)table[0])[0] = (T)threadIdx.x; }
        """, register=False)
    a, b = dev(np.arange(5.0)), dev(np.zeros(5))
    table = dev(np.array([a.data.ptr, b.data.ptr], np.uint64))
    module.launch("add_one", np.float64, 2, 4, (table, np.int64(5)))
    np.testing.assert_array_equal(host(a), np.arange(5.0) + 1)   # once, not twice
    np.testing.assert_array_equal(host(b), np.ones(5))
    with pytest.raises(emulate.EmulatorError, match=r"pointer_table_for_test.racy: what it writes through a "
                                                     r"pointer it read depends on the order"):
        module.launch("racy", np.float64, 1, 8, (table,))
