"""Device memory of a training step, on the simulated CUDA device (``tinynet.sim`` counts the
bytes of every live buffer), and the batch slicing of Conv2d that bounds im2col's workspace.

The ratio to PyTorch at the report batch sizes is measured by ``benchmarks/memory.py`` (results in
``benchmarks/results/cpu-2026-12-04-memory.md``), never in a timed test; here each report model's
step at a small batch is held at or below a measured number, so that a change that makes a step
hold more device memory fails until its limit is raised on purpose.
"""
import contextlib

import numpy as np
import pytest
from hypothesis import given

import tinynet
import tinynet.functional.conv as conv
from tinynet import backend, sim

from helpers import check_gradients, compare_with_torch, torch
from test_compile import SPECS
from test_conv import conv_call, conv_configs, conv_inputs, seeds
from test_launch_counts import _emulated, count_report_step

# The most bytes one training step may add to what is alive at its start (peak_bytes -
# live_bytes_before of count_training_step), batch of 4, CUDA C kernels emulated: measured
# 2026-12-04 by _step_memory below, plus about 10% of room. At this batch every convolution runs
# as one slice.
BATCH = 4
ADDED_LIMITS = {
    "mlp": 216_000,                # measured 196,620 bytes
    "cnn5": 14_500_000,            # 13,194,764
    "pytorch_example": 963_000,    # 875,532
    "lenet": 734_000,              # 667,148
    "vgg_bn": 6_310_000,           # 5,733,260
    "lenet_resnet_conv": 734_000,  # 667,148
    "lenet_resnet_fc": 734_000,    # 667,148
}

# PyTorch warns that it copies the input for padding='same' with an even kernel span.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")

needs_sim = pytest.mark.skipif(backend.cuda_available(), reason="a real GPU is present: memory is counted on the "
                                                                "simulated device")


def _step_memory(name, batch, trace=False):
    if not _emulated():
        pytest.skip("the CUDA C emulator is not available here (no C++ compiler): the simulated device runs the "
                    "NumPy references, which allocate differently")
    return count_report_step(name, batch, trace=trace)


def test_every_report_model_has_a_limit():
    assert set(ADDED_LIMITS) == set(SPECS)


@needs_sim
@pytest.mark.parametrize("name", list(SPECS))
def test_peak_memory_of_a_training_step(name):
    counts = _step_memory(name, BATCH)
    added = counts["peak_bytes"] - counts["live_bytes_before"]
    assert 0 < added <= ADDED_LIMITS[name], f"{name}: the step added {added:,} bytes at its peak (in its " \
                                            f"{counts['peak_phase']} phase); limit {ADDED_LIMITS[name]:,}"


@needs_sim
def test_memory_trace_accounts_for_every_byte_at_the_peak():
    counts = _step_memory("lenet", BATCH, trace=True)
    trace = counts["memory_trace"]
    assert trace.peak_bytes == counts["peak_bytes"]
    assert sum(nbytes for nbytes, _ in trace.at_peak) == trace.peak_bytes
    creators = {creator for _, _, creator in trace.by_creator()}
    assert "before" in creators and any(c.startswith("functional/conv.py") for c in creators), creators


@needs_sim
def test_sliced_convolutions_hold_less_at_the_peak(monkeypatch):
    """LeNet at batch 64: with a 1 MiB workspace its convolutions run in batch slices and save
    their input instead of im2col's columns (25 and 150 times larger per position)."""
    monkeypatch.setattr(conv, "GPU_WORKSPACE_BYTES", 2 ** 40)  # one slice: cols saved
    whole = _step_memory("lenet", 64)
    monkeypatch.setattr(conv, "GPU_WORKSPACE_BYTES", 2 ** 20)
    sliced = _step_memory("lenet", 64)
    added_whole = whole["peak_bytes"] - whole["live_bytes_before"]
    added_sliced = sliced["peak_bytes"] - sliced["live_bytes_before"]
    # measured 2026-12-04: 10,674,188 bytes in one slice, 3,365,708 in slices
    assert added_sliced <= 0.4 * added_whole, (added_sliced, added_whole)
    assert sliced["launches"] > whole["launches"]  # the price: im2col again in backward, per-slice sums


# ------------------------------------------------------------------- the slices themselves
def test_one_slice_on_the_cpu_and_for_a_small_batch():
    assert conv.batch_slices(np, (256, 64, 28, 28), 576, (256, 256, 14, 14), 4) == ((0, 256),)
    assert conv.batch_slices(sim.cupy, (2, 64, 28, 28), 576, (2, 256, 14, 14), 4) == ((0, 2),)


def test_slices_cover_the_batch_within_the_workspace():
    x_shape, out_shape, rows = (128, 64, 28, 28), (128, 256, 14, 14), 576
    slices = conv.batch_slices(sim.cupy, x_shape, rows, out_shape, 4)
    assert slices[0][0] == 0 and slices[-1][1] == 128 and len(slices) > 1
    assert all(a[1] == b[0] for a, b in zip(slices, slices[1:]))
    budget = max(conv.GPU_WORKSPACE_BYTES, 4 * np.prod(x_shape), 4 * np.prod(out_shape))
    assert all((stop - start) * rows * 14 * 14 * 4 <= budget for start, stop in slices)


@contextlib.contextmanager
def image_by_image():
    """Every convolution runs one image at a time (on either device), whatever its size."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(conv, "batch_slices", lambda xp, x_shape, *_: [(i, i + 1) for i in range(x_shape[0])])
        yield


@given(config=conv_configs(), seed=seeds)
def test_sliced_conv2d_gradients(device, config, seed):
    with image_by_image():
        check_gradients(conv_call(tinynet, config[3]), conv_inputs(config, seed, np.float64), device=device)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(config=conv_configs(), seed=seeds)
def test_sliced_conv2d_matches_torch(device, dtype, config, seed):
    with image_by_image():
        compare_with_torch(conv_call(tinynet, config[3]), conv_call(torch, config[3]),
                           conv_inputs(config, seed, dtype), device=device)


@pytest.mark.parametrize("needs", [(True, False, False), (False, True, False), (False, False, True),
                                   (True, True, True)])
def test_sliced_conv2d_computes_only_what_is_needed(device, needs):
    kwargs = dict(stride=(1, 2), padding=1, groups=2)
    arrays = conv_inputs(((3, 4, 5, 5), (4, 2, 3, 3), True, kwargs), 0, np.float64)
    with image_by_image():
        compare_with_torch(conv_call(tinynet, kwargs), conv_call(torch, kwargs), arrays, device=device,
                           requires_grad=list(needs))


@needs_sim
def test_sliced_convolutions_replay_as_one_cuda_graph_equal_to_eager():
    """compile_step records the sliced step and captures it into one CUDA graph (LeNet, every
    convolution image by image): the same losses and parameters as the eager steps."""
    from test_compile import _assert_same, _images, _state
    from test_cuda_graph import _train
    with image_by_image():
        batches = _images("cuda", 6, 4)
        eager, eager_losses, _, _, _ = _train("lenet", False, batches)
        model, losses, step, _, graph_launches = _train("lenet", True, batches)
    assert step.graph_fallback_reason(*batches[0]) is None and graph_launches == 2
    for k, (a, b) in enumerate(zip(losses, eager_losses)):
        _assert_same(a, b, "cuda", f"loss of step {k + 1}")
    expected = _state(eager)
    for key, value in _state(model).items():
        _assert_same(value, expected[key], "cuda", key)
