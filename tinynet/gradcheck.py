"""Gradient checking: compare an op's analytic backward with central finite differences.

For a function ``f`` of tensors, pick a fixed random cotangent ``v`` of the output's shape and
compare, for every input that requires grad, the analytic gradient of ``L = sum(v * f(x))``
(one backward pass) with the numerical one, ``(L(x + eps e_i) - L(x - eps e_i)) / (2 eps)`` for
each element ``i``. Run it in float64: in float32 rounding error swamps the differences.
"""
from __future__ import annotations

import numpy as np

from .autograd import no_grad
from .backend import item, to_host
from .tensor import Tensor

__all__ = ["gradcheck", "GradcheckError"]


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with finite differences."""


def _outputs(fn, inputs):
    out = fn(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o for o in outs if isinstance(o, Tensor) and o.dtype.kind == "f"]


def _projected(outs, cotangents) -> float:
    total = 0.0
    for o, v in zip(outs, cotangents):
        # An explicit read from the device per evaluation: finite differences need the numbers.
        total += float(to_host((o.data.astype(np.float64) * o.xp.asarray(v)).sum()))
    return total


def gradcheck(fn, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              raise_exception: bool = True, seed: int = 0) -> bool:
    """Check ``fn``'s gradients with respect to every input tensor that requires grad.

    Args:
        fn: a function of the ``inputs`` returning a Tensor or a tuple of Tensors.
        inputs: a Tensor or a sequence of Tensors (and other arguments passed through).
        eps: finite-difference step; atol/rtol: tolerance ``|num - ana| <= atol + rtol*|num|``.
        raise_exception: raise :class:`GradcheckError` on failure (else return False).

    Returns:
        True when every gradient matches. On failure the error names the op, the input, the
        worst element and both values.
    """
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    name = getattr(fn, "__name__", repr(fn))
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError(f"gradcheck({name}): no input requires grad")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck({name}): input {i} is {inputs[i].dtype}; use float64 inputs "
                            "(float32 rounding swamps finite differences)")

    outs = _outputs(fn, inputs)
    if not outs:
        raise ValueError(f"gradcheck({name}): fn returned no floating-point tensor")
    rng = np.random.default_rng(seed)
    cotangents = [rng.standard_normal(o.shape) for o in outs]
    op = outs[0].grad_fn.name if outs[0].grad_fn is not None else name

    # Analytic: one backward of sum(v * f(x)).
    for i in checked:
        inputs[i].grad = None
    for o, v in zip(outs, cotangents):
        if o.requires_grad:
            o.backward(o.xp.asarray(v, dtype=o.dtype), retain_graph=True)

    for i in checked:
        x = inputs[i]
        analytic = np.zeros(x.shape) if x.grad is None else _to_numpy(x.grad.data).astype(np.float64)
        numeric = np.zeros(x.shape)
        flat = x.data.reshape(-1)  # a view: perturbing it perturbs x
        with no_grad():
            for k in range(flat.size):
                orig = item(flat[k])
                flat[k] = orig + eps
                plus = _projected(_outputs(fn, inputs), cotangents)
                flat[k] = orig - eps
                minus = _projected(_outputs(fn, inputs), cotangents)
                flat[k] = orig
                numeric.reshape(-1)[k] = (plus - minus) / (2 * eps)
        error = np.abs(numeric - analytic) - (atol + rtol * np.abs(numeric))
        if error.size and error.max() > 0:
            worst = np.unravel_index(int(np.argmax(error)), error.shape)
            message = (f"gradcheck failed for {op} ({name}), input {i} of shape {tuple(x.shape)}: at index "
                       f"{tuple(int(w) for w in worst)} numerical {numeric[worst]:.8g} vs analytic "
                       f"{analytic[worst]:.8g} (max abs diff {np.abs(numeric - analytic).max():.3g})")
            if raise_exception:
                raise GradcheckError(message)
            return False
    return True


def _to_numpy(array):
    return to_host(array)
