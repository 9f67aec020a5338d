"""The CUDA code path on the simulated device (tinynet.sim): tensors, modules and optimiser state
move to it, results stay on it through every op family, devices do not mix, nothing reads device
memory back to the host implicitly, and a full training step of each report model neither
synchronises with the host nor allocates anything new after warm-up.

The simulator tests plumbing only (see tinynet/sim.py). Tests that read its counters are skipped
on a machine with a real GPU, where 'cuda' is CuPy.
"""
import gc
import importlib.util
import operator
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinynet
import tinynet.nn.functional as F
from tinynet import backend, nn, optim, sim
from tinynet.data import DataLoader, TensorDataset
from tinynet.train import fit

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(backend.cuda_available(), reason="a real GPU is present: 'cuda' is CuPy")


def _example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _is_sim(t):
    return isinstance(t.data, sim.SimArray) and t.device == "cuda:0"


# ============================================================================== moving tensors
def test_the_simulator_is_what_cuda_means_here():
    assert tinynet.cuda.is_available() and tinynet.cuda.is_simulated()
    assert tinynet.cuda.device_count() == 1 and tinynet.cuda.current_device() == 0
    before = sim.stats.synchronizations
    tinynet.cuda.synchronize()
    tinynet.cuda.synchronize("cuda:0")
    assert sim.stats.synchronizations == before + 2


def test_tensors_move_with_to_cuda_and_gpu_and_come_back_with_cpu():
    x = tinynet.tensor([[1.0, -2.0], [3.0, 4.0]])
    for moved in (x.to("cuda"), x.cuda(), x.to("gpu"), x.to(device="cuda:0"), x.to("cuda", tinynet.float64),
                  x.to(tinynet.zeros(1, device="cuda"))):
        assert _is_sim(moved)
        assert moved.xp is sim.cupy
        back = moved.cpu()
        assert type(back.data) is np.ndarray and back.device == "cpu"
        np.testing.assert_array_equal(back.numpy(), x.numpy())
    assert x.to("cuda", tinynet.float64).dtype == tinynet.float64
    y = x.cuda()
    assert y.to("cuda") is y and y.cuda() is y  # already there: no copy


def test_factories_take_device():
    made = [tinynet.zeros(2, 3, device="cuda"), tinynet.ones((2,), device="gpu"), tinynet.empty(2, device="cuda"),
            tinynet.full((2,), 7.0, device="cuda"), tinynet.arange(5, device="cuda"),
            tinynet.linspace(0, 1, 5, device="cuda"), tinynet.eye(3, device="cuda"), tinynet.rand(2, device="cuda"),
            tinynet.randn(2, 2, device="cuda"), tinynet.randint(0, 5, (3,), device="cuda"),
            tinynet.randperm(4, device="cuda"), tinynet.tensor([1, 2], device="cuda"),
            tinynet.as_tensor(np.ones(2), device="cuda"), tinynet.zeros_like(tinynet.ones(2, device="cuda")),
            tinynet.randn_like(tinynet.ones(2, device="cuda"))]
    for t in made:
        assert _is_sim(t), t
    np.testing.assert_array_equal(made[4].cpu().numpy(), np.arange(5))
    assert made[4].dtype == tinynet.int64


def test_random_numbers_on_the_simulated_device_are_seeded_and_reproducible():
    tinynet.manual_seed(7)
    a = tinynet.randn(5, device="cuda").cpu().numpy()
    b = tinynet.randn(5, device="cuda").cpu().numpy()
    tinynet.manual_seed(7)
    np.testing.assert_array_equal(tinynet.randn(5, device="cuda").cpu().numpy(), a)
    assert not np.array_equal(a, b)
    tinynet.cuda.manual_seed(7)
    np.testing.assert_array_equal(tinynet.randn(5, device="cuda").cpu().numpy(), a)


def test_modules_move_with_to_and_cuda_keeping_their_parameter_objects():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    params = list(net.parameters())
    for move in (lambda m: m.to("cuda"), lambda m: m.cpu(), lambda m: m.cuda(), lambda m: m.cpu(),
                 lambda m: m.to("gpu"), lambda m: m.to("cuda:0")):
        move(net)
    assert list(net.parameters()) == params
    assert all(_is_sim(t) for t in list(net.parameters()) + list(net.buffers()))
    out = net(tinynet.randn(5, 3, device="cuda"))
    out.sum().backward()
    assert _is_sim(out) and all(_is_sim(p.grad) for p in net.parameters())
    net.cpu()  # gradients move along with their parameters
    assert all(p.device == "cpu" and p.grad.device == "cpu" for p in net.parameters())


def test_optimiser_state_moves_to_the_parameters_device_on_load():
    def step(model, optimizer, device):
        optimizer.zero_grad()
        model(tinynet.ones(2, 3, device=device)).sum().backward()
        optimizer.step()

    cpu_model = nn.Linear(3, 2)
    cpu_opt = optim.Adam(cpu_model.parameters(), lr=0.1)
    step(cpu_model, cpu_opt, "cpu")
    gpu_model = nn.Linear(3, 2).cuda()
    gpu_model.load_state_dict(cpu_model.state_dict())
    gpu_opt = optim.Adam(gpu_model.parameters(), lr=0.1)
    gpu_opt.load_state_dict(cpu_opt.state_dict())
    for p in gpu_model.parameters():
        assert all(_is_sim(v) for v in gpu_opt.state[p].values() if isinstance(v, tinynet.Tensor))
    step(cpu_model, cpu_opt, "cpu")
    step(gpu_model, gpu_opt, "cuda")  # continues from the same state: the same numbers
    for p, q in zip(cpu_model.parameters(), gpu_model.parameters()):
        np.testing.assert_allclose(q.detach().cpu().numpy(), p.detach().numpy(), rtol=1e-6, atol=1e-7)

    sgd_cpu = nn.Linear(3, 2)
    sgd = optim.SGD(sgd_cpu.parameters(), lr=0.1, momentum=0.9)
    step(sgd_cpu, sgd, "cpu")
    sgd_gpu = nn.Linear(3, 2).cuda()
    sgd2 = optim.SGD(sgd_gpu.parameters(), lr=0.1, momentum=0.9)
    sgd2.load_state_dict(sgd.state_dict())
    assert all(_is_sim(sgd2.state[p]["momentum_buffer"]) for p in sgd_gpu.parameters())


# ===================================================================== results stay on device
def test_every_op_family_keeps_results_and_gradients_on_the_device():
    """One forward through each family (elementwise, reduce, shape, linalg, activation,
    conversion, loss, conv, pool, norm, dropout), then backward: every output and gradient is a
    device array, and the numbers are the CPU's."""
    rng = np.random.default_rng(0)
    arrays = {"x": rng.standard_normal((2, 3, 6, 6)).astype(np.float32),
              "w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3,
              "m": rng.standard_normal((16, 5)).astype(np.float32) * 0.3,
              "g": rng.uniform(0.5, 1.5, 4).astype(np.float32),
              "b": rng.standard_normal(4).astype(np.float32)}
    target = np.array([1, 4])

    def run(device):
        tinynet.manual_seed(0)
        t = {k: tinynet.tensor(v, device=device, requires_grad=True) for k, v in arrays.items()}
        y = tinynet.tensor(target, device=device)
        outs = []
        h = F.conv2d(t["x"], t["w"], padding=1)                                     # conv
        h = F.batch_norm(h, None, None, t["g"], t["b"], training=True)              # norm
        h = F.max_pool2d(F.relu(h), 2)                                              # pool, activation
        h = F.avg_pool2d(h, 1) + F.adaptive_avg_pool2d(h, (3, 3))
        h = F.dropout(h, 0.0, training=True)                                        # dropout
        h = h.flatten(1)[:, :16].reshape(2, 16)                                      # shape
        h = tinynet.cat([h[:, :8], h[:, 8:]], 1).permute(1, 0).t()
        h = (h * 2 - 1) / 3 + h.exp().log() - (h * h + 1).sqrt() + h.clamp(-1, 1) ** 2  # elementwise
        logits = h @ t["m"]                                                         # linalg
        logits = F.linear(F.gelu(logits, approximate="tanh") + F.sigmoid(logits) + F.tanh(logits), t["m"][:5].t(), None)
        outs += [logits, logits.sum(1), logits.mean(), logits.max(1).values, logits.argmax(1),
                 logits.var(), logits.logsumexp(1), F.softmax(logits, 1), tinynet.where(logits > 0, logits, 0.0)]
        loss = F.cross_entropy(logits, y) + F.mse_loss(logits, tinynet.zeros_like(logits)) \
            + logits.double().float().sum() * 0                                     # loss, conversion
        loss.backward()
        grads = [t[k].grad for k in arrays]
        return outs + [loss], grads

    outs_cpu, grads_cpu = run("cpu")
    outs_gpu, grads_gpu = run("cuda")
    for a, b in zip(outs_gpu + grads_gpu, outs_cpu + grads_cpu):
        assert _is_sim(a), a
        np.testing.assert_allclose(a.detach().cpu().numpy(), b.detach().numpy(), rtol=1e-4, atol=1e-5)


def test_reductions_give_0d_device_arrays_not_host_scalars():
    x = tinynet.tensor([1.0, 5.0, 3.0], device="cuda")
    for out in (x.sum(), x.max(), x.mean(), x.argmax(), x.std()):
        assert _is_sim(out) and out.ndim == 0
    raw = x.data.sum()
    assert isinstance(raw, sim.SimArray) and raw.shape == ()


# ========================================================================= mixing devices
@pytest.mark.parametrize("op", [
    lambda a, b: a + b, lambda a, b: a * b, lambda a, b: a @ b.t(), lambda a, b: tinynet.cat([a, b]),
    lambda a, b: tinynet.stack([a, b]), lambda a, b: F.mse_loss(a, b), lambda a, b: F.linear(a, b),
    lambda a, b: tinynet.where(a > 0, a, b), lambda a, b: tinynet.maximum(a, b),
], ids=["add", "mul", "matmul", "cat", "stack", "mse_loss", "linear", "where", "maximum"])
def test_mixing_devices_in_one_op_names_both_devices(op):
    a = tinynet.ones(2, 3)
    b = tinynet.ones(2, 3, device="cuda")
    for x, y in ((a, b), (b, a)):
        with pytest.raises(RuntimeError, match=r"cpu.*cuda:0|cuda:0.*cpu"):
            op(x, y)


def test_mixing_devices_in_a_model_names_both_devices():
    conv = nn.Conv2d(1, 2, 3).cuda()
    with pytest.raises(RuntimeError, match=r"cpu.*cuda:0|cuda:0.*cpu"):
        conv(tinynet.ones(1, 1, 5, 5))
    with pytest.raises(RuntimeError, match=r"cpu.*cuda:0|cuda:0.*cpu"):
        F.cross_entropy(tinynet.ones(2, 3, device="cuda"), tinynet.tensor([0, 1]))


def test_two_simulated_gpus_do_not_mix():
    with backend.simulate_cuda(True, device_count=2):
        try:
            assert tinynet.cuda.device_count() == 2
            a = tinynet.ones(3, device="cuda:0")
            b = a.to("cuda:1")
            assert b.device == "cuda:1" and b.data.device.id == 1 and a.device == "cuda:0"
            assert (b * 2).device == "cuda:1"
            with pytest.raises(RuntimeError, match=r"cuda:0 and cuda:1"):
                a + b
            made = [tinynet.zeros(2, device="cuda:1"), tinynet.full((2,), 3.0, device="cuda:1"),
                    tinynet.arange(3, device="cuda:1"), tinynet.randn(2, device="cuda:1"),
                    tinynet.randint(0, 3, (2,), device="cuda:1"), tinynet.tensor([1.0], device="cuda:1")]
            assert all(t.device == "cuda:1" and t.data.device.id == 1 for t in made)
            np.testing.assert_array_equal(b.to("cuda:0").cpu().numpy(), np.ones(3))
        finally:
            tinynet.random._generators.pop(tinynet.device("cuda:1"), None)  # its device goes away
    assert tinynet.cuda.device_count() == 1


# ====================================================================== no implicit host reads
@pytest.mark.parametrize("read", [float, int, bool, operator.index, complex, np.asarray, lambda a: a.item(),
                                  lambda a: a.tolist(), lambda a: np.array(a), lambda a: 1 in a],
                         ids=["float", "int", "bool", "index", "complex", "asarray", "item", "tolist", "array", "in"])
def test_implicit_host_reads_of_device_arrays_raise(read):
    a = tinynet.tensor([3], device="cuda").data
    with pytest.raises(RuntimeError, match="host synchronisation"):
        read(a)


def test_device_arrays_refuse_host_arrays_and_hand_out_explicit_copies():
    a = tinynet.tensor([1.0, 2.0], device="cuda").data
    with pytest.raises(TypeError, match="Unsupported type"):
        a + np.ones(2)
    with pytest.raises(TypeError, match="Unsupported type"):
        np.ones(2) * a
    before = sim.stats.device_to_host
    host = a.get()
    assert type(host) is np.ndarray and sim.stats.device_to_host == before + 1
    host[0] = 100.0  # a copy: the device keeps its value
    np.testing.assert_array_equal(a.get(), [1.0, 2.0])


def test_tensor_level_reads_are_explicit_and_counted():
    t = tinynet.tensor([2.5], device="cuda")
    before = sim.stats.device_to_host
    assert t.item() == 2.5 and float(t) == 2.5 and t.tolist() == [2.5] and "cuda:0" in repr(t)
    assert sim.stats.device_to_host == before + 4
    with pytest.raises(TypeError, match="cpu"):
        t.numpy()
    with pytest.raises(TypeError, match="cpu"):
        np.asarray(t)


def test_views_are_not_allocations_and_mask_indexing_counts_as_blocking():
    a = sim.cupy.zeros((4, 4), np.float32)
    before = sim.stats.snapshot()
    views = [a[1:], a.T, a.reshape(16), a[None], sim.cupy.broadcast_to(a, (2, 4, 4))]
    assert sim.stats.allocations == before["allocations"] and len(views) == 5
    a + 1
    assert sim.stats.allocations == before["allocations"] + 1
    a[a > 0]
    sim.cupy.nonzero(a)
    assert sim.stats.blocking_ops == before["blocking_ops"] + 2
    assert a.data.ptr == a[0].data.ptr and a.data.ptr != (a + 1).data.ptr


# ========================================================================= TF32 is opt-in
def test_allow_tf32_reaches_the_gemm_compute_type_and_is_off_by_default():
    linalg = sim.cupy._core._routines_linalg
    a = tinynet.randn(3, 4, device="cuda", requires_grad=True)
    w = tinynet.randn(2, 4, device="cuda", requires_grad=True)
    assert tinynet.backends.allow_tf32 is False
    (a @ w.t()).sum().backward()
    assert linalg.get_compute_type(np.float32) == linalg.COMPUTE_TYPE_DEFAULT
    try:
        tinynet.backends.allow_tf32 = True
        F.linear(a, w).sum().backward()
        assert linalg.get_compute_type(np.float32) == linalg.COMPUTE_TYPE_TF32
        tinynet.backends.allow_tf32 = False
        tinynet.matmul(a, w.t())
        assert linalg.get_compute_type(np.float32) == linalg.COMPUTE_TYPE_DEFAULT
        tinynet.backends.allow_tf32 = True
        tinynet.ones(2, 2) @ tinynet.ones(2, 2)  # the CPU never touches it
        assert linalg.get_compute_type(np.float32) == linalg.COMPUTE_TYPE_DEFAULT
    finally:
        tinynet.backends.allow_tf32 = False


# ================================================================== training steps, per model
def _models():
    pe, lenet, mlp, cnn5 = (_example(n) for n in ("pytorch_example", "lenet", "mlp", "cnn5"))
    vgg, res = _example("vgg_bn"), _example("lenet_resnet")
    ce = nn.CrossEntropyLoss()
    return {
        "pytorch_example": (pe.Net, lambda m: optim.SGD(m.parameters(), lr=0.01, momentum=0.5), F.nll_loss, 8),
        "lenet": (lenet.lenet, lambda m: optim.SGD(m.parameters(), lr=0.9), ce, 8),
        "mlp": (mlp.mlp, lambda m: optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-5), ce, 8),
        "cnn5": (cnn5.cnn5, lambda m: optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-5), ce, 2),
        "vgg_bn": (vgg.VGGBN, lambda m: optim.Adam(m.parameters(), lr=1e-3), ce, 2),
        "lenet_res_conv": (lambda: res.LeNetRes("conv"), lambda m: optim.SGD(m.parameters(), lr=0.01, momentum=0.9),
                           ce, 8),
        "lenet_res_fc": (lambda: res.LeNetRes("fc"), lambda m: optim.SGD(m.parameters(), lr=0.01, momentum=0.9),
                         ce, 8),
    }


MODELS = list(_models())


def _persistent_buffers(model, optimizer):
    """(name, object, data.ptr) of every parameter, gradient, buffer and optimiser-state array."""
    out = []
    for name, p in model.named_parameters():
        out += [(name, p.data, p.data.data.ptr), (name + ".grad", p.grad.data, p.grad.data.data.ptr)]
        for key, value in optimizer.state[p].items():
            if isinstance(value, tinynet.Tensor):
                out.append((f"{name}.{key}", value.data, value.data.data.ptr))
    out += [(name, b.data, b.data.data.ptr) for name, b in model.named_buffers()]
    return out


@pytest.mark.parametrize("name", MODELS)
def test_training_step_has_no_host_sync_and_allocates_nothing_new_after_warm_up(name):
    """A full step (forward, loss, backward, optimizer.step) with zero_grad(set_to_none=False).

    Host syncs: a SimArray raises on any implicit read, and the step may make no explicit copy
    to the host nor any op whose output size depends on device data. Allocations, in the sense
    of tinynet/sim.py: after two warm-up steps, parameters, gradients, buffers and optimiser
    state are the same arrays at the same addresses step after step; nothing stays alive from
    one step to the next (live bytes return to the same level); and each step's peak of live
    bytes is the same, so a memory pool warmed up by the first steps serves every later step.
    """
    build, make_optimizer, loss_fn, batch = _models()[name]
    tinynet.manual_seed(0)
    model = build().to("cuda")
    optimizer = make_optimizer(model)
    x = tinynet.rand(batch, 1, 28, 28, device="cuda")
    y = tinynet.randint(0, 10, (batch,), device="cuda")

    def step():
        optimizer.zero_grad(set_to_none=False)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()

    records = []
    gc.collect()
    gc.disable()  # frees happen only by reference counting: the same at every step
    try:
        for _ in range(5):
            gc.collect()
            with sim.counting() as c:
                step()
            records.append((c, _persistent_buffers(model, optimizer)))
    finally:
        gc.enable()

    for c, _ in records:
        assert c["device_to_host"] == 0 and c["synchronizations"] == 0, c
        assert c["blocking_ops"] == 0, f"ops that make CuPy wait for the GPU ran in the step: {c['blocking_names']}"
    warm, later = records[:2], records[2:]
    reference = warm[-1][1]
    assert len(reference) >= 2 * len(list(model.parameters()))
    for c, buffers in later:
        assert [(n, p) for n, _, p in buffers] == [(n, p) for n, _, p in reference]
        assert all(a is b for (_, a, _), (_, b, _) in zip(buffers, reference))
        assert c["live_bytes_after"] == c["live_bytes_before"] == warm[-1][0]["live_bytes_after"], c
        assert c["peak_bytes"] == later[0][0]["peak_bytes"] <= max(w["peak_bytes"] for w, _ in warm), c
    assert all(_is_sim(p) for p in model.parameters())


# ============================================================================ fit and data
def test_fit_reads_the_device_only_every_log_every_steps(capsys):
    tinynet.manual_seed(0)
    n, batch, log_every = 64, 8, 3
    x = tinynet.randn(n, 1, 28, 28, device="cuda")
    y = tinynet.randint(0, 10, (n,), device="cuda")
    loader = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True, seed=1)
    model = _example("mlp").mlp().to("cuda")
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    class Recording:
        """The loader, noting the device-to-host count whenever fit takes the next batch."""
        reads = []

        def __len__(self):
            return len(loader)

        def __iter__(self):
            for x_batch, y_batch in loader:
                assert _is_sim(x_batch) and _is_sim(y_batch)
                self.reads.append(sim.stats.device_to_host)
                yield x_batch, y_batch
            self.reads.append(sim.stats.device_to_host)

    before = sim.stats.snapshot()
    history = fit(model, optimizer, nn.CrossEntropyLoss(), Recording(), epochs=1, log_every=log_every,
                  progress=True)
    reads = np.diff(Recording.reads)  # reads made by each of the 8 steps
    expected = [1 if (i + 1) % log_every == 0 else 0 for i in range(n // batch)]
    assert reads.tolist() == expected
    # and at the end of the epoch, the loss and the accuracy: two more reads
    assert sim.stats.device_to_host - before["device_to_host"] == sum(expected) + 2
    assert sim.stats.blocking_ops == before["blocking_ops"]
    assert len(history.train_loss) == 1 and np.isfinite(history.train_loss[0])
    assert 0.0 <= history.train_acc[0] <= 1.0
    assert all(p.grad is not None and _is_sim(p.grad) for p in model.parameters())
    capsys.readouterr()


def test_dataloader_batches_stay_on_the_device_without_host_reads():
    x = tinynet.arange(20, device="cuda").reshape(10, 2)
    y = tinynet.arange(10, device="cuda")
    before = sim.stats.snapshot()
    batches = list(DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, seed=0))
    assert sim.stats.device_to_host == before["device_to_host"] and sim.stats.blocking_ops == before["blocking_ops"]
    assert all(_is_sim(a) and _is_sim(b) for a, b in batches)
    seen = np.concatenate([b.cpu().numpy() for _, b in batches])
    assert sorted(seen.tolist()) == list(range(10))


def test_checkpoints_load_onto_the_simulated_device(tmp_path):
    net = nn.Linear(3, 2).cuda()
    tinynet.save(net.state_dict(), tmp_path / "w.npz")
    loaded = tinynet.load(tmp_path / "w.npz", map_location="cuda")
    assert all(_is_sim(t) for t in loaded.values())
    other = nn.Linear(3, 2).cuda()
    other.load_state_dict(tinynet.load(tmp_path / "w.npz"))
    np.testing.assert_array_equal(other.weight.detach().cpu().numpy(), net.weight.detach().cpu().numpy())
    assert _is_sim(other.weight)


# ========================================================================= imports, errors
def _python(code, **env):
    environment = {k: v for k, v in os.environ.items() if k != "TINYNET_SIMULATE_CUDA"}
    environment.update(env, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment,
                          timeout=300)


def test_cpu_use_never_imports_cupy_nor_the_simulator():
    done = _python(
        "import sys, tinynet\n"
        "from tinynet import nn, optim\n"
        "m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))\n"
        "opt = optim.Adam(m.parameters())\n"
        "loss = nn.CrossEntropyLoss()(m(tinynet.randn(2, 1, 4, 4)), tinynet.tensor([0, 1]))\n"
        "loss.backward(); opt.step(); print(loss.item(), tinynet.cuda.is_simulated())\n"
        "bad = [name for name in ('cupy', 'cupyx', 'tinynet.sim') if name in sys.modules]\n"
        "assert not bad, bad\n")
    assert done.returncode == 0, done.stderr


def test_cuda_without_cupy_and_without_simulation_says_what_to_install():
    done = _python(
        "import sys\n"
        "sys.modules['cupy'] = None  # as if CuPy were not installed (the dev extra installs it)\n"
        "import tinynet\n"
        "assert not tinynet.cuda.is_available() and tinynet.cuda.device_count() == 0\n"
        "try:\n"
        "    tinynet.zeros(2, device='cuda')\n"
        "except RuntimeError as e:\n"
        "    print(e)\n")
    assert done.returncode == 0, done.stderr
    assert "CuPy is not installed" in done.stdout and "pip install tinynet[cuda12]" in done.stdout


def test_environment_variable_switches_the_simulator_on():
    done = _python("import tinynet\n"
                   "x = tinynet.ones(3, device='cuda') * 2\n"
                   "print(type(x.data).__name__, x.device, x.sum().item(), tinynet.cuda.is_simulated())\n",
                   TINYNET_SIMULATE_CUDA="1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["SimArray", "cuda:0", "6.0", "True"]
