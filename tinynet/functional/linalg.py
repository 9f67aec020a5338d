"""Matrix products: ``matmul`` (the ``@`` operator) and ``linear`` (a fully connected layer).

The gradient of a matrix product is two more matrix products. For ``Z = A @ B`` with
``A`` of shape (n, k) and ``B`` of shape (k, m)::

    dA = dZ @ B^T      (n, m) @ (m, k) -> (n, k)
    dB = A^T @ dZ      (k, n) @ (n, m) -> (k, m)

Read it from the shapes: each gradient must have its input's shape, and there is only one way
to multiply dZ with the other operand to get it.
"""
from __future__ import annotations

import numpy as np

from .. import backends
from .. import dtypes as _dt
from ..autograd import Function
from ..kernels import gemm
from ..tensor import Tensor

__all__ = ["matmul", "linear"]


def _swap_last(array):
    """The transpose of the last two dims (the matrices of a batch)."""
    return array.swapaxes(-1, -2)


def _promoted(op: str, *tensors):
    """Check that the operands are Tensors and give them one common dtype (PyTorch's
    promotion rule; PyTorch itself raises on mixed dtypes here, tinynet promotes)."""
    for t in tensors:
        if t is not None and not isinstance(t, Tensor):
            raise TypeError(f"{op}: expected Tensors, got {type(t).__name__}")
    dtypes = [t.dtype for t in tensors if t is not None]
    dtype = dtypes[0]
    for d in dtypes[1:]:
        dtype = _dt.promote_types(dtype, d)
    return tuple(t if t is None or t.dtype == dtype else t.to(dtype) for t in tensors)


def _matmul_shape(a_shape, b_shape) -> tuple:
    """The shape of ``a @ b`` under PyTorch's rules, or a RuntimeError naming both shapes.

    1-D operands are promoted to matrices ((k,) as (1, k) on the left, (k, 1) on the right) and
    the added dim is removed from the result; leading (batch) dims broadcast.
    """
    shapes = f"{tuple(a_shape)} and {tuple(b_shape)}"
    if len(a_shape) == 0 or len(b_shape) == 0:
        raise RuntimeError(f"matmul: both arguments need to be at least 1-D, got shapes {shapes}")
    a2 = (1,) + tuple(a_shape) if len(a_shape) == 1 else tuple(a_shape)
    b2 = tuple(b_shape) + (1,) if len(b_shape) == 1 else tuple(b_shape)
    if a2[-1] != b2[-2]:
        raise RuntimeError(f"matmul: shapes {shapes} cannot be multiplied ({a2[-1]} columns in the "
                           f"first vs {b2[-2]} rows in the second)")
    try:
        batch = np.broadcast_shapes(a2[:-2], b2[:-2])
    except ValueError:
        raise RuntimeError(f"matmul: batch dims of shapes {shapes} cannot be broadcast together") from None
    return batch + (a2[-2],) * (len(a_shape) > 1) + (b2[-1],) * (len(b_shape) > 1)


class MatMul(Function):
    """z = a @ b, with 1-D operands and batch broadcasting as in PyTorch.

    Backward: da = dz @ b^T, db = a^T @ dz on the last two dims. A 1-D operand is first seen as
    a matrix (a row (1, k) on the left, a column (k, 1) on the right) and the dim that this
    added to dz is put back, so the same two formulas cover every case; gradients of broadcast
    batch dims are summed back to each input's shape by the engine.
    """

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        backends.prepare_gemm(ctx.xp)
        return ctx.xp.asarray(gemm.matmul(ctx.xp, a, b))  # asarray: NumPy gives a scalar for 1-D @ 1-D

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        backends.prepare_gemm(ctx.xp)
        a_vector, b_vector = a.ndim == 1, b.ndim == 1
        if b_vector:                       # (k,) -> (k, 1); dz gains the column dim
            b, grad = b[:, None], grad[..., None]
        if a_vector:                       # (k,) -> (1, k); dz gains the row dim
            a, grad = a[None, :], grad[..., None, :]
        grad_a = grad_b = None
        if need_a:
            grad_a = gemm.matmul(ctx.xp, grad, _swap_last(b))  # (..., n, m) @ (..., m, k)
            if a_vector:
                grad_a = grad_a[..., 0, :]
        if need_b:
            grad_b = gemm.matmul(ctx.xp, _swap_last(a), grad)  # (..., k, n) @ (..., n, m)
            if b_vector:
                grad_b = grad_b[..., 0]
        return grad_a, grad_b


def matmul(input, other):
    """The matrix product ``input @ other`` (PyTorch's ``torch.matmul``).

    * 1-D @ 1-D: the dot product (a 0-d tensor);
    * 2-D @ 2-D: the matrix product;
    * 1-D on either side: treated as a row (left) or column (right) vector, and that dim is
      removed from the result;
    * more dims: a batch of matrices; the batch dims broadcast.

    Mixed dtypes are promoted (PyTorch would raise). Raises RuntimeError naming both shapes when
    the inner dims differ or the batch dims do not broadcast.
    """
    a, b = _promoted("matmul", input, other)
    _matmul_shape(a.shape, b.shape)
    return MatMul.apply(a, b)


class Linear(Function):
    """y = x @ W^T + b for x of shape (*, in), W of shape (out, in), b of shape (out,).

    Backward, with the batch dims (*) flattened into rows so that x is (rows, in) and dy is
    (rows, out)::

        dx = dy @ W           (rows, out) @ (out, in)
        dW = dy^T @ x         (out, rows) @ (rows, in): each row's outer product, summed
        db = dy               summed over the rows

    A bias of shape (out,) goes with the GEMMs (``gemm.matmul_bias``, ``gemm.matmul_bias_grad``):
    on a GPU whose cuBLASLt passed its check, inside them (the forward GEMM adds it, and the dW
    GEMM, which already sums over the rows, sums dy into db as well); elsewhere as an add after
    the forward GEMM and a sum beside dW's. A bias of another broadcastable shape is added after
    the GEMM, and the engine sums its gradient back to its shape.
    """

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        ctx.save_for_backward(x, weight)
        backends.prepare_gemm(ctx.xp)
        # A (out,) bias in the GEMM (as rows: the batch dims flattened), else added after it.
        ctx.vector_bias = bias is not None and bias.shape == weight.shape[:1]
        if ctx.vector_bias:
            rows = gemm.matmul_bias(ctx.xp, x.reshape(-1, weight.shape[1]), weight.T, bias)
            return rows.reshape(x.shape[:-1] + weight.shape[:1])
        y = gemm.matmul(ctx.xp, x, weight.T)
        return y if bias is None else y + bias

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = (ctx.needs_input_grad + (False,))[:3]  # no bias: two inputs
        backends.prepare_gemm(ctx.xp)
        grad_x = gemm.matmul(ctx.xp, grad, weight) if need_x else None
        grad_w, grad_b = None, (grad if need_b else None)
        if need_w:
            rows_grad = grad.reshape(-1, weight.shape[0])
            rows_x = x.reshape(-1, weight.shape[1])
            # out=: straight into the parameters' reserved .grad storage when the engine offers it
            out_w, out_b = (ctx.grad_out[1], ctx.grad_out[2] if need_b else None) if ctx.grad_out else (None, None)
            if need_b and ctx.vector_bias:  # dW and db from one GEMM
                grad_w, grad_b = gemm.matmul_bias_grad(ctx.xp, rows_grad.T, rows_x, out=out_w, bias_out=out_b)
            else:
                grad_w = gemm.matmul(ctx.xp, rows_grad.T, rows_x, out=out_w)
        return grad_x, grad_w, grad_b


def linear(input, weight, bias=None):
    """A fully connected layer: ``input @ weight.T + bias``.

    Args:
        input: (*, in_features), any number of leading dims (or none).
        weight: (out_features, in_features), as ``nn.Linear`` stores it.
        bias: (out_features,) or None.

    Returns:
        (*, out_features). Mixed dtypes are promoted (PyTorch would raise).
    """
    input, weight, bias = _promoted("linear", input, weight, bias)
    if weight.ndim != 2:
        raise RuntimeError(f"linear: expected weight of shape (out_features, in_features), got shape "
                           f"{tuple(weight.shape)}")
    if input.ndim == 0 or input.shape[-1] != weight.shape[1]:
        raise RuntimeError(f"linear: input of shape {tuple(input.shape)} does not fit weight of shape "
                           f"{tuple(weight.shape)} (expected input's last dim to be in_features = "
                           f"{weight.shape[1]})")
    if bias is not None:
        out_shape = tuple(input.shape[:-1]) + (weight.shape[0],)
        try:
            if np.broadcast_shapes(bias.shape, out_shape) != out_shape:
                raise ValueError
        except ValueError:
            raise RuntimeError(f"linear: bias of shape {tuple(bias.shape)} does not broadcast to the "
                               f"output shape {out_shape}") from None
        return Linear.apply(input, weight, bias)
    return Linear.apply(input, weight)
