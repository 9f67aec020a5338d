"""tinynet.optim: SGD, Adam, AdamW, Adadelta, RMSprop and Adagrad against PyTorch, state dicts, zero_grad, in-place updates
and bad input."""
import copy

import numpy as np
import pytest

import tinynet
from tinynet.optim import SGD, Adam, AdamW, Adadelta, RMSprop, Adagrad, Optimizer
from tinynet.tensor import Tensor

from helpers import requires_torch, to_numpy, torch

TOL = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=1e-6, atol=1e-6)}
SHAPES = [(3, 4), (5,), (2, 3)]


def _grad(p: np.ndarray, t: int, i: int) -> np.ndarray:
    """The gradient fed to both frameworks: a nonlinear function of the parameter's current
    value (so a wrong update changes later gradients too) plus a drift that varies by step."""
    return (np.tanh(2 * p) + 0.3 * p + 0.5 * np.sin(t + i)).astype(p.dtype)


def _params(dtype, device="cpu", n=len(SHAPES)):
    rng = np.random.default_rng(1)
    init = [rng.standard_normal(s).astype(dtype) for s in SHAPES[:n]]
    tn = [tinynet.tensor(a, device=device, requires_grad=True) for a in init]
    th = [torch.tensor(a, requires_grad=True) for a in init] if torch is not None else None
    return tn, th


def _groups(params, lr):
    """Two parameter groups, the second with three times the learning rate."""
    return [{"params": params[:2]}, {"params": params[2:], "lr": 3 * lr}]


def _set_grads(params, t):
    """Give each parameter (tinynet or torch) the gradient ``_grad`` at its current value."""
    for i, p in enumerate(params):
        g = _grad(to_numpy(p), t, i)
        p.grad = tinynet.tensor(g, device=p.device) if isinstance(p, tinynet.Tensor) else torch.tensor(g)


def _train(opt, params, steps, start=0):
    for t in range(start, start + steps):
        _set_grads(params, t)
        opt.step()


def _assert_params_equal(tn_params, th_params, dtype):
    for k, (a, b) in enumerate(zip(tn_params, th_params)):
        assert to_numpy(a).dtype == dtype
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), err_msg=f"param {k}", **TOL[dtype])


CASES = [
    (SGD, torch and torch.optim.SGD, dict(lr=0.1)),
    (SGD, torch and torch.optim.SGD, dict(lr=0.1, momentum=0.9)),
    (SGD, torch and torch.optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.3)),
    (SGD, torch and torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    (SGD, torch and torch.optim.SGD, dict(lr=0.1, weight_decay=0.2)),
    (SGD, torch and torch.optim.SGD, dict(lr=0.05, maximize=True)),
    (SGD, torch and torch.optim.SGD,
     dict(lr=0.05, momentum=0.8, weight_decay=0.1, maximize=True, nesterov=True)),
    (Adam, torch and torch.optim.Adam, dict(lr=0.05)),
    (Adam, torch and torch.optim.Adam, dict(lr=0.05, betas=(0.8, 0.99), weight_decay=0.1)),
    (Adam, torch and torch.optim.Adam, dict(lr=0.05, amsgrad=True)),
    (Adam, torch and torch.optim.Adam,
     dict(lr=0.05, amsgrad=True, weight_decay=0.1, maximize=True, eps=1e-3)),
    (AdamW, torch and torch.optim.AdamW, dict(lr=0.05)),
    (AdamW, torch and torch.optim.AdamW, dict(lr=0.05, weight_decay=0.3)),
    (AdamW, torch and torch.optim.AdamW, dict(lr=0.05, weight_decay=0.3, amsgrad=True, maximize=True)),
    (Adadelta, torch and torch.optim.Adadelta, dict(lr=1.0)),
    (Adadelta, torch and torch.optim.Adadelta, dict(lr=0.5, rho=0.8, eps=1e-4, weight_decay=0.1, maximize=True)),
    (RMSprop, torch and torch.optim.RMSprop, dict(lr=0.01)),
    (RMSprop, torch and torch.optim.RMSprop, dict(lr=0.01, momentum=0.9)),
    (RMSprop, torch and torch.optim.RMSprop, dict(lr=0.01, centered=True)),
    (RMSprop, torch and torch.optim.RMSprop, dict(lr=0.01, alpha=0.3, centered=True)),  # lerp's other form
    (RMSprop, torch and torch.optim.RMSprop,
     dict(lr=0.02, alpha=0.95, eps=1e-3, weight_decay=0.1, momentum=0.5, centered=True, maximize=True)),
    (Adagrad, torch and torch.optim.Adagrad, dict(lr=0.1)),
    (Adagrad, torch and torch.optim.Adagrad, dict(lr=0.1, lr_decay=0.05, initial_accumulator_value=0.5)),
    (Adagrad, torch and torch.optim.Adagrad, dict(lr=0.1, weight_decay=0.2, eps=1e-3, maximize=True)),
]
CASE_IDS = [f"{cls.__name__}-" + "-".join(f"{k}={v}" for k, v in kw.items()) for cls, _, kw in CASES]


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("tn_cls, th_cls, kwargs", CASES, ids=CASE_IDS)
def test_matches_torch(tn_cls, th_cls, kwargs, dtype, device):
    tn_params, th_params = _params(dtype, device)
    tn_opt = tn_cls(_groups(tn_params, kwargs["lr"]), **kwargs)
    th_opt = th_cls(_groups(th_params, kwargs["lr"]), **kwargs)
    _train(tn_opt, tn_params, 20)
    _train(th_opt, th_params, 20)
    _assert_params_equal(tn_params, th_params, dtype)
    # The state holds the same buffers under the same keys.
    for a, b in zip(tn_params, th_params):
        tn_state, th_state = tn_opt.state[a], th_opt.state[b]
        assert set(tn_state) == set(th_state)
        if "step" in tn_state:
            assert tn_state["step"] == th_state["step"].item() == 20
        for key in tn_state:
            if key != "step":
                np.testing.assert_allclose(to_numpy(tn_state[key]), to_numpy(th_state[key]), **TOL[dtype])


@requires_torch
def test_matches_torch_after_lr_change():
    """Hyper-parameters are read from param_groups at every step."""
    tn_params, th_params = _params(np.float64)
    tn_opt, th_opt = Adam(tn_params, lr=0.01), torch.optim.Adam(th_params, lr=0.01)
    for t in range(10):
        for opt in (tn_opt, th_opt):
            opt.param_groups[0]["lr"] = 0.01 * (t + 1)
            opt.param_groups[0]["betas"] = (0.9 - 0.02 * t, 0.999)
        _set_grads(tn_params, t)
        _set_grads(th_params, t)
        tn_opt.step()
        th_opt.step()
    _assert_params_equal(tn_params, th_params, np.float64)


def test_parameters_without_grad_are_skipped():
    a = tinynet.tensor([1.0, 2.0], requires_grad=True)
    b = tinynet.tensor([3.0, 4.0], requires_grad=True)
    for opt in (SGD([a, b], lr=0.1, momentum=0.9), Adam([a, b], lr=0.1), Adadelta([a, b]),
                RMSprop([a, b], momentum=0.5)):
        a.grad, b.grad = tinynet.tensor([1.0, 1.0]), None
        opt.step()
        np.testing.assert_array_equal(b.detach().numpy(), [3.0, 4.0])
        assert b not in opt.state and a in opt.state
        assert (a.detach().numpy() < [1.0, 2.0]).all()


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
                                  lambda ps: Adam(ps, lr=0.1, amsgrad=True, weight_decay=0.1),
                                  lambda ps: AdamW(ps, lr=0.1, maximize=True),
                                  lambda ps: Adadelta(ps, weight_decay=0.1),
                                  lambda ps: RMSprop(ps, momentum=0.9, centered=True),
                                  lambda ps: Adagrad(ps, lr_decay=0.1)],
                         ids=["SGD", "Adam", "AdamW", "Adadelta", "RMSprop", "Adagrad"])
def test_step_updates_in_place(make, device):
    """No new buffers after the first step: parameters and state arrays stay the same objects."""
    params, _ = _params(np.float32, device)
    opt = make(params)
    data_ids = [id(p.data) for p in params]
    _train(opt, params, 1)
    buffers = {(i, key): (value, value.data) for i, p in enumerate(params)
               for key, value in opt.state[p].items() if key != "step"}
    assert buffers
    before = [to_numpy(p).copy() for p in params]
    _train(opt, params, 5, start=1)
    assert [id(p.data) for p in params] == data_ids
    for (i, key), (tensor, array) in buffers.items():
        state_value = opt.state[params[i]][key]
        assert state_value is tensor and state_value.data is array, f"param {i}: {key} was reallocated"
    assert all(not np.array_equal(b, to_numpy(p)) for b, p in zip(before, params))


@requires_torch
@pytest.mark.parametrize("tn_cls, th_cls", [(Adadelta, torch and torch.optim.Adadelta),
                                            (RMSprop, torch and torch.optim.RMSprop),
                                            (Adagrad, torch and torch.optim.Adagrad)], ids=["Adadelta", "RMSprop", "Adagrad"])
def test_defaults_are_torchs(tn_cls, th_cls):
    tn_group = tn_cls([tinynet.tensor([1.0], requires_grad=True)]).param_groups[0]
    th_group = th_cls([torch.tensor([1.0], requires_grad=True)]).param_groups[0]
    assert {k: v for k, v in tn_group.items() if k != "params"} == {k: th_group[k] for k in tn_group if k != "params"}


def test_adagrad_state_exists_from_the_start():
    """As in PyTorch, Adagrad makes its state (the sum at initial_accumulator_value) at once,
    also for a group added later, and a parameter without a gradient keeps it untouched."""
    a, b = tinynet.tensor([1.0, 2.0], requires_grad=True), tinynet.tensor([3.0], requires_grad=True)
    opt = Adagrad([a], initial_accumulator_value=0.25)
    opt.add_param_group({"params": [b], "initial_accumulator_value": 2.0})
    assert opt.state[a]["step"] == 0 and opt.state[a]["sum"].numpy().tolist() == [0.25, 0.25]
    a.grad = tinynet.tensor([1.0, 1.0])
    opt.step()
    assert opt.state[a]["step"] == 1 and opt.state[b]["step"] == 0
    assert opt.state[b]["sum"].numpy().tolist() == [2.0] and b.detach().numpy().tolist() == [3.0]


def test_step_counter_is_a_host_int():
    p = tinynet.tensor([1.0], requires_grad=True)
    opt = Adam([p])
    _train(opt, [p], 3)
    assert opt.state[p]["step"] == 3 and isinstance(opt.state[p]["step"], int)
    packed = opt.state_dict()["state"][0]["step"]
    assert isinstance(packed, tinynet.Tensor) and packed.dtype == np.float32 and packed.item() == 3.0


def test_zero_grad():
    a = tinynet.tensor([1.0, 2.0], requires_grad=True)
    b = tinynet.tensor([3.0], requires_grad=True)
    opt = SGD([a, b], lr=0.1)
    a.grad = tinynet.tensor([5.0, 6.0])
    grad, array = a.grad, a.grad.data
    opt.zero_grad(set_to_none=False)
    assert a.grad is grad and a.grad.data is array
    np.testing.assert_array_equal(a.grad.numpy(), [0.0, 0.0])
    assert b.grad is None
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_closure_returns_loss():
    p = tinynet.tensor([1.0, -2.0], requires_grad=True)
    opt = SGD([p], lr=0.5)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == 5.0
    np.testing.assert_allclose(p.detach().numpy(), [0.0, 0.0])


# ---------------------------------------------------------------------------------- state dicts
STATEFUL = [(SGD, dict(lr=0.1, momentum=0.9, dampening=0.1)), (Adam, dict(lr=0.05, amsgrad=True)),
            (AdamW, dict(lr=0.05, weight_decay=0.1)), (Adadelta, dict(lr=1.0, weight_decay=0.01)),
            (RMSprop, dict(lr=0.01, momentum=0.9, centered=True)),
            (Adagrad, dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1))]


@pytest.mark.parametrize("cls, kwargs", STATEFUL, ids=[c.__name__ for c, _ in STATEFUL])
def test_state_dict_round_trip_continues_identically(cls, kwargs):
    params, _ = _params(np.float64)
    opt = cls(_groups(params, kwargs["lr"]), **kwargs)
    _train(opt, params, 7)
    saved = copy.deepcopy(opt.state_dict())
    assert [g["params"] for g in saved["param_groups"]] == [[0, 1], [2]]
    assert saved["param_groups"][1]["lr"] == 3 * kwargs["lr"]

    clones = [tinynet.tensor(p.detach().numpy(), requires_grad=True) for p in params]
    restored = cls(_groups(clones, 1.0), **{**kwargs, "lr": 1.0})
    restored.load_state_dict(saved)
    assert restored.param_groups[0]["lr"] == kwargs["lr"]
    assert all(x is y for x, y in zip(restored.param_groups[0]["params"], clones))
    _train(opt, params, 8, start=7)
    _train(restored, clones, 8, start=7)
    for a, b in zip(params, clones):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    # Loading copied the buffers: training on did not write into the saved dict.
    for index, state in saved["state"].items():
        for key, value in state.items():
            if key != "step":
                assert not np.shares_memory(value.data, restored.state[clones[index]][key].data)


def test_load_state_dict_casts_to_parameter_dtype():
    p64 = tinynet.tensor(np.ones(3), requires_grad=True)
    opt = Adam([p64])
    _train(opt, [p64], 2)
    p32 = tinynet.tensor(np.ones(3, np.float32), requires_grad=True)
    opt32 = Adam([p32])
    opt32.load_state_dict(opt.state_dict())
    assert opt32.state[p32]["exp_avg"].dtype == np.float32 and opt32.state[p32]["step"] == 2


def test_load_state_dict_checks_groups():
    a, b = tinynet.tensor([1.0], requires_grad=True), tinynet.tensor([2.0], requires_grad=True)
    saved = SGD([a, b]).state_dict()
    with pytest.raises(ValueError, match="different number of parameter groups"):
        SGD([{"params": [a]}, {"params": [b]}]).load_state_dict(saved)
    with pytest.raises(ValueError, match="doesn't match the size"):
        SGD([a]).load_state_dict(saved)


def _convert_state(sd, make_tensor):
    """A state dict with every state tensor rebuilt by ``make_tensor`` from its NumPy array."""
    state = {k: {key: make_tensor(to_numpy(v)) for key, v in s.items()} for k, s in sd["state"].items()}
    return {"state": state, "param_groups": copy.deepcopy(sd["param_groups"])}


@requires_torch
@pytest.mark.parametrize("cls, kwargs", STATEFUL, ids=[c.__name__ for c, _ in STATEFUL])
def test_state_dict_format_is_torchs(cls, kwargs):
    """A state dict moves between tinynet and PyTorch (tensors converted) and training goes on
    identically in both directions."""
    th_cls = getattr(torch.optim, cls.__name__)
    tn_params, th_params = _params(np.float64)
    tn_opt = cls(_groups(tn_params, kwargs["lr"]), **kwargs)
    th_opt = th_cls(_groups(th_params, kwargs["lr"]), **kwargs)
    _train(tn_opt, tn_params, 5)
    _train(th_opt, th_params, 5)
    tn_sd, th_sd = tn_opt.state_dict(), th_opt.state_dict()
    assert tn_sd["state"].keys() == th_sd["state"].keys()
    for k in th_sd["state"]:
        assert tn_sd["state"][k].keys() == th_sd["state"][k].keys()
    for tn_group, th_group in zip(tn_sd["param_groups"], th_sd["param_groups"]):
        assert {k: v for k, v in th_group.items() if k in tn_group} == tn_group

    # Swap the optimisers' states across frameworks, then train both on.
    tn_opt.load_state_dict(_convert_state(th_sd, tinynet.tensor))
    th_opt.load_state_dict(_convert_state(tn_sd, torch.tensor))
    _train(tn_opt, tn_params, 5, start=5)
    _train(th_opt, th_params, 5, start=5)
    _assert_params_equal(tn_params, th_params, np.float64)


# ---------------------------------------------------------------------------------- bad input
def test_bad_input():
    p = tinynet.tensor([1.0], requires_grad=True)
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        SGD([], lr=0.1)
    with pytest.raises(TypeError, match="iterable of Tensors or dicts"):
        SGD(p, lr=0.1)
    with pytest.raises(TypeError, match="can only optimize Tensors"):
        SGD([np.ones(2)], lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        SGD([p * 2], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        SGD([{"params": [p]}, {"params": [p]}])
    with pytest.raises(TypeError, match="ordered collections"):
        SGD([{"params": {p}}])
    errors = [
        (lambda: SGD([p], lr=-0.1), r"SGD: Invalid learning rate: -0.1"),
        (lambda: SGD([p], momentum=-0.5), r"SGD: Invalid momentum value: -0.5"),
        (lambda: SGD([p], weight_decay=-1e-4), r"SGD: Invalid weight_decay value: -0.0001"),
        (lambda: SGD([p], nesterov=True), "SGD: Nesterov momentum requires a momentum and zero dampening"),
        (lambda: SGD([p], momentum=0.9, dampening=0.1, nesterov=True), "Nesterov"),
        (lambda: Adam([p], lr=-1.0), r"Adam: Invalid learning rate: -1.0"),
        (lambda: Adam([p], eps=-1e-8), r"Adam: Invalid epsilon value: -1e-08"),
        (lambda: Adam([p], betas=(1.0, 0.999)), r"Adam: Invalid beta parameter at index 0: 1.0"),
        (lambda: Adam([p], betas=(0.9, -0.1)), r"Adam: Invalid beta parameter at index 1: -0.1"),
        (lambda: Adam([p], weight_decay=-0.1), r"Adam: Invalid weight_decay value: -0.1"),
        (lambda: AdamW([p], lr=-1e-3), r"AdamW: Invalid learning rate: -0.001"),
        (lambda: AdamW([p], betas=(0.9, 1.5)), r"AdamW: Invalid beta parameter at index 1: 1.5"),
        (lambda: Adadelta([p], lr=-1.0), r"Adadelta: Invalid learning rate: -1.0"),
        (lambda: Adadelta([p], rho=1.5), r"Adadelta: Invalid rho value: 1.5"),
        (lambda: Adadelta([p], eps=-1.0), r"Adadelta: Invalid epsilon value: -1.0"),
        (lambda: RMSprop([p], momentum=-0.1), r"RMSprop: Invalid momentum value: -0.1"),
        (lambda: RMSprop([p], alpha=-0.5), r"RMSprop: Invalid alpha value: -0.5"),
        (lambda: RMSprop([p], weight_decay=-1.0), r"RMSprop: Invalid weight_decay value: -1.0"),
        (lambda: Adagrad([p], lr_decay=-1.0), r"Adagrad: Invalid lr_decay value: -1.0"),
        (lambda: Adagrad([p], initial_accumulator_value=-1.0),
         r"Adagrad: Invalid initial_accumulator_value value: -1.0"),
    ]
    for make, message in errors:
        with pytest.raises(ValueError, match=message):
            make()


def test_param_groups_and_repr():
    a, b = tinynet.tensor([1.0], requires_grad=True), tinynet.tensor([2.0], requires_grad=True)
    opt = Adam([a], lr=0.01)
    opt.add_param_group({"params": b, "lr": 0.1})
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.1]
    assert opt.param_groups[1]["params"][0] is b and opt.param_groups[1]["betas"] == (0.9, 0.999)
    assert isinstance(opt, Optimizer)
    assert "Parameter Group 1" in repr(opt) and "lr: 0.1" in repr(opt)
    named = SGD([("w", a), ("b", b)], lr=0.1)
    assert named.param_groups[0]["param_names"] == ["w", "b"]
    assert named.state_dict()["param_groups"][0]["param_names"] == ["w", "b"]


# --------------------------------------------------------------- the compiled CPU SGD update
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("options", [dict(), dict(momentum=0.9, weight_decay=1e-5),
                                     dict(momentum=0.5, dampening=0.1, weight_decay=0.01, maximize=True),
                                     dict(momentum=0.9, nesterov=True, weight_decay=0.1)],
                         ids=["plain", "momentum+decay", "dampening+maximize", "nesterov"])
def test_compiled_sgd_update_is_identical_to_the_array_code(dtype, parallel, options):
    """On the CPU, float32/float64 parameters take SGD's arithmetic as one compiled loop
    (kernels/optim.py); it must give the array code's results bit for bit, step after step
    (including the first momentum step), serial and on numba's threads."""
    from tinynet.optim import sgd
    group = {**dict(lr=0.1, momentum=0, dampening=0, weight_decay=0, nesterov=False, maximize=False), **options}
    _assert_compiled_update_is_the_array_code(sgd._sgd_update_compiled, sgd._sgd_update, group, (37, 29), dtype,
                                              parallel, steps=3, seed=0)


def _assert_compiled_update_is_the_array_code(compiled, array_code, group, shape, dtype, parallel, steps, seed):
    """``steps`` updates of one parameter by ``compiled`` (which must accept it) and by
    ``array_code``, from the same start and gradients: parameter and every state entry equal
    bit for bit after each step; on numba's threads (``parallel``) or serially."""
    from tinynet.kernels import threads
    rng = np.random.default_rng(seed)
    start = rng.standard_normal(shape).astype(dtype)
    fast, slow = (tinynet.tensor(start.copy(), requires_grad=True) for _ in range(2))
    fast_state, slow_state = {}, {}
    for _ in range(steps):
        grad = rng.standard_normal(shape).astype(dtype)
        fast.grad, slow.grad = tinynet.tensor(grad.copy()), tinynet.tensor(grad.copy())
        with threads.grain(0 if parallel else 1 << 60):
            assert compiled(fast, fast_state, group)
        array_code(slow, slow_state, group)
        np.testing.assert_array_equal(fast.data, slow.data)
        assert fast_state.keys() == slow_state.keys()
        for name, value in slow_state.items():
            if isinstance(value, Tensor):
                np.testing.assert_array_equal(fast_state[name].data, value.data)
            else:
                assert fast_state[name] == value


def test_compiled_sgd_update_leaves_other_layouts_to_the_array_code():
    """A non-contiguous gradient, a float16 parameter or a buffer of another dtype (e.g. loaded
    from a checkpoint) is not for the compiled loop: it declines and the array code runs."""
    from tinynet.optim import sgd
    group = dict(lr=0.1, momentum=0.9, dampening=0, weight_decay=0, nesterov=False, maximize=False)
    p = tinynet.tensor(np.ones((4, 4), np.float32), requires_grad=True)
    p.grad = Tensor._wrap(np.ones((4, 8), np.float32)[:, ::2])
    assert not sgd._sgd_update_compiled(p, {}, group)
    p.grad = Tensor._wrap(np.ones((4, 4), np.float32))
    assert not sgd._sgd_update_compiled(p, {"momentum_buffer": Tensor._wrap(np.ones((4, 4)))}, group)
    half = tinynet.tensor(np.ones(3, np.float16), requires_grad=True)
    half.grad = Tensor._wrap(np.ones(3, np.float16))
    assert not sgd._sgd_update_compiled(half, {}, group)
    np.testing.assert_array_equal(p.data, 1)  # declining changed nothing
    optimizer = SGD([p, half], lr=0.1, momentum=0.9)
    optimizer.step()  # both updated: the compiled loop for p, the array code for half
    np.testing.assert_allclose(p.data, 0.9, rtol=1e-6)
    np.testing.assert_allclose(half.data.astype(np.float32), 0.9, rtol=1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("options", [dict(), dict(weight_decay=0.01), dict(weight_decay=0.01, decoupled_weight_decay=True),
                                     dict(amsgrad=True, maximize=True), dict(betas=(0.8, 0.99), eps=1e-6)],
                         ids=["plain", "l2", "adamw", "amsgrad+maximize", "betas+eps"])
def test_compiled_adam_update_is_identical_to_the_array_code(dtype, parallel, options):
    """Adam's (and AdamW's) compiled CPU loop (kernels/optim.py) gives the array code's results
    bit for bit, state included, over several steps (the bias corrections change), serial and
    on numba's threads."""
    from tinynet.optim import adam
    group = {**dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, maximize=False,
                    decoupled_weight_decay=False), **options}
    _assert_compiled_update_is_the_array_code(adam._adam_update_compiled, adam._adam_update, group, (23, 41), dtype,
                                              parallel, steps=4, seed=1)
