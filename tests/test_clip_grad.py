"""tinynet.nn.utils.clip_grad_norm_ and clip_grad_value_ against PyTorch."""
import math

import numpy as np
import pytest

import tinynet
from tinynet.nn.utils import clip_grad_norm_, clip_grad_value_

from helpers import requires_torch, to_numpy, torch

TOL = {np.float64: dict(rtol=1e-12, atol=1e-14), np.float32: dict(rtol=1e-6, atol=1e-7)}


def _grads(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in [(3, 4), (7,), (2, 2, 2)]]


def _with_grads(lib, grads, device=None):
    """Parameters carrying ``grads``, plus one without a gradient (which must be skipped)."""
    make = (lambda a: tinynet.tensor(a, device=device)) if lib is tinynet else torch.tensor
    params = []
    for g in grads:
        p = make(np.zeros_like(g)).requires_grad_()
        p.grad = make(g)
        params.append(p)
    params.append(make(np.zeros(2, grads[0].dtype)).requires_grad_())
    return params


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("norm_type", [2.0, 1, math.inf, 3.0])
@pytest.mark.parametrize("max_norm", [0.5, 1e3], ids=["clipped", "under-limit"])
def test_clip_grad_norm_matches_torch(norm_type, dtype, max_norm, device):
    grads = _grads(dtype)
    tn, th = _with_grads(tinynet, grads, device), _with_grads(torch, grads)
    grad_arrays = [p.grad.data for p in tn[:-1]]
    tn_norm = clip_grad_norm_(tn, max_norm, norm_type)
    th_norm = torch.nn.utils.clip_grad_norm_(th, max_norm, norm_type)
    assert isinstance(tn_norm, tinynet.Tensor) and tn_norm.shape == () and tn_norm.device == tn[0].device
    assert to_numpy(tn_norm).dtype == dtype
    np.testing.assert_allclose(to_numpy(tn_norm), to_numpy(th_norm), **TOL[dtype])
    for a, b in zip(tn[:-1], th[:-1]):
        np.testing.assert_allclose(to_numpy(a.grad), to_numpy(b.grad), **TOL[dtype])
    assert all(p.grad.data is a for p, a in zip(tn[:-1], grad_arrays)), "gradients are scaled in place"
    assert tn[-1].grad is None
    if max_norm == 1e3:  # under the limit: the gradients are left as they were
        for p, g in zip(tn[:-1], grads):
            np.testing.assert_array_equal(to_numpy(p.grad), g)
    else:
        clipped = [to_numpy(p.grad) for p in tn[:-1]]
        total = np.linalg.norm(np.concatenate([c.ravel() for c in clipped]), ord=norm_type)
        assert total == pytest.approx(max_norm, rel=1e-5)


def test_clip_grad_norm_single_tensor_and_no_grads():
    p = tinynet.tensor([3.0, 4.0], requires_grad=True)
    p.grad = tinynet.tensor([3.0, 4.0])
    norm = clip_grad_norm_(p, max_norm=1.0)
    assert norm.item() == pytest.approx(5.0)
    np.testing.assert_allclose(p.grad.numpy(), [0.6, 0.8], rtol=1e-6)
    q = tinynet.tensor([1.0], requires_grad=True)
    empty = clip_grad_norm_([q], max_norm=1.0)
    assert isinstance(empty, tinynet.Tensor) and empty.item() == 0.0 and q.grad is None


def test_clip_grad_norm_nonfinite():
    p = tinynet.tensor([1.0, 2.0], requires_grad=True)
    p.grad = tinynet.tensor([np.nan, 1.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    assert math.isnan(clip_grad_norm_([p], 1.0).item())


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_clip_grad_value_matches_torch(dtype, device):
    grads = _grads(dtype, seed=1)
    tn, th = _with_grads(tinynet, grads, device), _with_grads(torch, grads)
    arrays = [p.grad.data for p in tn[:-1]]
    assert clip_grad_value_(tn, 0.7) is None
    torch.nn.utils.clip_grad_value_(th, 0.7)
    for a, b, array in zip(tn[:-1], th[:-1], arrays):
        assert a.grad.data is array
        np.testing.assert_array_equal(to_numpy(a.grad), to_numpy(b.grad))
    assert np.abs(to_numpy(tn[0].grad)).max() == pytest.approx(0.7)
