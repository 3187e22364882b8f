"""SVHN cropped digits from the standard ``train_32x32.mat`` / ``test_32x32.mat`` files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mergan.config import DataConfig
from mergan.data.dataset import ClassDataset, in_memory_dataset
from mergan.data.errors import dataset_error
from mergan.data.mnist import DIGITS
from mergan.data.transforms import fit_digits

SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One SVHN .mat file -> (uint8 [N, 3, 32, 32], int64 labels 0..9; the file's 10 means digit 0)."""
    import scipy.io
    from scipy.io.matlab import MatReadError

    try:
        mat = scipy.io.loadmat(path, variable_names=["X", "y"])
    except (MatReadError, ValueError, TypeError, OSError, KeyError, IndexError, NotImplementedError) as error:
        raise dataset_error("svhn", path, f"{path.name} is not a readable MATLAB file ({error})") from None
    missing = [key for key in ("X", "y") if key not in mat]
    if missing:
        raise dataset_error("svhn", path, f"{path.name} has no {' or '.join(missing)} variable")
    images, labels = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    if images.ndim != 4 or images.shape[2] != 3 or images.shape[3] != labels.size:
        raise dataset_error("svhn", path, f"{path.name}: X has shape {images.shape} and y {labels.size} "
                                          f"entries; expected X [32, 32, 3, N] and y [N, 1]")
    if labels.size and (labels.min() < 0 or labels.max() > 10):
        raise dataset_error("svhn", path, f"{path.name}: labels must be 1..10 (10 meaning digit 0)")
    labels = np.where(labels == 10, 0, labels).astype(np.int64)
    return np.ascontiguousarray(images.astype(np.uint8).transpose(3, 2, 0, 1)), labels


def load_svhn(config: DataConfig, image_size: int) -> ClassDataset:
    """SVHN train (73,257) and test (26,032) digits, 3 channels, resized if ``image_size`` is not 32."""
    root = Path(config.data_root or "")
    missing = [name for name in SVHN_FILES.values() if not (root / name).is_file()]
    if missing:
        raise dataset_error("svhn", root, f"missing {', '.join(missing)}")
    parts = []
    for name in SVHN_FILES.values():
        images, labels = read_svhn_mat(root / name)
        parts.append((fit_digits(torch.from_numpy(images), image_size), torch.from_numpy(labels)))
    return in_memory_dataset("svhn", DIGITS, image_size, parts[0], parts[1])
