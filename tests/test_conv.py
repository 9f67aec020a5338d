"""conv2d: gradients (finite differences) and parity with PyTorch over hypothesis-drawn
configurations (shapes, kernels, strides, paddings, dilations, groups, bias, unbatched input),
LeNet's and a VGG-like layer, and the errors raised on bad input."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinynet
import tinynet.nn.functional  # noqa: F401  (tinynet.nn.functional.conv2d, as torch's)
from helpers import check_gradients, compare_with_torch, requires_torch, torch

DTYPES = [np.float32, np.float64]
# PyTorch warns that it copies the input for padding='same' with an even kernel span.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")


@st.composite
def conv_configs(draw):
    """A random valid conv2d call: ``(input shape, weight shape, has bias, keyword arguments)``.
    Sides stay <= 5 so a finite-difference check is fast."""
    groups = draw(st.integers(1, 3))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding_kind = draw(st.sampled_from(["ints", "ints", "ints", "same", "valid"]))
    if padding_kind == "ints":
        pads = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
        stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        padding = pads if pads[0] != pads[1] or draw(st.booleans()) else pads[0]
    else:
        pads, stride = (0, 0), (1, 1)
        padding = padding_kind
    span = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    # The input must cover one window: H + 2*pad >= span ('same' pads up to span - 1).
    low = [max(1, s - 2 * p) if padding_kind != "same" else 1 for s, p in zip(span, pads)]
    size = (draw(st.integers(low[0], 5)), draw(st.integers(low[1], 5)))
    batch = draw(st.sampled_from([None, 1, 2]))  # None: unbatched (C, H, W)
    x_shape = ((batch,) if batch else ()) + (c_in,) + size
    kwargs = dict(stride=stride if stride[0] != stride[1] else stride[0], padding=padding,
                  dilation=dilation, groups=groups)
    return x_shape, (c_out, c_in // groups) + kernel, draw(st.booleans()), kwargs


def conv_inputs(config, seed, dtype):
    x_shape, w_shape, has_bias, _ = config
    rng = np.random.default_rng(seed)
    arrays = [rng.uniform(-1, 1, x_shape), rng.uniform(-1, 1, w_shape)]
    if has_bias:
        arrays.append(rng.uniform(-1, 1, w_shape[0]))
    return [a.astype(dtype) for a in arrays]


def conv_call(m, kwargs):
    """``conv2d`` of framework ``m`` (tinynet or torch) with fixed keyword arguments."""
    def call(x, w, b=None):
        return m.nn.functional.conv2d(x, w, b, **kwargs)
    return call


seeds = st.integers(0, 2**32 - 1)


@given(config=conv_configs(), seed=seeds)
def test_conv2d_gradients(device, config, seed):
    check_gradients(conv_call(tinynet, config[3]), conv_inputs(config, seed, np.float64), device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@given(config=conv_configs(), seed=seeds)
def test_conv2d_matches_torch(device, dtype, config, seed):
    compare_with_torch(conv_call(tinynet, config[3]), conv_call(torch, config[3]),
                       conv_inputs(config, seed, dtype), device=device)


# (input shape, weight shape, keyword arguments): real layers, where sums run over many terms.
LAYERS = {
    "lenet_conv1_pad2": ((2, 1, 28, 28), (6, 1, 5, 5), dict(padding=2)),
    "lenet_conv1": ((2, 1, 28, 28), (6, 1, 5, 5), dict()),
    "lenet_conv2": ((2, 6, 14, 14), (16, 6, 5, 5), dict()),
    "vgg_3x3_pad1": ((2, 8, 7, 7), (16, 8, 3, 3), dict(padding=1)),
    "vgg_3x3_same": ((2, 4, 14, 14), (8, 4, 3, 3), dict(padding="same")),
    "4x4_map_3x3_pad1": ((3, 16, 4, 4), (16, 16, 3, 3), dict(padding=1)),    # lenet_resnet's conv block
    "strided_1x1": ((2, 8, 7, 7), (4, 8, 1, 1), dict(stride=2)),
    "depthwise": ((2, 6, 9, 9), (6, 1, 3, 3), dict(padding=1, groups=6)),
    "1x1_map_3x3_pad1": ((3, 12, 1, 1), (12, 12, 3, 3), dict(padding=1)),    # lenet_resnet's fc block
    "2x2_map_5x5_pad2_stride2": ((2, 3, 2, 3), (4, 3, 5, 5), dict(padding=2, stride=2)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layer", LAYERS)
def test_real_layers_match_torch(device, dtype, layer):
    x_shape, w_shape, kwargs = LAYERS[layer]
    # Weight gradients sum over N*OH*OW terms (>1000 here): float32 needs a looser atol.
    atol = 2e-4 if dtype == np.float32 else None
    compare_with_torch(conv_call(tinynet, kwargs), conv_call(torch, kwargs),
                       conv_inputs((x_shape, w_shape, True, kwargs), 0, dtype), device=device, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layer", ["lenet_conv1", "lenet_conv2", "4x4_map_3x3_pad1", "1x1_map_3x3_pad1", "depthwise"])
def test_an_empty_batch_gives_empty_outputs_and_zero_gradients(device, dtype, layer):
    """A batch of 0 images, as PyTorch allows: every path (shallow, tiles, im2col with and
    without cut taps, groups) gives an empty output and dx, and zero dW and db."""
    x_shape, w_shape, kwargs = LAYERS[layer]
    x = tinynet.tensor(np.ones((0,) + x_shape[1:], dtype), device=device, requires_grad=True)
    w = tinynet.tensor(np.ones(w_shape, dtype), device=device, requires_grad=True)
    b = tinynet.tensor(np.ones(w_shape[0], dtype), device=device, requires_grad=True)
    y = tinynet.nn.functional.conv2d(x, w, b, **kwargs)
    one_image = tinynet.nn.functional.conv2d(tinynet.tensor(np.ones((1,) + x_shape[1:], dtype), device=device),
                                             w.detach(), b.detach(), **kwargs)
    assert y.shape == (0,) + one_image.shape[1:] and y.device == x.device
    y.sum().backward()
    assert x.grad.shape == x.shape
    np.testing.assert_array_equal(w.grad.cpu().numpy(), np.zeros(w_shape, dtype))
    np.testing.assert_array_equal(b.grad.cpu().numpy(), np.zeros(w_shape[0], dtype))


def test_output_shape_and_values_of_a_hand_computed_case():
    # 1x1 input channel, 2x2 kernel of ones: each output is the sum of a 2x2 patch, plus bias.
    x = tinynet.tensor(np.arange(9, dtype=np.float64).reshape(1, 1, 3, 3))
    w = tinynet.tensor(np.ones((1, 1, 2, 2)))
    y = tinynet.nn.functional.conv2d(x, w, tinynet.tensor(np.array([0.5])))
    np.testing.assert_array_equal(y.numpy(), [[[[8.5, 12.5], [20.5, 24.5]]]])


def test_no_gradient_is_computed_for_inputs_that_do_not_need_it():
    x = tinynet.tensor(np.ones((1, 2, 4, 4)))
    w = tinynet.tensor(np.ones((3, 2, 3, 3)), requires_grad=True)
    tinynet.nn.functional.conv2d(x, w).sum().backward()
    assert x.grad is None
    np.testing.assert_array_equal(w.grad.numpy(), np.full((3, 2, 3, 3), 4.0))


@pytest.mark.parametrize("needs", [(True, False, False), (False, True, False), (False, False, True)])
@pytest.mark.parametrize("shape", [((2, 4, 5, 5), (4, 2, 3, 3), 2), ((2, 1, 5, 5), (4, 1, 3, 3), 1)],
                         ids=["grouped", "shallow"])   # shallow: image by image on the CPU
def test_gradients_of_one_input_at_a_time_match_torch(device, needs, shape):
    """Backward computes only what is needed (and keeps x or im2col's columns only for dW)."""
    x_shape, w_shape, groups = shape
    kwargs = dict(stride=(1, 2), padding=1, groups=groups)
    arrays = conv_inputs((x_shape, w_shape, True, kwargs), 0, np.float64)
    compare_with_torch(conv_call(tinynet, kwargs), conv_call(torch, kwargs), arrays, device=device,
                       requires_grad=list(needs))


@pytest.mark.parametrize("few_filters", [0, 1000], ids=["plain_product", "transposed_product"])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("reserved", [False, True], ids=["new_grad", "reserved_grad"])
@pytest.mark.parametrize("side", [6, 1], ids=["6x6", "1x1_centre_tap"])
def test_both_weight_gradient_products_agree_with_torch(monkeypatch, few_filters, groups, reserved, side):
    """dW is dY @ cols.T, or (cols @ dY.T).T for layers with few filters (FEW_FILTERS): both
    give PyTorch's gradient, as a new array or written into the weight's reserved .grad, also
    when the kernel is cut to the taps that read the input (a 1x1 map: the centre alone)."""
    from tinynet import autograd
    from tinynet.functional import conv
    monkeypatch.setattr(conv, "FEW_FILTERS", few_filters)
    kwargs = dict(padding=1, groups=groups)
    x, w, b = conv_inputs(((3, 4, side, side), (6, 4 // groups, 3, 3), True, kwargs), 0, np.float64)
    weight = tinynet.tensor(w, requires_grad=True)
    storage = np.full_like(w, np.nan)
    if reserved:
        autograd.reserve_grad(weight, storage)
    try:
        tinynet.nn.functional.conv2d(tinynet.tensor(x), weight, tinynet.tensor(b), **kwargs).pow(2).sum().backward()
    finally:
        autograd.reserve_grad(weight, None)
    assert (weight.grad.data is storage) == reserved
    if torch is None:
        pytest.skip("PyTorch is not installed")
    expected = torch.tensor(w, requires_grad=True)
    torch.nn.functional.conv2d(torch.tensor(x), expected, torch.tensor(b), **kwargs).pow(2).sum().backward()
    np.testing.assert_allclose(weight.grad.numpy(), expected.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", [
    # size, kernel, stride, padding, dilation -> taps kept (rows, columns) and the new padding
    (((1, 1), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)), ((slice(1, 2), slice(1, 2)), ((0, 0), (0, 0)))),
    (((2, 2), (5, 5), (1, 1), ((2, 2), (2, 2)), (1, 1)), ((slice(1, 4), slice(1, 4)), ((1, 1), (1, 1)))),
    (((1, 4), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)), ((slice(1, 2), slice(0, 3)), ((0, 0), (1, 1)))),
    (((1, 1), (3, 3), (1, 1), ((2, 2), (2, 2)), (2, 2)), ((slice(1, 2), slice(1, 2)), ((0, 0), (0, 0)))),
    (((4, 4), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)), None),     # every tap reads the input
    (((5, 5), (3, 3), (2, 2), ((0, 0), (0, 0)), (1, 1)), None),
], ids=["1x1_3x3", "2x2_5x5", "1x4_3x3", "1x1_dilated", "4x4_3x3", "unpadded"])
def test_taps_over_padding_alone_are_cut_from_the_kernel(case):
    """A tap that reads padding at every output position is left out of the CPU's product (its
    gradient is 0); the cut kernel with the new padding gives the same output size."""
    from tinynet.functional.conv import _taps_reading_input
    from tinynet.kernels.im2col import output_size
    (size, kernel, stride, padding, dilation), expected = case
    out = [output_size(n, k, s, *p, d) for n, k, s, p, d in zip(size, kernel, stride, padding, dilation)]
    taps = _taps_reading_input(size, kernel, stride, padding, dilation, tuple(out))
    assert taps == expected
    if taps is not None:
        cut = [t.stop - t.start for t in taps[0]]
        assert [output_size(n, k, s, *p, d) for n, k, s, p, d in zip(size, cut, stride, taps[1], dilation)] == out


# ---------------------------------------------------------------------------------- errors
def conv(m, x_shape, w_shape, b_shape=None, dtype=np.float32, w_dtype=None, **kwargs):
    """conv2d of framework ``m`` on zeros of the given shapes."""
    x = m.tensor(np.zeros(x_shape, dtype))
    w = m.tensor(np.zeros(w_shape, w_dtype or dtype))
    b = m.tensor(np.zeros(b_shape, dtype)) if b_shape is not None else None
    return m.nn.functional.conv2d(x, w, b, **kwargs)


BAD_CALLS = {
    "wrong_channels": (lambda m: conv(m, (2, 3, 5, 5), (4, 2, 3, 3)),
                       r"^conv2d: given groups=1, weight of size \[4, 2, 3, 3\], expected input\[2, 3, 5, 5\] "
                       r"to have 2 channels, but got 3 channels"),
    "wrong_channels_grouped": (lambda m: conv(m, (2, 3, 5, 5), (4, 3, 3, 3), groups=2),
                               r"^conv2d: given groups=2, .*\[4, 3, 3, 3\].*\[2, 3, 5, 5\].*6 channels"),
    "groups_not_dividing_out_channels": (lambda m: conv(m, (2, 3, 5, 5), (4, 1, 3, 3), groups=3),
                                         r"^conv2d: given groups=3, expected weight to be divisible by 3.*"
                                         r"\[4, 1, 3, 3\]"),
    "non_positive_groups": (lambda m: conv(m, (2, 3, 5, 5), (4, 3, 3, 3), groups=0), r"^conv2d: .*groups=0"),
    "kernel_larger_than_padded_input": (lambda m: conv(m, (2, 3, 5, 5), (4, 3, 7, 7), padding=0),
                                        r"^conv2d: calculated padded input size per channel: \(5 x 5\)\. "
                                        r"Kernel size: \(7 x 7\)"),
    "dilated_kernel_too_large": (lambda m: conv(m, (1, 1, 4, 4), (1, 1, 3, 3), dilation=2),
                                 r"^conv2d: .*\(4 x 4\).*\(5 x 5\)"),
    "weight_not_4d": (lambda m: conv(m, (2, 3, 5, 5), (4, 3, 3)), r"^conv2d: .*4D weight.*\[4, 3, 3\]"),
    "input_2d": (lambda m: conv(m, (5, 5), (4, 3, 3, 3)), r"^conv2d: .*3D \(unbatched\) or 4D.*\[5, 5\]"),
    "bias_wrong_size": (lambda m: conv(m, (2, 3, 5, 5), (4, 3, 3, 3), (3,)),
                        r"^conv2d: .*bias to be 1-dimensional with 4 elements.*\[3\]"),
    "non_positive_stride": (lambda m: conv(m, (2, 3, 5, 5), (4, 3, 3, 3), stride=0),
                            r"^conv2d: non-positive stride"),
    "negative_padding": (lambda m: conv(m, (2, 3, 5, 5), (4, 3, 3, 3), padding=-1), r"^conv2d: negative padding"),
    "non_positive_dilation": (lambda m: conv(m, (2, 3, 5, 5), (4, 3, 3, 3), dilation=(1, 0)),
                              r"^conv2d: non-positive dilation"),
    "stride_of_three_values": (lambda m: conv(m, (2, 3, 5, 5), (4, 3, 3, 3), stride=(1, 2, 3)),
                               r"^conv2d: expected stride .*\(1, 2, 3\)"),
    "same_with_stride": (lambda m: conv(m, (2, 3, 5, 5), (4, 3, 3, 3), padding="same", stride=2),
                         r"^conv2d: padding='same' is not supported for strided"),
    "bad_padding_string": (lambda m: conv(m, (2, 3, 5, 5), (4, 3, 3, 3), padding="full"),
                           r"^conv2d: invalid padding string 'full'"),
    "mixed_dtypes": (lambda m: conv(m, (2, 3, 5, 5), (4, 3, 3, 3), w_dtype=np.float64),
                     r"^conv2d: .*input float32, weight float64"),
    "integer_input": (lambda m: conv(m, (2, 3, 5, 5), (4, 3, 3, 3), dtype=np.int64),
                      r"^conv2d: .*floating-point.*int64"),
}


@pytest.mark.parametrize("case", BAD_CALLS)
def test_bad_input_raises_runtime_error_naming_conv2d(case):
    call, message = BAD_CALLS[case]
    with pytest.raises(RuntimeError, match=message):
        call(tinynet)


@requires_torch
@pytest.mark.parametrize("case", [c for c in BAD_CALLS if c != "integer_input"])  # torch convolves integers
def test_torch_rejects_the_same_calls(case):
    """The calls above are errors in PyTorch too: the tests follow PyTorch, not a guess."""
    with pytest.raises(RuntimeError):
        BAD_CALLS[case][0](torch)


def test_non_tensor_input_raises_type_error():
    with pytest.raises(TypeError, match=r"^conv2d: .*input.*ndarray"):
        tinynet.nn.functional.conv2d(np.zeros((1, 1, 3, 3)), tinynet.tensor(np.zeros((1, 1, 2, 2))))
