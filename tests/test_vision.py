"""tinynet.vision: torchvision-style transforms (against PyTorch's grid_sample where the warp is
concerned) and the MNIST / FashionMNIST / KMNIST datasets on IDX files written here."""
import gzip
import hashlib
import math

import numpy as np
import pytest

import tinynet
from tinynet.data import DataLoader, DownloadError
from tinynet.data.transforms import inverse_affine_matrix, warp_affine
from tinynet.vision import datasets, transforms as T

from helpers import requires_torch, to_numpy, torch
from test_data import SHARED_MNIST, idx_bytes, needs_shared_mnist, tiny_mnist
from test_download import server  # noqa: F401  (the local HTTP server fixture)

NORMALIZE = T.Compose([T.ToTensor(), T.Normalize((0.1307,), (0.3081,))])


def _image(c=1, h=9, w=7, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal((c, h, w)).astype(dtype)


# ------------------------------------------------------------------------------ simple transforms
def test_to_tensor():
    pic = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    t = T.ToTensor()(pic)
    assert t.shape == (1, 3, 4) and t.dtype == np.float32
    np.testing.assert_array_equal(to_numpy(t)[0], pic.astype(np.float32) / np.float32(255))
    rgb = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_numpy(T.ToTensor()(rgb)), rgb.transpose(2, 0, 1).astype(np.float32) / 255)
    floats = np.full((2, 2), 3.5)
    np.testing.assert_array_equal(to_numpy(T.ToTensor()(floats)), floats[None])  # no scaling, as torchvision
    with pytest.raises(TypeError, match="ToTensor: pic should be PIL Image or ndarray"):
        T.ToTensor()(tinynet.zeros(1, 2, 2))


@requires_torch
def test_to_tensor_normalize_match_torch():
    """torchvision's ToTensor is ``from_numpy(pic).float().div(255)``; Normalize subtracts and divides."""
    pic = np.arange(256, dtype=np.uint8).reshape(16, 16)
    ours = to_numpy(NORMALIZE(pic))
    theirs = (torch.from_numpy(pic)[None].float().div(255) - torch.tensor([0.1307])[:, None, None]) \
        / torch.tensor([0.3081])[:, None, None]
    np.testing.assert_array_equal(ours, theirs.numpy())


def test_compose_lambda_and_normalize_errors():
    chain = T.Compose([T.ToTensor(), T.Lambda(lambda t: t * 2)])
    np.testing.assert_allclose(to_numpy(chain(np.full((2, 2), 255, np.uint8))), 2.0)
    assert "ToTensor()" in repr(chain)
    with pytest.raises(TypeError, match="Lambda: argument lambd should be callable"):
        T.Lambda(3)
    with pytest.raises(TypeError, match="Normalize: expected a tensor"):
        T.Normalize(0.5, 0.5)(np.zeros((2, 2)))


# ------------------------------------------------------------------------------ the affine warp
def test_inverse_affine_matrix_inverts_the_forward_map():
    """The matrix is the inverse of torchvision's documented forward map
    T · C · R(angle) · S(scale) · SHy(shear_y) · SHx(shear_x) · C^-1, built here independently."""
    angle, translate, scale, shear, center = 33.0, (2.0, -3.0), 1.3, (12.0, -7.0), (1.5, -0.5)
    a, sx, sy = (math.radians(v) for v in (angle, *shear))

    def h(m):  # 2x2 -> homogeneous 3x3
        return np.block([[np.asarray(m, float), np.zeros((2, 1))], [np.zeros((1, 2)), np.ones((1, 1))]])

    def move(x, y):
        return np.array([[1, 0, x], [0, 1, y], [0, 0, 1]], float)

    rotate = h([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    shear_x, shear_y = h([[1, -math.tan(sx)], [0, 1]]), h([[1, 0], [-math.tan(sy), 1]])
    forward = move(*translate) @ move(*center) @ rotate @ h(np.eye(2) * scale) @ shear_y @ shear_x \
        @ move(-center[0], -center[1])
    expected = np.linalg.inv(forward)[:2].ravel()
    np.testing.assert_allclose(inverse_affine_matrix(angle, translate, scale, shear, center), expected, atol=1e-12)


def _torchvision_warp(img, matrix, mode, fill):
    """torchvision.transforms.functional's tensor warp, written from its source: the grid of
    ``_gen_affine_grid`` and the fill of ``_apply_grid_transform``, on PyTorch's grid_sample."""
    n, c, h, w = img.shape
    theta = torch.tensor(matrix, dtype=img.dtype).reshape(1, 2, 3)
    base = torch.empty(1, h, w, 3, dtype=img.dtype)
    base[..., 0].copy_(torch.linspace(-w * 0.5 + 0.5, w * 0.5 - 0.5, steps=w, dtype=img.dtype))
    base[..., 1].copy_(torch.linspace(-h * 0.5 + 0.5, h * 0.5 - 0.5, steps=h, dtype=img.dtype).unsqueeze_(-1))
    base[..., 2].fill_(1)
    rescaled = theta.transpose(1, 2) / torch.tensor([0.5 * w, 0.5 * h], dtype=img.dtype)
    grid = base.view(1, h * w, 3).bmm(rescaled).view(1, h, w, 2).expand(n, h, w, 2)
    img = torch.cat((img, torch.ones(n, 1, h, w, dtype=img.dtype)), dim=1)
    out = torch.nn.functional.grid_sample(img, grid, mode=mode, padding_mode="zeros", align_corners=False)
    mask, out = out[:, -1:].expand(n, c, h, w), out[:, :-1]
    fill_img = torch.tensor(fill, dtype=img.dtype).view(1, -1, 1, 1).expand_as(out)
    if mode == "nearest":
        return torch.where(mask < 0.5, fill_img, out)
    return out * mask + (1.0 - mask) * fill_img


@requires_torch
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("params", [dict(angle=23.0), dict(angle=-61.0, scale=0.8),
                                    dict(angle=10.0, translate=(2, -1), scale=1.2, shear=(8.0, -5.0)),
                                    dict(angle=37.0, center=(-1.5, 2.0))], ids=["rotate", "scale", "all", "center"])
def test_warp_matches_torchvision(device, mode, params):
    images = np.random.default_rng(1).standard_normal((2, 3, 9, 8))
    matrix = inverse_affine_matrix(**params)
    fill = [0.5, -1.0, 2.0]
    matrices = tinynet.tensor(np.tile(np.asarray(matrix).reshape(1, 2, 3), (2, 1, 1)), device=device).data
    ours = warp_affine(tinynet.tensor(images, device=device).data, matrices, mode, fill)
    theirs = _torchvision_warp(torch.tensor(images), matrix, mode, fill).numpy()
    np.testing.assert_allclose(tinynet.backend.to_host(ours), theirs, atol=1e-10)


def test_rotation_directions_are_torchvisions():
    """RandomRotation turns counter-clockwise for positive angles, RandomAffine clockwise (as
    torchvision's rotate and affine); 90 degrees with nearest sampling is an exact rot90."""
    img = _image(2, 7, 7)
    rot = T.RandomRotation((90, 90))(tinynet.tensor(img))
    np.testing.assert_array_equal(to_numpy(rot), np.rot90(img, 1, axes=(1, 2)))
    aff = T.RandomAffine((90, 90))(tinynet.tensor(img))
    np.testing.assert_array_equal(to_numpy(aff), np.rot90(img, -1, axes=(1, 2)))


def test_random_rotation_on_a_byte_image_and_by_seed():
    pic = np.random.default_rng(0).integers(0, 256, (6, 6), dtype=np.uint8)
    out = T.RandomRotation((-90, -90))(pic)
    assert out.dtype == np.uint8 and out.shape == (6, 6)
    np.testing.assert_array_equal(out, np.rot90(pic, -1))
    bilinear = T.RandomRotation(30, interpolation=T.InterpolationMode.BILINEAR)
    tinynet.manual_seed(4)
    first = bilinear(pic)
    tinynet.manual_seed(4)
    np.testing.assert_array_equal(bilinear(pic), first)  # the angle comes from tinynet.manual_seed's generator
    assert first.dtype == np.uint8 and not np.array_equal(first, pic)


def test_random_affine_translation_is_whole_pixels():
    img = _image(1, 10, 10)
    shift = T.RandomAffine(0, translate=(0.3, 0.0))
    for seed in range(5):
        tinynet.manual_seed(seed)
        out = to_numpy(shift(tinynet.tensor(img)))[0]
        dx = shift_found = None
        for dx in range(-3, 4):  # up to 0.3 * 10 pixels
            expected = np.zeros_like(img[0])
            if dx >= 0:
                expected[:, dx:] = img[0][:, :10 - dx]
            else:
                expected[:, :dx] = img[0][:, -dx:]
            if np.array_equal(out, expected):
                shift_found = dx
        assert shift_found is not None, f"seed {seed}: not a whole-pixel horizontal shift within 3 pixels"


def test_affine_and_rotation_keep_device_and_dtype(device):
    img = tinynet.tensor(_image(3, 8, 8, dtype=np.float32), device=device)
    for t in (T.RandomRotation(20, fill=(1.0, 2.0, 3.0)),
              T.RandomAffine(15, translate=(0.1, 0.2), scale=(0.9, 1.1), shear=(-5, 5, -3, 3),
                             interpolation="bilinear")):
        out = t(img)
        assert out.shape == img.shape and out.dtype == img.dtype and out.device == img.device


@pytest.mark.parametrize("make, message", [
    (lambda: T.RandomRotation(-3), "if degrees is a single number, it must be positive"),
    (lambda: T.RandomRotation((1, 2, 3)), "degrees should be a sequence of length 2"),
    (lambda: T.RandomRotation(3, expand=True), "expand=True is not supported"),
    (lambda: T.RandomAffine(0, translate=(1.5, 0)), "translation values should be between 0 and 1"),
    (lambda: T.RandomAffine(0, scale=(0, 1)), "scale values should be positive"),
    (lambda: T.RandomAffine(0, shear=(1, 2, 3)), "shear should be a sequence of length 2 or 4"),
    (lambda: T.RandomAffine(0, interpolation="bicubic"), "interpolation must be"),
])
def test_bad_transform_arguments(make, message):
    with pytest.raises((ValueError, NotImplementedError), match=message):
        make()


# ------------------------------------------------------------------------------ datasets
def _expected_normalised(images):
    return (images[:, None].astype(np.float32) / np.float32(255) - np.float32(0.1307)) / np.float32(0.3081)


def test_mnist_fast_path_equals_the_per_sample_path(tmp_path, device):
    images, labels = tiny_mnist(tmp_path, n=6, train=False)
    fast = datasets.MNIST(tmp_path, train=False, transform=NORMALIZE, device=device)
    slow = datasets.MNIST(tmp_path, train=False, transform=T.Compose(NORMALIZE.transforms + [T.Lambda(lambda x: x)]))
    assert hasattr(fast, "tensors") and not hasattr(slow, "tensors")
    assert fast.tensors[0].shape == (6, 1, 28, 28) and fast.tensors[0].device == tinynet.device(device)
    np.testing.assert_array_equal(to_numpy(fast.tensors[0]), np.stack([to_numpy(slow[i][0]) for i in range(6)]))
    np.testing.assert_allclose(to_numpy(fast.tensors[0]), _expected_normalised(images), rtol=1e-6, atol=1e-6)
    assert fast[4][1] == slow[4][1] == int(labels[4]) and isinstance(fast[4][1], int)
    assert fast.data.dtype == np.uint8 and fast.data.shape == (6, 28, 28) and fast.targets.dtype == np.int64
    for loader in (DataLoader(fast, batch_size=4), DataLoader(slow, batch_size=4)):
        x, y = next(iter(loader))
        assert x.shape == (4, 1, 28, 28) and x.dtype == np.float32 and to_numpy(y).tolist() == labels[:4].tolist()


def test_mnist_without_transform_and_with_target_transform(tmp_path):
    images, labels = tiny_mnist(tmp_path, n=3)
    raw = datasets.MNIST(tmp_path)
    image, label = raw[1]
    assert image.dtype == np.uint8 and image.shape == (28, 28) and label == labels[1]
    np.testing.assert_array_equal(image, images[1])
    shifted = datasets.MNIST(tmp_path, transform=T.ToTensor(), target_transform=lambda y: y + 10)
    assert not hasattr(shifted, "tensors") and shifted[2][1] == labels[2] + 10
    assert datasets.MNIST(tmp_path, transform=T.ToTensor()).tensors[0].dtype == np.float32  # ToTensor alone: fast


@pytest.mark.parametrize("cls, first_class", [(datasets.FashionMNIST, "T-shirt/top"), (datasets.KMNIST, "o")])
def test_fashion_and_kmnist_read_their_own_folder(tmp_path, cls, first_class):
    name = cls.__name__
    images, labels = tiny_mnist(tmp_path / name / "raw", n=4)
    ds = cls(tmp_path, transform=NORMALIZE)
    assert len(ds) == 4 and ds.classes[0] == first_class and ds.class_to_idx[first_class] == 0
    np.testing.assert_allclose(to_numpy(ds.tensors[0]), _expected_normalised(images), rtol=1e-6, atol=1e-6)
    with pytest.raises(FileNotFoundError, match=f"(?s){name}: train-images-idx3-ubyte not found.*{name}/raw"):
        cls(tmp_path / "elsewhere")


def test_fashion_mnist_download_checks_the_md5(tmp_path, server, monkeypatch):  # noqa: F811
    www, url = server
    rng = np.random.default_rng(0)
    files = {"t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
             "t10k-labels-idx1-ubyte": np.array([1, 2, 3], np.uint8)}
    md5 = {}
    for name, array in files.items():
        (www / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(array)))
        md5[name] = hashlib.md5((www / f"{name}.gz").read_bytes()).hexdigest()
    monkeypatch.setattr(datasets.FashionMNIST, "mirrors", [url])
    monkeypatch.setattr(datasets.FashionMNIST, "resources", md5)
    ds = datasets.FashionMNIST(tmp_path / "root", train=False, download=True)
    assert len(ds) == 3 and (tmp_path / "root" / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").is_file()
    np.testing.assert_array_equal(ds.data.numpy(), files["t10k-images-idx3-ubyte"])
    # A served file that does not match its MD5 is refused and nothing is left behind.
    monkeypatch.setattr(datasets.FashionMNIST, "resources", {**md5, "t10k-labels-idx1-ubyte": "0" * 32})
    with pytest.raises(DownloadError, match="md5 of the file is .*, expected 0{32}"):
        datasets.FashionMNIST(tmp_path / "other", train=False, download=True)
    assert not (tmp_path / "other" / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").exists()


@needs_shared_mnist
def test_real_mnist_fast_path():
    ds = datasets.MNIST(SHARED_MNIST, train=False, transform=NORMALIZE)
    x = to_numpy(ds.tensors[0])
    assert x.shape == (10000, 1, 28, 28) and to_numpy(ds.targets)[:5].tolist() == [7, 2, 1, 0, 4]
    assert abs(x.mean()) < 0.05 and abs(x.std() - 1) < 0.05  # normalised with (near) the set's own statistics
