"""tinynet.optim.lr_scheduler against PyTorch: the learning rates (and OneCycleLR's momentum)
at every step, state dicts, bad input."""
import copy
import warnings

import numpy as np
import pytest

import tinynet
from tinynet.optim import SGD, Adam, Optimizer, lr_scheduler

from helpers import requires_torch, to_numpy, torch

SCHEDULERS = [
    ("StepLR", dict(step_size=3, gamma=0.5)),
    ("MultiStepLR", dict(milestones=[2, 5, 5, 11], gamma=0.3)),
    ("ExponentialLR", dict(gamma=0.9)),
    ("CosineAnnealingLR", dict(T_max=10, eta_min=0.001)),  # 25 steps: down, back up, and down again
    ("OneCycleLR", dict(max_lr=[0.5, 1.0], total_steps=25)),
    ("OneCycleLR", dict(max_lr=0.5, epochs=5, steps_per_epoch=5, pct_start=0.25, anneal_strategy="linear",
                        three_phase=True, base_momentum=0.8, max_momentum=[0.9, 0.95])),
]
IDS = ["StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "OneCycleLR",
       "OneCycleLR-3phase-linear"]
OPTIMIZERS = {"SGD": dict(lr=0.1, momentum=0.9), "Adam": dict(lr=0.01)}


def _make(framework, opt_name, sched_name, kwargs, values=(1.0, -2.0, 0.5)):
    """An optimiser with two parameter groups and a scheduler on it, in tinynet or torch."""
    lib = tinynet if framework == "tinynet" else torch
    params = [lib.tensor(np.array([v], np.float64), requires_grad=True) for v in values]
    opt_kwargs = OPTIMIZERS[opt_name]
    groups = [{"params": params[:2]}, {"params": params[2:], "lr": opt_kwargs["lr"] * 2}]
    opt = getattr(lib.optim, opt_name)(groups, **opt_kwargs)
    sched = getattr(lib.optim.lr_scheduler, sched_name)(opt, **copy.deepcopy(kwargs))
    return params, opt, sched


def _train_step(params, opt, sched):
    for p in params:
        p.grad = p.detach() + 0.5  # any gradient, the same in both frameworks
    opt.step()
    sched.step()


def _momenta(opt):
    return [g["betas"][0] if "betas" in g else g["momentum"] for g in opt.param_groups]


@requires_torch
@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("sched_name, kwargs", SCHEDULERS, ids=IDS)
def test_matches_torch(sched_name, kwargs, opt_name):
    tn = _make("tinynet", opt_name, sched_name, kwargs)
    th = _make("torch", opt_name, sched_name, kwargs)
    assert tn[2].get_last_lr() == th[2].get_last_lr()
    for _ in range(25):
        _train_step(*tn)
        _train_step(*th)
        assert tn[2].last_epoch == th[2].last_epoch
        # The same Python float arithmetic in the same order: equal, not just close.
        assert tn[2].get_last_lr() == th[2].get_last_lr()
        assert [g["lr"] for g in tn[1].param_groups] == tn[2].get_last_lr()
        assert _momenta(tn[1]) == _momenta(th[1])
    for g_tn, g_th in zip(tn[1].param_groups, th[1].param_groups):
        assert g_tn["initial_lr"] == g_th["initial_lr"]
    # The optimiser read each step's rate (and momentum): the parameters agree too.
    for a, b in zip(tn[0], th[0]):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=1e-12)


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("sched_name, kwargs", SCHEDULERS, ids=IDS)
def test_state_dict_round_trip(sched_name, kwargs, opt_name):
    params, opt, sched = _make("tinynet", opt_name, sched_name, kwargs)
    for _ in range(8):
        _train_step(params, opt, sched)
    opt_state, sched_state = copy.deepcopy(opt.state_dict()), copy.deepcopy(sched.state_dict())
    assert "optimizer" not in sched_state and sched_state["last_epoch"] == 8

    params2, opt2, sched2 = _make("tinynet", opt_name, sched_name, kwargs, [p.item() for p in params])
    opt2.load_state_dict(opt_state)  # after constructing the scheduler, which resets the rates
    sched2.load_state_dict(sched_state)
    assert sched2.get_last_lr() == sched.get_last_lr() and sched2.last_epoch == 8
    for _ in range(12):
        _train_step(params, opt, sched)
        _train_step(params2, opt2, sched2)
        assert sched2.get_last_lr() == sched.get_last_lr()
        assert _momenta(opt2) == _momenta(opt)
    assert [p.item() for p in params2] == [p.item() for p in params]


@requires_torch
@pytest.mark.parametrize("sched_name, kwargs", SCHEDULERS[:4], ids=IDS[:4])
def test_step_with_epoch_uses_closed_form(sched_name, kwargs):
    tn = _make("tinynet", "SGD", sched_name, kwargs)
    th = _make("torch", "SGD", sched_name, kwargs)
    for epoch in (7, 13, 4):
        with pytest.warns(UserWarning, match="epoch parameter"):
            tn[2].step(epoch)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            th[2].step(epoch)
        assert tn[2].get_last_lr() == pytest.approx(th[2].get_last_lr(), rel=1e-15)


def test_scheduler_sets_initial_lr_and_resumes():
    p = tinynet.tensor([1.0], requires_grad=True)
    opt = SGD([p], lr=0.1)
    sched = lr_scheduler.StepLR(opt, step_size=2)
    assert opt.param_groups[0]["initial_lr"] == 0.1 and sched.base_lrs == [0.1] and sched.last_epoch == 0
    assert sched.get_last_lr() == [0.1]
    fresh = SGD([p], lr=0.1)
    with pytest.raises(KeyError, match="initial_lr"):
        lr_scheduler.StepLR(fresh, step_size=2, last_epoch=3)
    resumed = lr_scheduler.ExponentialLR(opt, gamma=0.5, last_epoch=3)  # opt already has initial_lr
    assert resumed.last_epoch == 4 and resumed.get_last_lr() == [0.1]


def test_bad_input():
    p = tinynet.tensor([1.0], requires_grad=True)
    with pytest.raises(TypeError, match="is not an Optimizer"):
        lr_scheduler.StepLR("sgd", step_size=1)
    with pytest.raises(TypeError, match="is not an Optimizer"):
        lr_scheduler.OneCycleLR(None, max_lr=1.0, total_steps=10)
    with pytest.raises(ValueError, match="either total_steps OR"):
        lr_scheduler.OneCycleLR(SGD([p]), max_lr=1.0)
    with pytest.raises(ValueError, match="positive integer total_steps"):
        lr_scheduler.OneCycleLR(SGD([p]), max_lr=1.0, total_steps=0)
    with pytest.raises(ValueError, match="pct_start"):
        lr_scheduler.OneCycleLR(SGD([p]), max_lr=1.0, total_steps=10, pct_start=1)
    with pytest.raises(ValueError, match="anneal_strategy"):
        lr_scheduler.OneCycleLR(SGD([p]), max_lr=1.0, total_steps=10, anneal_strategy="exp")
    with pytest.raises(ValueError, match="max_lr must have the same length"):
        lr_scheduler.OneCycleLR(SGD([p]), max_lr=[1.0, 2.0], total_steps=10)

    class NoMomentum(Optimizer):
        def __init__(self, params):
            super().__init__(params, dict(lr=0.1))
    with pytest.raises(ValueError, match="support momentum or beta1"):
        lr_scheduler.OneCycleLR(NoMomentum([p]), max_lr=1.0, total_steps=10)
    sched = lr_scheduler.OneCycleLR(Adam([p]), max_lr=1.0, total_steps=3)
    for _ in range(3):
        sched.step()
    with pytest.raises(ValueError, match="Tried to step 4 times"):
        sched.step()
