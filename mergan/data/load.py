"""``load_dataset``: the config's dataset, read and checked, at the model's image size."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mergan.config import DATASETS, DataConfig
from mergan.data.dataset import ClassDataset
from mergan.data.errors import DatasetError
from mergan.data.folder import class_folders, load_folder
from mergan.data.lsun import CATEGORIES, load_lsun
from mergan.data.mnist import DIGITS, load_mnist, load_mnist5k
from mergan.data.svhn import load_svhn
from mergan.data.tasks import tasks_of
from mergan.settings import ConfigError

LOADERS: dict[str, Callable[[DataConfig, int], ClassDataset]] = {
    "mnist5k": load_mnist5k,
    "mnist": load_mnist,
    "svhn": load_svhn,
    "lsun": load_lsun,
    "folder": load_folder,
}


# The classes of the datasets whose classes are fixed (an image folder's are its sub-folders).
FIXED_CLASSES = {"mnist5k": DIGITS, "mnist": DIGITS, "svhn": DIGITS, "lsun": CATEGORIES}


def dataset_class_names(data_config: DataConfig) -> list[str] | None:
    """The dataset's classes without reading an image; None for an image folder this machine cannot see
    (on a cluster it may exist on the workers only)."""
    if data_config.dataset in FIXED_CLASSES:
        return list(FIXED_CLASSES[data_config.dataset])
    root = Path(data_config.data_root or "")
    try:
        return [p.name for p in class_folders(root / "train" if (root / "train").is_dir() else root)]
    except (DatasetError, OSError):
        return None


def planned_task_stream(data_config: DataConfig) -> list[list[int]] | None:
    """The task stream :func:`~mergan.data.task_stream` will make, checked the same way, before the dataset is
    loaded (None when its classes cannot be known here)."""
    names = dataset_class_names(data_config)
    return None if names is None else tasks_of(data_config.dataset, names, data_config)


def load_dataset(data_config: DataConfig, image_size: int) -> ClassDataset:
    """Load ``data_config.dataset`` with images at ``image_size``; in-memory sets are on CPU.

    Raises ``DatasetError`` for missing, incomplete or corrupt files, ``ConfigError`` for bad settings.
    """
    loader = LOADERS.get(data_config.dataset)
    if loader is None:
        raise ConfigError(f"data.dataset: {data_config.dataset!r} is not allowed; allowed: {', '.join(DATASETS)}")
    if data_config.dataset != "mnist5k" and not data_config.data_root:
        raise ConfigError(f"data.data_root: dataset {data_config.dataset!r} reads its standard files from a "
                          f"folder; give it with --data-root (only mnist5k is embedded)")
    if image_size <= 0:
        raise ConfigError(f"model.image_size: {image_size} must be > 0")
    return loader(data_config, image_size)
