"""The ``numba.cuda`` kernels of ``tinynet/kernels/cuda``, run under numba's CUDA simulator and
checked against the NumPy references and tinynet's CPU implementation.

The simulator must be switched on (``NUMBA_ENABLE_CUDASIM=1``) before ``numba.cuda`` is first
imported, and must not leak into the rest of the suite (on a GPU machine it would take over the
real device). So in a normal run this module holds a few host-side tests plus one that runs
this same file again in a fresh interpreter with the simulator on; there (``IN_SIMULATOR``) the
kernel tests below run. Run them directly with::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/test_cuda_kernels.py -q -p no:cacheprovider

The tests call the launchers (``*_cuda``: grid/block sizes, stream, buffers) and, through
``tinynet.kernels.dispatch.simulated_cuda_kernels()``, the ops and optimisers, on NumPy arrays:
the code a GPU runs, except that CuPy arrays are NumPy arrays here. What the simulator cannot
show: real-GPU compilation (checked below by compiling every kernel to PTX when NVVM is
installed), speed, and races that only real parallel hardware exposes.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

IN_SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
CLOSE = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}
DTYPES = [np.float32, np.float64]
FEW = settings(max_examples=6, deadline=None)

# Philox-4x32-10 known-answer vectors from Random123 (counter, key, result).
PHILOX_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def random(shape, seed, dtype=np.float64, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


# =============================================================================== host side
if not IN_SIMULATOR:

    def test_kernels_under_the_cuda_simulator():
        """Run this file's simulator tests in a fresh interpreter with NUMBA_ENABLE_CUDASIM=1."""
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
        here = os.path.dirname(os.path.abspath(__file__))
        result = subprocess.run([sys.executable, "-m", "pytest", os.path.abspath(__file__), "-q",
                                 "-p", "no:cacheprovider", "-rs"],
                                cwd=os.path.dirname(here), env=env, capture_output=True, text=True, timeout=600)
        report = result.stdout[-12000:] + result.stderr[-4000:]
        assert result.returncode == 0, report
        assert " passed" in result.stdout and "skipped" not in result.stdout, report

    def test_cpu_path_imports_neither_numba_cuda_nor_cupy():
        """Conv, pooling, batch norm, cross-entropy, dropout and both optimisers on the CPU."""
        code = """if True:
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
        """
        env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_ENABLE_CUDASIM", "TINYNET_SIMULATE_CUDA")}
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        result = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr[-4000:]

    @pytest.mark.parametrize("counter, key, expected", PHILOX_KAT)
    def test_philox_reference_known_answers(counter, key, expected):
        from tinynet.kernels.philox import philox4x32
        np.testing.assert_array_equal(philox4x32(np.array(counter), np.array(key)), np.array(expected, np.uint32))

    @pytest.mark.parametrize("counter, key, expected", PHILOX_KAT)
    def test_philox_device_function_known_answers_with_numba_typing(counter, key, expected):
        """The device function, compiled by numba for the CPU (numba's integer typing, which the
        simulator does not apply: a uint64 mixed with an int64 would become a float64)."""
        import numba
        from tinynet.kernels.cuda.dropout import philox4x32_10
        compiled = numba.njit(philox4x32_10.py_func)
        words = [np.uint64(v) for v in counter + key]
        assert tuple(int(v) for v in compiled(*words)) == expected

    def _nvvm_works():
        """Whether numba can compile for a GPU here (it needs the CUDA toolkit's NVVM, not a GPU)."""
        import numba
        from numba import cuda

        def nothing(a):
            a[0] = 0

        try:
            cuda.compile_ptx(nothing, (numba.float32[:],), cc=(8, 0))
            return True
        except Exception:
            return False

    def _recorded_launches(monkeypatch, dtype):
        """Call every launcher on small NumPy arrays of ``dtype`` with the launch itself replaced
        by a recorder: ``[(kernel, args)]`` exactly as each launcher passes them."""
        from tinynet.kernels.cuda import dropout, im2col, loss, norm, optim, pool
        launches = []
        for module in (im2col, pool, norm, loss, dropout, optim):
            monkeypatch.setattr(module, "launch", lambda kernel, blocks, threads, like, *args:
                                launches.append((kernel, args)))
        x = random((2, 3, 5, 5), 0, dtype)
        geometry = ((3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1))
        im2col.im2col_cuda(x, *geometry)
        im2col.col2im_cuda(random((27, 18), 1, dtype), x.shape, *geometry)
        out, argmax = np.zeros((2, 3, 3, 3), dtype), np.zeros((2, 3, 3, 3), np.int64)
        pool.max_pool2d_forward_cuda(x, *geometry)
        pool.max_pool2d_backward_cuda(out, argmax, x.shape, *geometry)
        vec = np.ones(3, dtype)
        norm.batch_norm_forward_cuda(x, vec, vec, vec.copy(), vec.copy(), 0.1, 1e-5)
        norm.batch_norm_backward_cuda(x, x, vec, vec)
        logits, labels = random((4, 5), 2, dtype), np.array([0, 1, -100, 4])
        loss.cross_entropy_forward_cuda(logits, labels, np.ones(5, dtype), -100)
        rows = np.zeros(4, dtype)
        loss.cross_entropy_backward_cuda(logits, labels, rows, rows, rows, np.ones((), dtype), -100)
        dropout.dropout_mask_cuda(dropout.philox_state(np, 7), (10,), 0.5, dtype)
        p = vec.copy()
        optim.sgd_step_cuda(p, vec, vec.copy(), lr=0.1, momentum=0.9, dampening=0, weight_decay=0.1,
                            nesterov=True, maximize=False, first_step=False)
        optim.adam_step_cuda(p, vec, vec.copy(), vec.copy(), vec.copy(), lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8,
                             weight_decay=0.1, step=3, maximize=False, decoupled_weight_decay=True, amsgrad=True)
        return launches

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_every_kernel_compiles_for_a_real_gpu(monkeypatch, dtype):
        """Compile each kernel to PTX with the argument types its launcher passes (NumPy types
        here; CuPy arrays type the same): catches what only numba's CUDA compiler sees."""
        import tinynet
        if tinynet.backend.cuda_available():  # (and this test would leave device functions compiled for cc 8.0)
            pytest.skip("a GPU is present: the device tests run these kernels for real")
        if not _nvvm_works():
            pytest.skip("NVVM (the CUDA toolkit's compiler library) is not installed")
        import types
        from numba import cuda, typeof
        # Device functions ask the current GPU for its compute capability: there is none here.
        monkeypatch.setattr("numba.cuda.dispatcher.get_current_device",
                            lambda: types.SimpleNamespace(compute_capability=(8, 0)))
        launches = _recorded_launches(monkeypatch, dtype)
        assert len(launches) == 12  # one per kernel launch above (dropout: mask, then offset)
        for kernel, args in launches:
            ptx, _ = cuda.compile_ptx(kernel.py_func, tuple(typeof(a) for a in args), cc=(8, 0))
            assert ".entry" in ptx
            if dtype == np.float32:  # float32 kernels stay in float32 (a stray float64 constant would
                # promote the arithmetic: correct, but up to 64x slower on most GPUs)
                assert not re.findall(r"\.f64\b", ptx), kernel.py_func.__name__

    def test_blocks_for():
        from tinynet.kernels.cuda.launch import MAX_BLOCKS, THREADS, blocks_for
        assert blocks_for(0) == 1 and blocks_for(1) == 1 and blocks_for(THREADS) == 1
        assert blocks_for(THREADS + 1) == 2 and blocks_for(10 ** 12) == MAX_BLOCKS


# ============================================================================ in simulator
else:
    import tinynet
    import tinynet.nn.functional as F
    from tinynet.kernels import im2col as k_im2col, pool as k_pool
    from tinynet.kernels.dispatch import simulated_cuda_kernels
    from tinynet.kernels.philox import dropout_mask_reference, philox4x32

    from tinynet.kernels.cuda import dropout as c_dropout
    from tinynet.kernels.cuda import im2col as c_im2col
    from tinynet.kernels.cuda import loss as c_loss
    from tinynet.kernels.cuda import norm as c_norm
    from tinynet.kernels.cuda import pool as c_pool

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

    def test_running_under_the_simulator():
        import numba
        from numba import cuda
        assert numba.config.ENABLE_CUDASIM and cuda.is_available()

    # ------------------------------------------------------------------------- im2col
    @pytest.mark.parametrize("dtype", DTYPES)
    @FEW
    @given(config=window_configs(), seed=st.integers(0, 2**16))
    def test_im2col_equals_reference(dtype, config, seed):
        shape, *geometry = config
        x = random(shape, seed, dtype)
        cols = c_im2col.im2col_cuda(x, *geometry)
        assert cols.dtype == dtype and cols.shape == cols_shape(config)
        np.testing.assert_array_equal(cols, k_im2col.im2col_reference(x, *geometry))

    @pytest.mark.parametrize("dtype", DTYPES)
    @FEW
    @given(config=window_configs(), seed=st.integers(0, 2**16))
    def test_col2im_gather_equals_reference(dtype, config, seed):
        shape, *geometry = config
        cols = random(cols_shape(config), seed, dtype)
        x = c_im2col.col2im_cuda(cols, shape, *geometry)
        assert x.dtype == dtype and x.shape == shape
        np.testing.assert_allclose(x, k_im2col.col2im_reference(cols, shape, *geometry), **CLOSE[dtype])

    def test_kernels_cover_any_grid():
        """The grid-stride loops: a grid much smaller than the work still covers all of it."""
        x = random((2, 3, 7, 6), 0)
        geometry = ((3, 2), (1, 2), ((1, 0), (2, 1)), (2, 1))
        out_h, out_w, (top, _), (left, _) = k_im2col._geometry(x.shape, *geometry)
        cols = np.full(cols_shape((x.shape, *geometry)), np.nan)
        c_im2col._im2col_kernel[2, 32](x, cols, 3, 2, 1, 2, top, left, 2, 1, out_h, out_w)
        np.testing.assert_array_equal(cols, k_im2col.im2col_reference(x, *geometry))
        back = np.full(x.shape, np.nan)
        c_im2col._col2im_kernel[1, 64](cols, back, 3, 2, 1, 2, top, left, 2, 1, out_h, out_w)
        np.testing.assert_allclose(back, k_im2col.col2im_reference(cols, x.shape, *geometry), **CLOSE[np.float64])

    # ----------------------------------------------------------------------- max pool
    @pytest.mark.parametrize("dtype", DTYPES)
    @FEW
    @given(config=window_configs(max_pad=1), seed=st.integers(0, 2**16), ties=st.booleans())
    def test_max_pool_forward_and_backward_equal_reference(dtype, config, seed, ties):
        shape, *geometry = config
        x = random(shape, seed, dtype, scale=1.0 if not ties else 0.7)
        if ties:  # few distinct values: first maximum wins; overlapping windows share an argmax
            x = np.round(x).astype(dtype)
        out, argmax = c_pool.max_pool2d_forward_cuda(x, *geometry)
        ref_out, ref_argmax = k_pool.max_pool2d_forward_reference(x, *geometry)
        assert out.dtype == dtype and argmax.dtype == np.int64
        np.testing.assert_array_equal(out, ref_out)
        np.testing.assert_array_equal(argmax, ref_argmax)
        grad_out = random(out.shape, seed + 1, dtype)
        grad_in = c_pool.max_pool2d_backward_cuda(grad_out, argmax, shape, *geometry)
        assert grad_in.dtype == dtype and grad_in.shape == shape
        np.testing.assert_allclose(grad_in, k_pool.max_pool2d_backward_reference(grad_out, argmax, shape, *geometry),
                                   **CLOSE[dtype])

    # --------------------------------------------------------------------- batch norm
    @st.composite
    def norm_problems(draw):
        n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        spatial = tuple(draw(st.lists(st.integers(1, 4), max_size=2)))
        shape = (max(n, 2) if not spatial else n, c) + spatial
        return shape, draw(st.booleans()), draw(st.booleans()), draw(st.integers(0, 2**16))

    @pytest.mark.parametrize("dtype", DTYPES)
    @settings(max_examples=4, deadline=None)   # C blocks of 256 simulated threads each: slow here
    @given(problem=norm_problems())
    def test_batch_norm_equals_reference(dtype, problem):
        """F.batch_norm (training) through the kernels vs the reference: output, running
        statistics and every gradient, plus the launcher's mean and inv_std."""
        shape, affine, running, seed = problem
        assume(np.prod(shape) // shape[1] > 1)
        c = shape[1]
        x = random(shape, seed, dtype, scale=2.0) + dtype(0.5)
        w, b = random(c, seed + 1, dtype), random(c, seed + 2, dtype)
        rm, rv = random(c, seed + 3, dtype), np.abs(random(c, seed + 4, dtype)) + dtype(0.5)
        cotangent = random(shape, seed + 5, dtype)

        def run():
            xt = tinynet.tensor(x, requires_grad=True)
            wt = tinynet.tensor(w, requires_grad=True) if affine else None
            bt = tinynet.tensor(b, requires_grad=True) if affine else None
            rmt, rvt = (tinynet.tensor(rm), tinynet.tensor(rv)) if running else (None, None)
            y = F.batch_norm(xt, rmt, rvt, wt, bt, training=True, momentum=0.3, eps=1e-3)
            (y * tinynet.tensor(cotangent)).sum().backward()
            arrays = [y, xt.grad] + ([wt.grad, bt.grad] if affine else []) + ([rmt, rvt] if running else [])
            return [a.detach().numpy() for a in arrays]

        expected = run()
        with simulated_cuda_kernels():
            got = run()
        for a, e in zip(got, expected):
            assert a.dtype == dtype
            np.testing.assert_allclose(a, e, **CLOSE[dtype])
        _, _, mean, inv_std = c_norm.batch_norm_forward_cuda(x, None, None, None, None, 0.1, 1e-3)
        axes = (0,) + tuple(range(2, len(shape)))
        np.testing.assert_allclose(mean, x.mean(axis=axes), **CLOSE[dtype])
        np.testing.assert_allclose(inv_std, 1 / np.sqrt(x.var(axis=axes) + dtype(1e-3)), **CLOSE[dtype])

    def test_batch_norm_with_more_values_than_threads():
        """300 values per channel: each thread accumulates several before the block sum."""
        x = random((3, 2, 10, 10), 0, scale=3.0)
        w, b = random(2, 1), random(2, 2)
        y, x_hat, mean, inv_std = c_norm.batch_norm_forward_cuda(x, w, b, None, None, 0.1, 1e-5)
        ref_mean, ref_var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
        np.testing.assert_allclose(mean, ref_mean, **CLOSE[np.float64])
        ref_hat = (x - ref_mean[:, None, None]) / np.sqrt(ref_var[:, None, None] + 1e-5)
        np.testing.assert_allclose(x_hat, ref_hat, **CLOSE[np.float64])
        np.testing.assert_allclose(y, ref_hat * w[:, None, None] + b[:, None, None], **CLOSE[np.float64])
        g = random(x.shape, 3)
        grad_x, grad_w, grad_b = c_norm.batch_norm_backward_cuda(g, x_hat, inv_std, w)
        np.testing.assert_allclose(grad_b, g.sum(axis=(0, 2, 3)), **CLOSE[np.float64])
        np.testing.assert_allclose(grad_w, (g * ref_hat).sum(axis=(0, 2, 3)), **CLOSE[np.float64])
        assert grad_x.shape == x.shape

    # ------------------------------------------------------------------ cross-entropy
    @st.composite
    def cross_entropy_problems(draw):
        n_class = draw(st.integers(1, 6))
        batch = draw(st.sampled_from([(), (3,), (2, 3), (2, 1, 2)]))   # () is an unbatched (C,) input
        shape = (n_class,) if not batch else (batch[0], n_class) + batch[1:]
        target_shape = batch[:1] + batch[1:]
        ignore = draw(st.sampled_from([-100, 0]))
        return shape, target_shape, ignore, draw(st.booleans()), draw(st.sampled_from(["mean", "sum", "none"])), \
            draw(st.integers(0, 2**16))

    @pytest.mark.parametrize("dtype", DTYPES)
    @FEW
    @given(problem=cross_entropy_problems())
    def test_cross_entropy_equals_reference(dtype, problem):
        """F.cross_entropy through the fused kernels vs the reference: loss and gradient, with
        class weights, ignore_index and every reduction."""
        shape, target_shape, ignore, weighted, reduction, seed = problem
        rng = np.random.default_rng(seed)
        n_class = shape[0] if len(shape) == 1 else shape[1]
        logits = random(shape, seed, dtype, scale=3.0)
        target = rng.integers(0, n_class, target_shape).astype(np.int64)
        weight = rng.uniform(0.5, 2.0, n_class).astype(dtype) if weighted else None
        cotangent = random(target_shape if reduction == "none" else (), seed + 1, dtype)

        def run():
            z = tinynet.tensor(logits, requires_grad=True)
            loss = F.cross_entropy(z, tinynet.tensor(target), None if weight is None else tinynet.tensor(weight),
                                   ignore_index=ignore, reduction=reduction)
            (loss * tinynet.tensor(cotangent)).sum().backward()
            return loss.detach().numpy(), z.grad.detach().numpy()

        expected = run()
        with simulated_cuda_kernels():
            got = run()
        for a, e in zip(got, expected):
            assert a.dtype == dtype and a.shape == e.shape
            np.testing.assert_allclose(a, e, **CLOSE[dtype])

    def test_cross_entropy_huge_logits_and_bad_labels():
        logits = np.array([[1e4, -1e4, 0.0], [0.0, 1.0, 2.0], [5.0, 5.0, 5.0]], np.float32)
        target = np.array([1, 7, -100])  # row 1's label is out of range; row 2 is ignored
        losses, weights, row_max, log_sum = c_loss.cross_entropy_forward_cuda(logits, target, None, -100)
        assert losses[0] == np.float32(2e4) and np.isnan(losses[1]) and losses[2] == 0 and weights[2] == 0
        grad = c_loss.cross_entropy_backward_cuda(logits, target, row_max, log_sum, weights,
                                                  np.ones((), np.float32), -100)
        np.testing.assert_array_equal(grad[0], [1, -1, 0])
        assert np.isnan(grad[1]).all() and (grad[2] == 0).all()

    # ------------------------------------------------------------------------ dropout
    @pytest.mark.parametrize("dtype", DTYPES)
    @FEW
    @given(seed=st.integers(0, 2**64 - 1), offset=st.integers(0, 2**40), size=st.integers(1, 70),
           p=st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]))
    def test_dropout_mask_is_the_reference_philox_mask(dtype, seed, offset, size, p):
        state = np.array([seed, offset], np.uint64)
        mask = c_dropout.dropout_mask_cuda(state, (size,), p, dtype)
        assert mask.dtype == dtype
        np.testing.assert_array_equal(mask, dropout_mask_reference(seed, offset, size, p, dtype))
        assert state[0] == seed and state[1] == offset + 1   # the offset advanced on the device

    @pytest.mark.parametrize("counter, key, expected", PHILOX_KAT)
    def test_philox_device_function_known_answers(counter, key, expected):
        words = [np.uint64(v) for v in counter + key]
        assert tuple(int(v) for v in c_dropout.philox4x32_10(*words)) == expected
        np.testing.assert_array_equal(philox4x32(np.array(counter), np.array(key)), np.array(expected, np.uint32))

    def test_dropout_masks_repeat_for_a_state_and_change_with_the_offset():
        state = c_dropout.philox_state(np, 1234)
        first = c_dropout.dropout_mask_cuda(state, (8, 9), 0.3, np.float32)
        second = c_dropout.dropout_mask_cuda(state, (8, 9), 0.3, np.float32)
        assert state[1] == 2 and not np.array_equal(first, second)
        c_dropout.reseed(state, 1234)
        np.testing.assert_array_equal(c_dropout.dropout_mask_cuda(state, (8, 9), 0.3, np.float32), first)
        assert set(np.unique(first)) <= {0, np.float32(1 / 0.7)}

    def test_dropout_keep_fraction():
        p = 0.3
        mask = c_dropout.dropout_mask_cuda(c_dropout.philox_state(np, 5), (20000,), p, np.float32)
        kept = (mask != 0).mean()
        assert abs(kept - (1 - p)) < 4 * np.sqrt(p * (1 - p) / mask.size)   # 4 standard deviations

    def test_dropout_op_uses_the_device_generator():
        """F.dropout through the kernel: reseeding repeats the masks, the next call changes
        them, and the mask is the reference Philox mask of the generator's seed."""
        x = np.ones((4, 50), np.float32)
        with simulated_cuda_kernels():
            tinynet.manual_seed(42)
            first = F.dropout(tinynet.tensor(x), 0.5).detach().numpy()
            second = F.dropout(tinynet.tensor(x), 0.5).detach().numpy()
            tinynet.manual_seed(42)
            again = F.dropout(tinynet.tensor(x), 0.5).detach().numpy()
            channels = F.dropout2d(tinynet.tensor(np.ones((3, 4, 2, 2))), 0.5).detach().numpy()
        np.testing.assert_array_equal(first, again)
        assert not np.array_equal(first, second)
        np.testing.assert_array_equal(first.reshape(-1), dropout_mask_reference(42, 0, x.size, 0.5))
        np.testing.assert_array_equal(second.reshape(-1), dropout_mask_reference(42, 1, x.size, 0.5))
        assert (channels == channels[:, :, :1, :1]).all()   # whole channels kept or dropped

    # -------------------------------------------------------------------- optimisers
    def _run_optimizer(make, params, grads, steps):
        """Parameters and optimiser state after ``steps`` steps; the gradients shrink from step
        to step (so that AMSGrad's running maximum matters)."""
        tensors = [tinynet.tensor(p.copy(), requires_grad=True) for p in params]
        opt = make(tensors)
        for k in range(steps):
            for t, g in zip(tensors, grads):
                t.grad = tinynet.tensor(g * g.dtype.type(0.5 ** k))
            opt.step()
        state = [v.detach().numpy() for t in tensors for v in opt.state[t].values() if isinstance(v, tinynet.Tensor)]
        return [t.detach().numpy() for t in tensors] + state

    def _compare_optimizers(make, dtype, seed, steps):
        params, grads = [random((3, 4), seed, dtype)], [random((3, 4), seed + 1, dtype)]
        expected = _run_optimizer(make, params, grads, steps)
        with simulated_cuda_kernels():
            got = _run_optimizer(make, params, grads, steps)
        assert len(got) == len(expected)
        for a, e in zip(got, expected):
            assert a.dtype == dtype
            np.testing.assert_allclose(a, e, **CLOSE[dtype])

    SGD_OPTIONS = [dict(), dict(momentum=0.9), dict(momentum=0.9, dampening=0.3, weight_decay=0.01),
                   dict(momentum=0.9, nesterov=True),
                   dict(momentum=0.5, nesterov=True, weight_decay=0.1, maximize=True),
                   dict(weight_decay=0.1, maximize=True)]

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("options", SGD_OPTIONS, ids=lambda o: ",".join(o) or "plain")
    def test_fused_sgd_equals_optim_sgd(dtype, options):
        _compare_optimizers(lambda ts: tinynet.optim.SGD(ts, lr=0.1, **options), dtype, seed=len(options), steps=3)

    ADAM_OPTIONS = [(tinynet.optim.Adam, dict()), (tinynet.optim.Adam, dict(amsgrad=True)),
                    (tinynet.optim.Adam, dict(weight_decay=0.1, maximize=True)),
                    (tinynet.optim.AdamW, dict()), (tinynet.optim.AdamW, dict(weight_decay=0.1, amsgrad=True))]

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("cls, options", ADAM_OPTIONS,
                             ids=lambda o: o.__name__ if isinstance(o, type) else ",".join(o) or "plain")
    def test_fused_adam_equals_optim_adam(dtype, cls, options):
        _compare_optimizers(lambda ts: cls(ts, lr=0.01, betas=(0.8, 0.95), **options), dtype, seed=len(options),
                            steps=4)

    def test_fused_optimizers_update_in_place():
        with simulated_cuda_kernels():
            p = tinynet.tensor(np.ones(6), requires_grad=True)
            opt = tinynet.optim.Adam([p], lr=0.1)
            data = p.data
            p.grad = tinynet.tensor(np.ones(6))
            opt.step()
            buffers = [v.data for v in opt.state[p].values() if isinstance(v, tinynet.Tensor)]
            opt.step()
            assert p.data is data and (p.data < 1).all()
            assert all(v.data is b for v, b in zip([v for v in opt.state[p].values()
                                                     if isinstance(v, tinynet.Tensor)], buffers))

    # -------------------------------------------------------------- ops end to end
    @pytest.mark.parametrize("dtype", DTYPES)
    @settings(max_examples=4, deadline=None)
    @given(config=window_configs(max_pad=1), seed=st.integers(0, 2**16))
    def test_conv_and_pooling_ops_equal_reference(dtype, config, seed):
        """conv2d, max_pool2d and avg_pool2d forward and backward through the kernels (im2col,
        col2im, max-pool) vs the CPU implementation."""
        shape, kernel, stride, padding, dilation = config
        padding = tuple(min(p) for p in padding)   # the ops take symmetric padding
        assume(all(2 * p <= k for p, k in zip(padding, kernel)))
        assume(all(n + 2 * p >= d * (k - 1) + 1 for n, p, d, k in zip(shape[2:], padding, dilation, kernel)))
        x = random(shape, seed, dtype)
        w = random((2, shape[1]) + kernel, seed + 1, dtype)

        def run():
            xt, wt = tinynet.tensor(x, requires_grad=True), tinynet.tensor(w, requires_grad=True)
            y = F.conv2d(xt, wt, stride=stride, padding=padding, dilation=dilation)
            z = F.max_pool2d(xt, kernel, stride, padding, dilation)
            a = F.avg_pool2d(xt, kernel, stride, padding)
            ((y * y).sum() + (z * z).sum() + (a * a).sum()).backward()
            return [t.detach().numpy() for t in (y, z, a, xt.grad, wt.grad)]

        expected = run()
        with simulated_cuda_kernels():
            got = run()
        for a, e in zip(got, expected):
            np.testing.assert_allclose(a, e, **CLOSE[dtype])
