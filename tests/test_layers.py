"""Layers: constructor signatures, parameter names and shapes, default initialisation, repr,
and forward/backward parity with PyTorch (same weights, same input); errors for bad input."""
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinynet
import tinynet.nn as nn
import tinynet.nn.functional as F
from helpers import TOLERANCES, requires_torch, to_numpy, torch

tnn = torch.nn if torch is not None else None


def requires_ops(*names):
    """Skip until the functional ops a forward pass needs exist (they are written separately)."""
    missing = [n for n in names if not hasattr(F, n)]
    return pytest.mark.skipif(bool(missing), reason=f"tinynet.nn.functional lacks {missing}")


def run_both(make, arrays, *, device="cpu", train=True, grad=True, tol=None):
    """Build the layer in both frameworks with the same weights (torch's, loaded through
    ``load_state_dict``), run it on the same inputs, and compare outputs, the gradients of the
    inputs and parameters for a random cotangent, and the state_dict afterwards (running stats)."""
    layer_th = make(tnn)
    layer = make(nn)
    layer.load_state_dict({k: v.numpy() for k, v in layer_th.state_dict().items()})
    layer.to(device).train(train)
    layer_th.train(train)
    floating = [a.dtype.kind == "f" and grad for a in arrays]
    inputs = [tinynet.tensor(a, device=device, requires_grad=r) for a, r in zip(arrays, floating)]
    inputs_th = [torch.tensor(a, requires_grad=r) for a, r in zip(arrays, floating)]
    out, out_th = layer(*inputs), layer_th(*inputs_th)
    tol = tol or TOLERANCES[np.dtype(np.float32)]
    assert out.shape == tuple(out_th.shape)
    np.testing.assert_allclose(to_numpy(out), to_numpy(out_th), **tol, err_msg="output")
    for key, value in layer_th.state_dict().items():
        np.testing.assert_allclose(to_numpy(layer.state_dict()[key]), to_numpy(value), **tol, err_msg=key)
    if not grad:
        return layer
    cotangent = np.random.default_rng(1).standard_normal(out.shape).astype(np.float32)
    (out * tinynet.tensor(cotangent, device=device)).sum().backward()
    (out_th * torch.from_numpy(cotangent)).sum().backward()
    for k, (x, x_th) in enumerate(zip(inputs, inputs_th)):
        if x_th.grad is not None:
            np.testing.assert_allclose(to_numpy(x.grad), to_numpy(x_th.grad), **tol, err_msg=f"grad of input {k}")
    for (name, p), p_th in zip(layer.named_parameters(), layer_th.parameters()):
        np.testing.assert_allclose(to_numpy(p.grad), to_numpy(p_th.grad), **tol, err_msg=f"grad of {name}")
    return layer


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ------------------------------------------------------------------------------- construction
LAYERS = [  # (builder given the nn namespace, example input shape or None)
    (lambda nn: nn.Linear(5, 3), (4, 5)),
    (lambda nn: nn.Linear(5, 3, bias=False), (2, 3, 5)),
    (lambda nn: nn.Conv2d(3, 4, 3), (2, 3, 7, 7)),
    (lambda nn: nn.Conv2d(3, 4, 3, stride=2, padding=1), (2, 3, 7, 7)),
    (lambda nn: nn.Conv2d(4, 6, (3, 1), padding=(2, 0), dilation=(2, 1)), (1, 4, 6, 5)),
    (lambda nn: nn.Conv2d(4, 4, 3, groups=2, bias=False), (2, 4, 5, 5)),
    (lambda nn: nn.Conv2d(3, 2, 3, padding="same"), (1, 3, 5, 5)),
    (lambda nn: nn.BatchNorm1d(4), (5, 4)),
    (lambda nn: nn.BatchNorm1d(4, eps=1e-3, momentum=0.3), (5, 4, 3)),
    (lambda nn: nn.BatchNorm2d(3), (4, 3, 5, 5)),
    (lambda nn: nn.BatchNorm2d(3, affine=False), (4, 3, 2, 2)),
    (lambda nn: nn.BatchNorm2d(3, track_running_stats=False), (4, 3, 2, 2)),
    (lambda nn: nn.MaxPool2d(2), (2, 3, 6, 6)),
    (lambda nn: nn.MaxPool2d(3, stride=2, padding=1), (2, 3, 7, 7)),
    (lambda nn: nn.MaxPool2d(2, ceil_mode=True), (1, 2, 7, 7)),
    (lambda nn: nn.AvgPool2d(2), (2, 3, 6, 6)),
    (lambda nn: nn.AvgPool2d(3, 2, 1, count_include_pad=False), (2, 3, 7, 7)),
    (lambda nn: nn.AdaptiveAvgPool2d((1, 1)), (2, 3, 5, 5)),
    (lambda nn: nn.AdaptiveAvgPool2d(2), (2, 3, 6, 6)),
    (lambda nn: nn.Flatten(), (2, 3, 4)),
    (lambda nn: nn.Flatten(0, 1), (2, 3, 4)),
    (lambda nn: nn.Identity(), (2, 3)),
    (lambda nn: nn.ReLU(), (3, 4)),
    (lambda nn: nn.ReLU(inplace=True), None),
    (lambda nn: nn.LeakyReLU(0.2), (3, 4)),
    (lambda nn: nn.PReLU(), (3, 4)),
    (lambda nn: nn.PReLU(4, init=0.1), (3, 4, 2)),
    (lambda nn: nn.ELU(alpha=0.5), (3, 4)),
    (lambda nn: nn.GELU(), (3, 4)),
    (lambda nn: nn.GELU(approximate="tanh"), (3, 4)),
    (lambda nn: nn.SiLU(), (3, 4)),
    (lambda nn: nn.Sigmoid(), (3, 4)),
    (lambda nn: nn.Tanh(), (3, 4)),
    (lambda nn: nn.Softmax(dim=1), (3, 4)),
    (lambda nn: nn.LogSoftmax(dim=-1), (3, 4)),
    (lambda nn: nn.Dropout(0.2), None),
    (lambda nn: nn.Dropout2d(), None),
]
LAYER_IDS = [str(make(nn)) for make, _ in LAYERS]

LOSSES = [  # (builder, input shape, target kind)
    (lambda nn: nn.CrossEntropyLoss(), (4, 5), "class"),
    (lambda nn: nn.CrossEntropyLoss(reduction="sum", label_smoothing=0.1), (4, 5), "class"),
    (lambda nn: nn.CrossEntropyLoss(weight=_weights(nn), ignore_index=1), (6, 5), "class"),
    (lambda nn: nn.CrossEntropyLoss(reduction="none"), (4, 5, 3), "class"),
    (lambda nn: nn.NLLLoss(), (4, 5), "class"),
    (lambda nn: nn.NLLLoss(weight=_weights(nn), reduction="sum"), (4, 5), "class"),
    (lambda nn: nn.MSELoss(), (4, 3), "same"),
    (lambda nn: nn.MSELoss(reduction="none"), (4, 3), "same"),
    (lambda nn: nn.BCELoss(), (4, 3), "prob"),
    (lambda nn: nn.BCEWithLogitsLoss(), (4, 3), "binary"),
    (lambda nn: nn.BCEWithLogitsLoss(pos_weight=_weights(nn, 3)), (4, 3), "binary"),
]


def _weights(nn, n=5):
    values = np.linspace(0.5, 2.0, n).astype(np.float32)
    return tinynet.tensor(values) if nn is tinynet.nn else torch.tensor(values)


@requires_torch
@pytest.mark.parametrize("make", [m for m, _ in LAYERS] + [m for m, _, _ in LOSSES],
                         ids=LAYER_IDS + [f"loss{i}" for i in range(len(LOSSES))])
def test_repr_parameters_and_buffers_match_pytorch(make):
    ours, theirs = make(nn), make(tnn)
    assert str(ours) == str(theirs)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == \
        [(n, tuple(p.shape)) for n, p in theirs.named_parameters()]
    assert [(n, b.shape, b.dtype) for n, b in ours.named_buffers()] == \
        [(n, tuple(b.shape), to_numpy(b).dtype) for n, b in theirs.named_buffers()]


def test_optional_parameters_and_buffers_are_none():
    assert nn.Linear(2, 3, bias=False).bias is None
    assert nn.Conv2d(2, 3, 1, bias=False).bias is None
    bn = nn.BatchNorm2d(3, affine=False, track_running_stats=False)
    assert bn.weight is None and bn.running_mean is None and bn.num_batches_tracked is None
    assert list(bn.state_dict()) == []
    assert list(nn.BatchNorm1d(3, bias=False).state_dict())[:2] == ["weight", "running_mean"]


def test_factory_arguments_set_dtype():
    assert nn.Linear(2, 3, dtype=tinynet.float64).weight.dtype == tinynet.float64
    bn = nn.BatchNorm1d(3, dtype=tinynet.float64)
    assert bn.running_var.dtype == tinynet.float64 and bn.num_batches_tracked.dtype == tinynet.int64
    assert nn.Conv2d(1, 2, 3, device="cpu").weight.device == "cpu"


def test_conv_attributes_are_pairs_and_pool_stride_defaults_to_kernel():
    conv = nn.Conv2d(1, 2, 3, stride=2)
    assert conv.kernel_size == (3, 3) and conv.stride == (2, 2) and conv.padding == (0, 0)
    assert nn.MaxPool2d(3).stride == 3 and nn.AvgPool2d(2, 1).stride == 1


# ------------------------------------------------------------------------------- initialisation
def _check_uniform(values, bound, label):
    values = np.asarray(values, dtype=np.float64).ravel()
    assert np.all(np.abs(values) <= bound + 1e-7), f"{label}: outside ±{bound}"
    assert np.abs(values).max() > 0.9 * bound, f"{label}: does not fill ±{bound}"
    # U(-b, b) has variance b^2/3; with thousands of samples the estimate is within ~10%.
    assert abs(values.var() / (bound ** 2 / 3) - 1) < 0.1, f"{label}: variance {values.var()}"
    assert abs(values.mean()) < 0.1 * bound, f"{label}: mean {values.mean()}"


def test_linear_default_init_is_uniform_one_over_sqrt_fan_in():
    layer = nn.Linear(64, 128)
    _check_uniform(to_numpy(layer.weight), 1 / math.sqrt(64), "weight")
    bias = to_numpy(layer.bias)
    assert np.all(np.abs(bias) <= 1 / math.sqrt(64)) and bias.std() > 0


@pytest.mark.parametrize("groups", [1, 2])
def test_conv2d_default_init_uses_fan_in_of_its_group(groups):
    layer = nn.Conv2d(8, 64, 3, groups=groups)
    fan_in = 8 // groups * 9
    _check_uniform(to_numpy(layer.weight), 1 / math.sqrt(fan_in), "weight")
    assert np.all(np.abs(to_numpy(layer.bias)) <= 1 / math.sqrt(fan_in))


@requires_torch
@pytest.mark.parametrize("make", [lambda nn: nn.Linear(40, 30), lambda nn: nn.Conv2d(6, 20, 3)])
def test_default_init_statistics_match_pytorch(make):
    torch.manual_seed(0)
    ours, theirs = make(nn), make(tnn)
    weight, weight_th = to_numpy(ours.weight), theirs.weight.detach().numpy()
    assert np.abs(weight).max() <= np.abs(weight_th).max() * 1.02  # same support (thousands of samples)
    assert abs(weight.std() / weight_th.std() - 1) < 0.1  # same spread
    fan_in, _ = tnn.init._calculate_fan_in_and_fan_out(theirs.weight)
    assert np.abs(to_numpy(ours.bias)).max() <= 1 / math.sqrt(fan_in)  # PyTorch's bias bound


def test_batchnorm_and_prelu_default_init():
    bn = nn.BatchNorm2d(4)
    np.testing.assert_array_equal(to_numpy(bn.weight), np.ones(4))
    np.testing.assert_array_equal(to_numpy(bn.bias), np.zeros(4))
    np.testing.assert_array_equal(to_numpy(bn.running_mean), np.zeros(4))
    np.testing.assert_array_equal(to_numpy(bn.running_var), np.ones(4))
    assert bn.num_batches_tracked.item() == 0
    np.testing.assert_allclose(to_numpy(nn.PReLU(3).weight), np.full(3, 0.25))
    np.testing.assert_allclose(to_numpy(nn.PReLU(init=0.1).weight), [0.1])


def test_init_is_reproducible_under_manual_seed_and_reset_parameters_redraws():
    tinynet.manual_seed(123)
    a = nn.Linear(4, 4)
    tinynet.manual_seed(123)
    b = nn.Linear(4, 4)
    np.testing.assert_array_equal(to_numpy(a.weight), to_numpy(b.weight))
    weight = a.weight
    a.reset_parameters()
    assert a.weight is weight and not np.array_equal(to_numpy(a.weight), to_numpy(b.weight))


# ------------------------------------------------------------------------------- forward parity
@requires_torch
@requires_ops("linear", "conv2d", "batch_norm", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "prelu",
              "leaky_relu", "elu", "gelu", "silu", "softmax", "log_softmax")
@pytest.mark.parametrize("make,shape", [c for c in LAYERS if c[1] is not None],
                         ids=[i for i, c in zip(LAYER_IDS, LAYERS) if c[1] is not None])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_forward_and_backward_match_pytorch(make, shape, train, device):
    run_both(make, [randn(*shape)], device=device, train=train)


@requires_torch
@requires_ops("cross_entropy", "nll_loss", "mse_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits")
@pytest.mark.parametrize("make,shape,target", LOSSES, ids=[f"loss{i}" for i in range(len(LOSSES))])
def test_losses_match_pytorch(make, shape, target):
    rng = np.random.default_rng(3)
    x = randn(*shape)
    if target == "class":
        y = rng.integers(0, shape[1], (shape[0],) + shape[2:]).astype(np.int64)
        if isinstance(make(nn), nn.NLLLoss):
            x = x - np.log(np.exp(x).sum(1, keepdims=True))  # log-probabilities
    elif target == "prob":
        x = 1 / (1 + np.exp(-x))
        y = rng.uniform(size=shape).astype(np.float32)
    elif target == "binary":
        y = rng.integers(0, 2, shape).astype(np.float32)
    else:
        y = randn(*shape, seed=5)
    run_both(make, [x, y])


@requires_torch
@requires_ops("batch_norm")
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_running_statistics_follow_pytorch_over_several_steps(device, momentum):
    """On cuda (momentum 0.1) the fused kernel advances num_batches_tracked; elsewhere an add_(1)."""
    def make(nn):
        return nn.BatchNorm2d(3, momentum=momentum)
    layer_th = make(tnn)
    layer = make(nn).to(device)
    for step in range(3):
        x = randn(4, 3, 2, 2, seed=step) * (step + 1) + step
        layer(tinynet.tensor(x, device=device))
        layer_th(torch.from_numpy(x))
    assert layer.num_batches_tracked.item() == 3
    for key, value in layer_th.state_dict().items():
        np.testing.assert_allclose(to_numpy(layer.state_dict()[key]), value.numpy(), atol=1e-5, rtol=1e-5,
                                   err_msg=key)
    layer.eval()
    before = to_numpy(layer.running_mean).copy()
    layer(tinynet.tensor(randn(4, 3, 2, 2, seed=9), device=device))
    assert layer.num_batches_tracked.item() == 3  # evaluation does not count or update
    np.testing.assert_array_equal(to_numpy(layer.running_mean), before)


@requires_ops("dropout", "dropout2d")
def test_dropout_scales_kept_values_in_training_and_is_identity_in_eval(device):
    x = tinynet.ones(64, 32, device=device)
    drop = nn.Dropout(0.25)
    out = to_numpy(drop(x))
    kept = out != 0
    assert 0.65 < kept.mean() < 0.85
    np.testing.assert_allclose(out[kept], 1 / 0.75, rtol=1e-6)
    drop.eval()
    np.testing.assert_array_equal(to_numpy(drop(x)), to_numpy(x))
    maps = to_numpy(nn.Dropout2d(0.5)(tinynet.ones(16, 8, 3, 3, device=device))).reshape(16, 8, 9)
    assert np.all((maps == 0).all(-1) | (maps == 2).all(-1))  # whole channels are dropped
    assert 0.25 < (maps[..., 0] == 0).mean() < 0.75
    assert np.all(to_numpy(nn.Dropout(0.0)(x)) == 1)


@requires_ops("linear")
@given(batch=st.lists(st.integers(1, 3), max_size=2), n_in=st.integers(1, 6), n_out=st.integers(1, 6))
def test_linear_maps_any_leading_dims(batch, n_in, n_out):
    layer = nn.Linear(n_in, n_out)
    x = np.random.default_rng(0).standard_normal((*batch, n_in)).astype(np.float32)
    out = layer(tinynet.tensor(x))
    assert out.shape == (*batch, n_out)
    expected = x @ to_numpy(layer.weight).T + to_numpy(layer.bias)
    np.testing.assert_allclose(to_numpy(out), expected, atol=1e-5, rtol=1e-5)


@requires_ops("conv2d", "batch_norm")
def test_basic_block_shapes_and_shortcut():
    same = nn.BasicBlock(4, 4)
    assert same.downsample is None and "downsample" not in same._modules
    assert same(tinynet.randn(2, 4, 6, 6)).shape == (2, 4, 6, 6)
    down = nn.BasicBlock(4, 8, stride=2)
    assert isinstance(down.downsample, nn.Sequential) and down.conv1.stride == (2, 2)
    assert down.downsample[0].kernel_size == (1, 1) and down.downsample[0].bias is None
    assert down(tinynet.randn(2, 4, 6, 6)).shape == (2, 8, 3, 3)
    assert nn.BasicBlock(4, 8).downsample is not None  # channel change alone needs a projection
    out = to_numpy(down(tinynet.randn(2, 4, 5, 5)))
    assert out.shape == (2, 8, 3, 3) and out.min() >= 0  # ends with ReLU


# ------------------------------------------------------------------------------- errors
def test_bad_constructor_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="dropout probability"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match="in_channels"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="out_channels"):
        nn.Conv2d(4, 3, 3, groups=2)
    with pytest.raises(ValueError, match="strided"):
        nn.Conv2d(3, 4, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="padding_mode"):
        nn.Conv2d(3, 4, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU("fast")
    with pytest.raises(ValueError, match="reduction"):
        nn.CrossEntropyLoss(reduction="avg")


def test_deprecated_loss_flags_map_to_reduction():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert nn.MSELoss(size_average=False).reduction == "sum"
        assert nn.NLLLoss(reduce=False).reduction == "none"
        assert nn.CrossEntropyLoss(None, True).reduction == "mean"


def test_bad_input_shapes_name_the_layer_and_the_shapes():
    with pytest.raises(RuntimeError, match=r"Linear.*\(2, 5\)"):
        nn.Linear(4, 3)(tinynet.randn(2, 5))
    with pytest.raises(RuntimeError, match=r"Conv2d.*\(1, 2, 5, 5\)"):
        nn.Conv2d(3, 4, 3)(tinynet.randn(1, 2, 5, 5))
    with pytest.raises(RuntimeError, match=r"Conv2d.*\(5, 5\)"):
        nn.Conv2d(3, 4, 3)(tinynet.randn(5, 5))
    with pytest.raises(ValueError, match=r"BatchNorm2d.*3D"):
        nn.BatchNorm2d(3)(tinynet.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"BatchNorm1d.*4D"):
        nn.BatchNorm1d(3)(tinynet.randn(2, 3, 4, 4))
    with pytest.raises(RuntimeError, match=r"BatchNorm2d\(3\).*\(2, 4, 5, 5\)"):
        nn.BatchNorm2d(3)(tinynet.randn(2, 4, 5, 5))
    with pytest.raises(RuntimeError, match=r"MaxPool2d.*\(4, 4\)"):
        nn.MaxPool2d(2)(tinynet.randn(4, 4))


@requires_torch
def test_batchnorm_with_momentum_none_keeps_the_cumulative_average(device):
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((4, 3)).astype(np.float32) for _ in range(3)]
    ours = nn.BatchNorm1d(3, momentum=None).to(device)
    theirs = torch.nn.BatchNorm1d(3, momentum=None)
    for b in batches:
        ours(tinynet.tensor(b, device=device))
        theirs(torch.tensor(b))
    assert ours.running_mean.device == device and int(ours.num_batches_tracked.item()) == 3
    np.testing.assert_allclose(to_numpy(ours.running_mean), theirs.running_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(ours.running_var), theirs.running_var.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(ours.running_mean), np.mean([b.mean(0) for b in batches], 0),
                               rtol=1e-5, atol=1e-6)
