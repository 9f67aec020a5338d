"""Time one epoch of the MNIST example (batch 64, Adadelta lr=1.0, then the test set at batch
1000) on the CPU, in tinynet or in PyTorch, through the example's own Net, train() and test():

    python tests/pytorch_style/one_epoch.py tinynet --data-dir ../shared/data/mnist
    python tests/pytorch_style/one_epoch.py torch --data-dir ../shared/data/mnist

PyTorch's data here is a TensorDataset normalised once with torchvision's ToTensor + Normalize
arithmetic, written in torch (torchvision need not be installed); tinynet's is
``vision.datasets.MNIST`` with ``Compose([ToTensor(), Normalize(...)])``, which does the same
once for the whole set. So both time the model, not per-sample image decoding.
"""
import argparse
import importlib.util
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _script(framework: str):
    path = HERE / ("mnist_main.py" if framework == "tinynet" else "mnist_main_torch.py")
    source = path.read_text()
    if framework == "torch":
        try:
            import torchvision  # noqa: F401
        except Exception:  # the example's Net/train/test do not use it
            source = source.replace("from torchvision import datasets, transforms\n", "")
    module = importlib.util.module_from_spec(importlib.util.spec_from_file_location(path.stem, path))
    exec(compile(source, str(path), "exec"), module.__dict__)
    return module


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("framework", choices=["tinynet", "torch"])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    script = _script(args.framework)
    lib = script.torch
    lib.manual_seed(args.seed)
    start = time.perf_counter()
    if args.framework == "tinynet":
        transform = script.transforms.Compose([script.transforms.ToTensor(),
                                               script.transforms.Normalize((0.1307,), (0.3081,))])
        train_set = script.datasets.MNIST(args.data_dir, train=True, transform=transform)
        test_set = script.datasets.MNIST(args.data_dir, train=False, transform=transform)
    else:
        import numpy as np
        import tinynet.data  # only to read the IDX files
        sets = []
        for train in (True, False):
            raw = tinynet.data.MNIST(args.data_dir, train=train, normalize=None)  # bytes / 255, float32
            images = lib.from_numpy(np.rint(raw.data.numpy() * 255).astype(np.uint8)).float().div(255)
            images = (images - lib.tensor([0.1307])[:, None, None]) / lib.tensor([0.3081])[:, None, None]
            sets.append(lib.utils.data.TensorDataset(images, lib.from_numpy(raw.targets.numpy())))
        train_set, test_set = sets
    data_s = time.perf_counter() - start
    train_loader = lib.utils.data.DataLoader(train_set, batch_size=64, shuffle=True)
    test_loader = lib.utils.data.DataLoader(test_set, batch_size=1000)
    model = script.Net()
    optimizer = script.optim.Adadelta(model.parameters(), lr=1.0)
    run_args = argparse.Namespace(log_interval=100, dry_run=False)
    start, cpu = time.perf_counter(), time.process_time()
    script.train(run_args, model, "cpu", train_loader, optimizer, 1)
    train_s, train_cpu = time.perf_counter() - start, time.process_time() - cpu
    start = time.perf_counter()
    accuracy = script.test(model, "cpu", test_loader)
    test_s = time.perf_counter() - start
    print(f"{args.framework}: data {data_s:.1f} s, train epoch {train_s:.1f} s (process CPU {train_cpu:.1f} s), "
          f"test {test_s:.1f} s, test accuracy {100 * accuracy:.2f}%")


if __name__ == "__main__":
    main()
