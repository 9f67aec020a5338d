"""Losses: parity with PyTorch over every reduction and option, finite-difference gradients,
stability at huge logits, and bad-input errors."""
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import tinynet
import tinynet.functional as F
from helpers import arrays, check_gradients, compare_with_torch, torch

TF = torch.nn.functional if torch is not None else None
DTYPES = [np.float32, np.float64]
REDUCTIONS = ["mean", "sum", "none"]


# ------------------------------------------------------------------------- cross-entropy
@st.composite
def class_index_case(draw, dtype):
    """Logits, int64 labels and options: (N, C), (N, C, d1, ...) or unbatched (C,); optional class
    weights, ignored labels (never all of them) and label smoothing."""
    n, c = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    layout = draw(st.sampled_from(["unbatched", "batched", "spatial1", "spatial2"]))
    spatial = {"unbatched": (), "batched": (), "spatial1": (3,), "spatial2": (2, 3)}[layout]
    x_shape = (c,) if layout == "unbatched" else (n, c) + spatial
    t_shape = () if layout == "unbatched" else (n,) + spatial
    x = draw(arrays(x_shape, dtype, low=-5, high=5))
    ignore_index = draw(st.sampled_from([-100, 0])) if c > 1 else -100
    labels = draw(hnp.arrays(np.int64, t_shape, elements=st.integers(0, c - 1)))
    ignored = draw(hnp.arrays(np.bool_, t_shape)) if draw(st.booleans()) else np.zeros(t_shape, bool)
    target = np.where(ignored, ignore_index, labels)
    # At least one sample counts, so that 'mean' is not 0/0 (that case has its own test).
    target.reshape(-1)[0] = c - 1 if ignore_index == 0 else labels.reshape(-1)[0]
    weight = draw(st.none() | arrays((c,), dtype, low=0.125, high=1.0))
    options = dict(ignore_index=ignore_index, reduction=draw(st.sampled_from(REDUCTIONS)),
                   label_smoothing=draw(st.sampled_from([0.0, 0.15])))
    return x, target, weight, options


def _with_weight(fn, x, target, weight, options):
    """(call, arrays, requires_grad) so that weight is passed as a tensor that needs no grad."""
    if weight is None:
        return (lambda a, b: fn(a, b, **options)), [x, target], None
    return (lambda a, b, w: fn(a, b, w, **options)), [x, target, weight], [True, False, False]


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_cross_entropy_class_indices_matches_torch(device, dtype, data):
    x, target, weight, options = data.draw(class_index_case(dtype))
    ours, arrays_, requires_grad = _with_weight(F.cross_entropy, x, target, weight, options)
    theirs, _, _ = _with_weight(TF.cross_entropy, x, target, weight, options)
    compare_with_torch(ours, theirs, arrays_, device=device, requires_grad=requires_grad)


@given(data=st.data())
def test_cross_entropy_class_indices_gradients(device, data):
    x, target, weight, options = data.draw(class_index_case(np.float64))
    fn, arrays_, requires_grad = _with_weight(F.cross_entropy, x, target, weight, options)
    check_gradients(fn, arrays_, device=device, requires_grad=requires_grad or [True, False])


@st.composite
def probability_case(draw, dtype):
    """Logits and class-probability targets of the same shape, optional weights and smoothing."""
    shape = draw(st.sampled_from([(3,), (2, 4), (3, 2, 2), (2, 3, 2, 2)]))
    x = draw(arrays(shape, dtype, low=-5, high=5))
    raw = draw(arrays(shape, dtype, low=0.0625, high=1.0))
    class_dim = 0 if len(shape) == 1 else 1
    target = (raw / raw.sum(axis=class_dim, keepdims=True)).astype(dtype)
    weight = draw(st.none() | arrays((shape[class_dim],), dtype, low=0.125, high=1.0))
    options = dict(reduction=draw(st.sampled_from(REDUCTIONS)),
                   label_smoothing=draw(st.sampled_from([0.0, 0.2])))
    return x, target, weight, options


def _prob_call(fn, weight, options):
    if weight is None:
        return lambda a, b: fn(a, b, **options)
    return lambda a, b, w: fn(a, b, w, **options)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_cross_entropy_probabilities_matches_torch(device, dtype, data):
    x, target, weight, options = data.draw(probability_case(dtype))
    arrays_ = [x, target] + ([] if weight is None else [weight])
    compare_with_torch(_prob_call(F.cross_entropy, weight, options), _prob_call(TF.cross_entropy, weight, options),
                       arrays_, device=device, requires_grad=[True, True, False][:len(arrays_)])


@given(data=st.data())
def test_cross_entropy_probabilities_gradients(device, data):
    x, target, weight, options = data.draw(probability_case(np.float64))
    arrays_ = [x, target] + ([] if weight is None else [weight])
    check_gradients(_prob_call(F.cross_entropy, weight, options), arrays_, device=device,
                    requires_grad=[True, True, False][:len(arrays_)])


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_huge_logits_are_finite(device, dtype):
    x = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4], [-1e4, -1e4, 1e4]], dtype=dtype)
    target = np.array([2, 0, 2])
    out, = compare_with_torch(F.cross_entropy, TF.cross_entropy, [x, target], device=device)
    assert np.isfinite(out.item())
    logits = tinynet.tensor(x, device=device, requires_grad=True)
    F.cross_entropy(logits, tinynet.tensor(target, device=device)).backward()
    grad = logits.grad.cpu().numpy()
    assert np.isfinite(grad).all()
    # softmax - onehot, over N = 3: row 0 puts all mass on class 0 but the label is 2.
    np.testing.assert_allclose(grad[0], np.array([1.0, 0.0, -1.0]) / 3, atol=1e-7)


def test_cross_entropy_all_ignored_mean_is_nan_like_torch(device):
    x = np.zeros((2, 3))
    target = np.array([-100, -100])
    out, = compare_with_torch(F.cross_entropy, TF.cross_entropy, [x, target], device=device, grad=False)
    assert np.isnan(out.item())


def test_cross_entropy_all_ignored_mean_gives_zero_gradient_like_torch(device):
    logits = tinynet.tensor(np.ones((2, 3)), device=device, requires_grad=True)
    F.cross_entropy(logits, tinynet.tensor(np.array([-100, -100]), device=device)).backward()
    np.testing.assert_array_equal(logits.grad.cpu().numpy(), np.zeros((2, 3)))


def test_cross_entropy_uint8_targets(device):
    x = np.random.default_rng(0).standard_normal((3, 4))
    target = np.array([0, 3, 1], dtype=np.uint8)
    compare_with_torch(F.cross_entropy, TF.cross_entropy, [x, target], device=device)


def test_legacy_size_average_and_reduce(device):
    x, target = np.random.default_rng(1).standard_normal((3, 4)), np.array([0, 1, 2])
    with pytest.warns(UserWarning, match="size_average"):
        summed = F.cross_entropy(tinynet.tensor(x, device=device), tinynet.tensor(target, device=device),
                                 size_average=False)
    expected = TF.cross_entropy(torch.tensor(x), torch.tensor(target), reduction="sum")
    np.testing.assert_allclose(summed.item(), expected.item())


# ------------------------------------------------------------------------------- nll_loss
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_nll_loss_matches_torch(device, dtype, data):
    x, target, weight, options = data.draw(class_index_case(dtype))
    options.pop("label_smoothing")
    ours, arrays_, requires_grad = _with_weight(F.nll_loss, x, target, weight, options)
    theirs, _, _ = _with_weight(TF.nll_loss, x, target, weight, options)
    compare_with_torch(ours, theirs, arrays_, device=device, requires_grad=requires_grad)


@given(data=st.data())
def test_nll_loss_gradients(device, data):
    x, target, weight, options = data.draw(class_index_case(np.float64))
    options.pop("label_smoothing")
    fn, arrays_, requires_grad = _with_weight(F.nll_loss, x, target, weight, options)
    check_gradients(fn, arrays_, device=device, requires_grad=requires_grad or [True, False])


def test_nll_loss_ignores_minus_inf_of_ignored_samples(device):
    logp = np.array([[-np.inf, 0.0], [-0.5, -1.0]])
    target = np.array([-100, 1])
    out, = compare_with_torch(F.nll_loss, TF.nll_loss, [logp, target], device=device)
    assert out.item() == 1.0


# ------------------------------------------------------------------------------- mse_loss
@st.composite
def same_shape_pair(draw, dtype, low=-2.0, high=2.0, target_low=None, target_high=None):
    shape = draw(st.sampled_from([(), (4,), (2, 3), (2, 1, 3)]))
    target_low = low if target_low is None else target_low
    target_high = high if target_high is None else target_high
    return draw(arrays(shape, dtype, low, high)), draw(arrays(shape, dtype, target_low, target_high))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(data=st.data())
def test_mse_loss_matches_torch(device, dtype, reduction, data):
    x, y = data.draw(same_shape_pair(dtype))
    compare_with_torch(lambda a, b: F.mse_loss(a, b, reduction=reduction),
                       lambda a, b: TF.mse_loss(a, b, reduction=reduction), [x, y], device=device)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(data=st.data())
def test_mse_loss_gradients(device, reduction, data):
    x, y = data.draw(same_shape_pair(np.float64))
    check_gradients(lambda a, b: F.mse_loss(a, b, reduction=reduction), [x, y], device=device)


def test_mse_loss_broadcast_target_warns_like_torch(device):
    x, y = np.arange(6.0).reshape(2, 3), np.array([1.0, 0.0, 2.0])
    with pytest.warns(UserWarning, match="mse_loss.*target size"):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*torch\.Size")  # torch's own copy of the warning
            compare_with_torch(lambda a, b: F.mse_loss(a, b, reduction="none"),
                               lambda a, b: TF.mse_loss(a, b, reduction="none"), [x, y], device=device)


# ------------------------------------------------------------------- binary cross-entropy
def _bce_call(fn, weight, **options):
    if weight is None:
        return lambda a, b: fn(a, b, **options)
    return lambda a, b, w: fn(a, b, w, **options)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(data=st.data())
def test_binary_cross_entropy_matches_torch(device, dtype, reduction, data):
    p, y = data.draw(same_shape_pair(dtype, 0.03125, 0.96875, 0.0, 1.0))
    weight = data.draw(st.none() | arrays(p.shape[-1:], dtype, 0.125, 2.0))
    arrays_ = [p, y] + ([] if weight is None else [weight])
    compare_with_torch(_bce_call(F.binary_cross_entropy, weight, reduction=reduction),
                       _bce_call(TF.binary_cross_entropy, weight, reduction=reduction), arrays_,
                       device=device, requires_grad=[True, True, False][:len(arrays_)])


@given(data=st.data())
def test_binary_cross_entropy_gradients(device, data):
    p, y = data.draw(same_shape_pair(np.float64, 0.05, 0.95, 0.0, 1.0))
    weight = data.draw(st.none() | arrays(p.shape[-1:], np.float64, 0.1, 2.0))
    arrays_ = [p, y] + ([] if weight is None else [weight])
    check_gradients(_bce_call(F.binary_cross_entropy, weight, reduction="sum"), arrays_, device=device,
                    requires_grad=[True, True, False][:len(arrays_)])


def test_binary_cross_entropy_clamps_log_at_minus_100(device):
    p, y = np.array([0.0, 1.0, 0.5]), np.array([1.0, 0.0, 0.5])
    out, = compare_with_torch(lambda a, b: F.binary_cross_entropy(a, b, reduction="none"),
                              lambda a, b: TF.binary_cross_entropy(a, b, reduction="none"), [p, y],
                              device=device, requires_grad=[True, False])
    np.testing.assert_allclose(out.detach().cpu().numpy(), [100.0, 100.0, np.log(2)])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(data=st.data())
def test_binary_cross_entropy_with_logits_matches_torch(device, dtype, reduction, data):
    x, y = data.draw(same_shape_pair(dtype, -10.0, 10.0, 0.0, 1.0))
    weight = data.draw(st.none() | arrays(x.shape[-1:], dtype, 0.125, 2.0))
    pos_weight = data.draw(st.none() | arrays(x.shape[-1:], dtype, 0.125, 3.0))

    def call(fn):
        return lambda a, b, w=None, pw=None: fn(a, b, w, reduction=reduction, pos_weight=pw)
    # None arguments pass through as None (compare_with_torch only converts arrays).
    compare_with_torch(call(F.binary_cross_entropy_with_logits), call(TF.binary_cross_entropy_with_logits),
                       [x, y, weight, pos_weight], device=device, requires_grad=[True, True, False, False])


@given(data=st.data())
def test_binary_cross_entropy_with_logits_gradients(device, data):
    x, y = data.draw(same_shape_pair(np.float64, -5.0, 5.0, 0.0, 1.0))
    weight = data.draw(st.none() | arrays(x.shape[-1:], np.float64, 0.1, 2.0))
    pos_weight = data.draw(st.none() | arrays(x.shape[-1:], np.float64, 0.1, 3.0))
    check_gradients(lambda a, b, w, pw: F.binary_cross_entropy_with_logits(a, b, w, pos_weight=pw),
                    [x, y, weight, pos_weight], device=device, requires_grad=[True, True, False, False])


def test_binary_cross_entropy_with_logits_huge_logits(device):
    x, y = np.array([1e4, -1e4, 1e4, -1e4]), np.array([1.0, 0.0, 0.0, 1.0])
    out, = compare_with_torch(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction="none"),
                              lambda a, b: TF.binary_cross_entropy_with_logits(a, b, reduction="none"),
                              [x, y], device=device)
    np.testing.assert_allclose(out.detach().cpu().numpy(), [0.0, 0.0, 1e4, 1e4])


# --------------------------------------------------------------------------------- errors
def _t(array, device):
    return tinynet.tensor(np.asarray(array), device=device)


def test_float_targets_where_class_indices_are_needed(device):
    x = _t(np.zeros((3, 4), np.float32), device)
    with pytest.raises(RuntimeError, match="cross_entropy.*float32"):
        F.cross_entropy(x, _t(np.array([0.0, 1.0, 2.0], np.float32), device))
    with pytest.raises(RuntimeError, match="nll_loss.*float32"):
        F.nll_loss(x, _t(np.array([0.0, 1.0, 2.0], np.float32), device))
    with pytest.raises(RuntimeError, match="cross_entropy.*int32"):
        F.cross_entropy(x, _t(np.array([0, 1, 2], np.int32), device))
    with pytest.raises(RuntimeError, match="cross_entropy.*floating-point target.*int64"):
        F.cross_entropy(x, _t(np.zeros((3, 4), np.int64), device))


@pytest.mark.parametrize("op", ["cross_entropy", "nll_loss"])
def test_target_shape_mismatch_names_both_shapes(device, op):
    fn = getattr(F, op)
    with pytest.raises(ValueError, match=rf"{op}.*\(3,\).*\(3, 4\).*\(2,\)"):
        fn(_t(np.zeros((3, 4)), device), _t(np.array([0, 1]), device))
    with pytest.raises(RuntimeError, match=rf"{op}.*\(2, 4\).*\(2, 3, 4\).*\(2, 3\)"):
        fn(_t(np.zeros((2, 3, 4)), device), _t(np.zeros((2, 3), np.int64), device))


@pytest.mark.parametrize("op", ["cross_entropy", "nll_loss"])
@pytest.mark.parametrize("label", [5, -3])
def test_out_of_range_label_raises_on_cpu(op, label):
    fn = getattr(F, op)
    with pytest.raises(IndexError, match=rf"{op}: target {label} is out of bounds for 4 classes"):
        fn(tinynet.zeros(3, 4), tinynet.tensor([0, label, 1]))
    with pytest.raises(IndexError, match=rf"{op}: target {label}"):
        fn(tinynet.zeros(1, 4, 2), tinynet.tensor([[1, label]]))


@pytest.mark.parametrize("op", ["cross_entropy", "nll_loss"])
def test_out_of_range_label_gives_nan_on_gpu(device, op):
    if device == "cpu":
        pytest.skip("the NaN path is the GPU's; the CPU raises (test above)")
    x = tinynet.zeros(3, 4, device=device, requires_grad=True)
    losses = getattr(F, op)(x, tinynet.tensor([0, 7, 1], device=device), reduction="none")
    values = losses.detach().cpu().numpy()
    assert np.isnan(values[1]) and np.isfinite(values[[0, 2]]).all()
    losses.sum().backward()
    assert np.isnan(x.grad.cpu().numpy()[1]).all()


def test_cross_entropy_option_errors(device):
    x, target = _t(np.zeros((3, 4)), device), _t(np.array([0, 1, 2]), device)
    with pytest.raises(RuntimeError, match=r"cross_entropy.*weight.*\(4\).*\(3,\)"):
        F.cross_entropy(x, target, weight=_t(np.ones(3), device))
    with pytest.raises(RuntimeError, match="cross_entropy.*label_smoothing.*1.5"):
        F.cross_entropy(x, target, label_smoothing=1.5)
    with pytest.raises(RuntimeError, match="cross_entropy.*ignore_index=2"):
        F.cross_entropy(x, _t(np.full((3, 4), 0.25), device), ignore_index=2)
    with pytest.raises(RuntimeError, match="cross_entropy.*0-d"):
        F.cross_entropy(_t(np.array(1.0), device), _t(np.array(0), device))


@pytest.mark.parametrize("op", ["cross_entropy", "nll_loss", "mse_loss", "binary_cross_entropy",
                                "binary_cross_entropy_with_logits"])
def test_bad_reduction_and_integer_input(device, op):
    fn = getattr(F, op)
    x = _t(np.full((2, 3), 0.5), device)
    target = _t(np.array([0, 1]), device) if op in ("cross_entropy", "nll_loss") else _t(np.full((2, 3), 0.5), device)
    with pytest.raises(ValueError, match=f"{op}.*'avg'"):
        fn(x, target, reduction="avg")
    with pytest.raises(NotImplementedError, match=f"{op}.*int64"):
        fn(_t(np.ones((2, 3), np.int64), device), target)


def test_binary_losses_shape_errors(device):
    x, y = _t(np.full((3, 4), 0.5), device), _t(np.full((3, 2), 0.5), device)
    with pytest.raises(ValueError, match=r"binary_cross_entropy.*\(3, 2\).*\(3, 4\)"):
        F.binary_cross_entropy(x, y)
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits.*\(3, 2\).*\(3, 4\)"):
        F.binary_cross_entropy_with_logits(x, y)
    with pytest.raises(RuntimeError, match=r"binary_cross_entropy_with_logits.*pos_weight.*\(3,\)"):
        F.binary_cross_entropy_with_logits(x, x, pos_weight=_t(np.ones(3), device))
    with pytest.raises(RuntimeError, match=r"mse_loss.*\(3, 2\).*\(3, 4\)"):
        F.mse_loss(x, y)


def test_binary_cross_entropy_input_outside_0_1_raises_on_cpu():
    with pytest.raises(RuntimeError, match="binary_cross_entropy.*between 0 and 1"):
        F.binary_cross_entropy(tinynet.tensor([0.5, 1.5]), tinynet.tensor([0.0, 1.0]))
