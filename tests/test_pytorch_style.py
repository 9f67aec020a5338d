"""A PyTorch script runs on tinynet by changing its imports (issue 18).

``tests/pytorch_style/mnist_main.py`` is PyTorch's MNIST example written against tinynet under
PyTorch's names; ``mnist_main_torch.py`` is the same file with PyTorch's imports. Here:

* the two files differ in their import lines only;
* both train the example's convnet with Adadelta from the same initial weights on the same
  batches (a fixed order through a ``sampler``), and print the same losses: to the last printed
  digit in float64 with dropout switched off, and within noise with dropout (its masks differ);
* tinynet's script runs end to end from ``main()``.

Data: the shared MNIST copy (``../shared/data/mnist`` from the repository, as in the other
tests) when present, else small IDX files written here. The training batches are drawn from the
10,000-image test split, which keeps a float64 copy of the set small. On the PyTorch side the
images are converted with torchvision's ToTensor + Normalize arithmetic (``x.float() / 255``,
then ``(x - mean) / std``) written in torch, so torchvision is not needed; when it is installed
the twin imports it as written.
"""
import argparse
import hashlib
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

import tinynet
from helpers import requires_torch, to_numpy, torch
from test_data import tiny_mnist

HERE = Path(__file__).resolve().parent / "pytorch_style"
REPO = Path(__file__).resolve().parents[1]
SHARED = [REPO.parent / "shared" / "data" / "mnist", REPO.parents[1] / "shared" / "data" / "mnist"]
EVAL = 200  # test-set images evaluated after training
LOSS = re.compile(r"Loss: ([0-9.]+)")


def test_twins_differ_in_their_imports_only():
    ours = (HERE / "mnist_main.py").read_text().splitlines()
    theirs = (HERE / "mnist_main_torch.py").read_text().splitlines()
    assert len(ours) == len(theirs)
    changed = [(a, b) for a, b in zip(ours, theirs) if a != b]
    assert len(changed) == 6
    for a, b in changed:
        assert a.startswith(("import ", "from ")) and b.startswith(("import ", "from ")), (a, b)
        assert "tinynet" in a and "tinynet" not in b


def test_mps_is_not_available():
    assert tinynet.backends.mps.is_available() is False and tinynet.backends.mps.is_built() is False


def _load(name: str, path: Path, drop_line: str | None = None):
    """Import the script at ``path`` as a module; without torchvision, run it with
    ``drop_line`` (its torchvision import) left out: the functions used here do not need it."""
    source = path.read_text()
    if drop_line is not None:
        assert drop_line in source
        source = source.replace(drop_line, "")
    module = importlib.util.module_from_spec(importlib.util.spec_from_file_location(name, path))
    exec(compile(source, str(path), "exec"), module.__dict__)
    return module


@pytest.fixture(scope="module")
def scripts():
    if torch is None:
        pytest.skip("PyTorch is not installed")
    try:
        import torchvision  # noqa: F401
        drop = None
    except Exception:  # absent, or a build that does not match this torch
        drop = "from torchvision import datasets, transforms\n"
    return _load("mnist_main", HERE / "mnist_main.py"), _load("mnist_main_torch", HERE / "mnist_main_torch.py", drop)


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory):
    for folder in SHARED:
        if (folder / "t10k-images-idx3-ubyte.gz").is_file():
            return folder
    root = tmp_path_factory.mktemp("mnist")
    tiny_mnist(root, n=1000, train=False, seed=1)
    tiny_mnist(root, n=64, train=True, seed=2)
    return root


@pytest.fixture
def default_dtype(request):
    """Set both frameworks' default float dtype for the test (restored after)."""
    dtype = request.param
    tinynet.set_default_dtype(getattr(tinynet, dtype))
    torch.set_default_dtype(getattr(torch, dtype))
    yield dtype
    tinynet.set_default_dtype(tinynet.float32)
    torch.set_default_dtype(torch.float32)


def _run_both(scripts, root, capsys, dropout: bool, steps: int, batch: int):
    """Train both scripts' Net with their train() on the same batches from the same weights,
    then evaluate with their test(); return (tinynet's output, torch's output, both models)."""
    tn_script, th_script = scripts
    dataset = tn_script.datasets.MNIST(root, train=False, transform=tn_script.transforms.Compose([
        tn_script.transforms.ToTensor(), tn_script.transforms.Normalize((0.1307,), (0.3081,))]))
    n = len(dataset)
    order = np.random.default_rng(0).permutation(n)[:steps * batch].tolist()  # the same batches for both
    tn_loader = tinynet.utils.data.DataLoader(dataset, batch_size=batch, sampler=order, num_workers=1,
                                              pin_memory=True)
    tn_test = tinynet.utils.data.DataLoader(tinynet.utils.data.Subset(dataset, range(min(EVAL, n))),
                                            batch_size=100)
    # torchvision's ToTensor + Normalize, in torch, on the same bytes
    images = torch.from_numpy(dataset.data.numpy())[:, None].to(torch.get_default_dtype()).div(255)
    images = (images - torch.tensor([0.1307])[:, None, None]) / torch.tensor([0.3081])[:, None, None]
    targets = torch.from_numpy(dataset.targets.numpy())
    th_set = torch.utils.data.TensorDataset(images, targets)
    th_loader = torch.utils.data.DataLoader(th_set, batch_size=batch, sampler=order)
    th_test = torch.utils.data.DataLoader(torch.utils.data.Subset(th_set, range(min(EVAL, n))), batch_size=100)

    torch.manual_seed(1)
    th_model = th_script.Net()
    tn_model = tn_script.Net()
    tn_model.load_state_dict({k: tinynet.tensor(v.numpy()) for k, v in th_model.state_dict().items()})
    if not dropout:
        for model in (tn_model, th_model):
            model.dropout1.p = model.dropout2.p = 0.0
    args = argparse.Namespace(log_interval=1, dry_run=False)
    outputs = []
    for script, model, loader, test_loader in ((tn_script, tn_model, tn_loader, tn_test),
                                               (th_script, th_model, th_loader, th_test)):
        optimizer = script.optim.Adadelta(model.parameters(), lr=1.0)
        script.train(args, model, "cpu", loader, optimizer, 1)
        script.test(model, "cpu", test_loader)
        outputs.append(capsys.readouterr().out)
    return outputs[0], outputs[1], tn_model, th_model


@requires_torch
@pytest.mark.parametrize("default_dtype", ["float64"], indirect=True)
def test_same_losses_without_dropout(scripts, mnist_root, capsys, default_dtype):
    steps = 200
    ours, theirs, tn_model, th_model = _run_both(scripts, mnist_root, capsys, dropout=False, steps=steps, batch=2)
    assert len(LOSS.findall(ours)) == steps
    assert ours == theirs  # every printed loss (6 decimals), and the test loss and accuracy
    for name, value in th_model.state_dict().items():
        np.testing.assert_allclose(to_numpy(tn_model.state_dict()[name]), value.numpy(), rtol=1e-8, atol=1e-10,
                                   err_msg=name)


@requires_torch
@pytest.mark.parametrize("default_dtype", ["float32"], indirect=True)
def test_same_losses_with_dropout_within_noise(scripts, mnist_root, capsys, default_dtype):
    steps = 120
    ours, theirs, _, _ = _run_both(scripts, mnist_root, capsys, dropout=True, steps=steps, batch=4)
    tn_losses, th_losses = (np.array([float(v) for v in LOSS.findall(out)]) for out in (ours, theirs))
    assert len(tn_losses) == len(th_losses) == steps
    # The first step sees the same weights and batch; only the dropout masks differ.
    assert abs(tn_losses[0] - th_losses[0]) < 0.1
    # Later, the means over the second half of training (60 batches of 4) agree within noise:
    # one batch's loss varies by about 0.5 there, so each mean by about 0.5 / sqrt(60) = 0.065
    # and their difference by about 0.09; and both have learned (the first loss is ln 10 = 2.3).
    late = slice(steps // 2, None)
    assert abs(tn_losses[late].mean() - th_losses[late].mean()) < 0.25, (tn_losses[late].mean(),
                                                                         th_losses[late].mean())
    assert tn_losses[late].mean() < 0.7 * tn_losses[0] and th_losses[late].mean() < 0.7 * th_losses[0]


def test_script_main_runs_on_tinynet(scripts, mnist_root, tmp_path, monkeypatch):
    """The whole script, as a user runs it (one dry-run step of training, then the test set)."""
    tn_script, _ = scripts
    monkeypatch.chdir(tmp_path)
    small = tmp_path / "small"
    tiny_mnist(small, n=40, train=True, seed=3)
    tiny_mnist(small, n=30, train=False, seed=4)
    # The script asks for download=True, which checks the files against MNIST's checksums:
    # give it those of the small files.
    sums = {p.name[:-3]: hashlib.sha256(tinynet.data.idx.read_bytes(p)).hexdigest() for p in small.iterdir()}
    monkeypatch.setattr(tn_script.datasets.MNIST, "resources", sums)
    accuracy = tn_script.main(["--dry-run", "--epochs", "2", "--no-cuda", "--batch-size", "8",
                               "--test-batch-size", "16", "--data-dir", str(small), "--save-model"])
    assert 0.0 <= accuracy <= 1.0 and (tmp_path / "mnist_cnn.pt").is_file()
    state = tinynet.load(tmp_path / "mnist_cnn.pt")
    assert sorted(state) == sorted(tn_script.Net().state_dict())

