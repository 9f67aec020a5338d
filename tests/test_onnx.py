"""tinynet.onnx.export: every report model, exported with random weights, gives onnxruntime's
outputs equal to tinynet's on batches of other sizes; each op family maps correctly; ops that
cannot be exported raise errors that name them."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import tinynet  # noqa: E402
import tinynet.nn.functional as F  # noqa: E402
import tinynet.onnx  # noqa: E402
from tinynet import nn  # noqa: E402
from tinynet.autograd import Function  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TOL = dict(atol=1e-5, rtol=1e-4)


def load_example(name):
    """An example script as a module (its ``main`` is behind ``if __name__ == '__main__'``)."""
    spec = importlib.util.spec_from_file_location(f"tinynet_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def randomize(model, seed=0):
    """Random weights, and BatchNorm/PReLU state away from its defaults (mean 0, var 1, slope
    0.25), so that an export that ignored any of it would give different outputs."""
    rng = np.random.default_rng(seed)
    with tinynet.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                c = module.num_features
                module.running_mean.data[...] = rng.normal(0, 0.3, c)
                module.running_var.data[...] = rng.uniform(0.5, 2.0, c)
                if module.affine:
                    module.weight.data[...] = rng.uniform(0.5, 1.5, c)
                    module.bias.data[...] = rng.normal(0, 0.3, c)
            elif isinstance(module, nn.PReLU):
                module.weight.data[...] = rng.uniform(0.05, 0.6, module.weight.shape)
    return model


def run_onnx(path, array, input_name="input"):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {input_name: array})


def reference(model, array):
    """tinynet's own output in eval mode."""
    if hasattr(model, "eval"):
        model.eval()
    with tinynet.no_grad():
        out = model(tinynet.tensor(array))
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def check_roundtrip(model, shape, tmp_path, batches=(5, 2), **kwargs):
    """Export on a batch of ``batches[0]``; onnxruntime matches tinynet on every batch size."""
    rng = np.random.default_rng(1)
    path = tmp_path / "model.onnx"
    example = rng.standard_normal((batches[0], *shape)).astype(np.float32)
    modes = [m.training for m in model.modules()] if hasattr(model, "modules") else []
    proto = tinynet.onnx.export(model, tinynet.tensor(example), path, **kwargs)
    if modes:  # traced in eval mode, then every module's own mode back
        assert [m.training for m in model.modules()] == modes
    for batch in batches:
        x = rng.standard_normal((batch, *shape)).astype(np.float32)
        for got, want, declared in zip(run_onnx(path, x), reference(model, x), proto.graph.output, strict=True):
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, **TOL)
            assert_declared_shape_fits(declared, got.shape)
    return proto


def assert_declared_shape_fits(value_info, shape):
    """The file's declared output shape allows ``shape``: a fixed size where it has one (a size
    taken from the example batch would be wrong for other batches), else a symbolic or unknown dim."""
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return
    assert len(tensor_type.shape.dim) == len(shape), (value_info, shape)
    for dim, size in zip(tensor_type.shape.dim, shape):
        if dim.HasField("dim_value"):
            assert dim.dim_value == size, (value_info, shape)


# ------------------------------------------------------------------------ the report models
def _lenet_res(variant):
    return load_example("lenet_resnet").LeNetRes(variant)


MODELS = {
    "pytorch_example": lambda: load_example("pytorch_example").Net(),
    "lenet_sigmoid": lambda: load_example("lenet").lenet("sigmoid"),
    "lenet_relu": lambda: load_example("lenet").lenet("relu"),
    "mlp": lambda: load_example("mlp").mlp(),
    "cnn5": lambda: load_example("cnn5").cnn5(),
    "vgg_bn": lambda: load_example("vgg_bn").VGGBN(),
    "lenet_resnet_conv": lambda: _lenet_res("conv"),
    "lenet_resnet_fc": lambda: _lenet_res("fc"),
}


@pytest.mark.parametrize("name", MODELS)
def test_report_model_matches_onnxruntime_on_any_batch(name, tmp_path):
    model = randomize(MODELS[name]())
    model.train()
    proto = check_roundtrip(model, (1, 28, 28), tmp_path, batches=(4, 7, 1))

    onnx.checker.check_model(onnx.load(tmp_path / "model.onnx"), full_check=True)
    graph = proto.graph
    for value in (graph.input[0], graph.output[0]):
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"
    stored = {init.name for init in graph.initializer}
    used = {n for n, _ in model.named_parameters()} & stored
    assert used and all("." in n for n in used)  # weights under their dotted module names
    bn_stats = {n for n, _ in model.named_buffers() if "running" in n}
    assert bn_stats <= stored
    assert not any(node.op_type == "Dropout" for node in graph.node)


def test_outputs_are_not_trivial(tmp_path):
    """The parity above would be empty if random weights gave constant outputs."""
    model = randomize(MODELS["cnn5"]())
    out = reference(model, np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32))[0]
    assert out.std() > 1e-2 and np.abs(out[0] - out[1]).max() > 1e-3


def test_static_batch_fixes_the_shape(tmp_path):
    model = load_example("lenet").lenet("relu")
    proto = check_roundtrip(model, (1, 28, 28), tmp_path, batches=(3,), dynamic_batch=False)
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [3, 1, 28, 28]
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        run_onnx(tmp_path / "model.onnx", np.zeros((2, 1, 28, 28), np.float32))


# ------------------------------------------------------------------------ op families
class Lambda(nn.Module):
    def __init__(self, fn, **children):
        super().__init__()
        self.fn = fn
        for name, child in children.items():
            setattr(self, name, child)

    def forward(self, x):
        return self.fn(self, x)


OP_CASES = {
    # convolution: stride, padding, dilation, groups, no bias, 'same' with an even kernel
    "conv_stride_pad": (nn.Conv2d(4, 6, 3, stride=2, padding=1), (4, 9, 9)),
    "conv_rect_dilation": (nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(0, 2), dilation=(2, 1)), (4, 11, 8)),
    "conv_groups": (nn.Conv2d(4, 8, 3, groups=2, padding=1, bias=False), (4, 6, 6)),
    "conv_depthwise_same_even": (nn.Conv2d(4, 4, 4, groups=4, padding="same"), (4, 7, 7)),
    # pooling
    "max_pool_pad": (nn.MaxPool2d(3, 2, padding=1), (3, 9, 9)),
    "max_pool_ceil": (nn.MaxPool2d(2, ceil_mode=True), (3, 7, 7)),
    "max_pool_dilation": (nn.MaxPool2d(3, stride=2, dilation=2), (3, 11, 11)),
    "avg_pool_pad": (nn.AvgPool2d(3, 2, padding=1), (3, 9, 9)),
    "avg_pool_exclude_pad": (nn.AvgPool2d(3, 2, padding=1, count_include_pad=False), (3, 9, 9)),
    "avg_pool_ceil": (nn.AvgPool2d(2, ceil_mode=True), (3, 7, 7)),
    "avg_pool_divisor": (nn.AvgPool2d(2, divisor_override=3), (3, 6, 6)),
    "global_avg_pool": (nn.AdaptiveAvgPool2d(1), (3, 5, 7)),
    "adaptive_avg_divisible": (nn.AdaptiveAvgPool2d((2, 3)), (3, 6, 6)),
    "adaptive_avg_overlapping": (nn.AdaptiveAvgPool2d(3), (3, 7, 5)),
    # normalisation
    "batch_norm_1d": (nn.BatchNorm1d(6), (6,)),
    "batch_norm_2d_no_affine": (nn.BatchNorm2d(3, affine=False), (3, 4, 4)),
    # activations
    "softmax": (nn.Softmax(dim=1), (6,)),
    "log_softmax_last": (nn.LogSoftmax(dim=-1), (3, 6)),
    "prelu_per_channel": (nn.PReLU(3), (3, 4, 4)),
    "prelu_features": (nn.PReLU(6), (6,)),
    "leaky_relu": (nn.LeakyReLU(0.2), (6,)),
    "elu_gelu_silu": (nn.Sequential(nn.ELU(0.7), nn.Linear(6, 6), nn.GELU(), nn.Linear(6, 6),
                                    nn.GELU("tanh"), nn.SiLU(), nn.Tanh(), nn.Sigmoid()), (6,)),
    # elementwise arithmetic and math, with Python numbers on either side
    "arithmetic": (lambda x: (2.0 - x * 3) / 4 + x.add(x, alpha=0.5) - (1 / (x.abs() + 1)) ** 2, (6,)),
    "unary_math": (lambda x: x.exp().log() + (x.abs() + 1).sqrt() * (x.abs() + 1).rsqrt() + x.sin() * x.cos()
                   - tinynet.sign(-x) + tinynet.square(x), (6,)),
    "clamp_max_min": (lambda x: x.clamp(-0.5, 0.5) + x.clamp(min=0.1) + tinynet.maximum(x, x * 0.5)
                      + tinynet.minimum(x, -x) + x.clamp(max=tinynet.zeros(6)), (6,)),
    "where_compare": (lambda x: tinynet.where((x > 0.2) | (x <= -1), x, x * 0 - 1)
                      + (x == x).float() + (x != 0.5).float() + (~(x < 0)).float(), (6,)),
    "linear_3d": (nn.Linear(6, 4), (3, 6)),
    "linear_no_bias": (nn.Linear(6, 4, bias=False), (6,)),
    # shapes and indexing
    "matmul_transpose": (lambda x: x @ x.transpose(1, 2) + x.permute(0, 2, 1).sum(dim=-1, keepdim=True), (3, 3)),
    "getitem": (lambda x: x[:, 1:3, ::2] + x[:, 0:1, -3:] * x[..., -1:][:, -2:], (4, 5)),
    "getitem_int_drops_dim": (lambda x: x[:, 0] + x[:, -1, 1:].sum(dim=-1, keepdim=True), (3, 4)),
    "cat_split": (lambda x: tinynet.cat([*x.split(2, dim=1)[::-1], x.chunk(3, dim=1)[0]], dim=1), (6,)),
    "stack_squeeze": (lambda x: tinynet.stack([x, x * 2], dim=1).unsqueeze(-1).squeeze(-1).flatten(1), (4,)),
    "expand": (lambda x: x.unsqueeze(1).expand(-1, 3, -1) * tinynet.ones(3, 1), (4,)),
    "pad_and_crop": (lambda x: F.pad(x, (1, 2, 0, 1), value=0.5) + F.pad(F.pad(x, (3, 1, 1, 1)), (-1, 0, -1, 0)),
                     (3, 4)),
    "reductions": (lambda x: x.mean(dim=(1, 2)) + x.sum(dim=1).amax(dim=-1) + x.amin(dim=(1, 2)), (3, 4)),
    "reduce_keepdim": (lambda x: (x - x.mean(dim=-1, keepdim=True)) / (x.amax(dim=-1, keepdim=True) + 9), (3, 4)),
    "cast_contiguous": (lambda x: x.double().float().transpose(1, 2).contiguous().clone(), (3, 4)),
}


@pytest.mark.parametrize("name", OP_CASES)
def test_op_family_matches_onnxruntime(name, tmp_path):
    fn, shape = OP_CASES[name]
    model = randomize(fn if isinstance(fn, nn.Module) else Lambda(lambda self, x: fn(x)), seed=3)
    if isinstance(model, nn.PReLU):
        assert model.weight.data.std() > 0  # per-channel slopes that differ
    check_roundtrip(model, shape, tmp_path)


# ------------------------------------------------------------------------ every indexing form and shape op
MASK = np.array([True, False, True, True])
INDEX = tinynet.tensor([2, 0, 2, -1])  # repeats and a negative index

INDEXING_CASES = {
    # None: new axes, where PyTorch users put them (a residual block on a flat feature vector)
    "none_trailing": (lambda x: x[:, :, None, None] * 2, (6,)),
    "none_leading_and_middle": (lambda x: x[None, :, None] + 1, (3, 4)),
    "none_with_int_and_slice": (lambda x: x[:, None, 1, 1:3, None], (3, 4)),
    "ellipsis": (lambda x: x[..., 1:3] + x[..., -1:] - x[:, ...][..., 0, None], (3, 4)),
    "ellipsis_none": (lambda x: x[..., None] * x[..., None, :], (3, 4)),
    "ellipsis_middle": (lambda x: x[:, ..., 0], (2, 3, 4)),
    "negative_ints_and_bounds": (lambda x: x[:, -1, -3:-1] + x[:, -2][:, :-2], (3, 4)),
    "steps": (lambda x: x[:, ::2, 1::3], (5, 7)),
    "python_bool": (lambda x: x[:, True] * 3 + x[:, tinynet.tensor(True)] + x[:, False].sum(dim=1, keepdim=True),
                    (3, 4)),
    # integer tensors, arrays and lists (advanced indexing)
    "int_tensor": (lambda x: x[:, INDEX], (5,)),
    "int_list_negative": (lambda x: x[:, [1, -1]], (3, 4)),
    "int_tensor_2d": (lambda x: x[:, tinynet.tensor([[0, 1], [2, 0]])], (3, 4)),
    "int_and_array": (lambda x: x[:, 0, [1, 3]] + x[:, [2], 1], (3, 4)),
    "arrays_adjacent": (lambda x: x[:, [0, 2, 1], [3, 3, 0]], (3, 4)),
    "arrays_broadcast": (lambda x: x[:, tinynet.tensor([[0], [2]]), [1, 3, 0]], (3, 4)),
    "arrays_separated": (lambda x: x[:, [0, 1], :, [1, 2]], (3, 4, 5)),  # NumPy puts their dims first
    "array_on_batch": (lambda x: x[[1, 0, -1]], (3,)),
    # bool masks, fixed and computed from the input
    "mask_constant": (lambda x: x[:, tinynet.tensor(MASK)], (4,)),
    "mask_2d_constant": (lambda x: x[:, tinynet.tensor(np.eye(3, 4, dtype=bool))], (3, 4)),
    "mask_computed": (lambda x: x[x > 0] * 2, (3, 4)),
    "mask_computed_rows": (lambda x: x[:, x[0, :, 0] > 0], (3, 4)),
    "mask_and_array": (lambda x: x[:, tinynet.tensor(MASK), [0, 2, 1]], (4, 3)),
    "masked_fill": (lambda x: x.masked_fill(x < 0, 0.5), (3, 4)),
}

SHAPE_CASES = {
    "unsqueeze": (lambda x: x.unsqueeze(1) * x.unsqueeze(-1) + x.unsqueeze(-1).unsqueeze(1)[:, 0], (4,)),
    "unsqueeze_before_batch": (lambda x: x.unsqueeze(0) * 2, (3, 4)),
    "squeeze": (lambda x: x.squeeze(1) + x.squeeze().sum(dim=1, keepdim=True), (1, 4)),
    "flatten_start_end": (lambda x: x.flatten(1, 2).flatten(-2, -1), (2, 3, 4)),
    "flatten_middle": (lambda x: x.flatten(2, 3), (2, 3, 4, 5)),
    "flatten_batch_in": (lambda x: x.flatten(0, 1) * 2, (3, 4)),
    "flatten_all": (lambda x: x.flatten(), (3, 4)),
    "view_reshape": (lambda x: x.view(-1, 12).reshape(x.shape[0], 4, 3).view_as(x.reshape(-1, 4, 3)), (3, 4)),
    "reshape_as": (lambda x: x.reshape_as(x) + x.reshape(-1, 2, 6).reshape(x.shape), (3, 4)),
    "permute_batch_last": (lambda x: x.permute(2, 0, 1) * 2, (3, 4)),
    "transpose_and_t": (lambda x: x.transpose(-1, -2).sum(dim=1) + x.sum(dim=2).t().t(), (3, 4)),
    "expand_new_leading": (lambda x: x.expand(3, -1, -1), (4,)),
    "expand_inner": (lambda x: x[:, :, None].expand(-1, -1, 4) + x.unsqueeze(1).expand_as(x[:, None].expand(-1, 4, -1)),
                     (4,)),
    "chunk": (lambda x: tinynet.cat(x.chunk(3, dim=1)[::-1], dim=1) + x.chunk(2, dim=-1)[1].sum(dim=1, keepdim=True),
              (7,)),
    "split_sizes": (lambda x: x.split([1, 3], dim=-1)[1] * x.split(2, dim=1)[0].sum(dim=(1, 2), keepdim=True), (3, 4)),
    "stack_cat": (lambda x: tinynet.stack([x, -x], dim=-1).flatten(1) + tinynet.cat([x, x], dim=1), (3,)),
    "pad": (lambda x: F.pad(x, (1, 1, 2, 0), value=-1.0)[:, 1:, :-1], (3, 4)),
    "contiguous": (lambda x: x.transpose(1, 2).contiguous(), (3, 4)),
}


@pytest.mark.parametrize("name", INDEXING_CASES)
def test_indexing_form_matches_onnxruntime(name, tmp_path):
    fn, shape = INDEXING_CASES[name]
    check_roundtrip(Lambda(lambda self, x: fn(x)), shape, tmp_path)


@pytest.mark.parametrize("name", SHAPE_CASES)
def test_shape_op_matches_onnxruntime(name, tmp_path):
    fn, shape = SHAPE_CASES[name]
    check_roundtrip(Lambda(lambda self, x: fn(x)), shape, tmp_path)


def test_index_given_as_a_model_input_stays_an_input(tmp_path):
    """An integer tensor (and a mask made from it) passed to the model is read at run time, not
    frozen into the file with the example's values."""
    class Pick(nn.Module):
        def forward(self, x, index):
            picked = x[:, index]
            return picked + picked[:, index > 1].sum(dim=1, keepdim=True)
    x, index = tinynet.randn(3, 5), tinynet.tensor([4, 0, 2])
    tinynet.onnx.export(Pick(), (x, index), tmp_path / "m.onnx", input_names=["x", "index"])
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x2 = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    for other in ([1, 3], [0, 4, 4, -1]):  # other indices, of other lengths
        other = np.array(other, np.int64)
        (got,) = session.run(None, {"x": x2, "index": other})
        np.testing.assert_allclose(got, Pick()(tinynet.tensor(x2), tinynet.tensor(other)).numpy(), **TOL)


@pytest.mark.parametrize("fn, why", [
    (lambda x: x[:, [0, 1], True], "a Python bool beside integer arrays or masks"),
    (lambda x: x[:, x.sum() > 0], "a 0-d bool mask computed in the model"),
])
def test_index_that_cannot_be_exported_lists_the_forms_that_can(fn, why, tmp_path):
    with pytest.raises(NotImplementedError, match=rf"cannot export indexing with .*: {why}; the forms that export "
                                                  r"are ints .*None, \.\.\., True/False, integer tensors.*bool masks"):
        tinynet.onnx.export(Lambda(lambda self, x: fn(x)), tinynet.randn(2, 3), tmp_path / "m.onnx")


def test_negative_steps_are_refused_by_the_engine():
    """PyTorch refuses them too (tinynet.flip-style reversal is not an indexing form)."""
    with pytest.raises(ValueError, match="step must be greater than zero"):
        tinynet.randn(2, 3)[:, ::-1]


def test_shape_ops_across_the_batch_that_cannot_be_dynamic(tmp_path):
    """A reshape that splits the batch, or a split along it, depends on the batch size: the error
    says so and how to export anyway, which then works at the example's batch."""
    cases = [(lambda self, x: x.reshape(3, 4), "reshape from \\(2, 6\\) to \\(3, 4\\) splits the batch"),
             (lambda self, x: x.chunk(2, dim=0)[0], "split/chunk along the batch")]
    for forward, message in cases:
        with pytest.raises(ValueError, match=message + ".*dynamic_batch=False"):
            tinynet.onnx.export(Lambda(forward), tinynet.randn(2, 6), tmp_path / "m.onnx")
        check_roundtrip(Lambda(forward), (6,), tmp_path, batches=(2,), dynamic_batch=False)


@pytest.mark.parametrize("opset", [13, 18])
def test_other_opsets(opset, tmp_path):
    model = Lambda(lambda self, x: F.log_softmax(self.fc(x.mean(dim=-1)), dim=1), fc=nn.Linear(3, 4))
    proto = check_roundtrip(model, (3, 5), tmp_path, opset=opset)
    assert proto.opset_import[0].version == opset


class TwoInTwoOut(nn.Module):
    def forward(self, a, b):
        return a @ b, a, a.sum(dim=1)


def test_several_inputs_and_outputs_keep_their_names(tmp_path):
    a, b = tinynet.randn(2, 3), tinynet.randn(2, 3, 4)
    proto = tinynet.onnx.export(TwoInTwoOut(), (a, b), tmp_path / "m.onnx", input_names=["a", "b"],
                                output_names=["prod", "same", "total"])
    assert [v.name for v in proto.graph.input] == ["a", "b"]
    assert [v.name for v in proto.graph.output] == ["prod", "same", "total"]
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    a7, b7 = rng.standard_normal((7, 3)).astype(np.float32), rng.standard_normal((7, 3, 4)).astype(np.float32)
    prod, same, total = session.run(None, {"a": a7, "b": b7})
    np.testing.assert_allclose(prod, (tinynet.tensor(a7) @ tinynet.tensor(b7)).numpy(), **TOL)
    np.testing.assert_array_equal(same, a7)
    np.testing.assert_allclose(total, a7.sum(axis=1), **TOL)


def test_unused_side_computations_are_not_exported(tmp_path):
    def forward(self, x):
        self.spread = x.std()  # not exportable, but the output does not depend on it
        return x * 2
    proto = check_roundtrip(Lambda(forward), (3,), tmp_path)
    assert [node.op_type for node in proto.graph.node] == ["Mul"]


# ------------------------------------------------------------------------ errors
class Cube(Function):
    @staticmethod
    def forward(ctx, x):
        return x ** 3


@pytest.mark.parametrize("fn,op", [(lambda x: x.std(dim=1), "Std"), (lambda x: Cube.apply(x), "Cube"),
                                   (lambda x: x.logsumexp(dim=1), "Logsumexp")])
def test_unsupported_op_is_named(fn, op, tmp_path):
    apply_before = Function.__dict__["apply"]
    with pytest.raises(NotImplementedError, match=rf"cannot export op '{op}' \({op}Backward\)"):
        tinynet.onnx.export(Lambda(lambda self, x: fn(x) + 1), tinynet.randn(2, 3), tmp_path / "m.onnx")
    assert Function.__dict__["apply"] is apply_before  # the tracing hook is gone
    assert not (tmp_path / "m.onnx").exists()


def test_tracing_hook_is_removed_when_forward_fails(tmp_path):
    def forward(self, x):
        x = x * 2
        raise RuntimeError("broken model")
    apply_before = Function.__dict__["apply"]
    with pytest.raises(RuntimeError, match="broken model"):
        tinynet.onnx.export(Lambda(forward), tinynet.randn(2, 3), tmp_path / "m.onnx")
    assert Function.__dict__["apply"] is apply_before


def test_training_only_ops_are_refused(tmp_path):
    with pytest.raises(ValueError, match="dropout in training mode"):
        tinynet.onnx.export(Lambda(lambda self, x: F.dropout(x, 0.5, training=True)), tinynet.randn(2, 3),
                            tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="indices of max_pool2d"):
        tinynet.onnx.export(Lambda(lambda self, x: F.max_pool2d(x, 2, return_indices=True)[1].float()),
                            tinynet.randn(2, 1, 4, 4), tmp_path / "m.onnx")


def test_missing_onnx_package_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    with pytest.raises(ImportError, match=r"pip install tinynet\[onnx\]"):
        tinynet.onnx.export(nn.Linear(2, 2), tinynet.randn(1, 2), tmp_path / "m.onnx")
