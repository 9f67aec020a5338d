"""The data-parallel scaling model of docs/distributed.md: for every report model, the gradient
bytes all-reduced per step, the ring all-reduce time at NVLink and 100 Gb/s Ethernet bandwidth,
and the expected efficiency at 2, 4 and 8 GPUs. A model, not a measurement: its inputs are the
parameter counts (counted here from examples/*.py), the bandwidths and latencies below, and the
single-GPU step times from issue 14's H200 run; every assumption is a named constant.

    python benchmarks/scaling_model.py          # prints the Markdown tables of docs/distributed.md
"""
from __future__ import annotations

from harness import load_example, markdown_table

# Link bandwidth per direction, bytes/s, and latency per ring hop, seconds (assumptions).
LINKS = {
    "NVLink 4 (H100/H200)": (450e9, 5e-6),   # 900 GB/s bidirectional per GPU; ~5 us per NCCL hop
    "100 Gb/s Ethernet": (12.5e9, 25e-6),    # 100 Gb/s line rate, one GPU per node; ~25 us per hop
}
GPUS = (2, 4, 8)
BACKWARD_SHARE = 2 / 3  # backward is about 2/3 of a step: the most that bucketed all-reduce can hide

# (label, example file, builder, batch size per GPU, single-GPU step time in seconds, source)
# Issue 14 (H200): LeNet 2.2-2.4 s/epoch at batch 256 (235 steps) -> ~9.8 ms/step; vgg_bn 16-24 s/epoch
# at batch 64 (938 steps) -> ~21 ms/step. The others have only ratios to PyTorch there; their step
# time is taken as LeNet's (tinynet's GPU step is bound by ~0.5-0.9 ms of host time per op, issue 14),
# which for the larger mlp and cnn5 understates the step and so overstates the communication's share.
MEASURED_LENET, MEASURED_VGG = 2.3 / 235, 20.0 / 938
MODELS = [
    ("LeNet (002)", "lenet", lambda ex: ex.lenet(), 256, MEASURED_LENET, "issue 14"),
    ("PyTorch example (001)", "pytorch_example", lambda ex: ex.Net(), 64, MEASURED_LENET, "assumed"),
    ("MLP (000)", "mlp", lambda ex: ex.mlp(), 128, MEASURED_LENET, "assumed"),
    ("CNN5 (000)", "cnn5", lambda ex: ex.cnn5(), 128, MEASURED_LENET, "assumed"),
    ("VGG-BN (003)", "vgg_bn", lambda ex: ex.VGGBN(), 64, MEASURED_VGG, "issue 14"),
    ("LeNet-ResNet conv (004)", "lenet_resnet", lambda ex: ex.LeNetRes("conv"), 64, MEASURED_LENET, "assumed"),
    ("LeNet-ResNet fc (004)", "lenet_resnet", lambda ex: ex.LeNetRes("fc"), 64, MEASURED_LENET, "assumed"),
    ("speedrun", "speedrun", lambda ex: ex.speednet(), None, MEASURED_LENET, "assumed"),
]


def all_reduce_seconds(nbytes: float, n: int, bandwidth: float, latency: float) -> float:
    """Ring all-reduce: 2(n-1) steps, each sending nbytes/n per GPU and paying one hop latency."""
    return 2 * (n - 1) / n * nbytes / bandwidth + 2 * (n - 1) * latency


def efficiency(step: float, comm: float) -> tuple[float, float]:
    """(no overlap, best overlap): the single-GPU step over the step plus the exposed
    communication; at best, bucketed all-reduce hides behind backward (BACKWARD_SHARE of the step)."""
    return step / (step + comm), step / (step + max(0.0, comm - BACKWARD_SHARE * step))


def main() -> None:
    sizes = []
    for label, name, build, batch, step, source in MODELS:
        params = sum(p.numel() for p in build(load_example(name)).parameters())
        sizes.append((label, params, 4 * params, batch, step, source))
    print(markdown_table(["model", "parameters", "gradient bytes/step (float32)", "batch/GPU",
                          "1-GPU step (ms)", "step time from"],
                         [[label, f"{p:,}", f"{b / 1e6:.3f} MB", batch or "-", f"{s * 1e3:.1f}", src]
                          for label, p, b, batch, s, src in sizes]))
    for link, (bandwidth, latency) in LINKS.items():
        print(f"\n{link}: {bandwidth / 1e9:g} GB/s per direction, {latency * 1e6:g} us per hop\n")
        header = ["model"] + [f"all-reduce {n} GPUs (ms)" for n in GPUS] + \
                 [f"efficiency {n} GPUs" for n in GPUS]
        rows = []
        for label, _, nbytes, _, step, _ in sizes:
            comms = [all_reduce_seconds(nbytes, n, bandwidth, latency) for n in GPUS]
            effs = [efficiency(step, c) for c in comms]
            rows.append([label] + [f"{c * 1e3:.3f}" for c in comms] +
                        [f"{lo * 100:.0f}-{hi * 100:.0f}%" if round(lo, 2) != round(hi, 2) else f"{lo * 100:.0f}%"
                         for lo, hi in effs])
        print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
