"""batch_norm: float64 gradcheck of the closed-form backward (training and eval), parity with
PyTorch for the output, every gradient and the running statistics, and the errors."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinynet
import tinynet.nn.functional as F
from helpers import check_gradients, compare_with_torch, requires_torch, to_numpy
from tinynet import backend, sim
from tinynet.kernels import dispatch

try:
    import torch
    import torch.nn.functional as TF
except ImportError:
    torch = TF = None


@st.composite
def batch_shapes(draw, max_spatial=2):
    """(N, C, *spatial) with more than one value per channel, as training requires."""
    n = draw(st.integers(1, 3))
    c = draw(st.integers(1, 3))
    spatial = tuple(draw(st.lists(st.integers(1, 3), max_size=max_spatial)))
    shape = (n, c) + spatial
    if n * int(np.prod(spatial)) < 2:
        shape = (2,) + shape[1:]
    return shape


def _inputs(shape, seed, dtype=np.float64):
    """x, weight, bias, running_mean, running_var of a random problem (running_var > 0)."""
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)
    weight, bias = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    running_mean = rng.standard_normal(c).astype(dtype)
    running_var = rng.uniform(0.5, 2.0, c).astype(dtype)
    return x, weight, bias, running_mean, running_var


# ------------------------------------------------------------------------------ gradcheck
@given(shape=batch_shapes(), seed=st.integers(0, 2**16))
def test_gradcheck_training(device, shape, seed):
    x, w, b, rm, rv = _inputs(shape, seed)
    check_gradients(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), [x, w, b],
                    device=device)


@given(shape=batch_shapes(), seed=st.integers(0, 2**16))
def test_gradcheck_training_without_affine_and_with_running_stats(device, shape, seed):
    x, _, _, rm, rv = _inputs(shape, seed)
    rm_t, rv_t = tinynet.tensor(rm, device=device), tinynet.tensor(rv, device=device)
    check_gradients(lambda x: F.batch_norm(x, rm_t, rv_t, training=True, momentum=0.3), [x], device=device)


@given(shape=batch_shapes(), seed=st.integers(0, 2**16))
def test_gradcheck_eval(device, shape, seed):
    x, w, b, rm, rv = _inputs(shape, seed)
    rm_t, rv_t = tinynet.tensor(rm, device=device), tinynet.tensor(rv, device=device)
    check_gradients(lambda x, w, b: F.batch_norm(x, rm_t, rv_t, w, b, training=False), [x, w, b],
                    device=device)


# ------------------------------------------------------------------------------ parity with torch
def _both(training, momentum=0.1, eps=1e-5, affine=True):
    """The same batch_norm call in both frameworks, returning (output, running_mean, running_var)
    so that compare_with_torch also checks the in-place update of the running statistics."""
    def call(lib):
        def fn(x, rm, rv, w, b):
            out = lib.batch_norm(x, rm, rv, w if affine else None, b if affine else None,
                                 training=training, momentum=momentum, eps=eps)
            return out, rm, rv
        return fn
    return call(F), call(TF)


@requires_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5, 3), (4, 2, 6), (3, 2, 4, 5), (1, 3, 2, 2)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_matches_torch(device, dtype, shape, training, affine):
    x, w, b, rm, rv = _inputs(shape, seed=sum(shape), dtype=dtype)
    tn_fn, th_fn = _both(training, affine=affine)
    compare_with_torch(tn_fn, th_fn, [x, rm, rv, w, b], device=device,
                       requires_grad=[True, False, False, affine, affine])


@requires_torch
@given(shape=batch_shapes(), seed=st.integers(0, 2**16), momentum=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
       eps=st.sampled_from([1e-5, 1e-3]), training=st.booleans())
def test_matches_torch_hypothesis(device, shape, seed, momentum, eps, training):
    x, w, b, rm, rv = _inputs(shape, seed)
    tn_fn, th_fn = _both(training, momentum=momentum, eps=eps)
    compare_with_torch(tn_fn, th_fn, [x, rm, rv, w, b], device=device,
                       requires_grad=[True, False, False, True, True])


@requires_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum", [0.0, 0.1, 0.9, 1.0])
def test_running_stats_after_several_steps(device, dtype, momentum):
    """Three training steps on different batches, then one eval step: the running statistics
    and the eval output follow PyTorch's (unbiased variance in running_var)."""
    rng = np.random.default_rng(7)
    c = 3
    tn_rm, tn_rv = tinynet.zeros(c, dtype=dtype, device=device), tinynet.ones(c, dtype=dtype, device=device)
    th_rm, th_rv = torch.zeros(c, dtype=getattr(torch, np.dtype(dtype).name)), \
        torch.ones(c, dtype=getattr(torch, np.dtype(dtype).name))
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for step in range(3):
        x = (rng.standard_normal((4, c, 3, 2)) * (step + 1) + step).astype(dtype)
        F.batch_norm(tinynet.tensor(x, device=device), tn_rm, tn_rv, training=True, momentum=momentum)
        TF.batch_norm(torch.tensor(x), th_rm, th_rv, training=True, momentum=momentum)
        np.testing.assert_allclose(to_numpy(tn_rm), th_rm.numpy(), **tol, err_msg=f"running_mean, step {step}")
        np.testing.assert_allclose(to_numpy(tn_rv), th_rv.numpy(), **tol, err_msg=f"running_var, step {step}")
    x = rng.standard_normal((2, c, 3, 2)).astype(dtype)
    out = F.batch_norm(tinynet.tensor(x, device=device), tn_rm, tn_rv, training=False)
    expected = TF.batch_norm(torch.tensor(x), th_rm, th_rv, training=False)
    np.testing.assert_allclose(to_numpy(out), expected.numpy(), **tol)


# ------------------------------------------------------------------------------ behaviour
def test_training_output_is_standardised(device):
    x = tinynet.tensor(np.random.default_rng(0).standard_normal((8, 2, 5)) * 3 + 4, device=device)
    y = to_numpy(F.batch_norm(x, None, None, training=True))
    np.testing.assert_allclose(y.mean(axis=(0, 2)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2)), 1, rtol=1e-4)  # 1 - eps / var


def test_eval_leaves_running_stats_alone(device):
    rm, rv = tinynet.tensor([0.5, -1.0], device=device), tinynet.tensor([2.0, 3.0], device=device)
    x = tinynet.tensor(np.ones((3, 2), np.float32), device=device)
    F.batch_norm(x, rm, rv, training=False)
    np.testing.assert_array_equal(to_numpy(rm), [0.5, -1.0])
    np.testing.assert_array_equal(to_numpy(rv), [2.0, 3.0])


def test_running_stats_update_also_under_no_grad(device):
    rm, rv = tinynet.zeros(2, device=device), tinynet.ones(2, device=device)
    x = tinynet.tensor([[1.0, 2.0], [3.0, 6.0]], device=device)
    with tinynet.no_grad():
        F.batch_norm(x, rm, rv, training=True, momentum=0.5)
    np.testing.assert_allclose(to_numpy(rm), [1.0, 2.0])        # 0.5 * batch mean (2, 4)
    np.testing.assert_allclose(to_numpy(rv), [1.5, 4.5])        # 0.5 * 1 + 0.5 * unbiased var (2, 8)


@pytest.mark.skipif(backend.cuda_available(), reason="a real GPU is present: 'cuda' is CuPy, not the simulator")
@pytest.mark.skipif(not dispatch.emulator_available(), reason="no CUDA emulator (C++ compiler) for the fused kernel")
def test_batchnorm_step_counter_costs_no_launch_of_its_own():
    """A BatchNorm2d training forward on the simulated GPU is one launch: the fused kernel adds 1
    to num_batches_tracked itself. Off that path (the reference kernels, eval) the counter is
    advanced by an add_(1) or left alone: each training forward counts exactly once."""
    bn = tinynet.nn.BatchNorm2d(3).to("cuda")
    x = tinynet.randn(4, 3, 2, 2, device="cuda")
    with sim.counting() as c:
        bn(x)
    assert c["launch_names"] == {"norm.batch_norm_forward": 1}, c["launch_names"]
    assert bn.num_batches_tracked.item() == 1
    with dispatch.reference_kernels():
        bn(x)
    assert bn.num_batches_tracked.item() == 2
    bn.eval()
    bn(x)
    assert bn.num_batches_tracked.item() == 2


# ------------------------------------------------------------------------------ errors
def test_wrong_number_of_features(device):
    x = tinynet.zeros(4, 3, device=device)
    with pytest.raises(RuntimeError, match=r"batch_norm: running_mean should contain 3 .*\(4, 3\).* not 4"):
        F.batch_norm(x, tinynet.zeros(4, device=device), tinynet.ones(4, device=device))
    with pytest.raises(RuntimeError, match=r"batch_norm: weight should contain 3 .* not 2"):
        F.batch_norm(x, None, None, weight=tinynet.ones(2, device=device), training=True)


def test_single_value_per_channel_in_training(device):
    with pytest.raises(ValueError, match=r"Expected more than 1 value per channel when training.*\(1, 3\)"):
        F.batch_norm(tinynet.zeros(1, 3, device=device), None, None, training=True)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        F.batch_norm(tinynet.zeros(1, 3, 1, 1, device=device), None, None, training=True)
    # eval mode with one sample is fine
    F.batch_norm(tinynet.zeros(1, 3, device=device), tinynet.zeros(3, device=device),
                 tinynet.ones(3, device=device), training=False)


def test_eval_needs_running_stats(device):
    with pytest.raises(RuntimeError, match="batch_norm: running_mean and running_var must be defined"):
        F.batch_norm(tinynet.zeros(2, 3, device=device), None, None, training=False)


def test_bad_rank_and_dtype(device):
    with pytest.raises(RuntimeError, match=r"batch_norm: expected input of shape .* got shape \(3,\)"):
        F.batch_norm(tinynet.zeros(3, device=device), None, None, training=True)
    with pytest.raises(RuntimeError, match="batch_norm: running_var has dtype float32 but input has dtype float64"):
        F.batch_norm(tinynet.zeros(2, 3, dtype=tinynet.float64, device=device),
                     tinynet.zeros(3, dtype=tinynet.float64, device=device), tinynet.ones(3, device=device))
