"""Training tools: metrics, fit/evaluate on a tiny problem, checkpoints and resume, figures."""
import json

import numpy as np
import pytest

import tinynet
from tinynet import nn, optim
from tinynet.data import DataLoader, TensorDataset
from tinynet.plots import plot_confusion, plot_digits, plot_history, plot_sweep
from tinynet.train import (History, accuracy, confusion_matrix, evaluate, fit, load_checkpoint,
                           per_class_accuracy)


def test_metrics_by_hand():
    pred, true = np.array([0, 1, 1, 2, 2, 2]), np.array([0, 1, 2, 2, 2, 0])
    assert accuracy(pred, true) == pytest.approx(4 / 6)
    cm = confusion_matrix(pred, true, num_classes=3)
    np.testing.assert_array_equal(cm, [[1, 0, 1], [0, 1, 0], [0, 1, 2]])
    np.testing.assert_allclose(per_class_accuracy(cm), [0.5, 1.0, 2 / 3])


def _toy_loaders(seed=0, n=384):
    """Two well-separated Gaussian blobs per class, as 1x4x4 'images'."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((n, 1, 4, 4)).astype(np.float32) * 0.3 + y[:, None, None, None]
    data = TensorDataset(tinynet.tensor(x), tinynet.tensor(y))
    return DataLoader(data, batch_size=16, shuffle=True, seed=seed), DataLoader(data, batch_size=32)


def _model():
    tinynet.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Dropout(0.1), nn.ReLU(), nn.Linear(8, 3))


def test_fit_learns_and_records_history(tmp_path):
    train, test = _toy_loaders()
    model = _model()
    opt = optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    history = fit(model, opt, nn.CrossEntropyLoss(), train, test, epochs=4, progress=False,
                  scheduler=optim.lr_scheduler.StepLR(opt, 2, 0.5), checkpoint_dir=tmp_path)
    assert len(history.train_loss) == 4 and history.train_loss[-1] < history.train_loss[0]
    assert history.test_acc[-1] > 0.9
    assert history.lr == [0.2, 0.2, 0.1, 0.1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_1.npz", "epoch_2.npz", "epoch_3.npz",
                                                           "epoch_4.npz", "last.npz"]
    result = evaluate(model, test, nn.CrossEntropyLoss())
    assert result["accuracy"] == pytest.approx(history.test_acc[-1])
    assert result["confusion"].sum() == len(test.dataset)
    assert model.training  # evaluate restores the mode


def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path):
    def run(epochs, resume, folder):
        train, test = _toy_loaders()
        model = _model()
        opt = optim.Adam(model.parameters(), lr=0.01)
        sched = optim.lr_scheduler.StepLR(opt, 1, 0.7)
        fit(model, opt, nn.CrossEntropyLoss(), train, test, epochs=epochs, scheduler=sched,
            checkpoint_dir=folder, resume=resume, progress=False)
        return model, opt
    full, _ = run(3, False, tmp_path / "full")
    run(2, False, tmp_path / "cut")            # interrupted after epoch 2
    resumed, opt = run(3, True, tmp_path / "cut")  # a new process picks it up
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7, err_msg=name)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * 0.7 ** 3)
    epoch, history = load_checkpoint(tmp_path / "cut" / "last.npz", _model())
    assert epoch == 3 and len(history.train_loss) == 3


def test_figures_are_written(tmp_path):
    h = History([1.0, 0.5], [0.5, 0.8], [0.9, 0.6], [0.6, 0.7], [0.1, 0.1], [1.0, 1.0])
    cm = np.array([[5, 1], [2, 7]])
    images = np.random.default_rng(0).random((5, 28, 28))
    paths = [plot_history(h, tmp_path / "curves.png"), plot_confusion(cm, tmp_path / "cm.png"),
             plot_digits(images, [1, 2, 3, 4, 5], [1, 2, 0, 4, 5], tmp_path / "digits.png"),
             plot_sweep([0.1, 0.5], [0.9, 0.95], tmp_path / "sweep.png", xlabel="lr")]
    for p in paths:
        assert p.exists() and p.stat().st_size > 1000 and p.read_bytes()[:4] == b"\x89PNG"
    h.save_json(tmp_path / "h.json")
    assert json.loads((tmp_path / "h.json").read_text())["test_acc"] == [0.6, 0.7]
