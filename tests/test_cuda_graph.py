"""compile_step on a CUDA device: the recorded step captured into one CUDA graph.

On the simulated device (tinynet.sim emulates CuPy's stream capture: nothing captured runs, the
graph's launch re-runs the recorded calls on the same buffers, and what CUDA refuses during
capture raises), for every report model: capture succeeds; graph launches give the eager
run's parameters and losses bit for bit; one graph launch replaces the step's dozens of
kernel launches. Dropout draws a new mask on every launch and the same sequence for a seed; a
scheduler's new learning rate reaches the graph without a new capture (SGD, Adam, Adagrad); a step
that reads the loss on the host, or that cannot be captured, says why and still gives the eager
results. The capture rules themselves: allocation from the pool, synchronisation, device-to-host
and pageable host-to-device copies, CuPy's cuBLAS and cuRAND calls all raise during capture.

No GPU was available when these were written: everything here is proven on the simulator.
"""
import ctypes
import types

import numpy as np
import pytest

import tinynet
import tinynet.nn.functional as F
from tinynet import optim, sim
from tinynet.kernels import gemm
from tinynet.optim.lr_scheduler import StepLR

from test_compile import (BATCH, REAL_GPU, SPECS, Counted, DropoutRuns, _assert_same, _example, _host, _images,
                          _make_train_step, _small_net, _state)

needs_sim = pytest.mark.skipif(REAL_GPU, reason="a real GPU is present: 'cuda' is CuPy, not the simulator")
pytestmark = needs_sim
cupy = sim.cupy
STEPS = 6   # 1 eager, 2 recorded, 1 list replay that captures, then graph launches
HEAVY = set(BATCH)   # cnn5 and vgg_bn: minutes on the emulator, so one graph launch only


def _graph_launches() -> int:
    return sim.stats.launch_names["cuda_graph"]


# ==================================================== 1. report models: graph launches == eager
def _train(name, compiled, batches):
    spec = SPECS[name]
    tinynet.manual_seed(0)
    model = spec.build(_example(spec.example)).to("cuda")
    model.train()
    optimizer = getattr(optim, spec.optimizer)(model.parameters(), **spec.optim_kwargs)
    body = Counted(_make_train_step(model, optimizer, getattr(F, spec.loss)))
    step = tinynet.compile_step(body, model=model) if compiled else body
    tinynet.manual_seed(1)
    launches_before = _graph_launches()
    losses = [_host(step(x, y)) for x, y in batches]  # _host copies: a graph's outputs are reused
    return model, losses, step, body.calls, _graph_launches() - launches_before


@pytest.mark.parametrize("name", list(SPECS))
def test_report_model_captured_into_one_graph_equals_eager(name):
    steps = STEPS - 1 if name in HEAVY else STEPS
    batches = _images("cuda", steps, BATCH.get(name, 4))
    eager, eager_losses, _, _, _ = _train(name, False, batches)
    model, losses, step, executed, graph_launches = _train(name, True, batches)

    assert step.fallback_reason(*batches[0]) is None
    assert step.graph_fallback_reason(*batches[0]) is None
    graph = step.graph(*batches[0])
    assert graph is not None and graph.kernels > 10
    assert executed == 3                      # the Python body ran on the eager and recorded calls only
    assert graph_launches == steps - 4        # the calls after the 4th were graph launches
    for k, (a, b) in enumerate(zip(losses, eager_losses)):
        _assert_same(a, b, "cuda", f"loss of step {k + 1}")
    expected = _state(eager)
    for key, value in _state(model).items():
        _assert_same(value, expected[key], "cuda", key)


def test_a_graph_step_is_one_launch_and_allocates_nothing():
    """LeNet: the eager step's launches become one graph launch, plus the batch copies and the
    optimiser's device scalars; nothing is allocated from the pool."""
    batches = _images("cuda", STEPS + 1, 4)
    model, _, step, _, _ = _train("lenet", True, batches[:STEPS])
    x, y = batches[STEPS]
    with sim.counting() as eager:
        Counted(step.step_fn)(x, y)   # the same body, eagerly
    with sim.counting() as replayed:
        step(x, y)
    assert eager["launches"] > 20
    assert replayed["launch_names"] == {"cuda_graph": 1, "setitem": 2, "scalars.set_scalars": 1}
    assert replayed["allocations"] == 0 and replayed["synchronizations"] == 0
    assert replayed["device_to_host"] == 0 and replayed["host_to_device"] == 0


# ======================================================================= 2. dropout in a graph
def test_dropout_masks_are_new_on_every_graph_launch_and_follow_the_seed():
    runs = DropoutRuns("cuda")
    assert runs.compiled.graph(runs.x) is not None
    launched = runs.calls[4:]   # call 1 eager, 2 and 3 recorded, 4 captured
    runs.assert_new_masks(launched, "graph launches")
    for k, (a, b) in enumerate(zip(runs.calls, runs.eager)):
        np.testing.assert_array_equal(a, b, err_msg=f"call {k + 1}")
    np.testing.assert_array_equal(np.array(runs.sequence(runs.compiled)), np.array(runs.calls))  # the seed repeats it


# =============================================================== 3. schedulers, Adam's step count
@pytest.mark.parametrize("make_optimizer", [
    lambda params: optim.SGD(params, lr=0.1, momentum=0.9),
    lambda params: optim.Adam(params, lr=0.01),
    lambda params: optim.Adagrad(params, lr=0.1, lr_decay=0.1),   # its step count decays the rate too
], ids=["SGD", "Adam", "Adagrad"])
def test_a_schedulers_learning_rate_reaches_the_graph_without_a_new_capture(make_optimizer):
    batches = _images("cuda", 8, 4)

    def train(compiled):
        tinynet.manual_seed(0)
        model = _small_net().to("cuda")
        optimizer = make_optimizer(model.parameters())
        scheduler = StepLR(optimizer, step_size=1, gamma=0.5)
        step = _make_train_step(model, optimizer, F.cross_entropy)
        if compiled:
            step = tinynet.compile_step(step, model=model)
        tinynet.manual_seed(1)
        graphs, losses = [], []
        for x, y in batches:
            losses.append(_host(step(x, y)))
            scheduler.step()   # a new learning rate after every step
            if compiled:
                graphs.append(step.graph(x, y))
        return model, losses, graphs

    eager, eager_losses, _ = train(False)
    model, losses, graphs = train(True)
    assert graphs[3] is not None and all(g is graphs[3] for g in graphs[3:])  # captured once
    for k, (a, b) in enumerate(zip(losses, eager_losses)):
        _assert_same(a, b, "cuda", f"loss of step {k + 1}")
    expected = _state(eager)
    for key, value in _state(model).items():
        _assert_same(value, expected[key], "cuda", key)


# ================================================================================ 4. fallbacks
def test_a_step_that_reads_the_loss_on_the_host_says_so_and_runs_eagerly(capsys):
    tinynet.manual_seed(0)
    model = _small_net().to("cuda")
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    seen = []

    def step(x, y):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        seen.append(loss.item())
        return loss.detach()

    compiled = tinynet.compile_step(step, model=model)
    batches = _images("cuda", 5, 4)
    for x, y in batches:
        compiled(x, y)
    message = capsys.readouterr().err
    assert "compile_step(step): running eagerly" in message
    assert "reads a value from the device on the host" in message and "loss.item()" in message
    assert compiled.graph(*batches[0]) is None and len(seen) == 5


def test_a_step_that_cannot_be_captured_names_the_call_and_replays_the_list(capsys):
    """tinynet.rand on the GPU draws with CuPy's generator (cuRAND), which refuses a capturing
    stream: the graph is not made, the list replay goes on, with the eager results."""
    x = tinynet.ones(16, device="cuda")

    def noisy(x):
        return x * tinynet.rand(16, device="cuda")

    def sequence(step):
        tinynet.manual_seed(3)
        return [_host(step(x)) for _ in range(6)]

    eager = sequence(noisy)
    compiled = tinynet.compile_step(noisy)
    replayed = sequence(compiled)
    message = capsys.readouterr().err
    assert "replaying the recorded calls one by one" in message
    assert "rand" in message and "cuRAND" in message
    assert compiled.graph(x) is None and "cuRAND" in compiled.graph_fallback_reason(x)
    for k, (a, b) in enumerate(zip(replayed, eager)):
        np.testing.assert_array_equal(a, b, err_msg=f"call {k + 1}")


def test_cuda_graph_false_keeps_the_list_replay():
    x = tinynet.ones(8, device="cuda")
    compiled = tinynet.compile_step(lambda x: x * 2.0, cuda_graph=False)
    for _ in range(5):
        compiled(x)
    assert compiled.graph(x) is None and compiled.program(x)


# ======================================================================= 5. the capture rules
def _arena(nbytes=1 << 16):
    """An allocator over one block allocated now (what a captured graph's memory must be)."""
    block, used = cupy.cuda.alloc(nbytes), [0]

    def allocate(n):
        offset = used[0]
        used[0] += -(-n // 256) * 256
        return block + offset
    return allocate


def test_capture_runs_nothing_and_a_launch_replays_the_work_on_the_same_buffers():
    a = cupy.asarray(np.arange(6, dtype=np.float32))
    b = cupy.asarray(np.ones(6, dtype=np.float32))
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream, cupy.cuda.using_allocator(_arena()):
        stream.begin_capture()
        assert stream.is_capturing()
        c = a * 2 + b       # new buffers: from the arena
        a += 1              # in place
        graph = stream.end_capture()
    assert not stream.is_capturing()
    np.testing.assert_array_equal(a.get(), np.arange(6))   # the capture ran nothing
    graph.launch()
    np.testing.assert_array_equal(a.get(), np.arange(6) + 1)
    np.testing.assert_array_equal(c.get(), np.arange(6) * 2 + 1)
    graph.launch()
    np.testing.assert_array_equal(a.get(), np.arange(6) + 2)
    np.testing.assert_array_equal(c.get(), (np.arange(6) + 1) * 2 + 1)


def _refused(call, error, match, allocator=True):
    a = cupy.asarray(np.arange(6, dtype=np.float32))
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream, cupy.cuda.using_allocator(_arena() if allocator else None):
        stream.begin_capture()
        with pytest.raises(error, match=match):
            call(a, stream)
        return stream


@pytest.mark.parametrize("call, error, match", [
    (lambda a, s: a.get(), RuntimeError, "capturing, so D2H transfers are disallowed"),
    (lambda a, s: cupy.asnumpy(a), RuntimeError, "capturing, so D2H transfers are disallowed"),
    (lambda a, s: float(a.sum()), RuntimeError, "capturing, so D2H transfers are disallowed"),
    (lambda a, s: cupy.asarray(np.ones(3)), RuntimeError, "capturing, so H2D transfers are disallowed"),
    (lambda a, s: a.__setitem__(slice(0, 3), np.ones(3, np.float32)), RuntimeError, "H2D transfers"),
    (lambda a, s: cupy.matmul(a[None], a[:, None]), NotImplementedError, "cuBLAS"),
    (lambda a, s: a[None] @ a[:, None], NotImplementedError, "cuBLAS"),
    (lambda a, s: cupy.dot(a, a), NotImplementedError, "cuBLAS"),
    (lambda a, s: cupy.tensordot(a, a, 1), NotImplementedError, "cuBLAS"),
    (lambda a, s: cupy.random.random(3), NotImplementedError, "cuRAND"),
    (lambda a, s: cupy.random.RandomState(1).uniform(size=3), NotImplementedError, "cuRAND"),
    (lambda a, s: cupy.nonzero(a), RuntimeError, "capturing"),
], ids=["get", "asnumpy", "float", "asarray", "setitem-host", "matmul", "@", "dot", "tensordot", "random",
        "RandomState", "nonzero"])
def test_what_cupy_refuses_during_capture_raises(call, error, match):
    stream = _refused(call, error, match)
    with stream:
        stream.end_capture()   # these leave the capture valid, as in CuPy


@pytest.mark.parametrize("call", [lambda a, s: s.synchronize(), lambda a, s: cupy.cuda.Device().synchronize()],
                         ids=["stream", "device"])
def test_a_synchronisation_during_capture_invalidates_it(call):
    stream = _refused(call, sim.CUDARuntimeError, "cudaErrorStreamCaptureUnsupported")
    with stream, pytest.raises(sim.CUDARuntimeError, match="cudaErrorStreamCaptureInvalidated"):
        stream.end_capture()
    assert not stream.is_capturing()
    stream.synchronize()   # usable again


def test_a_pool_allocation_during_capture_raises_and_says_why():
    stream = _refused(lambda a, s: a * 2, RuntimeError, "memory pool allocation during stream capture",
                      allocator=False)
    with stream:
        stream.end_capture()


def test_the_default_stream_cannot_capture():
    with pytest.raises(RuntimeError, match="default"):
        cupy.cuda.get_current_stream().begin_capture()


def test_the_direct_gemm_captures_and_replays():
    a = cupy.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    b = cupy.asarray(np.arange(12, dtype=np.float32).reshape(3, 4))
    stream = cupy.cuda.Stream(non_blocking=True)
    gemm.prepare_capture(cupy, stream)
    with stream, cupy.cuda.using_allocator(_arena()):
        stream.begin_capture()
        c = gemm.matmul(cupy, a, b.T.T)
        graph = stream.end_capture()
    with sim.counting() as counted:
        graph.launch()
    assert counted["launches"] == 1
    np.testing.assert_array_equal(c.get(), a.get() @ b.get())
    a += 1
    graph.launch()
    np.testing.assert_array_equal(c.get(), a.get() @ b.get())


# ============================================== 6. the direct cuBLAS path, against a fake cuBLAS
class _FakeCublas:
    """cublasSgemm_v2 / cublasDgemm_v2 in NumPy, column-major as the real ones, reading and
    writing raw addresses: it checks the operands, ops and leading dimensions that
    gemm._direct_matmul passes (the simulated arrays are host memory, so the addresses are real)."""

    calls = 0

    def _gemm(self, ctype, handle, op_a, op_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        type(self).calls += 1
        item = ctypes.sizeof(ctype)

        def matrix(pointer, rows, cols, ld):  # column-major rows x cols with leading dimension ld
            assert ld >= max(1, rows)
            memory = np.ctypeslib.as_array((ctype * (ld * (cols - 1) + rows)).from_address(pointer.value))
            return np.lib.stride_tricks.as_strided(memory, (rows, cols), (item, ld * item))
        op_a_matrix = matrix(a, m, k, lda) if op_a == 0 else matrix(a, k, m, lda).T
        op_b_matrix = matrix(b, k, n, ldb) if op_b == 0 else matrix(b, n, k, ldb).T
        out = matrix(c, m, n, ldc)
        out[...] = alpha._obj.value * (op_a_matrix @ op_b_matrix) + beta._obj.value * out
        return 0

    def cublasSgemm_v2(self, *args):
        return self._gemm(ctypes.c_float, *args)

    def cublasDgemm_v2(self, *args):
        return self._gemm(ctypes.c_double, *args)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_direct_cublas_matmul_passes_the_right_ops_and_leading_dimensions(monkeypatch, dtype):
    monkeypatch.setattr(gemm, "_cublas", lambda: _FakeCublas())
    xp = types.SimpleNamespace(empty=cupy.empty, broadcast_to=cupy.broadcast_to,
                               ascontiguousarray=cupy.ascontiguousarray,
                               cuda=types.SimpleNamespace(device=types.SimpleNamespace(get_cublas_handle=lambda: 1)))
    rng = np.random.default_rng(0)

    def device(*shape):
        return cupy.asarray(rng.standard_normal(shape).astype(dtype))

    a, b = device(5, 3), device(3, 4)
    cases = [(a, b), (device(3, 5).T, b), (a, device(4, 3).T), (device(3, 5).T, device(4, 3).T),
             (device(5, 6)[:, :3], b),                            # rows with a gap between them
             (device(5, 6)[:, ::2], b),                           # no unit stride: copied first
             (device(2, 5, 3), device(2, 3, 4)), (device(2, 5, 3), b), (device(3), b), (a, device(3)),
             (device(3), device(3))]
    for left, right in cases:
        before = _FakeCublas.calls
        result = gemm._direct_matmul(xp, left, right)
        assert _FakeCublas.calls > before
        np.testing.assert_allclose(result.get(), left.get() @ right.get(), rtol=1e-5, atol=1e-5,
                                   err_msg=f"{left.shape} (strides {left.strides}) @ {right.shape}")
    out = cupy.empty((5, 4), dtype=dtype)
    assert gemm._direct_matmul(xp, a, b, out) is out
    np.testing.assert_allclose(out.get(), a.get() @ b.get(), rtol=1e-5, atol=1e-5)
