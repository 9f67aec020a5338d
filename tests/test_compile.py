"""compile_step: a recorded and replayed step gives the eager step's results, on the CPU and on the
simulated CUDA device.

Every report model trained for 5 steps through compile_step (1 eager, 2 recorded, 2 replayed)
ends with the eager run's parameters, buffers and per-step losses, bit for bit; dropout draws new
masks on every replay from the seeded sequence; a scheduler's new learning rate reaches replayed
steps; host reads and arrays made outside tinynet's ops make the step fall back to eager
execution, saying why; every input signature and train/eval mode gets its own recording;
fit/evaluate(compile=True) give the same history as without; replays make no host
synchronisation; programs print readably.

"Replayed" is checked by counting executions of the step's Python body (a replay runs none of it)
and through ``program``/``fallback_reason``. The tests at the end pin bugs found while writing
these (NumPy scalars from full reductions, a parameters() generator passed to clip_grad_norm_,
a layer frozen after recording, evaluate's cache keeping models alive).
"""
import functools
import gc
import importlib.util
import inspect
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest

import tinynet
import tinynet.nn.functional as F
from tinynet import backend, nn, optim
from tinynet.data import DataLoader, TensorDataset
from tinynet.nn.utils import clip_grad_norm_
from tinynet.optim.lr_scheduler import StepLR
from tinynet.train import evaluate, fit

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
REAL_GPU = backend.cuda_available()  # False on the simulated device
needs_sim = pytest.mark.skipif(REAL_GPU, reason="a real GPU is present: 'cuda' is CuPy, not the simulator")


# ====================================================================================== helpers
def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _report_specs():
    """benchmarks/models.py's SPECS (each model's real optimiser and loss) and its harness."""
    sys.path.insert(0, str(BENCH))  # models.py imports harness
    try:
        models = _load("tinynet_test_compile_bench_models", BENCH / "models.py")
    finally:
        sys.path.remove(str(BENCH))
    return models.SPECS, models.harness


SPECS, HARNESS = _report_specs()
BATCH = {"cnn5": 2, "vgg_bn": 2}  # the heavy ones; 4 images for the others


@functools.lru_cache(maxsize=None)
def _example(name):
    return HARNESS.load_example(name)


def _host(x):
    """A tensor or array as a NumPy array (a copy, so later in-place updates do not change it)."""
    if isinstance(x, tinynet.Tensor):
        x = x.detach().cpu().data
    return np.array(x, copy=True)


def _assert_same(actual, expected, device, what=""):
    """Bit-identical on the CPU and on the simulator; to 1e-6 on a real GPU."""
    a, b = _host(actual), _host(expected)
    if device != "cpu" and REAL_GPU:
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6, err_msg=what)
    else:
        np.testing.assert_array_equal(a, b, err_msg=what)


def _state(model):
    return {k: _host(v) for k, v in model.state_dict().items()}


def _assert_same_state(actual_model, expected_model, device):
    actual, expected = _state(actual_model), _state(expected_model)
    assert actual.keys() == expected.keys()
    for key in expected:
        _assert_same(actual[key], expected[key], device, key)
    for (name, p), q in zip(actual_model.named_parameters(), expected_model.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            _assert_same(p.grad, q.grad, device, name + ".grad")


def _images(device, n, batch, seed=0, side=28, classes=10):
    rng = np.random.default_rng(seed)
    return [(tinynet.tensor(rng.random((batch, 1, side, side), dtype=np.float32), device=device),
             tinynet.tensor(rng.integers(0, classes, batch), device=device)) for _ in range(n)]


class Counted:
    """Wraps a step function and counts how often its Python body runs (a replay runs none)."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0
        functools.update_wrapper(self, fn)

    def __call__(self, *args):
        self.calls += 1
        return self.fn(*args)


def _small_net():
    """A small conv net with dropout for the behaviour tests (fast on 1x28x28)."""
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.25),
                         nn.Linear(4 * 13 * 13, 10))


def _make_train_step(model, optimizer, loss_fn, set_to_none=False, clip=None):
    def train_step(x, y):
        optimizer.zero_grad(set_to_none=set_to_none)
        loss = loss_fn(model(x), y)
        loss.backward()
        if clip is not None:
            clip(model)
        optimizer.step()
        return loss.detach()
    return train_step


# ============================================================ 1. report models: compiled == eager
def _train_report_model(name, device, compiled, batches):
    spec = SPECS[name]
    tinynet.manual_seed(0)
    model = spec.build(_example(spec.example)).to(device)
    model.train()
    initial = _state(model)
    optimizer = getattr(optim, spec.optimizer)(model.parameters(), **spec.optim_kwargs)
    body = Counted(_make_train_step(model, optimizer, getattr(F, spec.loss)))
    step = tinynet.compile_step(body, model=model) if compiled else body
    tinynet.manual_seed(1)
    losses = [_host(step(x, y)) for x, y in batches]
    return model, initial, losses, step, body.calls


def _draws_dropout(instruction) -> bool:
    """Whether a program instruction draws a dropout mask (on a GPU the draw is inside the
    one-kernel DropoutDraw forward, elsewhere the recorded _scaled_mask)."""
    return "_scaled_mask" in repr(instruction) or "DropoutDraw" in repr(instruction)


@pytest.mark.parametrize("name", list(SPECS))
def test_report_model_trained_through_compile_step_equals_eager(name, device):
    batches = _images(device, 5, BATCH.get(name, 4))
    eager, eager_init, eager_losses, _, _ = _train_report_model(name, device, False, batches)
    model, init, losses, step, executed = _train_report_model(name, device, True, batches)

    assert init.keys() == eager_init.keys() and all(np.array_equal(init[k], eager_init[k]) for k in init)
    # It replayed: 1 eager + 2 recorded executions of the body, then 2 replays that ran none of it.
    assert executed == 3
    assert step.fallback_reason(*batches[0]) is None
    assert len(step.program(*batches[0])) > 10
    assert model.training
    if SPECS[name].functional_dropout or any(isinstance(m, (nn.Dropout, nn.Dropout2d)) for m in model.modules()):
        assert any(_draws_dropout(i) for i in step.program(*batches[0]))  # dropout is in the program

    assert len(set(float(v) for v in eager_losses)) == 5  # five different steps, not one repeated
    for k, (a, b) in enumerate(zip(losses, eager_losses)):
        _assert_same(a, b, device, f"loss of step {k + 1}")
    _assert_same_state(model, eager, device)
    for key, value in _state(model).items():
        if key.endswith("num_batches_tracked"):
            assert int(value) == 5, key  # replays advanced the BatchNorm counters too


# ====================================================================== 2. dropout across replays
class DropoutRuns:
    """Eight calls of a dropout step on ``device`` from seed 5, eager (``eager``) and compiled
    (``calls``, of ``compiled``); ``sequence(step)`` reruns eight calls of a step from the seed.
    Shared with test_cuda_graph.py, where the compiled calls are graph launches."""

    def __init__(self, device):
        self.x = tinynet.ones(64, device=device)
        self.eager = self.sequence(self.dropped)
        self.compiled = tinynet.compile_step(self.dropped)
        self.calls = self.sequence(self.compiled)

    @staticmethod
    def dropped(x):
        return F.dropout(x, 0.5) * 3.0

    def sequence(self, step, n=8):
        tinynet.manual_seed(5)
        return [_host(step(self.x)) for _ in range(n)]

    def assert_new_masks(self, calls, what):
        """Every one of ``calls`` keeps or drops (x 2) each element, each with a mask of its own."""
        for i in range(len(calls)):
            assert set(np.unique(calls[i])) <= {0.0, 6.0}
            for j in range(i):
                assert not np.array_equal(calls[i], calls[j]), f"{what} {j} and {i} drew the same mask"


def test_dropout_masks_are_new_on_every_replay_and_follow_the_seed(device):
    runs = DropoutRuns(device)
    compiled, first, eager = runs.compiled, runs.calls, runs.eager
    assert compiled.fallback_reason(runs.x) is None and compiled.program(runs.x)
    replays = first[3:]  # call 1 eager, 2 and 3 recorded
    assert len(replays) == 5
    runs.assert_new_masks(replays, "replays")
    for k, (a, b) in enumerate(zip(first, eager)):
        np.testing.assert_array_equal(a, b, err_msg=f"call {k + 1}")

    # A fresh compiled step from the same seed gives the same sequence...
    again = runs.sequence(tinynet.compile_step(runs.dropped))
    for a, b in zip(again, first):
        np.testing.assert_array_equal(a, b)
    # ...and so does the first one reseeded, now replaying every call: it reads the live generator.
    for a, b in zip(runs.sequence(compiled), eager):
        np.testing.assert_array_equal(a, b)


# =========================================================================== 3. scheduler and lr
def test_scheduler_learning_rate_reaches_replayed_steps(device):
    rng = np.random.default_rng(3)
    x = tinynet.tensor(rng.standard_normal((4, 5)), dtype=tinynet.float64, device=device)

    def run(compiled):
        tinynet.manual_seed(0)
        model = nn.Linear(5, 3).to(device, tinynet.float64)
        optimizer = optim.SGD(model.parameters(), lr=1.0)
        scheduler = StepLR(optimizer, step_size=1, gamma=0.1)

        def step(x):
            optimizer.zero_grad(set_to_none=False)
            # linear in the weights: the same gradient at every step. keepdim: a full reduction
            # without it hits the NumPy-scalar bug (see test_a_full_reduction_loss_replays)
            model(x).sum(dim=(0, 1), keepdim=True).backward()
            optimizer.step()

        body = Counted(step)
        run_step = tinynet.compile_step(body, model=model) if compiled else body
        weights = [_host(model.weight)]
        for _ in range(6):
            assert run_step(x) is None
            scheduler.step()
            weights.append(_host(model.weight))
        return np.diff(np.stack(weights), axis=0), body.calls, run_step

    eager_updates, _, _ = run(False)
    updates, executed, step = run(True)
    assert executed == 3 and step.fallback_reason(x) is None  # steps 4, 5 and 6 were replayed
    sizes = np.linalg.norm(updates.reshape(6, -1), axis=1)
    assert sizes[0] > 0.1
    np.testing.assert_allclose(sizes[1:] / sizes[:-1], 0.1, rtol=1e-6)  # lr 1, 0.1, ..., 1e-5
    _assert_same(updates, eager_updates, device)


# ==================================================================== 4. fallback: a host read
@pytest.mark.parametrize("read", ["item", "float"])
def test_a_host_read_in_the_step_falls_back_naming_the_line(read, device, capsys):
    batches = _images(device, 5, 4)

    def run(compiled):
        tinynet.manual_seed(0)
        model = _small_net().to(device)
        optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        logged, lines = [], []

        def logging_step(x, y):
            optimizer.zero_grad(set_to_none=False)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            lines.append(inspect.currentframe().f_lineno + 1)  # the next line reads the loss
            value = loss.item() if read == "item" else float(loss)
            logged.append(value)
            return loss.detach()

        step = tinynet.compile_step(logging_step, model=model) if compiled else logging_step
        tinynet.manual_seed(1)
        losses = [_host(step(x, y)) for x, y in batches]
        return model, losses, logged, lines[0], step

    eager, eager_losses, eager_logged, _, _ = run(False)
    capsys.readouterr()
    model, losses, logged, line, step = run(True)
    err = capsys.readouterr().err

    reason = step.fallback_reason(*batches[0])
    assert reason is not None and "item" in reason and f"test_compile.py:{line}" in reason, reason
    assert step.program(*batches[0]) == []
    assert err.count("compile_step(logging_step): running eagerly: ") == 1, err
    assert reason in err
    assert logged == eager_logged and len(logged) == 5  # every call ran eagerly, read included
    for a, b in zip(losses, eager_losses):
        _assert_same(a, b, device)
    _assert_same_state(model, eager, device)


# ============================================================ 5. arrays made outside tinynet's ops
STEPS_OUTSIDE = {
    # raw array computation on the input's array, wrapped: not recorded, seen as a constant
    "wrap_raw_array": (lambda x: tinynet.Tensor._wrap(x.data * 2), "different values"),
    # tinynet.tensor() is recorded, but its argument was computed outside: a constant again
    "tensor_of_raw_array": (lambda x: tinynet.tensor(x.data - x.data.mean()), "different values"),
    # tinynet.tensor() of the input tensor itself: recorded with the input as its argument
    "tensor_of_input": (lambda x: tinynet.tensor(x), None),
}


@pytest.mark.parametrize("variant", list(STEPS_OUTSIDE))
def test_arrays_made_outside_tinynets_ops_are_detected(variant, device, capsys):
    make, expected = STEPS_OUTSIDE[variant]
    rng = np.random.default_rng(0)
    inputs = [tinynet.tensor(rng.standard_normal((3, 4)).astype(np.float32), device=device) for _ in range(5)]

    def run(compiled):
        tinynet.manual_seed(0)
        layer = nn.Linear(4, 2).to(device)
        optimizer = optim.SGD(layer.parameters(), lr=0.1)

        def outside_step(x):
            optimizer.zero_grad(set_to_none=False)
            out = layer(make(x))
            loss = F.mse_loss(out, tinynet.zeros_like(out))
            loss.backward()
            optimizer.step()
            return out.detach()

        body = Counted(outside_step)
        step = tinynet.compile_step(body, model=layer) if compiled else body
        return layer, [_host(step(x)) for x in inputs], step, body.calls

    eager, eager_outs, _, _ = run(False)
    capsys.readouterr()
    layer, outs, step, executed = run(True)
    err = capsys.readouterr().err
    reason = step.fallback_reason(inputs[0])
    if expected is None:
        assert reason is None and executed == 3 and "running eagerly" not in err
    else:
        assert reason is not None and expected in reason, reason
        assert "made outside the recorded calls" in reason
        assert err.count("running eagerly") == 1 and reason in err
        assert executed == 5
    for a, b in zip(outs, eager_outs):
        _assert_same(a, b, device)
    _assert_same_state(layer, eager, device)


def test_python_control_flow_on_raw_data_is_detected(capsys):
    """An ``if`` on the batch's values, read from the raw NumPy array (no tinynet read to see):
    the two recordings do different work, and compile_step falls back."""
    signs = [1.0, 1.0, -1.0, 1.0, -1.0, -1.0]  # recordings (calls 2, 3) take different branches
    rng = np.random.default_rng(0)
    inputs = [tinynet.tensor(s * (1 + rng.random((3, 4))).astype(np.float32)) for s in signs]

    def run(compiled):
        tinynet.manual_seed(0)
        layer = nn.Linear(4, 2)
        optimizer = optim.SGD(layer.parameters(), lr=0.1)

        def branching_step(x):
            optimizer.zero_grad(set_to_none=False)
            h = layer(x)
            if x.data.mean() > 0:  # raw NumPy: compile_step cannot see this read
                h = h * 2 + 1
            loss = F.mse_loss(h, tinynet.zeros_like(h))
            loss.backward()
            optimizer.step()
            return loss.detach()

        step = tinynet.compile_step(branching_step, model=layer) if compiled else branching_step
        return layer, [_host(step(x)) for x in inputs], step

    eager, eager_losses, _ = run(False)
    capsys.readouterr()
    layer, losses, step = run(True)
    reason = step.fallback_reason(inputs[0])
    assert reason is not None and "different work" in reason, reason
    assert "running eagerly" in capsys.readouterr().err
    for a, b in zip(losses, eager_losses):
        np.testing.assert_array_equal(a, b)
    _assert_same_state(layer, eager, "cpu")


# ============================================================== 6. signatures: batch size, mode
def _small_run(device, plan, compiled):
    """Train the small net over ``plan``: a list of (batch index, mode) with mode 'train'/'eval'."""
    batches = _images(device, 2, 8, seed=1) + _images(device, 2, 5, seed=2)
    tinynet.manual_seed(0)
    model = _small_net().to(device)
    optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    body = Counted(_make_train_step(model, optimizer, F.cross_entropy))
    step = tinynet.compile_step(body, model=model) if compiled else body
    tinynet.manual_seed(1)
    losses = []
    for index, mode in plan:
        model.train(mode == "train")
        losses.append(_host(step(*batches[index])))
    model.train()
    return model, losses, step, body.calls, batches


def test_a_smaller_last_batch_is_recorded_separately(device, capsys):
    plan = [(0, "train"), (1, "train"), (0, "train"), (2, "train")] * 3 + [(3, "train"), (1, "train")] * 2
    eager, eager_losses, _, _, _ = _small_run(device, plan, False)
    model, losses, step, executed, batches = _small_run(device, plan, True)
    big, small = step.program(*batches[0]), step.program(*batches[2])
    assert big and small and step.fallback_reason(*batches[0]) is None and step.fallback_reason(*batches[2]) is None
    # Two recordings (their text may match: an instruction need not print its shapes)
    assert len(big) == len(small) and all(a is not b for a, b in zip(big, small))
    assert executed == 6  # 3 per signature: 8 of the 11 batch-8 calls and 2 of the 5 batch-5 calls replayed
    assert "running eagerly" not in capsys.readouterr().err
    for k, (a, b) in enumerate(zip(losses, eager_losses)):
        _assert_same(a, b, device, f"step {k + 1}")
    _assert_same_state(model, eager, device)


def test_switching_to_eval_mode_records_a_separate_program(device):
    plan = [(0, "train")] * 4 + [(0, "eval")] * 4 + [(0, "train")] * 2
    eager, eager_losses, _, _, _ = _small_run(device, plan, False)
    model, losses, step, executed, batches = _small_run(device, plan, True)
    assert executed == 6  # train: calls 4, 9, 10 replayed; eval: call 8 replayed
    train_program = step.program(*batches[0])
    model.eval()
    eval_program = step.program(*batches[0])
    model.train()
    assert train_program and eval_program
    assert any(_draws_dropout(i) for i in train_program)
    assert not any(_draws_dropout(i) for i in eval_program)  # no dropout in eval mode
    for k, (a, b) in enumerate(zip(losses, eager_losses)):
        _assert_same(a, b, device, f"step {k + 1}")
    _assert_same_state(model, eager, device)


# ============================================================================ 7. fit and evaluate
def _toy_data(device, n=100):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((n, 1, 4, 4)).astype(np.float32) * 0.5 + y[:, None, None, None]
    data = TensorDataset(tinynet.tensor(x, device=device), tinynet.tensor(y, device=device))
    # 100 = 6 x 16 + 4 and 3 x 32 + 4: the last batches are smaller
    return DataLoader(data, batch_size=16, shuffle=True, seed=0), DataLoader(data, batch_size=32)


def _fit(device, compile, epochs=3):
    train, test = _toy_data(device)
    tinynet.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Dropout(0.2), nn.ReLU(), nn.Linear(8, 3)).to(device)
    optimizer = optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    scheduler = StepLR(optimizer, 1, 0.5)
    forwards = []
    model.register_forward_pre_hook(lambda module, args: forwards.append(1))
    tinynet.manual_seed(1)
    history = fit(model, optimizer, nn.CrossEntropyLoss(), train, test, epochs=epochs, scheduler=scheduler,
                  progress=False, compile=compile)
    return model, history, len(forwards), test


def test_fit_and_evaluate_with_compile_give_the_same_results(device, capsys):
    eager, eager_history, _, _ = _fit(device, False)
    model, history, _, test = _fit(device, True)
    capsys.readouterr()
    for field in ("train_loss", "train_acc", "test_loss", "test_acc", "lr"):
        assert getattr(history, field) == getattr(eager_history, field), field
    assert len(history.train_loss) == 3 and history.lr == [0.2, 0.1, 0.05]
    _assert_same_state(model, eager, device)

    loss_fn = nn.CrossEntropyLoss()
    plain = evaluate(model, test, loss_fn)
    for _ in range(2):  # the second evaluation replays the first one's recordings
        compiled = evaluate(model, test, loss_fn, compile=True)
        assert compiled["loss"] == plain["loss"] and compiled["accuracy"] == plain["accuracy"]
        np.testing.assert_array_equal(compiled["predictions"], plain["predictions"])
        np.testing.assert_array_equal(compiled["confusion"], plain["confusion"])
    assert model.training


# ============================================================= 8. zero_grad(), clip_grad_norm_
def _clip_list(model):
    clip_grad_norm_(list(model.parameters()), 0.05)


@pytest.mark.parametrize("set_to_none, clip", [(True, None), (False, _clip_list), (True, _clip_list)],
                         ids=["zero_grad_none", "clip", "zero_grad_none_and_clip"])
def test_zero_grad_to_none_and_clip_grad_norm_match_eager(set_to_none, clip, device):
    batches = _images(device, 5, 4)

    def run(compiled):
        tinynet.manual_seed(0)
        model = _small_net().to(device)
        optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        body = Counted(_make_train_step(model, optimizer, F.cross_entropy, set_to_none=set_to_none, clip=clip))
        step = tinynet.compile_step(body, model=model) if compiled else body
        tinynet.manual_seed(1)
        return model, [_host(step(x, y)) for x, y in batches], step, body.calls

    eager, eager_losses, _, _ = run(False)
    model, losses, step, executed = run(True)
    assert executed == 3 and step.fallback_reason(*batches[0]) is None
    program = [repr(i) for i in step.program(*batches[0])]
    assert any("zero_grad" in r for r in program)
    assert any("clip_grad_norm_" in r for r in program) == (clip is not None)
    if clip is not None:  # the clipping matters: without it the run goes elsewhere
        unclipped, *_ = _train_unclipped(device, batches)
        assert not np.array_equal(_host(unclipped[0].weight), _host(eager[0].weight))
    for a, b in zip(losses, eager_losses):
        _assert_same(a, b, device)
    _assert_same_state(model, eager, device)


def _train_unclipped(device, batches):
    tinynet.manual_seed(0)
    model = _small_net().to(device)
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    step = _make_train_step(model, optimizer, F.cross_entropy)
    tinynet.manual_seed(1)
    return model, [step(x, y) for x, y in batches]


# ======================================================================= 9. no host sync (sim)
@needs_sim
def test_replayed_lenet_steps_do_not_synchronise_with_the_host():
    from tinynet import sim
    spec = SPECS["lenet"]
    tinynet.manual_seed(0)
    model = spec.build(_example(spec.example)).to("cuda")
    optimizer = getattr(optim, spec.optimizer)(model.parameters(), **spec.optim_kwargs)
    body = Counted(_make_train_step(model, optimizer, getattr(F, spec.loss)))
    step = tinynet.compile_step(body, model=model)
    batches = _images("cuda", 6, 8)
    for x, y in batches[:3]:  # eager, recorded, recorded (the comparison may read the device)
        step(x, y)
    assert body.calls == 3 and step.fallback_reason(*batches[0]) is None
    losses = []
    with sim.counting() as counts:
        for x, y in batches[3:]:
            losses.append(step(x, y))
    assert body.calls == 3  # these were replays
    assert all(not v.requires_grad and v.grad_fn is None for v in losses)  # replays return detached tensors
    assert counts["device_to_host"] == 0 and counts["synchronizations"] == 0, counts
    assert counts["blocking_ops"] == 0, counts["blocking_names"]
    assert all(isinstance(v.data, sim.SimArray) for v in losses)


# ============================================================================ 10. readable repr
def test_program_instructions_print_readably():
    spec = SPECS["lenet"]
    tinynet.manual_seed(0)
    model = spec.build(_example(spec.example))
    optimizer = getattr(optim, spec.optimizer)(model.parameters(), **spec.optim_kwargs)
    step = tinynet.compile_step(_make_train_step(model, optimizer, getattr(F, spec.loss)), model=model)
    x, y = _images("cpu", 1, 4)[0]
    for _ in range(3):
        step(x, y)
    program = [repr(i) for i in step.program(x, y)]
    text = "\n".join(program)
    for expected in ("Optimizer.zero_grad(<SGD>)", "Conv2d.forward", "Linear.forward", "CrossEntropy.forward",
                     "_run_node(<Conv2dBackward>", "_accumulate_leaf[tensor(6, 1, 5, 5)]", "SGD.step(<SGD>)"):
        assert expected in text, expected
    assert program[0].startswith("_ = Optimizer.zero_grad") and program[-1] == "_ = SGD.step(<SGD>)"
    assert "r2 = _run_forward(Conv2d.forward, <Conv2dBackward>, r0, tensor(6, 1, 5, 5), tensor(6,))" in program
    for line in program:  # one short line each, no array dumps
        assert "\n" not in line and len(line) < 120 and "array(" not in line, line


# ======================================================= regressions: bugs found while writing these tests
@pytest.mark.parametrize("device", [
    pytest.param("cpu"),  # fit's step returns loss * n and (pred == y).sum(): NumPy scalars on the CPU
    pytest.param("cuda"),
])
def test_fit_and_evaluate_with_compile_replay(device, capsys):
    _, _, eager_forwards, _ = _fit(device, False)
    _, _, forwards, _ = _fit(device, True)
    err = capsys.readouterr().err
    assert "running eagerly" not in err, err
    assert forwards < eager_forwards  # replayed steps do not call the model


@pytest.mark.parametrize("loss", ["mean", "sum", "scaled"])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_a_full_reduction_loss_replays(loss, device):
    batches = _images(device, 5, 4)
    losses = {"mean": lambda out, y: (out * out).mean(), "sum": lambda out, y: (out * out).sum(),
              "scaled": lambda out, y: F.cross_entropy(out, y) * 4}

    def run(compiled):
        tinynet.manual_seed(0)
        model = _small_net().to(device)
        optimizer = optim.SGD(model.parameters(), lr=0.01)
        step = _make_train_step(model, optimizer, losses[loss])
        step = tinynet.compile_step(step, model=model, verbose=False) if compiled else step
        tinynet.manual_seed(1)
        return model, [_host(step(x, y)) for x, y in batches], step

    eager, eager_losses, _ = run(False)
    model, compiled_losses, step = run(True)
    for a, b in zip(compiled_losses, eager_losses):
        _assert_same(a, b, device)
    _assert_same_state(model, eager, device)
    assert step.fallback_reason(*batches[0]) is None


def test_clip_grad_norm_of_the_parameters_generator_replays():
    batches = _images("cpu", 5, 4)

    def run(compiled):
        tinynet.manual_seed(0)
        model = _small_net()
        optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        step = _make_train_step(model, optimizer, F.cross_entropy,
                                clip=lambda m: clip_grad_norm_(m.parameters(), 0.05))
        step = tinynet.compile_step(step, model=model, verbose=False) if compiled else step
        tinynet.manual_seed(1)
        for x, y in batches:
            step(x, y)
        return model, step

    (eager, _), (model, step) = run(False), run(True)
    _assert_same_state(model, eager, "cpu")  # a replay must clip too (not pass an exhausted generator)
    assert step.fallback_reason(*batches[0]) is None


def test_freezing_a_layer_after_recording_matches_eager():
    batches = _images("cpu", 7, 4)

    def run(compiled):
        tinynet.manual_seed(0)
        model = _small_net()
        optimizer = optim.SGD(model.parameters(), lr=0.05)
        step = _make_train_step(model, optimizer, F.cross_entropy)
        step = tinynet.compile_step(step, model=model) if compiled else step
        for k, (x, y) in enumerate(batches):
            if k == 4:  # after calls 1 (eager), 2 and 3 (recorded) and 4 (replayed)
                model[5].weight.requires_grad_(False)
                frozen = _host(model[5].weight)
            step(x, y)
        return model, frozen

    (eager, frozen), (compiled, _) = run(False), run(True)
    np.testing.assert_array_equal(_host(eager[5].weight), frozen)  # eager: a frozen layer stays put
    _assert_same(compiled[5].weight, eager[5].weight, "cpu")


def test_evaluate_with_compile_does_not_keep_the_model_alive():
    _, test = _toy_data("cpu")
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    evaluate(model, test, nn.CrossEntropyLoss(), compile=True)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_gradient_hooks_run_on_every_replay_and_forward_hooks_do_not():
    """Documented in compile.py: register_hook is part of backward (replayed); Python in the step
    and module forward hooks are not."""
    tinynet.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    seen_grads, seen_forwards = [], []
    model[0].weight.register_hook(lambda g: seen_grads.append(g.detach().clone()))  # no host read
    model[0].register_forward_hook(lambda module, inputs, output: seen_forwards.append(1))

    def step(x, y):
        optimizer.zero_grad(set_to_none=False)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.detach()

    compiled = tinynet.compile_step(step, model=model)
    x, y = tinynet.randn(5, 4), tinynet.randint(0, 2, (5,))
    for _ in range(5):
        compiled(x, y)
    assert compiled.fallback_reason(x, y) is None and compiled.program(x, y)
    assert len(seen_grads) == 5      # every call, replays included
    assert len(seen_forwards) == 3   # the eager call and the two recorded ones
    assert not np.array_equal(seen_grads[-1].numpy(), seen_grads[-2].numpy())  # each replay's own gradient
