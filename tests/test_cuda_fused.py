"""The fused training kernels in CUDA C (batch norm, cross-entropy, the multi-tensor optimiser
steps), run by the CPU emulator on simulated arrays, against the NumPy references over
hypothesis-drawn shapes in float32 and float64; and the launch accounting around them.

The emulator compiles the very CUDA C source a GPU runs (``tinynet/kernels/cuda/emulate.py``);
without a C++ compiler these tests skip with the reason.
"""
import ctypes
import platform
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinynet
import tinynet.nn.functional as F
from tinynet import backend, optim, sim
from tinynet.autograd import reserve_grad
from tinynet.kernels.norm import batch_norm_backward_numba, batch_norm_forward_numba

try:
    from tinynet.kernels.cuda import emulate
    _REASON = emulate.unavailable_reason()
except ImportError as error:  # the emulator is not there at all
    _REASON = f"no CUDA emulator: {error}"

pytestmark = [
    pytest.mark.skipif(backend.cuda_available(), reason="a real GPU is present: 'cuda' is CuPy, not the simulator"),
    pytest.mark.skipif(_REASON is not None, reason=str(_REASON)),
]
TOL = {np.float32: dict(rtol=1e-4, atol=1e-4), np.float64: dict(rtol=1e-11, atol=1e-11)}
DTYPES = [np.float32, np.float64]


def _device(a):
    return sim.cupy.asarray(a)


def _rand(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


# ------------------------------------------------------------------------------- batch norm
@st.composite
def _norm_problems(draw):
    n = draw(st.integers(2, 4))
    c = draw(st.integers(1, 4))
    spatial = tuple(draw(st.lists(st.integers(1, 5), min_size=0, max_size=2)))
    return (n, c) + spatial, draw(st.booleans()), draw(st.integers(0, 2 ** 16))


@pytest.mark.parametrize("dtype", DTYPES)
@given(problem=_norm_problems())
def test_batch_norm_kernels_equal_reference(dtype, problem):
    from tinynet.kernels.cuda.norm import batch_norm_backward_cuda, batch_norm_forward_cuda
    shape, affine, seed = problem
    rng = np.random.default_rng(seed)
    c = shape[1]
    x, grad = _rand(rng, shape, dtype, 3.0), _rand(rng, shape, dtype)
    weight, bias = (_rand(rng, c, dtype), _rand(rng, c, dtype)) if affine else (None, None)
    running_mean, running_var = _rand(rng, c, dtype), np.abs(_rand(rng, c, dtype)) + 0.5

    dev = {k: None if v is None else _device(v) for k, v in
           dict(weight=weight, bias=bias, running_mean=running_mean, running_var=running_var).items()}
    counter = _device(np.array(7, np.int64))   # a BatchNorm module's num_batches_tracked
    y, x_hat, mean, inv_std = batch_norm_forward_cuda(_device(x), dev["weight"], dev["bias"], dev["running_mean"],
                                                      dev["running_var"], 0.1, 1e-5, counter)
    assert int(counter.get()) == 8   # one thread of the C blocks adds 1
    y_ref, x_hat_ref, mean_ref, var_ref, inv_std_ref = batch_norm_forward_numba(x, weight, bias, 1e-5)
    count = x.size // c
    for got, want in [(y, y_ref), (x_hat, x_hat_ref), (mean, mean_ref), (inv_std, inv_std_ref),
                      (dev["running_mean"], 0.9 * running_mean + 0.1 * mean_ref),
                      (dev["running_var"], 0.9 * running_var + 0.1 * var_ref * count / (count - 1))]:
        np.testing.assert_allclose(got.get(), want, **TOL[dtype])

    grad_x, grad_w, grad_b = batch_norm_backward_cuda(_device(grad), x_hat, inv_std, dev["weight"])
    ref = batch_norm_backward_numba(grad, x_hat_ref, inv_std_ref, weight, True)
    # The kernel adds in T, the CPU loops in float64; with 2 values per channel the closed-form dx
    # cancels to a few float32 digits.
    tol = dict(rtol=1e-3, atol=1e-3) if dtype == np.float32 else TOL[dtype]
    for got, want in zip((grad_x, grad_w, grad_b), ref):
        np.testing.assert_allclose(got.get(), want, **tol)


def test_batch_norm_with_more_values_per_channel_than_threads():
    from tinynet.kernels.cuda.norm import batch_norm_forward_cuda
    x = _rand(np.random.default_rng(0), (3, 2, 20, 9), np.float64)  # 540 values per channel, 256 threads
    y, *_ = batch_norm_forward_cuda(_device(x), None, None, None, None, 0.1, 1e-5)
    np.testing.assert_allclose(y.get(), batch_norm_forward_numba(x, None, None, 1e-5)[0], **TOL[np.float64])


# ---------------------------------------------------------------------------- cross-entropy
@st.composite
def _cross_entropy_problems(draw):
    n = draw(st.integers(1, 5))
    classes = draw(st.integers(1, 6))
    spatial = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)))
    return (n, classes) + spatial, draw(st.sampled_from(["mean", "sum", "none"])), draw(st.booleans()), \
        draw(st.integers(0, 2 ** 16))


@st.composite
def _loss_paths(draw):
    """How the loss is reached on the device: backward from the implicit seed or through a
    drawn cotangent, and with the one-block kernel or, as for inputs too large for it, the
    per-row kernels."""
    return draw(st.booleans()), draw(st.booleans())


def _loss_and_grad(loss_fn, logits, target, weight, reduction, cotangent, implicit_seed, one_block):
    """``loss_fn`` on the CPU and on the simulated device: [(loss, input gradient)] for each."""
    from tinynet.kernels.cuda import loss as c_loss
    results = []
    for device in ("cpu", "cuda"):
        z = tinynet.tensor(logits, device=device, requires_grad=True)
        w = None if weight is None else tinynet.tensor(weight, device=device)
        limit = c_loss.ONE_BLOCK_MAX_ELEMENTS if one_block else 0
        with mock.patch.object(c_loss, "ONE_BLOCK_MAX_ELEMENTS", limit):
            loss = loss_fn(z, tinynet.tensor(target, device=device), w, reduction)
            if implicit_seed and reduction != "none":
                loss.backward()
            else:
                (loss * tinynet.tensor(cotangent, device=device)).sum().backward()
        results.append((loss.detach().cpu().numpy(), z.grad.cpu().numpy()))
    return results


def _class_loss_problem(problem, dtype):
    """Logits, class-index targets (a fifth ignored), class weights or None, the reduction, and a
    cotangent for the loss, drawn from a ``_cross_entropy_problems`` example."""
    shape, reduction, weighted, seed = problem
    rng = np.random.default_rng(seed)
    classes = shape[1]
    logits = _rand(rng, shape, dtype, 4.0)
    target = rng.integers(0, classes, (shape[0],) + shape[2:])
    target[rng.random(target.shape) < 0.2] = -100
    weight = (rng.random(classes) + 0.5).astype(dtype) if weighted else None
    cotangent = _rand(rng, () if reduction != "none" else target.shape, dtype)
    return logits, target, weight, reduction, cotangent


@pytest.mark.parametrize("dtype", DTYPES)
@given(problem=_cross_entropy_problems(), path=_loss_paths())
def test_cross_entropy_kernels_equal_reference(dtype, problem, path):
    """The fused op on the simulated device (the one-block loss-and-gradient kernel, or the rows,
    sum/mean and backward kernels) against the array reference on the CPU, with class weights
    and ignored labels."""
    logits, target, weight, reduction, cotangent = _class_loss_problem(problem, dtype)
    results = _loss_and_grad(lambda z, t, w, r: F.cross_entropy(z, t, weight=w, reduction=r), logits, target,
                             weight, reduction, cotangent, *path)
    (loss_cpu, grad_cpu), (loss_gpu, grad_gpu) = results
    np.testing.assert_allclose(loss_gpu, loss_cpu, equal_nan=True, **TOL[dtype])
    np.testing.assert_allclose(grad_gpu, grad_cpu, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@given(problem=_cross_entropy_problems(), path=_loss_paths())
def test_log_softmax_and_nll_kernels_equal_reference(dtype, problem, path):
    """log_softmax (one kernel each way, along dim 1) then nll_loss (the one-block kernel, or
    forward, sum/mean and backward kernels) on the simulated device against the array code on
    the CPU."""
    logits, target, weight, reduction, cotangent = _class_loss_problem(problem, dtype)
    results = _loss_and_grad(lambda z, t, w, r: F.nll_loss(F.log_softmax(z, dim=1), t, weight=w, reduction=r),
                             logits, target, weight, reduction, cotangent, *path)
    (loss_cpu, grad_cpu), (loss_gpu, grad_gpu) = results
    np.testing.assert_allclose(loss_gpu, loss_cpu, equal_nan=True, **TOL[dtype])
    np.testing.assert_allclose(grad_gpu, grad_cpu, equal_nan=True, **TOL[dtype])


@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_log_softmax_kernel_along_any_dim(dim):
    x = _rand(np.random.default_rng(0), (3, 4, 5), np.float64, 5.0)
    got = F.log_softmax(tinynet.tensor(x, device="cuda"), dim=dim).cpu().numpy()
    want = F.log_softmax(tinynet.tensor(x), dim=dim).numpy()
    np.testing.assert_allclose(got, want, **TOL[np.float64])


@pytest.mark.parametrize("op", ["cross_entropy", "nll_loss"])
def test_a_reduced_loss_is_one_launch_and_its_backward_none(op):
    """'mean' cross-entropy or nll_loss: one launch writes the loss and the input's gradient;
    backward from the implicit seed launches nothing (but z.grad's copy), and from an explicit
    gradient one scaling kernel."""
    rng = np.random.default_rng(0)
    z = tinynet.tensor(_rand(rng, (4, 10), np.float32), device="cuda", requires_grad=True)
    y = tinynet.tensor(np.array([1, 2, 3, 4]), device="cuda")
    getattr(F, op)(z, y).backward()  # the first backward makes the cached seed
    z.grad = None
    with sim.counting() as c:
        loss = getattr(F, op)(z, y)
    assert c["launch_names"] == {f"loss.{op.replace('_loss', '')}_reduced": 1}
    with sim.counting() as c:
        loss.backward()
    assert c["launch_names"] == {"copy": 1}  # z.grad's first copy, as for any leaf
    first = z.grad.cpu().numpy()
    z.grad = None
    loss, three = getattr(F, op)(z, y), tinynet.tensor(np.float32(3.0), device="cuda")
    with sim.counting() as c:
        loss.backward(three)
    assert c["launch_names"] == {"multiply": 1, "copy": 1}
    np.testing.assert_allclose(z.grad.cpu().numpy(), 3 * first, rtol=1e-6)


def test_a_loss_too_large_for_one_block_runs_row_kernels(monkeypatch):
    from tinynet.kernels.cuda import loss as c_loss
    monkeypatch.setattr(c_loss, "ONE_BLOCK_MAX_ELEMENTS", 39)
    z = tinynet.tensor(_rand(np.random.default_rng(0), (4, 10), np.float32), device="cuda", requires_grad=True)
    with sim.counting() as c:
        F.cross_entropy(z, tinynet.tensor(np.array([1, 2, 3, 4]), device="cuda")).backward()
    assert {"loss.cross_entropy_forward", "loss.loss_reduce", "loss.cross_entropy_backward"} <= set(c["launch_names"])


# ------------------------------------------------------------- the bias inside the GEMM (cuBLASLt)
@st.composite
def _gemm_problems(draw):
    m, k, n = draw(st.integers(1, 7)), draw(st.integers(1, 7)), draw(st.integers(1, 7))
    return m, k, n, draw(st.booleans()), draw(st.integers(0, 2 ** 16))


@pytest.mark.parametrize("dtype", DTYPES)
@given(problem=_gemm_problems())
def test_gemm_with_bias_epilogues_equal_reference(dtype, problem):
    """matmul_bias and matmul_bias_grad on the simulated device (the epilogue path, as on a GPU
    whose cuBLASLt passed its check) against NumPy, with C- and F-ordered operands."""
    from tinynet.kernels import gemm
    m, k, n, transposed, seed = problem
    rng = np.random.default_rng(seed)
    a, bias, dy = _rand(rng, (m, k), dtype), _rand(rng, n, dtype), _rand(rng, (m, n), dtype)
    b = _rand(rng, (n, k), dtype).T if transposed else _rand(rng, (k, n), dtype)   # (a weight's .T: F-ordered)
    a_dev, bias_dev, dy_dev = _device(a), _device(bias), _device(dy)
    b_dev = _device(b.T).T if transposed else _device(b)
    gemm.matmul_bias(sim.cupy, a_dev, b_dev, bias_dev)   # the first use on a (device, dtype) checks the epilogues
    with sim.counting() as c:
        y = gemm.matmul_bias(sim.cupy, a_dev, b_dev, bias_dev)
        grad_w, grad_b = gemm.matmul_bias_grad(sim.cupy, dy_dev.T, a_dev)   # a Linear's dW and db
    assert c["launch_names"] == {"cublaslt_gemm": 2} and c["gemms"] == 2
    np.testing.assert_allclose(y.get(), a @ b + bias, **TOL[dtype])
    np.testing.assert_allclose(grad_w.get(), dy.T @ a, **TOL[dtype])
    np.testing.assert_allclose(grad_b.get(), dy.sum(axis=0), **TOL[dtype])


def test_linear_bias_costs_no_launch_of_its_own():
    """Linear with a bias: forward one GEMM (the bias in its epilogue), backward two GEMMs (dx;
    dW with db from the same GEMM), nothing else but the leaves' first .grad copies."""
    layer = tinynet.nn.Linear(5, 3).to("cuda")
    x = tinynet.tensor(_rand(np.random.default_rng(0), (4, 5), np.float32), device="cuda", requires_grad=True)
    layer(x).sum().backward()  # the first use runs the epilogues' check
    with sim.counting() as c:
        y = layer(x)
    assert c["launch_names"] == {"cublaslt_gemm": 1}
    grad = tinynet.ones(4, 3, device="cuda")
    x.grad = layer.weight.grad = layer.bias.grad = None
    with sim.counting() as c:
        y.backward(grad)
    assert c["launch_names"] == {"cublas_gemm": 1, "cublaslt_gemm": 1, "copy": 3}, c["launch_names"]
    host = {k: v.detach().cpu().numpy() for k, v in (("x", x), ("w", layer.weight), ("b", layer.bias))}
    np.testing.assert_allclose(y.detach().cpu().numpy(), host["x"] @ host["w"].T + host["b"], rtol=1e-5)
    np.testing.assert_allclose(layer.bias.grad.cpu().numpy(), [4.0, 4.0, 4.0])
    np.testing.assert_allclose(layer.weight.grad.cpu().numpy(), np.ones((3, 4)) @ host["x"], rtol=1e-5)


@pytest.mark.parametrize("failure", ["wrong", "raises"])
def test_a_failed_epilogue_check_warns_and_keeps_the_plain_path(monkeypatch, failure):
    """The check before the first use on a (device, dtype): an epilogue that computes wrong
    numbers or raises is never used; the warning says why, and Linear still gives the right
    values through a GEMM and a separate add and sum."""
    from tinynet.kernels import gemm

    def broken(a, b, bias, out, kind):
        if failure == "raises":
            raise RuntimeError("cublasLtMatmul failed with cuBLAS status 15")
        return sim.cublas_gemm(a, b, out=out)   # the product without its epilogue
    monkeypatch.setattr(sim, "cublaslt_gemm", broken)
    monkeypatch.setattr(gemm, "_epilogue_ok", {})
    layer = tinynet.nn.Linear(5, 3, dtype=tinynet.float64).to("cuda")
    x = tinynet.tensor(np.random.default_rng(1).standard_normal((4, 5)), device="cuda")
    reason = "status 15" if failure == "raises" else "differ from the plain path's"
    with pytest.warns(RuntimeWarning, match=f"cuBLASLt's bias epilogues are not used for float64.*{reason}"):
        y = layer(x)
    with sim.counting() as c:
        y = layer(x)
        y.sum().backward()
    assert "cublaslt_gemm" not in c["launch_names"] and c["launch_names"]["add"] == 1, c["launch_names"]
    w, b = layer.weight.detach().cpu().numpy(), layer.bias.detach().cpu().numpy()
    np.testing.assert_allclose(y.detach().cpu().numpy(), x.cpu().numpy() @ w.T + b, rtol=1e-12)
    np.testing.assert_allclose(layer.bias.grad.cpu().numpy(), [4.0, 4.0, 4.0])


# ------------------------------------------------------------------ multi-tensor optimisers
OPTIMIZERS = [
    (optim.SGD, dict(lr=0.1)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.2, weight_decay=0.1)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, maximize=True)),
    (optim.Adam, dict(lr=0.05, weight_decay=0.1)),
    (optim.Adam, dict(lr=0.05, amsgrad=True, maximize=True)),
    (optim.AdamW, dict(lr=0.05, weight_decay=0.3, amsgrad=True)),
    (optim.Adadelta, dict(lr=1.0)),
    (optim.Adadelta, dict(lr=0.5, rho=0.8, eps=1e-4, weight_decay=0.1, maximize=True)),
    (optim.RMSprop, dict(lr=0.01)),
    (optim.RMSprop, dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.1, maximize=True)),
    (optim.RMSprop, dict(lr=0.01, alpha=0.3, centered=True)),   # grad_avg's lerp in its other form
    (optim.Adagrad, dict(lr=0.1, lr_decay=0.05, initial_accumulator_value=0.5)),
    (optim.Adagrad, dict(lr=0.1, weight_decay=0.2, eps=1e-3, maximize=True)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls, kwargs", OPTIMIZERS, ids=lambda v: getattr(v, "__name__", str(v)))
@given(shapes=st.lists(st.lists(st.integers(1, 6), min_size=0, max_size=3).map(tuple), min_size=1, max_size=5),
       late=st.integers(0, 4), seed=st.integers(0, 2 ** 16))
def test_multi_tensor_step_equals_per_parameter_reference(cls, kwargs, dtype, shapes, late, seed):
    """One launch for all parameters (the simulated device) against the per-parameter array
    code (the CPU: ``adadelta_step``, ``rmsprop_step``, ... for the newer ones), over several
    steps, with one parameter that gets its first gradient late (its first momentum step and its
    step count, which sets Adam's bias corrections and Adagrad's decayed rate, differ from the
    others')."""
    for cpu, gpu in zip(*_train_on_cpu_and_cuda(cls, kwargs, dtype, shapes, late, seed)):
        np.testing.assert_allclose(gpu, cpu, **TOL[dtype])


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="the emulator's compiler may fuse a * b + c into one FMA here, which rounds differently")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls, kwargs", OPTIMIZERS, ids=lambda v: getattr(v, "__name__", str(v)))
@given(shapes=st.lists(st.lists(st.integers(1, 6), min_size=0, max_size=3).map(tuple), min_size=1, max_size=5),
       late=st.integers(0, 4), seed=st.integers(0, 2 ** 16))
def test_multi_tensor_step_rounds_as_the_reference(cls, kwargs, dtype, shapes, late, seed):
    """The kernels do the array reference's operations in its order, in the parameters' dtype:
    on the emulator (IEEE arithmetic, no FMA contraction on x86-64) the results are equal bit
    for bit, so a reordered formula fails here even where it stays within the tolerance above."""
    for cpu, gpu in zip(*_train_on_cpu_and_cuda(cls, kwargs, dtype, shapes, late, seed)):
        np.testing.assert_array_equal(gpu, cpu)


def _train_on_cpu_and_cuda(cls, kwargs, dtype, shapes, late, seed):
    """The parameters after 4 steps of ``cls(**kwargs)`` on the CPU and on the simulated
    device, from the same start and gradients; parameter ``late`` gets none in the first two."""
    rng = np.random.default_rng(seed)
    init = [_rand(rng, s, dtype) for s in shapes]
    grads = [[_rand(rng, s, dtype) for s in shapes] for _ in range(4)]
    late %= len(shapes)
    finals = []
    for device in ("cpu", "cuda"):
        params = [tinynet.tensor(a, device=device, requires_grad=True) for a in init]
        opt = cls(params, **kwargs)
        for t in range(4):
            for i, p in enumerate(params):
                p.grad = None if (i == late and t < 2) else tinynet.tensor(grads[t][i], device=device)
            opt.step()
        finals.append([p.detach().cpu().numpy() for p in params])
    return finals


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: optim.Adam(ps, lr=0.1, amsgrad=True),
                                  lambda ps: optim.Adadelta(ps, weight_decay=0.1),
                                  lambda ps: optim.RMSprop(ps, momentum=0.9, centered=True),
                                  lambda ps: optim.Adagrad(ps, lr_decay=0.1)],
                         ids=["SGD", "Adam", "Adadelta", "RMSprop", "Adagrad"])
def test_optimizer_step_is_one_launch_and_copies_nothing_after_the_first(make):
    """After zero_grad(set_to_none=True) the gradients land where they were (reserved), so the
    pointer table is reused: one launch per step (for all four parameters) and no host-to-device
    copy."""
    model = tinynet.nn.Sequential(tinynet.nn.Linear(5, 4), tinynet.nn.ReLU(), tinynet.nn.Linear(4, 3)).to("cuda")
    opt = make(model.parameters())
    x = tinynet.tensor(_rand(np.random.default_rng(0), (2, 5), np.float32), device="cuda")
    for step in range(3):
        opt.zero_grad()
        model(x).sum().backward()
        with sim.counting() as c:
            opt.step()
        if step > 0:
            assert c["launches"] == 1 and c["host_to_device"] == 0, c["launch_names"]


def test_reserved_gradient_storage_is_reused_and_released():
    p = tinynet.tensor([1.0, 2.0], device="cuda", requires_grad=True)
    storage = sim.cupy.zeros(2, dtype=np.float32)
    reserve_grad(p, storage)
    (p * 3).sum().backward()
    assert p.grad.data is storage
    np.testing.assert_array_equal(storage.get(), [3.0, 3.0])
    p.grad = None
    reserve_grad(p, None)
    (p * 2).sum().backward()
    assert p.grad.data is not storage
    np.testing.assert_array_equal(storage.get(), [3.0, 3.0])


def test_zero_grad_to_none_launches_nothing():
    p = tinynet.tensor([1.0, 2.0], device="cuda", requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    (p * 3).sum().backward()
    with sim.counting() as c:
        opt.zero_grad()
    assert c["launches"] == 0 and p.grad is None


# ------------------------------------------------------------------------------- activations
ACTIVATIONS = {
    "sigmoid": lambda x, w: tinynet.sigmoid(x),
    "tanh": lambda x, w: tinynet.tanh(x),
    "relu": lambda x, w: F.relu(x),
    "prelu": lambda x, w: F.prelu(x, w),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(ACTIVATIONS))
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple), per_channel=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_activation_kernels_equal_reference(name, dtype, shape, per_channel, seed):
    """Forward and backward of each fused activation on the simulated device against the array
    code on the CPU (PReLU with one slope, or one per channel of dim 1)."""
    rng = np.random.default_rng(seed)
    x = _rand(rng, shape, dtype, 30.0)   # large values too: exp overflows in the sigmoid
    channels = shape[1] if per_channel and len(shape) >= 2 else 1
    w = _rand(rng, channels, dtype)
    cotangent = _rand(rng, shape, dtype)
    results = []
    for device in ("cpu", "cuda"):
        xt = tinynet.tensor(x, device=device, requires_grad=True)
        wt = tinynet.tensor(w, device=device, requires_grad=True)
        with np.errstate(over="ignore"):
            y = ACTIVATIONS[name](xt, wt)
            (y * tinynet.tensor(cotangent, device=device)).sum().backward()
        results.append([y.detach().cpu().numpy(), xt.grad.cpu().numpy()]
                       + ([wt.grad.cpu().numpy()] if name == "prelu" else []))
    for cpu, gpu in zip(*results):
        np.testing.assert_allclose(gpu, cpu, **TOL[dtype])


def test_each_activation_direction_is_one_launch():
    x = tinynet.tensor(_rand(np.random.default_rng(0), (3, 4), np.float32), device="cuda", requires_grad=True)
    for fn, names in [(tinynet.sigmoid, {"activation.sigmoid_forward", "activation.sigmoid_backward"}),
                      (F.relu, {"maximum", "activation.relu_backward"})]:
        y = fn(x)
        g = tinynet.ones_like(y)
        with sim.counting() as c:
            y = fn(x)
            y.backward(g)
        assert set(c["launch_names"]) - {"copy", "add"} == names, c["launch_names"]  # (x.grad: copy, then add)


# ------------------------------------------------------------------------------ convolution
@pytest.mark.parametrize("dtype", DTYPES)
@given(n=st.integers(1, 3), c_in=st.integers(1, 4), groups=st.sampled_from([1, 2]), c_out_per=st.integers(1, 3),
       side=st.integers(3, 6), kernel=st.integers(1, 3), bias=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_conv_bias_and_layout_kernels_equal_reference(dtype, n, c_in, groups, c_out_per, side, kernel, bias, seed):
    """conv2d forward and backward on the simulated device (the fused bias/NCHW kernels) against
    the array code on the CPU."""
    rng = np.random.default_rng(seed)
    c_in *= groups
    c_out = c_out_per * groups
    x = _rand(rng, (n, c_in, side, side), dtype)
    w = _rand(rng, (c_out, c_in // groups, kernel, kernel), dtype)
    b = _rand(rng, c_out, dtype) if bias else None
    cotangent = _rand(rng, (n, c_out, side - kernel + 1, side - kernel + 1), dtype)
    results = []
    for device in ("cpu", "cuda"):
        ts = [None if a is None else tinynet.tensor(a, device=device, requires_grad=True) for a in (x, w, b)]
        y = F.conv2d(ts[0], ts[1], ts[2], groups=groups)
        (y * tinynet.tensor(cotangent, device=device)).sum().backward()
        results.append([y.detach().cpu().numpy()] + [t.grad.cpu().numpy() for t in ts if t is not None])
    for cpu, gpu in zip(*results):
        np.testing.assert_allclose(gpu, cpu, **TOL[dtype])


# ---------------------------------------------------------------------------- clip_grad_norm_
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf"), 3.0, 0.0])
@given(shapes=st.lists(st.lists(st.integers(1, 6), min_size=0, max_size=3).map(tuple), min_size=1, max_size=5),
       max_norm=st.sampled_from([0.1, 1.0, 100.0]), seed=st.integers(0, 2 ** 16))
def test_clip_grad_norm_kernels_equal_reference(norm_type, dtype, shapes, max_norm, seed):
    """The total norm (one launch) and the scaling (one launch) on the simulated device against
    the per-tensor array code on the CPU (norm_type 0 takes the array code on both)."""
    rng = np.random.default_rng(seed)
    grads = [_rand(rng, s, dtype) for s in shapes]
    results = []
    for device in ("cpu", "cuda"):
        params = [tinynet.tensor(np.zeros_like(g), device=device, requires_grad=True) for g in grads]
        for p, g in zip(params, grads):
            p.grad = tinynet.tensor(g, device=device)
        with sim.counting() as c:
            total = tinynet.nn.utils.clip_grad_norm_(params, max_norm, norm_type)
        if device == "cuda" and norm_type != 0:  # (plus, the first time, the pointer table's copy)
            assert c["launches"] - c["launch_names"].get("host_to_device", 0) == 2, c["launch_names"]
        results.append([total.cpu().numpy()] + [p.grad.cpu().numpy() for p in params])
    for cpu, gpu in zip(*results):
        np.testing.assert_allclose(gpu, cpu, **TOL[dtype])


def test_backward_writes_parameter_gradients_into_their_reserved_storage():
    """From the second step on (the optimiser has reserved each .grad), Conv2d, BatchNorm2d,
    PReLU and Linear write their parameters' gradients straight into that storage: the same arrays every
    step, and no copy launched for them; the values equal those of a fresh copy on the CPU."""
    nn = tinynet.nn

    def build(device):
        tinynet.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.PReLU(3), nn.Flatten(),
                             nn.Linear(3 * 4 * 4, 5)).to(device)
    x = _rand(np.random.default_rng(0), (2, 1, 6, 6), np.float64)
    models = {d: build(d).double() for d in ("cpu", "cuda")}
    opts = {d: optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for d, m in models.items()}
    arrays = None
    for step in range(3):
        for device, model in models.items():
            opts[device].zero_grad()
            with sim.counting() as c:
                model(tinynet.tensor(x, device=device)).sum().backward()
            if device == "cuda" and step > 0:
                assert not {"copy", "copyto"} & set(c["launch_names"]), c["launch_names"]
                grads = [p.grad.data for p in model.parameters()]
                assert arrays is None or all(a is b for a, b in zip(grads, arrays))
                arrays = grads
        for p, q in zip(models["cpu"].parameters(), models["cuda"].parameters()):
            np.testing.assert_allclose(q.grad.cpu().numpy(), p.grad.numpy(), **TOL[np.float64])
        for opt in opts.values():
            opt.step()


class _FakeCublasLt:
    """libcublasLt as its documentation describes it, in NumPy, over host memory: matrices are
    column-major ``(rows, cols)`` with a leading dimension ``ld``, ``op`` T transposes, and
    ``D = op(A) @ op(B)`` then the epilogue: BIAS adds ``bias[i]`` to row i of D, BGRADB writes
    the column sums of op(B) (a sum over the GEMM's k) into ``bias``. The binding's calls run
    against it on the simulated device, whose arrays live in host memory, so the layouts,
    transposes and leading dimensions it passes are checked without a GPU."""

    def __init__(self):
        self.objects, self.calls = {}, []

    def _new(self, out, value):
        key = len(self.objects) + 1
        self.objects[key] = value
        out._obj.value = key
        return 0

    def cublasLtCreate(self, out):
        return self._new(out, "handle")

    def cublasLtMatmulDescCreate(self, out, compute, scale_type):
        return self._new(out, {"compute": compute, "type": scale_type, 3: 0, 4: 0, 7: 1, 8: None})

    def cublasLtMatmulDescSetAttribute(self, desc, attribute, value, size):
        self.objects[desc.value][attribute] = value._obj.value
        return 0

    def cublasLtMatrixLayoutCreate(self, out, cuda_type, rows, cols, ld):
        return self._new(out, (cuda_type, rows, cols, ld))

    def cublasLtMatmulPreferenceCreate(self, out):
        return self._new(out, "preference")

    def cublasLtMatmulPreferenceSetAttribute(self, *args):
        return 0

    def cublasLtMatmulPreferenceDestroy(self, preference):
        return 0

    def cublasLtMatmulAlgoGetHeuristic(self, handle, desc, a, b, c, d, preference, requested, result, found):
        found._obj.value = 1
        return 0

    def _matrix(self, pointer, layout):
        cuda_type, rows, cols, ld = self.objects[layout.value]
        dtype = np.dtype(np.float32 if cuda_type == 0 else np.float64)
        size = (cols - 1) * ld + rows
        flat = np.frombuffer((ctypes.c_char * (size * dtype.itemsize)).from_address(pointer.value), dtype)
        return np.lib.stride_tricks.as_strided(flat, (rows, cols), (dtype.itemsize, ld * dtype.itemsize))

    def cublasLtMatmul(self, handle, desc, alpha, a, a_layout, b, b_layout, beta, c, c_layout, d, d_layout, algo,
                       workspace, workspace_size, stream):
        attributes = self.objects[desc.value]
        op_a, op_b = self._matrix(a, a_layout), self._matrix(b, b_layout)
        op_a, op_b = (op_a.T if attributes[3] else op_a), (op_b.T if attributes[4] else op_b)
        result = alpha._obj.value * (op_a @ op_b)
        dtype = np.dtype(np.float32 if attributes["type"] == 0 else np.float64)
        length = result.shape[0] if attributes[7] == 4 else result.shape[1]   # rows of D, or its columns
        bias = np.frombuffer((ctypes.c_char * (length * dtype.itemsize)).from_address(attributes[8]), dtype)
        if attributes[7] == 4:
            result = result + bias[:, None]
        elif attributes[7] == 512:
            bias[:] = op_b.sum(axis=0)
        self._matrix(d, d_layout)[...] = result
        self.calls.append(attributes[7])
        return 0


@pytest.mark.parametrize("dtype", DTYPES)
@given(problem=_gemm_problems())
def test_cublaslt_binding_computes_the_products_as_cublaslt_documents_them(dtype, problem):
    """The ctypes binding (kernels/gemm.py, the part a GPU runs) against a NumPy libcublasLt:
    forward with the bias epilogue for C- and F-ordered operands (a weight's .T), and the
    weight and bias gradients from the BGRADB epilogue."""
    from tinynet.kernels import gemm
    fake = _FakeCublasLt()
    m, k, n, transposed, seed = problem
    rng = np.random.default_rng(seed)
    a, bias, dy = _rand(rng, (m, k), dtype), _rand(rng, n, dtype), _rand(rng, (m, n), dtype)
    b = _rand(rng, (n, k), dtype).T if transposed else _rand(rng, (k, n), dtype)
    b_dev = _device(b.T).T if transposed else _device(b)
    y, grad_w, grad_b = (sim.cupy.empty(shape, dtype=dtype) for shape in ((m, n), (n, k), (n,)))
    with mock.patch.object(gemm, "_cublaslt", lambda: fake), mock.patch.object(gemm, "_lt_state", {}), \
            mock.patch.object(gemm, "_lt_plans", {}):
        gemm._cublaslt_matmul(sim.cupy, gemm._EPILOGUE_BIAS, _device(a), b_dev, _device(bias), y)
        gemm._cublaslt_matmul(sim.cupy, gemm._EPILOGUE_BGRADB, _device(dy).T, _device(a), grad_b, grad_w)
    assert fake.calls == [gemm._EPILOGUE_BIAS, gemm._EPILOGUE_BGRADB]
    np.testing.assert_allclose(y.get(), a @ b + bias, **TOL[dtype])
    np.testing.assert_allclose(grad_w.get(), dy.T @ a, **TOL[dtype])
    np.testing.assert_allclose(grad_b.get(), dy.sum(axis=0), **TOL[dtype])


def test_no_epilogue_check_while_a_stream_captures(monkeypatch):
    """The check reads results back on the host, which a capturing stream forbids: before it
    has run, a product made during capture takes the plain path, and the check waits."""
    from tinynet.kernels import gemm

    class Capturing:
        def is_capturing(self):
            return True
    monkeypatch.setattr(gemm, "_epilogue_ok", {})
    monkeypatch.setattr(sim.cupy.cuda, "get_current_stream", lambda: Capturing())
    a, b, bias = (_device(np.ones(shape, np.float32)) for shape in ((2, 3), (3, 4), (4,)))
    with sim.counting() as c:
        y = gemm.matmul_bias(sim.cupy, a, b, bias)
    assert c["launch_names"] == {"cublas_gemm": 1, "add": 1} and gemm._epilogue_ok == {}
    np.testing.assert_array_equal(y.get(), np.full((2, 4), 4.0, np.float32))


def test_a_shape_cublaslt_cannot_plan_takes_the_plain_path(monkeypatch):
    """The check at first use covers one small shape; when cuBLASLt finds no algorithm for
    another (its heuristic returns none), that shape is remembered as unsupported and the
    Linear's product runs on the plain path, with the same numbers (no error mid-training)."""
    from tinynet.kernels import gemm
    fake = _FakeCublasLt()
    asked = []

    def no_algorithm(*args):
        asked.append(1)
        args[-1]._obj.value = 0
        return 0
    fake.cublasLtMatmulAlgoGetHeuristic = no_algorithm
    monkeypatch.setattr(gemm, "_cublaslt", lambda: fake)
    monkeypatch.setattr(gemm, "_lt_state", {})
    monkeypatch.setattr(gemm, "_lt_plans", {})
    monkeypatch.setattr(gemm, "_epilogue_ok", {})
    monkeypatch.setattr(gemm, "_check_epilogues", lambda xp, dtype: True)
    monkeypatch.setattr(gemm, "_epilogue_gemm", lambda xp, *args: gemm._cublaslt_matmul(xp, *args))
    rng = np.random.default_rng(0)
    a, b, bias = (_rand(rng, shape, np.float64) for shape in ((5, 3), (3, 4), (4,)))
    for _ in range(2):
        y = gemm.matmul_bias(sim.cupy, _device(a), _device(b), _device(bias))
        np.testing.assert_allclose(y.get(), a @ b + bias, **TOL[np.float64])
        dy = a @ b                                              # (rows 5, out 4); x = a (rows 5, in 3)
        grad_w, grad_b = gemm.matmul_bias_grad(sim.cupy, _device(dy).T, _device(a))
        np.testing.assert_allclose(grad_w.get(), dy.T @ a, **TOL[np.float64])
        np.testing.assert_allclose(grad_b.get(), dy.sum(axis=0), **TOL[np.float64])
    assert len(asked) == 2 and fake.calls == []  # one question per shape and epilogue, then remembered
