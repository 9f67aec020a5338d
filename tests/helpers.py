"""The test suite's helpers: one way to compare an op with PyTorch, one way to gradcheck it,
and hypothesis strategies for shapes and arrays.

``compare_with_torch(tinynet_fn, torch_fn, arrays)`` runs the same function in both frameworks
on the same arrays, compares every output, then backpropagates the same random cotangent
through both and compares the gradients of every floating-point input. Skipped without torch.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinynet

try:
    import torch
except ImportError:  # parity tests skip cleanly without PyTorch
    torch = None

requires_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")

TOLERANCES = {np.dtype(np.float32): dict(atol=1e-5, rtol=1e-4),
              np.dtype(np.float64): dict(atol=1e-10, rtol=1e-7)}


def to_numpy(x):
    """A tinynet tensor, torch tensor or array as a NumPy array."""
    if isinstance(x, tinynet.Tensor):
        x = x.detach().cpu().numpy()
    elif torch is not None and isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def compare_with_torch(tinynet_fn, torch_fn, arrays, *, device="cpu", grad=True, requires_grad=None,
                       atol=None, rtol=None, seed=0):
    """Run ``tinynet_fn(*tensors)`` and ``torch_fn(*tensors)`` on tensors made from ``arrays``
    and assert that outputs and input gradients agree.

    Args:
        arrays: NumPy arrays (or Python scalars passed through unchanged). Floating arrays become
            tensors that require grad (unless ``requires_grad`` is a list of bools saying which).
        grad: also compare gradients of ``sum(v * output)`` for a fixed random ``v``.
        atol, rtol: default by the first floating input's dtype (see TOLERANCES).
    """
    if torch is None:
        pytest.skip("PyTorch is not installed")
    arrays = list(arrays)
    is_array = [isinstance(a, np.ndarray) for a in arrays]
    if requires_grad is None:
        requires_grad = [isinstance(a, np.ndarray) and a.dtype.kind == "f" for a in arrays]
    requires_grad = [bool(r) and grad for r in requires_grad]
    float_dtypes = [a.dtype for a in arrays if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
    tol = dict(TOLERANCES.get(float_dtypes[0] if float_dtypes else np.dtype(np.float32)))
    if atol is not None:
        tol["atol"] = atol
    if rtol is not None:
        tol["rtol"] = rtol

    torch_device = "cuda" if device != "cpu" and torch.cuda.is_available() else "cpu"
    tn_in = [tinynet.tensor(a, device=device, requires_grad=r) if arr else a
             for a, arr, r in zip(arrays, is_array, requires_grad)]
    th_in = [torch.tensor(a, device=torch_device, requires_grad=r) if arr else a
             for a, arr, r in zip(arrays, is_array, requires_grad)]
    tn_out, th_out = _as_tuple(tinynet_fn(*tn_in)), _as_tuple(torch_fn(*th_in))
    assert len(tn_out) == len(th_out), f"{len(tn_out)} outputs vs torch's {len(th_out)}"
    for k, (a, b) in enumerate(zip(tn_out, th_out)):
        a_np, b_np = to_numpy(a), to_numpy(b)
        assert a_np.shape == b_np.shape, f"output {k}: shape {a_np.shape} vs torch {b_np.shape}"
        assert a_np.dtype == b_np.dtype, f"output {k}: dtype {a_np.dtype} vs torch {b_np.dtype}"
        if a_np.dtype.kind == "f":
            np.testing.assert_allclose(a_np, b_np, err_msg=f"output {k}", **tol)
        else:
            np.testing.assert_array_equal(a_np, b_np, err_msg=f"output {k}")

    if not any(requires_grad):
        return tn_out
    rng = np.random.default_rng(seed)
    pairs = [(a, b) for a, b in zip(tn_out, th_out) if to_numpy(a).dtype.kind == "f" and b.requires_grad]
    cotangents = [rng.standard_normal(to_numpy(a).shape).astype(to_numpy(a).dtype) for a, _ in pairs]
    tn_loss = sum((a * tinynet.tensor(v, device=device)).sum() for (a, _), v in zip(pairs, cotangents))
    th_loss = sum((b * torch.tensor(v, device=torch_device)).sum() for (_, b), v in zip(pairs, cotangents))
    tn_loss.backward()
    th_loss.backward()
    for k, (a, b, r) in enumerate(zip(tn_in, th_in, requires_grad)):
        if not r:
            continue
        if b.grad is None:
            assert a.grad is None or not np.any(to_numpy(a.grad)), f"input {k}: torch gives no grad"
            continue
        assert a.grad is not None, f"input {k}: no gradient, torch has one"
        np.testing.assert_allclose(to_numpy(a.grad), to_numpy(b.grad), err_msg=f"grad of input {k}", **tol)
    return tn_out


def check_gradients(fn, arrays, *, device="cpu", requires_grad=None, **kwargs):
    """Float64 finite-difference check of ``fn`` at ``arrays`` (see ``tinynet.gradcheck``)."""
    if requires_grad is None:
        requires_grad = [isinstance(a, np.ndarray) and a.dtype.kind == "f" for a in arrays]
    inputs = [tinynet.tensor(np.asarray(a, dtype=np.float64), device=device, requires_grad=True) if r
              else (tinynet.tensor(a, device=device) if isinstance(a, np.ndarray) else a)
              for a, r in zip(arrays, requires_grad)]
    assert tinynet.gradcheck(fn, inputs, **kwargs)


# ------------------------------------------------------------------------------- strategies
def shapes(min_dims=0, max_dims=3, min_side=1, max_side=4):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def broadcastable_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4):
    """Pairs of shapes that broadcast together (some dims 1, some missing)."""
    return hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=min_dims, max_dims=max_dims,
                                             min_side=min_side, max_side=max_side).map(lambda r: r.input_shapes)


def arrays(shape, dtype=np.float64, low=-2.0, high=2.0):
    """Float arrays with values in [low, high], no NaN/inf."""
    return hnp.arrays(dtype, shape, elements=st.floats(low, high, allow_nan=False, allow_infinity=False,
                                                       width=np.dtype(dtype).itemsize * 8))


def away_from(values, points, margin=1e-3):
    """Nudge values away from kinks (e.g. 0 for relu/abs) so finite differences stay valid."""
    values = np.array(values, dtype=np.float64, copy=True)
    for p in np.atleast_1d(points):
        close = np.abs(values - p) < margin
        values[close] = p + np.where(values[close] >= p, margin, -margin) * 2
    return values
