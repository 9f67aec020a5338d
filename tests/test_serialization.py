"""save/load: nested checkpoints round-trip without pickle, writes are atomic, and files that
are not tinynet checkpoints give a clear error naming the path."""
import io
import os
import zipfile
from collections import Counter, OrderedDict

import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinynet
import tinynet.nn as nn
from tinynet import serialization
from tinynet.serialization import load, save
from helpers import to_numpy


def small_model():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def checkpoint():
    model = small_model()
    return {
        "model": model.state_dict(),
        "optimizer": {"state": {0: {"step": 3, "exp_avg": tinynet.randn(4, 3)}, 1: {"step": 3}},
                      "param_groups": [{"lr": 0.01, "betas": (0.9, 0.999), "params": [0, 1, 2], "nesterov": False}]},
        "epoch": 3,
        "history": {"loss": [1.5, 0.75, float("inf")], "note": "résumé ✓", "best": None},
        "array": np.arange(6, dtype=np.int32).reshape(2, 3),
        "scalar": np.float32(0.5),
        "grad_tensor": tinynet.ones(2, requires_grad=True),
        "parameter": nn.Parameter(tinynet.zeros(2)),
        "scheduler": {"milestones": Counter([30, 60, 60]), "last_epoch": -1},
    }


def assert_same(a, b, path="root"):
    assert type(a) is type(b), f"{path}: {type(a)} vs {type(b)}"
    if isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, tinynet.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and a.requires_grad == b.requires_grad, path
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b), err_msg=path)
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype, path
        np.testing.assert_array_equal(a, b, err_msg=path)
    else:
        assert a == b, path


def test_nested_checkpoint_round_trips(tmp_path):
    obj = checkpoint()
    path = tmp_path / "ckpt.pt"
    save(obj, path)
    back = load(path)
    assert_same(obj, back)
    assert isinstance(back["model"], OrderedDict)
    assert isinstance(back["optimizer"]["param_groups"][0]["betas"], tuple)
    assert list(back["optimizer"]["state"]) == [0, 1]  # integer keys stay integers
    assert all(t.device == "cpu" for t in back["model"].values())
    assert isinstance(back["parameter"], nn.Parameter)
    assert back["scheduler"]["milestones"][60] == 2 and back["scheduler"]["milestones"][5] == 0
    assert not isinstance(back["model"]["0.weight"], nn.Parameter)


def test_the_name_is_used_as_given_and_the_file_is_a_plain_npz(tmp_path):
    path = tmp_path / "weights.ckpt"
    save({"w": tinynet.ones(2)}, str(path))
    assert os.listdir(tmp_path) == ["weights.ckpt"]
    with np.load(path, allow_pickle=False) as archive:  # readable without tinynet, no pickle
        assert "__tinynet__" in archive.files


def test_file_objects_work():
    buffer = io.BytesIO()
    save({"epoch": 1, "w": tinynet.arange(3)}, buffer)
    buffer.seek(0)
    back = load(buffer)
    assert back["epoch"] == 1 and back["w"].dtype == tinynet.int64


def test_model_state_survives_save_and_load(tmp_path):
    model = small_model()
    with tinynet.no_grad():
        model[1].running_mean.fill_(0.25)
        model[1].num_batches_tracked.fill_(9)
    save(model.state_dict(), tmp_path / "m.npz")
    fresh = small_model()
    result = fresh.load_state_dict(load(tmp_path / "m.npz"))
    assert result.missing_keys == [] and result.unexpected_keys == []
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(to_numpy(fresh.state_dict()[key]), to_numpy(value), err_msg=key)


def test_shared_tensors_stay_shared(tmp_path):
    t = tinynet.randn(3)
    save({"a": t, "b": [t]}, tmp_path / "s")
    back = load(tmp_path / "s")
    assert back["a"] is back["b"][0]


def test_map_location_places_tensors(tmp_path, device):
    save({"w": tinynet.randn(2, 2, device=device)}, tmp_path / "d")
    assert load(tmp_path / "d")["w"].device == "cpu"
    assert load(tmp_path / "d", map_location=device)["w"].device == device
    with pytest.raises(TypeError, match="map_location"):
        load(tmp_path / "d", map_location={"cuda:0": "cpu"})


def test_unsupported_objects_are_refused_with_their_location(tmp_path):
    with pytest.raises(TypeError, match=r"object at checkpoint\['history'\]\[1\]"):
        save({"history": [1, object()]}, tmp_path / "bad")
    with pytest.raises(TypeError, match="dict key"):
        save({frozenset(): 1}, tmp_path / "bad")
    assert not os.listdir(tmp_path)  # nothing written, no temporary file left


# ------------------------------------------------------------------------------- atomic writes
def _fail_mid_write(error):
    def writer(file, arrays):
        file.write(b"PK\x03\x04 half a checkpoint")
        raise error
    return writer


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_old_checkpoint_and_leaves_no_temp_file(tmp_path, monkeypatch, error):
    path = tmp_path / "ckpt.npz"
    save({"epoch": 1, "w": tinynet.ones(3)}, path)
    monkeypatch.setattr(serialization, "_write_npz", _fail_mid_write(error))
    with pytest.raises(type(error)):
        save({"epoch": 2, "w": tinynet.zeros(3)}, path)
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    back = load(path)
    assert back["epoch"] == 1 and np.all(to_numpy(back["w"]) == 1)


def test_a_failed_first_write_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(serialization, "_write_npz", _fail_mid_write(OSError("disk full")))
    with pytest.raises(OSError):
        save({"epoch": 1}, tmp_path / "ckpt.npz")
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------- bad files
def test_files_that_are_not_checkpoints_give_a_clear_error(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.arange(3))
    single = tmp_path / "array.npy"
    np.save(single, np.arange(3))
    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    broken_zip = tmp_path / "broken.npz"
    with zipfile.ZipFile(broken_zip, "w") as z:
        z.writestr("__tinynet__.npy", b"not an npy")
    for path in (text, plain, single, pickled, broken_zip):
        with pytest.raises(RuntimeError, match="is not a tinynet checkpoint") as info:
            load(path)
        assert str(path) in str(info.value)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.npz")


# ------------------------------------------------------------------------------- property
leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-2**62, 2**62), st.floats(allow_nan=False), st.text(max_size=8),
    st.lists(st.floats(-10, 10, width=32), min_size=1, max_size=4).map(lambda v: tinynet.tensor(v)),
    st.lists(st.integers(-5, 5), max_size=4).map(lambda v: np.array(v, dtype=np.int64)),
)
structures = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(st.one_of(st.text(max_size=5), st.integers(-3, 3)), children, max_size=3),
    ),
    max_leaves=10,
)


@given(obj=structures)
def test_any_nested_structure_round_trips(obj):
    buffer = io.BytesIO()
    save(obj, buffer)
    buffer.seek(0)
    assert_same(obj, load(buffer))
