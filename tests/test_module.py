"""Module, Parameter and containers: registration, tree walks, modes, devices, state_dict and
load_state_dict (keys, order and values against PyTorch), repr against PyTorch."""
import copy
from collections import OrderedDict

import numpy as np
import pytest

import tinynet
import tinynet.nn as nn
import tinynet.nn.functional as F
from helpers import requires_torch, to_numpy, torch

tnn = torch.nn if torch is not None else None


def requires_ops(*names):
    """Skip until the functional ops a forward pass needs exist (they are written separately)."""
    missing = [n for n in names if not hasattr(F, n)]
    return pytest.mark.skipif(bool(missing), reason=f"tinynet.nn.functional lacks {missing}")


# ------------------------------------------------------------------------------- architectures
# Each builder takes the `nn` namespace, so the same code builds the tinynet and the torch model.
def lenet(nn):
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def bn_mlp(nn):
    return nn.Sequential(nn.Linear(12, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3))


if torch is not None:
    class BasicBlock(tnn.Module):
        """torchvision.models.resnet.BasicBlock, with the downsample that ResNet._make_layer builds."""

        expansion = 1

        def __init__(self, inplanes, planes, stride=1):
            super().__init__()
            self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(planes)
            self.relu = tnn.ReLU(inplace=True)
            self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(planes)
            self.downsample = None
            if stride != 1 or inplanes != planes:
                self.downsample = tnn.Sequential(tnn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                                 tnn.BatchNorm2d(planes))
            self.stride = stride

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + identity)


def resnet_tiny(nn, block):
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        block(8, 8), block(8, 16, 2), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(16, 5))


ARCHITECTURES = {
    "lenet": (lambda: lenet(nn), lambda: lenet(tnn), (2, 1, 28, 28)),
    "bn_mlp": (lambda: bn_mlp(nn), lambda: bn_mlp(tnn), (4, 12)),
    "resnet_tiny": (lambda: resnet_tiny(nn, nn.BasicBlock), lambda: resnet_tiny(tnn, BasicBlock), (2, 3, 8, 8)),
}


class Net(nn.Module):
    """A hand-written module with a parameter, a buffer, a child and a container."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(tinynet.ones(3))
        self.register_buffer("count", tinynet.zeros(1))
        self.fc = nn.Linear(3, 4)
        self.blocks = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2, bias=False))

    def forward(self, x):
        return self.blocks(self.fc(x * self.scale))


# ------------------------------------------------------------------------------- Parameter
def test_parameter_is_a_leaf_tensor_that_requires_grad():
    data = tinynet.zeros(2, 3)
    p = nn.Parameter(data)
    assert isinstance(p, tinynet.Tensor) and isinstance(p, nn.Parameter)
    assert p.requires_grad and p.is_leaf
    assert p.data is data.data  # shares memory, like torch.nn.Parameter
    assert not nn.Parameter(data, requires_grad=False).requires_grad
    assert repr(p).startswith("Parameter containing:\ntensor(")
    assert "requires_grad=True" in repr(p)
    empty = nn.Parameter()
    assert empty.shape == (0,) and empty.dtype == tinynet.float32
    assert not isinstance(p * 2, nn.Parameter)  # results of ops are plain tensors


def test_integer_parameter_requiring_grad_is_rejected():
    with pytest.raises(RuntimeError, match="floating"):
        nn.Parameter(tinynet.tensor([1, 2]))
    assert nn.Parameter(tinynet.tensor([1, 2]), requires_grad=False).dtype == tinynet.int64


# ------------------------------------------------------------------------------- registration
def test_attribute_assignment_registers_parameters_buffers_and_children():
    net = Net()
    assert list(net._parameters) == ["scale"]
    assert list(net._buffers) == ["count"]
    assert list(net._modules) == ["fc", "blocks"]
    assert net.count is net._buffers["count"]
    net.count = tinynet.ones(1)  # reassigning a buffer keeps it a buffer
    assert np.all(net._buffers["count"].numpy() == 1)
    del net.count
    assert "count" not in net._buffers


def test_bad_assignments_raise_clear_errors():
    net = Net()
    with pytest.raises(TypeError, match="parameter 'scale'"):
        net.scale = tinynet.ones(3)  # a plain tensor where a Parameter lives
    with pytest.raises(TypeError, match="child module 'fc'"):
        net.fc = 3
    with pytest.raises(TypeError, match="buffer"):
        net.register_buffer("b", np.zeros(2))
    with pytest.raises(KeyError, match="already exists"):
        net.register_buffer("fc", tinynet.zeros(1))
    with pytest.raises(KeyError):
        net.register_parameter("a.b", None)
    with pytest.raises(AttributeError, match="'Net' object has no attribute 'nope'"):
        net.nope

    class Early(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(tinynet.zeros(1))

    with pytest.raises(AttributeError, match="before Module.__init__"):
        Early()


def test_none_parameters_and_non_persistent_buffers():
    lin = nn.Linear(3, 2, bias=False)
    assert lin.bias is None
    assert [n for n, _ in lin.named_parameters()] == ["weight"]
    net = Net()
    net.register_buffer("scratch", tinynet.zeros(2), persistent=False)
    assert "scratch" in dict(net.named_buffers())
    assert "scratch" not in net.state_dict()
    out = net.load_state_dict(net.state_dict())  # not expected back either
    assert out.missing_keys == [] and out.unexpected_keys == []


# ------------------------------------------------------------------------------- tree walks
def test_parameter_and_module_ordering():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == [
        "scale", "fc.weight", "fc.bias", "blocks.0.weight", "blocks.0.bias", "blocks.2.weight"]
    assert [p.shape for p in net.parameters()] == [(3,), (4, 3), (4,), (4, 4), (4,), (2, 4)]
    assert [n for n, _ in net.named_parameters(recurse=False)] == ["scale"]
    assert [n for n, _ in net.named_modules()] == ["", "fc", "blocks", "blocks.0", "blocks.1", "blocks.2"]
    assert [type(m).__name__ for m in net.modules()] == ["Net", "Linear", "Sequential", "Linear", "ReLU", "Linear"]
    assert [n for n, _ in net.named_children()] == ["fc", "blocks"]
    assert list(net.children()) == [net.fc, net.blocks]
    assert [n for n, _ in net.named_buffers()] == ["count"]
    assert [n for n, _ in net.named_parameters(prefix="model")][:2] == ["model.scale", "model.fc.weight"]
    assert net.get_submodule("blocks.2") is net.blocks[2]
    with pytest.raises(AttributeError, match="no submodule"):
        net.get_submodule("blocks.9")


def test_shared_modules_and_parameters_are_listed_once():
    shared = nn.Linear(2, 2)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert len(list(model.parameters())) == 2
    assert len(list(model.modules())) == 3
    tied = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    tied[1].weight = tied[0].weight
    assert len(list(tied.parameters())) == 3


def test_apply_visits_children_first_then_self():
    visited = []
    Net().apply(lambda m: visited.append(type(m).__name__))
    assert visited == ["Linear", "Linear", "ReLU", "Linear", "Sequential", "Net"]


# ------------------------------------------------------------------------------- modes and grads
def test_train_and_eval_propagate_to_every_descendant():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net.blocks.train(False)
    assert net.training and not net.blocks[0].training
    with pytest.raises(ValueError, match="boolean"):
        net.train("yes")


def test_requires_grad_and_zero_grad():
    net = Net()
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())
    net.requires_grad_()
    for p in net.parameters():
        p.grad = tinynet.ones(p.shape)
    net.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not np.any(p.grad.numpy()) for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


class Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(tinynet.tensor([2.0, 3.0]))

    def forward(self, x):
        return x * self.w


def test_call_runs_forward_and_hooks():
    m = Scale()
    x = tinynet.tensor([1.0, 1.0])
    seen = []
    pre = m.register_forward_pre_hook(lambda mod, args: (args[0] * 10,))
    post = m.register_forward_hook(lambda mod, args, out: seen.append(out.detach().numpy().copy()))
    np.testing.assert_allclose(m(x).detach().numpy(), [20.0, 30.0])
    np.testing.assert_allclose(seen[0], [20.0, 30.0])
    pre.remove()
    post.remove()
    np.testing.assert_allclose(m(x).detach().numpy(), [2.0, 3.0])
    assert len(seen) == 1
    m(x).sum().backward()
    np.testing.assert_allclose(m.w.grad.numpy(), [1.0, 1.0])
    with pytest.raises(NotImplementedError, match="forward"):
        nn.Module()(x)


# ------------------------------------------------------------------------------- devices, dtypes
def test_to_float64_keeps_parameter_identity_and_integer_buffers():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    params_before = list(net.parameters())  # what an optimiser built now would hold
    net[0].weight.grad = tinynet.ones(4, 3)
    assert net.to(tinynet.float64) is net
    assert [id(p) for p in net.parameters()] == [id(p) for p in params_before]
    assert all(p.dtype == tinynet.float64 and isinstance(p, nn.Parameter) for p in params_before)
    assert net[0].weight.grad.dtype == tinynet.float64
    assert net[1].running_mean.dtype == tinynet.float64
    assert net[1].num_batches_tracked.dtype == tinynet.int64  # dtype moves touch floats only
    net.float()
    assert all(p.dtype == tinynet.float32 for p in params_before)
    net.double()
    assert net[1].running_var.dtype == tinynet.float64
    net.to(dtype=tinynet.float32, device="cpu")
    assert net[0].weight.dtype == tinynet.float32 and net[0].weight.device == "cpu"
    assert net.cpu() is net
    with pytest.raises(TypeError, match="floating point"):
        net.to(tinynet.int64)


@pytest.mark.skipif(tinynet.backend.cuda_available(), reason="checks the error raised without a GPU")
def test_to_cuda_without_gpu_raises_the_cupy_error_and_moves_nothing():
    net = Net()
    with tinynet.backend.simulate_cuda(False):
        with pytest.raises(RuntimeError, match="CuPy|GPU"):
            net.to("cuda")
        with pytest.raises(RuntimeError, match="CuPy|GPU"):
            net.cuda()
    assert all(p.device == "cpu" for p in net.parameters())


def test_to_device_moves_in_place(device):
    net = Net()
    params = list(net.parameters())
    net.to(device)
    assert all(p.device == device for p in net.parameters()) and list(net.parameters()) == params
    assert all(b.device == device for b in net.buffers())
    sd = net.state_dict()
    assert all(v.device == device for v in sd.values())
    net.cpu()
    assert all(p.device == "cpu" for p in params)


def test_deepcopy_gives_an_independent_module():
    net = Net()
    twin = copy.deepcopy(net)
    with tinynet.no_grad():
        twin.fc.weight.fill_(0.0)
    assert np.any(net.fc.weight.detach().numpy() != 0)
    assert isinstance(twin.fc.weight, nn.Parameter) and twin.fc.weight.requires_grad


# ------------------------------------------------------------------------------- containers
def test_sequential_indexing_slicing_and_editing():
    layers = [nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 4)]
    seq = nn.Sequential(*layers)
    assert len(seq) == 3 and list(seq) == layers
    assert seq[0] is layers[0] and seq[-1] is layers[2]
    head = seq[:2]
    assert isinstance(head, nn.Sequential) and list(head) == layers[:2]
    assert list(seq[1:]._modules) == ["1", "2"]  # slices keep their names, as in PyTorch
    with pytest.raises(IndexError):
        seq[3]
    seq.append(nn.Tanh())
    assert len(seq) == 4 and isinstance(seq[3], nn.Tanh)
    del seq[1]
    assert list(seq._modules) == ["0", "1", "2"] and seq[1] is layers[2]
    seq.insert(1, nn.Sigmoid())
    assert [type(m).__name__ for m in seq] == ["Linear", "Sigmoid", "Linear", "Tanh"]
    seq[1] = nn.ReLU()
    assert isinstance(seq[1], nn.ReLU)
    named = nn.Sequential(OrderedDict([("conv", nn.Conv2d(1, 2, 3)), ("act", nn.ReLU())]))
    assert list(named.state_dict()) == ["conv.weight", "conv.bias"]
    assert isinstance(named.act, nn.ReLU)


def test_sequential_forward_chains_modules():
    seq = nn.Sequential(Scale(), Scale())
    np.testing.assert_allclose(seq(tinynet.tensor([1.0, 1.0])).detach().numpy(), [4.0, 9.0])


def test_module_list_and_module_dict():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert len(layers) == 3 and isinstance(layers[1:], nn.ModuleList) and len(layers[1:]) == 2
    layers.append(nn.ReLU())
    layers.extend([nn.Tanh()])
    assert [type(m).__name__ for m in layers][-2:] == ["ReLU", "Tanh"]
    del layers[0]
    assert list(layers._modules) == ["0", "1", "2", "3"]
    holder = nn.Module()
    holder.layers = layers
    assert [n for n, _ in holder.named_parameters()] == ["layers.0.weight", "layers.0.bias",
                                                         "layers.1.weight", "layers.1.bias"]
    heads = nn.ModuleDict({"cls": nn.Linear(4, 3), "box": nn.Linear(4, 2)})
    assert list(heads) == ["cls", "box"] and "cls" in heads and len(heads) == 2
    heads["extra"] = nn.Identity()
    assert list(heads.keys()) == ["cls", "box", "extra"]
    assert heads.pop("extra").__class__ is nn.Identity
    assert list(heads.state_dict()) == ["cls.weight", "cls.bias", "box.weight", "box.bias"]
    with pytest.raises(TypeError, match="pairs"):
        heads.update([nn.ReLU()])


# ------------------------------------------------------------------------------- repr
def test_repr_nests_children_like_pytorch():
    text = repr(Net())
    assert text.startswith("Net(\n  (fc): Linear(in_features=3, out_features=4, bias=True)\n  (blocks): Sequential(\n"
                           "    (0): Linear(")
    assert text.endswith("  )\n)")
    assert repr(nn.Sequential()) == "Sequential()"


@requires_torch
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_repr_matches_pytorch(name):
    make_tn, make_th, _ = ARCHITECTURES[name]
    assert str(make_tn()) == str(make_th())


@requires_torch
def test_module_list_repr_compresses_repeats_like_pytorch():
    def build(nn):
        return nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2)])
    assert repr(build(nn)) == repr(build(tnn))


# ------------------------------------------------------------------------------- state_dict
def test_state_dict_values_are_detached_and_share_memory():
    lin = nn.Linear(3, 2)
    sd = lin.state_dict()
    assert isinstance(sd, OrderedDict)
    assert not sd["weight"].requires_grad and not isinstance(sd["weight"], nn.Parameter)
    assert sd["weight"].data is lin.weight.data
    assert lin.state_dict(keep_vars=True)["weight"] is lin.weight
    assert list(lin.state_dict(prefix="head.")) == ["head.weight", "head.bias"]


@requires_torch
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_state_dict_keys_order_shapes_and_dtypes_match_pytorch(name):
    make_tn, make_th, _ = ARCHITECTURES[name]
    ours, theirs = make_tn().state_dict(), make_th().state_dict()
    assert list(ours) == list(theirs)
    for key in theirs:
        assert ours[key].shape == tuple(theirs[key].shape), key
        assert ours[key].dtype == to_numpy(theirs[key]).dtype, key


@requires_torch
def test_basic_block_keys_match_torchvision_layout():
    for args in [(8, 8), (8, 16, 2), (8, 8, 2)]:
        ours, theirs = nn.BasicBlock(*args).state_dict(), BasicBlock(*args).state_dict()
        assert list(ours) == list(theirs), args
        assert [v.shape for v in ours.values()] == [tuple(v.shape) for v in theirs.values()]


@requires_torch
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_load_pytorch_state_dict_copies_values_in_place(name):
    make_tn, make_th, _ = ARCHITECTURES[name]
    model, reference = make_tn(), make_th()
    params = list(model.parameters())
    result = model.load_state_dict({k: v.numpy() for k, v in reference.state_dict().items()})
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert list(model.parameters()) == params
    for key, value in reference.state_dict().items():
        np.testing.assert_array_equal(to_numpy(model.state_dict()[key]), value.numpy(), err_msg=key)
    assert all(p.requires_grad for p in model.parameters())
    assert make_tn().load_state_dict(reference.state_dict()).missing_keys == []  # CPU torch tensors load as-is


def test_load_state_dict_keeps_the_module_dtype():
    lin = nn.Linear(2, 2)
    lin.load_state_dict({"weight": np.ones((2, 2), np.float64), "bias": tinynet.zeros(2, dtype=tinynet.float64)})
    assert lin.weight.dtype == tinynet.float32
    np.testing.assert_array_equal(lin.weight.detach().numpy(), np.ones((2, 2)))
    bn = nn.BatchNorm1d(2)
    sd = bn.state_dict()
    sd["num_batches_tracked"] = np.array(7)
    bn.load_state_dict(sd)
    assert bn.num_batches_tracked.item() == 7 and bn.num_batches_tracked.dtype == tinynet.int64


def test_load_state_dict_into_device(device):
    source = Net()
    target = Net().to(device)
    target.load_state_dict(source.state_dict())
    assert target.fc.weight.device == device
    np.testing.assert_array_equal(to_numpy(target.fc.weight), to_numpy(source.fc.weight))


def test_strict_load_lists_missing_and_unexpected_keys():
    net = Net()
    sd = net.state_dict()
    del sd["fc.bias"]
    del sd["blocks.2.weight"]
    sd["fc.extra"] = tinynet.zeros(1)
    sd["nothere.weight"] = tinynet.zeros(1)
    with pytest.raises(RuntimeError) as info:
        net.load_state_dict(sd)
    message = str(info.value)
    assert message.startswith("Error(s) in loading state_dict for Net:")
    assert 'Missing key(s) in state_dict: "fc.bias", "blocks.2.weight"' in message
    # Keys are reported module by module (the root's first), as PyTorch does.
    assert 'Unexpected key(s) in state_dict: "nothere.weight", "fc.extra"' in message
    result = net.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["fc.bias", "blocks.2.weight"]
    assert result.unexpected_keys == ["nothere.weight", "fc.extra"]
    assert repr(result) == ("_IncompatibleKeys(missing_keys=['fc.bias', 'blocks.2.weight'], "
                            "unexpected_keys=['nothere.weight', 'fc.extra'])")
    assert tuple(result) == (result.missing_keys, result.unexpected_keys)
    assert repr(net.load_state_dict(net.state_dict())) == "<All keys matched successfully>"


def test_shape_mismatch_raises_with_both_shapes_even_when_not_strict():
    net = Net()
    sd = net.state_dict()
    sd["fc.weight"] = np.zeros((5, 3), np.float32)
    before = net.fc.weight.detach().numpy().copy()
    for strict in (True, False):
        with pytest.raises(RuntimeError, match=r"size mismatch for fc\.weight: copying a param with shape \(5, 3\) "
                                               r"from checkpoint, the shape in current model is \(4, 3\)"):
            net.load_state_dict(sd, strict=strict)
    np.testing.assert_array_equal(net.fc.weight.detach().numpy(), before)


def test_load_state_dict_rejects_non_mappings_and_non_numeric_values():
    with pytest.raises(TypeError, match="dict-like"):
        Net().load_state_dict([("fc.weight", np.zeros((4, 3)))])
    sd = Net().state_dict()
    sd["fc.bias"] = "oops"
    with pytest.raises(RuntimeError, match='"fc.bias"'):
        Net().load_state_dict(sd)


def test_batchnorm_tolerates_a_missing_num_batches_tracked():
    bn = nn.BatchNorm2d(3)
    sd = {k: v for k, v in bn.state_dict().items() if k != "num_batches_tracked"}
    assert bn.load_state_dict(sd).missing_keys == []  # older checkpoints lack it, as PyTorch allows


# ------------------------------------------------------------------------------- round trips
def _torch_from(model_tn, make_th):
    model_th = make_th()
    model_th.load_state_dict({k: torch.from_numpy(to_numpy(v).copy()) for k, v in model_tn.state_dict().items()})
    return model_th


@requires_torch
@requires_ops("linear", "conv2d", "max_pool2d", "adaptive_avg_pool2d", "batch_norm", "dropout")
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_tinynet_to_torch_to_tinynet_round_trip_gives_the_same_logits(name):
    make_tn, make_th, shape = ARCHITECTURES[name]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    model = make_tn().eval()
    logits = model(tinynet.tensor(x)).detach().numpy()

    model_th = _torch_from(model, make_th).eval()
    with torch.no_grad():
        np.testing.assert_allclose(model_th(torch.from_numpy(x)).numpy(), logits, atol=1e-5, rtol=1e-4)

    back = make_tn().eval()
    back.load_state_dict({k: v.numpy() for k, v in model_th.state_dict().items()})
    np.testing.assert_array_equal(back(tinynet.tensor(x)).detach().numpy(), logits)


@requires_torch
@requires_ops("linear", "conv2d", "adaptive_avg_pool2d", "batch_norm")
def test_training_step_updates_running_stats_like_pytorch():
    make_tn, make_th, shape = ARCHITECTURES["resnet_tiny"]
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    model = make_tn()
    model_th = _torch_from(model, make_th)
    out = model(tinynet.tensor(x))
    out_th = model_th(torch.from_numpy(x))
    np.testing.assert_allclose(out.detach().numpy(), out_th.detach().numpy(), atol=1e-5, rtol=1e-4)
    for key, value in model_th.state_dict().items():
        np.testing.assert_allclose(to_numpy(model.state_dict()[key]), value.numpy(), atol=1e-6, rtol=1e-5,
                                   err_msg=key)
    out.sum().backward()
    out_th.sum().backward()
    for (name, p), p_th in zip(model.named_parameters(), model_th.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), p_th.grad.numpy(), atol=1e-4, rtol=1e-3, err_msg=name)
