"""Loss layers: each stores its options and calls the matching function in ``nn.functional``
(where the forward and the gradient formula live). ``reduction`` says how the per-sample
losses are combined: ``'mean'`` (default), ``'sum'`` or ``'none'`` (one loss per sample)."""
from __future__ import annotations

import warnings

from .. import functional as F
from ..module import Module

__all__ = ["CrossEntropyLoss", "NLLLoss", "MSELoss", "BCELoss", "BCEWithLogitsLoss"]


def _reduction(layer: str, size_average, reduce, reduction: str) -> str:
    """The reduction to use, honouring PyTorch's deprecated ``size_average``/``reduce`` flags."""
    if size_average is not None or reduce is not None:
        warnings.warn(f"{layer}: size_average and reduce are deprecated, please use reduction= instead")
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "none" if not reduce else ("mean" if size_average else "sum")
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{layer}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    return reduction


class _Loss(Module):
    def __init__(self, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__()
        self.reduction = _reduction(type(self).__name__, size_average, reduce, reduction)


class _WeightedLoss(_Loss):
    """A loss with an optional per-class ``weight``, kept as a buffer (so it follows ``.to()``
    and is saved in ``state_dict``, as in PyTorch)."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)


class CrossEntropyLoss(_WeightedLoss):
    """Cross entropy between class scores (logits) and targets:
    ``loss_n = -weight[y_n] * log_softmax(x_n)[y_n]`` for class-index targets, or
    ``-sum_c weight[c] * p_nc * log_softmax(x_n)_c`` for class-probability targets.

    Backward (done by ``F.cross_entropy``): ``dx_n = (softmax(x_n) - onehot(y_n)) * weight[y_n]``
    (divided by the total weight for ``'mean'``).

    Args:
        weight: a ``(C,)`` tensor of per-class weights. Default: None.
        ignore_index: target value that contributes neither loss nor gradient. Default: -100.
        reduction: ``'none'``, ``'mean'`` or ``'sum'``. Default: ``'mean'``.
        label_smoothing: mix the targets with the uniform distribution by this amount.
            Default: 0.0.

    Shape:
        - Input: ``(N, C)``, ``(C,)`` or ``(N, C, d1, ...)``.
        - Target: ``(N,)`` class indices (int64) or the input's shape (probabilities).
        - Output: a scalar, or ``(N,)`` / ``(N, d1, ...)`` with ``reduction='none'``.

    Example::

        >>> loss = nn.CrossEntropyLoss()
        >>> loss(tinynet.randn(3, 5, requires_grad=True), tinynet.tensor([1, 0, 4])).backward()
    """

    def __init__(self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input, target):
        return F.cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)


class NLLLoss(_WeightedLoss):
    """Negative log-likelihood of class-index targets given log-probabilities:
    ``loss_n = -weight[y_n] * x[n, y_n]`` (put a ``LogSoftmax`` before it).

    Backward (done by ``F.nll_loss``): ``dx[n, y_n] = -weight[y_n]`` (divided by the total
    weight for ``'mean'``), zero elsewhere.

    Args:
        weight: a ``(C,)`` tensor of per-class weights. Default: None.
        ignore_index: target value that is skipped. Default: -100.
        reduction: ``'none'``, ``'mean'`` or ``'sum'``. Default: ``'mean'``.

    Shape:
        - Input: ``(N, C)`` or ``(N, C, d1, ...)`` log-probabilities.
        - Target: ``(N,)`` or ``(N, d1, ...)`` class indices.
        - Output: a scalar, or the target's shape with ``reduction='none'``.
    """

    def __init__(self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean"):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def forward(self, input, target):
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)


class MSELoss(_Loss):
    """Mean squared error: ``loss = (input - target)**2`` elementwise, then reduced.
    Backward (done by ``F.mse_loss``): ``dinput = 2 * (input - target)`` (divided by the
    number of elements for ``'mean'``).

    Args:
        reduction: ``'none'``, ``'mean'`` or ``'sum'``. Default: ``'mean'``.

    Shape: input and target of the same shape; output a scalar, or that shape with ``'none'``.
    """

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction)

    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction)


class BCELoss(_WeightedLoss):
    """Binary cross entropy between probabilities and 0/1 targets:
    ``loss = -weight * (t * log(p) + (1 - t) * log(1 - p))``, logs clamped at -100 as in PyTorch.
    Backward (done by ``F.binary_cross_entropy``): ``dp = weight * (p - t) / (p * (1 - p))``.

    Args:
        weight: rescaling weight, broadcast to the input. Default: None.
        reduction: ``'none'``, ``'mean'`` or ``'sum'``. Default: ``'mean'``.

    Shape: input and target of the same shape; output a scalar, or that shape with ``'none'``.
    """

    def __init__(self, weight=None, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__(weight, size_average, reduce, reduction)

    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Sigmoid followed by binary cross entropy, computed stably in one step from logits ``x``:
    ``loss = -weight * (pos_weight * t * log(sigmoid(x)) + (1 - t) * log(1 - sigmoid(x)))``.
    Backward (done by ``F.binary_cross_entropy_with_logits``): with ``pos_weight=None``,
    ``dx = weight * (sigmoid(x) - t)``.

    Args:
        weight: rescaling weight, broadcast to the input. Default: None.
        reduction: ``'none'``, ``'mean'`` or ``'sum'``. Default: ``'mean'``.
        pos_weight: weight of positive examples, per class (broadcast along the last
            dimension). Default: None.

    Shape: input and target of the same shape; output a scalar, or that shape with ``'none'``.
    """

    def __init__(self, weight=None, size_average=None, reduce=None, reduction: str = "mean", pos_weight=None):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, weight=self.weight, reduction=self.reduction,
                                                  pos_weight=self.pos_weight)
