"""Device memory of a training step, on the simulated CUDA device (``tinynet.sim`` counts the
bytes of every live buffer), and a GPU convolution that holds no im2col columns.

The ratio to PyTorch at the report batch sizes is measured by ``benchmarks/memory.py`` (results in
``benchmarks/results/cpu-2026-12-04-memory.md``), never in a timed test; here each report model's
step at a small batch is held at or below a measured number, so that a change that makes a step
hold more device memory fails until its limit is raised on purpose.
"""
import numpy as np
import pytest

import tinynet
from tinynet import backend, sim

from test_compile import SPECS
from test_launch_counts import _emulated, count_report_step

# The most bytes one training step may add to what is alive at its start (peak_bytes -
# live_bytes_before of count_training_step), batch of 4, CUDA C kernels emulated: measured
# 2026-12-04 by _step_memory below, plus about 10% of room (since the GPU convolutions became
# implicit GEMMs that keep no im2col columns: cnn5 was 13.2 MB, LeNet 0.67 MB).
BATCH = 4
ADDED_LIMITS = {
    "mlp": 198_000,                # measured 180,228 bytes
    "cnn5": 10_300_000,            # 9,362,692
    "pytorch_example": 178_000,    # 161,284
    "lenet": 183_000,              # 165,892
    "vgg_bn": 4_200_000,           # 3,816,068
    "lenet_resnet_conv": 183_000,  # 165,892
    "lenet_resnet_fc": 183_000,    # 165,892
}

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
    assert "before" in creators and any(c.startswith("functional/") for c in creators), creators


@needs_sim
def test_a_gpu_convolution_holds_no_columns():
    """LeNet's second convolution at batch 64, forward and backward on the simulated GPU: the
    implicit-GEMM kernels read im2col's entries from x, so the step's peak holds x, y, their
    gradients, the weight's and dW's split-sum workspace, never the (150, 64*8*8) cols matrix
    (2.5 MB in float32: 6.4 times x)."""
    rng = np.random.default_rng(0)
    x = tinynet.tensor(rng.random((64, 6, 12, 12), dtype=np.float32), device="cuda", requires_grad=True)
    layer = tinynet.nn.Conv2d(6, 16, 5).to("cuda")
    grad = tinynet.tensor(rng.random((64, 16, 8, 8), dtype=np.float32), device="cuda")
    cols_bytes = 6 * 5 * 5 * 64 * 8 * 8 * 4
    sim.reset_peak()
    before = sim.stats.live_bytes
    layer(x).backward(grad)
    added = sim.stats.peak_bytes - before
    # y and dx (the output and the input's gradient), dW and db, and the split sum's shares of dW
    expected = 4 * (64 * 16 * 8 * 8 + x.numel() + 2 * layer.weight.numel() + 16)
    assert added < 0.5 * cols_bytes, (added, cols_bytes)
    assert added <= expected + 400_000, (added, expected)  # the shares: at most 256 blocks' worth of dW


@needs_sim
def test_gpu_convolution_saves_its_input_only_for_the_weight_gradient():
    layer = tinynet.nn.Conv2d(6, 16, 5).to("cuda")
    layer.weight.requires_grad_(False)
    x = tinynet.tensor(np.ones((4, 6, 12, 12), dtype=np.float32), device="cuda", requires_grad=True)
    y = layer(x)
    saved, weight = y.grad_fn.saved_tensors
    assert saved is None and weight is not None
