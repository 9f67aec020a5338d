"""Tensor construction, dtype rules, conversion, devices and seeding (the PyTorch contract)."""
import numpy as np
import pytest

import tinynet
from helpers import requires_torch, torch


def test_tensor_keeps_array_dtype_and_infers_python_types():
    assert tinynet.tensor(np.zeros(2, np.float64)).dtype == tinynet.float64
    assert tinynet.tensor(np.zeros(2, np.int32)).dtype == tinynet.int32
    assert tinynet.tensor(1.5).dtype == tinynet.float32
    assert tinynet.tensor([1, 2]).dtype == tinynet.int64
    assert tinynet.tensor([True, False]).dtype == tinynet.bool
    assert tinynet.tensor([[1.0, 2], [3, 4]]).dtype == tinynet.float32
    assert tinynet.tensor([1, 2], dtype=tinynet.float64).dtype == tinynet.float64


def test_tensor_copies_but_from_numpy_shares():
    a = np.ones(3, np.float32)
    t, s = tinynet.tensor(a), tinynet.from_numpy(a)
    a[0] = 5
    assert t.data[0] == 1 and s.data[0] == 5


@pytest.mark.parametrize("factory", ["zeros", "ones", "empty", "rand", "randn"])
def test_factories_take_varargs_or_tuple(factory):
    fn = getattr(tinynet, factory)
    assert fn(3, 4).shape == (3, 4) == fn((3, 4)).shape == fn([3, 4]).shape
    assert fn(2).dtype == tinynet.float32
    assert fn(2, dtype=tinynet.float64).dtype == tinynet.float64
    assert fn(2, requires_grad=True).requires_grad


def test_other_factories():
    assert tinynet.full((2, 3), 7.0).dtype == tinynet.float32
    assert tinynet.full((2,), 7).dtype == tinynet.int64
    assert tinynet.arange(5).dtype == tinynet.int64
    assert tinynet.arange(0, 1, 0.25).dtype == tinynet.float32
    np.testing.assert_array_equal(tinynet.arange(1, 7, 2).numpy(), [1, 3, 5])
    np.testing.assert_array_equal(tinynet.eye(3).numpy(), np.eye(3))
    x = tinynet.randn(2, 3, dtype=tinynet.float64)
    assert tinynet.zeros_like(x).dtype == tinynet.float64 and tinynet.ones_like(x).shape == (2, 3)
    r = tinynet.randint(0, 10, (100,))
    assert r.dtype == tinynet.int64 and 0 <= r.numpy().min() and r.numpy().max() < 10
    assert tinynet.randint(3, (4,)).numpy().max() < 3


def test_manual_seed_reproduces_random_draws():
    tinynet.manual_seed(123)
    a = tinynet.randn(5).numpy().copy()
    tinynet.manual_seed(123)
    b = tinynet.randn(5).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(b, tinynet.randn(5).numpy())


def test_generator_objects_are_independent():
    g1, g2 = tinynet.Generator().manual_seed(7), tinynet.Generator().manual_seed(7)
    np.testing.assert_array_equal(tinynet.rand(4, generator=g1).numpy(), tinynet.rand(4, generator=g2).numpy())


def test_properties_and_scalars():
    x = tinynet.tensor([[1.0, 2.0, 3.0]])
    assert x.shape == (1, 3) and x.ndim == 2 and x.dim() == 2 and x.numel() == 3 and x.size(1) == 3
    assert x.device == "cpu" and x.device == tinynet.device("cpu") and not x.is_cuda
    assert x.tolist() == [[1.0, 2.0, 3.0]]
    assert tinynet.tensor(2.5).item() == 2.5 and float(tinynet.tensor([2.5])) == 2.5
    assert len(x) == 1 and x.is_leaf and x.grad is None
    with pytest.raises(RuntimeError, match="item"):
        x.item()


def test_numpy_and_array_protocol():
    x = tinynet.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="detach"):
        x.numpy()
    assert np.asarray(x.detach()).tolist() == [1.0, 2.0]
    y = np.ones(2) * tinynet.tensor([2.0, 3.0])  # NumPy defers to Tensor's operators
    assert isinstance(y, tinynet.Tensor)


def test_to_dtype_is_differentiable_and_returns_self_when_unchanged():
    x = tinynet.tensor([1.0, 2.0], requires_grad=True)
    assert x.to(tinynet.float32) is x and x.to("cpu") is x
    y = x.double()
    assert y.dtype == tinynet.float64 and y.grad_fn is not None
    y.backward(tinynet.ones(2, dtype=tinynet.float64))
    assert x.grad.dtype == tinynet.float32
    assert x.to(dtype=tinynet.int64).dtype == tinynet.int64
    assert x.detach().long().dtype == tinynet.int64


def test_device_parsing():
    assert str(tinynet.device("gpu")) == "cuda:0" and str(tinynet.device("cuda:1")) == "cuda:1"
    assert tinynet.device("CPU") == "cpu"
    with pytest.raises(ValueError, match="device"):
        tinynet.device("tpu")


@pytest.mark.skipif(tinynet.backend.cuda_available(), reason="checks the message shown without a GPU")
def test_asking_for_cuda_without_gpu_says_what_to_install():
    with tinynet.backend.simulate_cuda(False):  # the suite runs with the simulator on
        with pytest.raises(RuntimeError, match=r"(CuPy|cupy).*tinynet\[cuda1[23]\]|GPU"):
            tinynet.zeros(2, device="cuda")
        with pytest.raises(RuntimeError, match="CuPy|GPU"):
            tinynet.tensor([1.0]).to("gpu")
        assert tinynet.cuda.device_count() == 0 and not tinynet.cuda.is_available()


def test_in_place_ops_on_leaf_requiring_grad_are_refused():
    x = tinynet.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="add_.*in-place"):
        x.add_(1.0)
    with tinynet.no_grad():
        x.add_(1.0).mul_(2.0)
    np.testing.assert_allclose(x.detach().numpy(), [4.0, 6.0])


def test_repr_looks_like_pytorch():
    assert repr(tinynet.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(tinynet.tensor([1.0], requires_grad=True)) == "tensor([1.], requires_grad=True)"
    assert "dtype=float64" in repr(tinynet.tensor([1.0], dtype=tinynet.float64))
    assert "grad_fn=<MulBackward>" in repr(tinynet.tensor([1.0], requires_grad=True) * 2)


@requires_torch
def test_repr_matches_torch_for_simple_tensors():
    for values in ([1.0, 2.0], [[1, 2], [3, 4]], [True, False]):
        assert repr(tinynet.tensor(values)) == repr(torch.tensor(values))


def test_fill_with_a_one_element_tensor_keeps_it_on_the_device(device):
    t = tinynet.zeros(2, 3, device=device)
    t.fill_(tinynet.tensor(2.5, device=device))
    t[0].fill_(tinynet.tensor([7.0]))  # a CPU value is copied over
    assert t.device == device
    np.testing.assert_array_equal(t.cpu().numpy(), [[7.0] * 3, [2.5] * 3])
    with pytest.raises(RuntimeError, match=r"fill_: .*one-element.*\(2,\)"):
        t.fill_(tinynet.tensor([1.0, 2.0], device=device))
