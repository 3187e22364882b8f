"""``DatasetError``: a missing, incomplete or corrupt dataset, reported before training starts."""

from __future__ import annotations

import os

# What each on-disk dataset expects in ``data.data_root`` and how to get it.
EXPECTED: dict[str, tuple[str, str]] = {
    "mnist": (
        ("train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte "
         "(each plain or .gz, in data_root or data_root/MNIST/raw)"),
        ("download them from https://yann.lecun.com/exdb/mnist/ (mirror: "
         "https://ossci-datasets.s3.amazonaws.com/mnist/), or on a machine with network run "
         "torchvision.datasets.MNIST(data_root, download=True), which writes data_root/MNIST/raw"),
    ),
    "svhn": (
        "train_32x32.mat and test_32x32.mat (the cropped-digits 'Format 2' files)",
        ("download them from http://ufldl.stanford.edu/housenumbers/, or on a machine with network run "
         "torchvision.datasets.SVHN(data_root, split='train', download=True) and split='test'"),
    ),
    "lsun": (
        "the LMDB folders {bedroom,kitchen,church_outdoor,tower}_{train,val}_lmdb (each holding data.mdb)",
        ("download them with `python download.py -c <category>` from https://github.com/fyu/lsun "
         "(files at http://dl.yf.io/lsun/scenes/) and unzip them into data_root; "
         "torchvision.datasets.LSUN reads the same layout but cannot download it"),
    ),
    "folder": (
        ("one sub-folder per class holding .png/.jpg/.jpeg/.bmp/.webp images (optionally split as "
         "train/<class>/ and test/<class>/), the layout of torchvision.datasets.ImageFolder"),
        "put your images in that layout",
    ),
}


class DatasetError(ValueError):
    """A dataset that is missing, incomplete or corrupt; names the path, the expected files, how to get them."""


def dataset_error(dataset: str, path: str | os.PathLike, problem: str) -> DatasetError:
    """Build a ``DatasetError`` for ``dataset`` about ``path`` with the standard what/where/how text."""
    files, how = EXPECTED[dataset]
    return DatasetError(f"{dataset} dataset: {problem} (looked at {os.fspath(path)}). "
                        f"Expected: {files}. To get them: {how}.")
