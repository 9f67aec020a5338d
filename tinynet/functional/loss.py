"""Loss functions: how far a prediction is from its target, as one number to minimise.

Each loss first computes one value per element (or per sample), then reduces them:
``reduction='none'`` keeps them, ``'sum'`` adds them up, ``'mean'`` divides the sum by a
count (the number of elements, or for class weights the sum of the weights used). Backward
runs the other way: the incoming gradient is spread back over the per-element losses (divided
by the same count for 'mean'), then each one's local derivative is applied.

Cross-entropy is fused with its log-softmax in one Function: the gradient of
``-log softmax(z)[t]`` with respect to the logits ``z`` is simply ``softmax(z) - onehot(t)``,
which is exact and cannot overflow, where backpropagating through a separate softmax and log
would divide by probabilities that underflow to 0. On a GPU, cross-entropy with class indices
(and no label smoothing) and nll_loss run as fused kernels (``tinynet/kernels/cuda/loss.py``):
'sum' and 'mean' as ONE launch that writes the loss and, when the input requires grad, its
gradient, which backward returns as it is for the implicit seed of ``loss.backward()`` (no
launch) or scales (one launch); 'none' (and inputs too large for one block) as one kernel for
the rows, one for their sum or mean, one backward.
"""
from __future__ import annotations

import warnings

import numpy as np

from .. import dtypes as _dt
from ..autograd import Function, is_implicit_seed
from ..kernels.dispatch import uses_cuda
from ..tensor import Tensor
from .activation import log_softmax_array, stable_sigmoid

__all__ = ["cross_entropy", "nll_loss", "mse_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits"]


# ------------------------------------------------------------------------------ reductions
def _reduction(op: str, size_average, reduce, reduction: str) -> str:
    """The reduction to use: ``reduction``, or PyTorch's mapping of the deprecated
    ``size_average`` / ``reduce`` flags when either is given."""
    if size_average is not None or reduce is not None:
        warnings.warn(f"{op}: size_average and reduce args will be deprecated, please use "
                      "reduction='mean', 'sum' or 'none' instead.", UserWarning, stacklevel=3)
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = ("mean" if size_average else "sum") if reduce else "none"
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{op}: {reduction!r} is not a valid value for reduction (expected 'none', 'mean' or 'sum')")
    return reduction


def _reduce(xp, losses, reduction: str, count):
    """'none': the per-element losses; 'sum': their sum; 'mean': their sum / count."""
    if reduction == "none":
        return losses
    total = losses.sum()
    if reduction == "sum":
        return xp.asarray(total)
    with np.errstate(invalid="ignore", divide="ignore"):  # count 0 (all ignored): NaN, as PyTorch
        return xp.asarray(total / count)


def _reduce_backward(grad, reduction: str, count):
    """dL/d(each per-element loss): the incoming gradient itself ('none': one per element;
    'sum': one number for all), or divided by the count ('mean')."""
    if reduction != "mean":
        return grad
    with np.errstate(invalid="ignore", divide="ignore"):
        return grad / count


def _one_launch(x, reduction: str) -> bool:
    """Whether a class-index loss on a GPU runs as ONE kernel that writes the reduced loss and,
    for backward, its gradient: for 'sum' and 'mean' of inputs that fit one block's work
    (``kernels/cuda/loss.py``). Otherwise one kernel per step: rows, their sum, the gradient."""
    from ..kernels.cuda.loss import ONE_BLOCK_MAX_ELEMENTS
    return reduction != "none" and x.size <= ONE_BLOCK_MAX_ELEMENTS


def _times_incoming(grad_x, grad):
    """``grad_x``, a gradient computed in forward for dL/dloss = 1, times the incoming ``grad``:
    no launch for backward's implicit seed (``autograd.is_implicit_seed``), else one."""
    return grad_x if is_implicit_seed(grad) else grad_x * grad


def _check_input(op: str, input) -> None:
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: expected input to be a Tensor, got {type(input).__name__}")
    if input.dtype.kind != "f":
        raise NotImplementedError(f"{op}: expected a floating-point input, got dtype {input.dtype}")


def _check_same_shape(op: str, input, target) -> None:
    if not isinstance(target, Tensor):
        raise TypeError(f"{op}: expected target to be a Tensor, got {type(target).__name__}")
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"{op}: target of shape {tuple(target.shape)} must have the same shape as input "
                         f"{tuple(input.shape)}")


def _check_broadcasts_to(op: str, name: str, tensor, shape) -> None:
    """``tensor`` (if given) must broadcast to ``shape`` without making it larger."""
    if tensor is None:
        return
    try:
        ok = np.broadcast_shapes(tensor.shape, shape) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise RuntimeError(f"{op}: {name} of shape {tuple(tensor.shape)} cannot be broadcast to input of "
                           f"shape {tuple(shape)}")


def _common_float(input, *others):
    """Promote input and the other tensors (None allowed) to one dtype, PyTorch's rule."""
    dtype = input.dtype
    for t in others:
        if t is not None:
            dtype = _dt.promote_types(dtype, t.dtype)
    return tuple(t if t is None or t.dtype == dtype else t.to(dtype) for t in (input,) + others)


# -------------------------------------------------------------------- class-index targets
def _classes_last(xp, x):
    """Move the class dim (dim 1, or dim 0 of an unbatched (C,) input) to the end: (N, d1.., C)."""
    return xp.moveaxis(x, 1, -1) if x.ndim >= 2 else x


def _classes_back(xp, x):
    """Undo :func:`_classes_last`."""
    return xp.moveaxis(x, -1, 1) if x.ndim >= 2 else x


def _class_index_targets(op: str, xp, target, num_classes: int, weight, ignore_index: int, dtype):
    """Read class-index targets. Returns, per sample:

      ``label``   the class, made safe to index with (0 where ignored or invalid);
      ``valid``   where the target is not ``ignore_index``;
      ``sample_weight``  the class weight ``weight[label]`` (1 without weights), 0 where the
                  target is ``ignore_index``: such samples count for nothing, not even in the mean;
      ``bad``     where the label is outside [0, C) on the GPU (None on the CPU, which raises).
    """
    target = target.astype(xp.int64, copy=False)
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= num_classes))
    if xp is np:  # checking costs nothing on the CPU; on a GPU it would wait for the device
        if bad.any():
            raise IndexError(f"{op}: target {target[bad][0]} is out of bounds for {num_classes} classes "
                             f"(expected labels in [0, {num_classes - 1}] or ignore_index={ignore_index})")
        bad = None
    label = xp.where(valid if bad is None else valid & ~bad, target, 0)
    sample_weight = valid.astype(dtype) if weight is None else xp.where(valid, weight.astype(dtype)[label], 0)
    return label, valid, sample_weight, bad


def _one_hot(xp, label, num_classes: int, dtype):
    """(..., C) array with 1 at each sample's class and 0 elsewhere."""
    return (label[..., None] == xp.arange(num_classes)).astype(dtype)


def _check_class_target(op: str, input, target, weight) -> None:
    """Class indices: integer dtype, shape of input without the class dim, one weight per class."""
    if target.dtype not in (_dt.int64, _dt.uint8):
        hint = ""
        if target.dtype.kind == "f" and op == "cross_entropy":
            hint = f" (float targets are class probabilities and need the input's shape {tuple(input.shape)})"
        raise RuntimeError(f"{op}: expected target dtype int64 (class indices) or uint8, got {target.dtype}{hint}")
    expected = tuple(input.shape[:1] + input.shape[2:]) if input.ndim >= 2 else ()
    if tuple(target.shape) != expected:
        message = (f"{op}: expected target of shape {expected} for input of shape {tuple(input.shape)}, "
                   f"got target of shape {tuple(target.shape)}")
        if input.ndim >= 2 and target.ndim >= 1 and target.shape[0] != input.shape[0]:
            raise ValueError(message)  # batch sizes differ: PyTorch raises ValueError here
        raise RuntimeError(message)
    _check_weight(op, input, weight)


def _check_weight(op: str, input, weight) -> None:
    num_classes = input.shape[1] if input.ndim >= 2 else input.shape[0]
    if weight is not None and (weight.ndim != 1 or weight.shape[0] != num_classes):
        raise RuntimeError(f"{op}: weight should have one element per class ({num_classes}), got shape "
                           f"{tuple(weight.shape)}")


class CrossEntropy(Function):
    """Cross-entropy of logits z against a target distribution q, per sample:

        loss = -sum_c q_c * log_softmax(z)_c

    with q the one-hot of the class label (times its class weight; 0 for ignored samples), or
    the given class probabilities (times the class weights); label smoothing mixes q with the
    uniform distribution: q <- (1 - eps) * q + eps / C (weighted).

    Backward: dloss/dz_c = softmax(z)_c * sum(q) - q_c, i.e. ``softmax - onehot`` scaled by the
    sample's weight; for probability targets also dloss/dtarget_c = -(1 - eps) * w_c * log_softmax(z)_c.
    """

    @staticmethod
    def forward(ctx, logits, target, weight, ignore_index, reduction, label_smoothing):
        xp = ctx.xp
        ctx.fused = target.dtype.kind != "f" and label_smoothing == 0 and uses_cuda(logits)
        ctx.reduced = ctx.fused and _one_launch(logits, reduction)
        if ctx.reduced:  # the loss and its gradient in one launch (kernels/cuda/loss.py)
            from ..kernels.cuda.loss import reduced_loss_cuda
            loss, grad_logits = reduced_loss_cuda("cross_entropy_reduced", logits, target, weight, ignore_index,
                                                  reduction, ctx.needs_input_grad[0])
            ctx.save_for_backward(grad_logits)
            return loss
        if ctx.fused:  # class indices on a GPU: one kernel for the losses, one for their sum or mean
            from ..kernels.cuda.loss import cross_entropy_forward_cuda, loss_reduce_cuda
            losses, sample_weight, row_max, log_sum = cross_entropy_forward_cuda(logits, target, weight,
                                                                                 ignore_index)
            ctx.save_for_backward(logits, target, row_max, log_sum, sample_weight)
            ctx.reduction, ctx.count, ctx.ignore_index = reduction, None, ignore_index
            if reduction == "none":
                return losses
            loss, ctx.count = loss_reduce_cuda(losses, sample_weight, reduction)
            return loss
        z = _classes_last(xp, logits)
        num_classes = z.shape[-1]
        logp = log_softmax_array(xp, z, -1)
        class_weight = 1 if weight is None else weight.astype(z.dtype)
        eps = label_smoothing
        bad = None
        if target.dtype.kind == "f":  # class probabilities, same shape as the logits
            q = (_classes_last(xp, target) * (1 - eps) + eps / num_classes) * class_weight
            count = logp.size // num_classes  # the mean is over samples
        else:
            label, valid, sample_weight, bad = _class_index_targets(
                "cross_entropy", xp, target, num_classes, weight, ignore_index, z.dtype)
            q = (1 - eps) * sample_weight[..., None] * _one_hot(xp, label, num_classes, z.dtype)
            if eps:
                q = q + (eps / num_classes) * class_weight * valid[..., None].astype(z.dtype)
            count = sample_weight.sum()  # the mean is weighted, as PyTorch's
        losses = -(q * logp).sum(axis=-1)
        if bad is not None:
            losses = xp.where(bad, xp.nan, losses)  # GPU: an invalid label makes its loss NaN
        ctx.save_for_backward(logp, q, class_weight, bad)
        ctx.reduction, ctx.count, ctx.eps = reduction, count, eps
        return _reduce(xp, losses, reduction, count)

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        if ctx.reduced:  # forward computed the gradient for dL/dloss = 1
            return _times_incoming(ctx.saved_tensors[0], grad), None, None, None, None, None
        if ctx.fused:  # softmax - onehot, weighted and scaled, in one kernel
            from ..kernels.cuda.loss import cross_entropy_backward_cuda
            logits, target, row_max, log_sum, sample_weight = ctx.saved_tensors
            grad_logits = None
            if ctx.needs_input_grad[0]:  # ('mean': the kernel divides grad by the count itself)
                grad_logits = cross_entropy_backward_cuda(logits, target, row_max, log_sum, sample_weight, grad,
                                                          ctx.ignore_index,
                                                          ctx.count if ctx.reduction == "mean" else None)
            return grad_logits, None, None, None, None, None
        logp, q, class_weight, bad = ctx.saved_tensors
        per_sample = _reduce_backward(grad, ctx.reduction, ctx.count)[..., None]  # (..., 1)
        grad_logits = grad_target = None
        if ctx.needs_input_grad[0]:
            q_sum = q.sum(axis=-1, keepdims=True)
            with np.errstate(invalid="ignore"):  # 'mean' with every sample ignored: 0 * (1/0)
                grad_z = (xp.exp(logp) * q_sum - q) * per_sample
            grad_z = xp.where(q_sum == 0, 0, grad_z)  # a sample that counts for nothing: no gradient (as PyTorch)
            if bad is not None:
                grad_z = xp.where(bad[..., None], xp.nan, grad_z)
            grad_logits = _classes_back(xp, grad_z)
        if ctx.needs_input_grad[1]:
            grad_target = _classes_back(xp, -(1 - ctx.eps) * class_weight * logp * per_sample)
        return grad_logits, grad_target, None, None, None, None


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """Cross-entropy between logits ``input`` and ``target``: log-softmax and negative
    log-likelihood in one stable step (see :class:`CrossEntropy`).

    Args:
        input: logits of shape (N, C), (N, C, d1, d2, ...) or (C,).
        target: class indices (int64 or uint8) of shape (N,), (N, d1, ...) or (), or class
            probabilities (float) of the same shape as ``input``.
        weight: (C,) rescaling of each class; with 'mean' the loss is divided by the summed
            weights of the targets.
        ignore_index: class-index targets equal to it contribute nothing (not even to the mean).
        reduction: 'none' | 'mean' | 'sum'. (``size_average`` / ``reduce``: deprecated, as in PyTorch.)
        label_smoothing: in [0, 1]; the target becomes (1 - eps) * target + eps / C.

    Labels outside [0, C) raise IndexError on the CPU. On a GPU checking them would make the
    host wait for the device, so there a sample with an invalid label gets a NaN loss (and NaN
    gradient) instead, which shows up in the reduced loss.
    """
    op = "cross_entropy"
    reduction = _reduction(op, size_average, reduce, reduction)
    _check_input(op, input)
    if not isinstance(target, Tensor):
        raise TypeError(f"{op}: expected target to be a Tensor, got {type(target).__name__}")
    if input.ndim == 0:
        raise RuntimeError(f"{op}: input must have a class dim, got a 0-d tensor")
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"{op}: label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")
    if tuple(target.shape) == tuple(input.shape):  # same shape: class probabilities
        if target.dtype.kind != "f":
            raise RuntimeError(f"{op}: expected a floating-point target for class probabilities (target "
                               f"and input both of shape {tuple(input.shape)}), got dtype {target.dtype}")
        if ignore_index >= 0:
            raise RuntimeError(f"{op}: ignore_index={ignore_index} is not supported for probability targets")
        _check_weight(op, input, weight)
        input, target = _common_float(input, target)
    else:
        _check_class_target(op, input, target, weight)
    return CrossEntropy.apply(input, target, weight, ignore_index, reduction, label_smoothing)


class NLLLoss(Function):
    """Negative log-likelihood of log-probabilities x, per sample: loss = -w[t] * x[t]
    (0 for ignored samples).

    Backward: dloss/dx = -w[t] * onehot(t): only the target's entry gets a gradient.
    """

    @staticmethod
    def forward(ctx, x, target, weight, ignore_index, reduction):
        xp = ctx.xp
        ctx.fused = uses_cuda(x)
        ctx.reduced = ctx.fused and _one_launch(x, reduction)
        if ctx.reduced:  # the loss and its gradient in one launch (kernels/cuda/loss.py)
            from ..kernels.cuda.loss import reduced_loss_cuda
            loss, grad_x = reduced_loss_cuda("nll_reduced", x, target, weight, ignore_index, reduction,
                                             ctx.needs_input_grad[0])
            ctx.save_for_backward(grad_x)
            return loss
        if ctx.fused:  # on a GPU: one kernel for the rows, one for their sum or mean (kernels/cuda/loss.py)
            from ..kernels.cuda.loss import loss_reduce_cuda, nll_forward_cuda
            losses, sample_weight = nll_forward_cuda(x, target, weight, ignore_index)
            ctx.save_for_backward(target, sample_weight)
            ctx.shape, ctx.reduction, ctx.count, ctx.ignore_index = x.shape, reduction, None, ignore_index
            if reduction == "none":
                return losses
            loss, ctx.count = loss_reduce_cuda(losses, sample_weight, reduction)
            return loss
        x_last = _classes_last(xp, x)
        num_classes = x_last.shape[-1]
        label, valid, sample_weight, bad = _class_index_targets("nll_loss", xp, target, num_classes, weight,
                                                                ignore_index, x.dtype)
        picked = xp.take_along_axis(x_last, label[..., None], axis=-1)[..., 0]
        # An ignored sample's picked log-probability may be -inf; zero it (0 * -inf would be NaN).
        losses = -sample_weight * xp.where(valid, picked, 0)
        if bad is not None:
            losses = xp.where(bad, xp.nan, losses)
        ctx.save_for_backward(label, sample_weight, bad)
        ctx.num_classes, ctx.reduction, ctx.count = num_classes, reduction, sample_weight.sum()
        return _reduce(xp, losses, reduction, ctx.count)

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        if ctx.reduced:  # forward computed the gradient for dL/dloss = 1
            return _times_incoming(ctx.saved_tensors[0], grad), None, None, None, None
        if ctx.fused:  # the same gradient in one GPU kernel ('mean': it divides by the count itself)
            from ..kernels.cuda.loss import nll_backward_cuda
            target, sample_weight = ctx.saved_tensors
            return (nll_backward_cuda(ctx.shape, target, sample_weight, grad, ctx.ignore_index,
                                      ctx.count if ctx.reduction == "mean" else None), None, None, None, None)
        label, sample_weight, bad = ctx.saved_tensors
        with np.errstate(invalid="ignore"):  # 'mean' with every sample ignored: 0 * (1/0) = NaN, as PyTorch
            per_sample = _reduce_backward(grad, ctx.reduction, ctx.count) * sample_weight
        grad_x = -_one_hot(xp, label, ctx.num_classes, sample_weight.dtype) * per_sample[..., None]
        if bad is not None:
            grad_x = xp.where(bad[..., None], xp.nan, grad_x)
        return _classes_back(xp, grad_x), None, None, None, None


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    """Negative log-likelihood: ``-input[n, target[n]]`` (times ``weight[target[n]]``), for
    ``input`` holding log-probabilities (N, C), (N, C, d1, ...) or (C,) and class-index
    ``target`` (N,), (N, d1, ...) or (). 'mean' divides by the summed weights of the targets.

    Out-of-range labels raise IndexError on the CPU and give a NaN loss on a GPU (see
    :func:`cross_entropy`).
    """
    op = "nll_loss"
    reduction = _reduction(op, size_average, reduce, reduction)
    _check_input(op, input)
    if not isinstance(target, Tensor):
        raise TypeError(f"{op}: expected target to be a Tensor, got {type(target).__name__}")
    if input.ndim == 0:
        raise RuntimeError(f"{op}: input must have a class dim, got a 0-d tensor")
    _check_class_target(op, input, target, weight)
    return NLLLoss.apply(input, target, weight, ignore_index, reduction)


# ----------------------------------------------------------------------------- regression
class MSELoss(Function):
    """loss = (x - y)^2 per element.  Backward: dx = 2 (x - y) * dloss, dy = -dx."""

    @staticmethod
    def forward(ctx, x, y, reduction):
        diff = x - y
        losses = diff * diff
        ctx.save_for_backward(diff)
        ctx.reduction, ctx.count = reduction, losses.size
        return _reduce(ctx.xp, losses, reduction, losses.size)

    @staticmethod
    def backward(ctx, grad):
        (diff,) = ctx.saved_tensors
        grad_x = 2 * diff * _reduce_backward(grad, ctx.reduction, ctx.count)
        return grad_x, -grad_x, None


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Mean squared error ``(input - target)^2``, reduced. ``target`` broadcasts to ``input``
    (with PyTorch's warning when the shapes differ). ``weight`` is not supported."""
    op = "mse_loss"
    reduction = _reduction(op, size_average, reduce, reduction)
    _check_input(op, input)
    if not isinstance(target, Tensor):
        raise TypeError(f"{op}: expected target to be a Tensor, got {type(target).__name__}")
    if weight is not None:
        raise NotImplementedError(f"{op}: weight is not supported")
    if tuple(target.shape) != tuple(input.shape):
        try:
            np.broadcast_shapes(input.shape, target.shape)
        except ValueError:
            raise RuntimeError(f"{op}: target of shape {tuple(target.shape)} cannot be broadcast to input "
                               f"of shape {tuple(input.shape)}") from None
        warnings.warn(f"{op}: Using a target size ({tuple(target.shape)}) that is different to the input size "
                      f"({tuple(input.shape)}). This will likely lead to incorrect results due to broadcasting. "
                      "Please ensure they have the same size.", UserWarning, stacklevel=2)
    input, target = _common_float(input, target)
    return MSELoss.apply(input, target, reduction)


# ------------------------------------------------------------------------------- binary
class BinaryCrossEntropy(Function):
    """loss = -w * (y log p + (1 - y) log(1 - p)) per element, each log clamped at -100 (so
    p = 0 or 1 gives a large finite loss, not inf).

    Backward: dp = w (p - y) / max(p (1 - p), 1e-12) * dloss;  dy = w (log(1 - p) - log p) * dloss.
    """

    @staticmethod
    def forward(ctx, p, y, weight, reduction):
        xp = ctx.xp
        with np.errstate(divide="ignore", invalid="ignore"):  # log 0 = -inf is clamped just below
            log_p, log_1mp = xp.log(p), xp.log(1 - p)
        w = 1 if weight is None else weight.astype(p.dtype)
        losses = -w * (y * xp.maximum(log_p, -100) + (1 - y) * xp.maximum(log_1mp, -100))
        ctx.save_for_backward(p, y, w, log_p, log_1mp)
        ctx.reduction, ctx.count = reduction, losses.size
        return _reduce(xp, losses, reduction, losses.size)

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        p, y, w, log_p, log_1mp = ctx.saved_tensors
        g = w * _reduce_backward(grad, ctx.reduction, ctx.count)
        grad_p = g * (p - y) / xp.maximum(p * (1 - p), 1e-12) if ctx.needs_input_grad[0] else None
        grad_y = g * (log_1mp - log_p) if ctx.needs_input_grad[1] else None
        return grad_p, grad_y, None, None


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """Binary cross-entropy between probabilities ``input`` (in [0, 1]) and ``target`` of the
    same shape; ``weight`` (broadcast to the input) rescales each element's loss."""
    op = "binary_cross_entropy"
    reduction = _reduction(op, size_average, reduce, reduction)
    _check_input(op, input)
    _check_same_shape(op, input, target)
    _check_broadcasts_to(op, "weight", weight, input.shape)
    if input.xp is np and input.data.size and ((input.data < 0) | (input.data > 1)).any():
        # On a GPU this check would make the host wait; there such inputs give a NaN loss.
        raise RuntimeError(f"{op}: all elements of input should be between 0 and 1, got values from "
                           f"{input.data.min()} to {input.data.max()}")
    input, target = _common_float(input, target)
    return BinaryCrossEntropy.apply(input, target, weight, reduction)


class BinaryCrossEntropyWithLogits(Function):
    """BCE of sigmoid(x) against y, computed from the logit x without forming sigmoid(x):

        loss = w * ((1 - y) x + l * softplus(-x)),   l = 1 + (pos_weight - 1) y

    since -log sigmoid(x) = softplus(-x) and -log(1 - sigmoid(x)) = x + softplus(-x); softplus
    of any x is evaluated without overflow. (Without pos_weight, l = 1.)

    Backward: dx = w ((1 - y) - l (1 - sigmoid(x))) * dloss, which is w (sigmoid(x) - y) for
    l = 1;  dy = w (-x + (pos_weight - 1) softplus(-x)) * dloss.
    """

    @staticmethod
    def forward(ctx, x, y, weight, pos_weight, reduction):
        xp = ctx.xp
        softplus_neg = xp.maximum(-x, 0) + xp.log1p(xp.exp(-xp.abs(x)))  # log(1 + e^-x)
        w = 1 if weight is None else weight.astype(x.dtype)
        pw_minus_1 = 0 if pos_weight is None else pos_weight.astype(x.dtype) - 1
        losses = w * ((1 - y) * x + (1 + pw_minus_1 * y) * softplus_neg)
        ctx.save_for_backward(x, y, w, pw_minus_1, softplus_neg)
        ctx.reduction, ctx.count = reduction, losses.size
        return _reduce(xp, losses, reduction, losses.size)

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        x, y, w, pw_minus_1, softplus_neg = ctx.saved_tensors
        g = w * _reduce_backward(grad, ctx.reduction, ctx.count)
        grad_x = grad_y = None
        if ctx.needs_input_grad[0]:
            grad_x = g * ((1 - y) - (1 + pw_minus_1 * y) * (1 - stable_sigmoid(xp, x)))
        if ctx.needs_input_grad[1]:
            grad_y = g * (-x + pw_minus_1 * softplus_neg)
        return grad_x, grad_y, None, None, None


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
    """Binary cross-entropy of ``sigmoid(input)`` against ``target`` (same shape), computed
    stably from the logits (see :class:`BinaryCrossEntropyWithLogits`).

    Args:
        weight: broadcast to the input; rescales each element's loss.
        pos_weight: broadcast to the input (typically (C,), one per class); multiplies the loss
            of the positive examples, to trade recall against precision.
    """
    op = "binary_cross_entropy_with_logits"
    reduction = _reduction(op, size_average, reduce, reduction)
    _check_input(op, input)
    _check_same_shape(op, input, target)
    _check_broadcasts_to(op, "weight", weight, input.shape)
    _check_broadcasts_to(op, "pos_weight", pos_weight, input.shape)
    input, target = _common_float(input, target)
    return BinaryCrossEntropyWithLogits.apply(input, target, weight, pos_weight, reduction)
