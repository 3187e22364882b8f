"""``load_dataset``: the config's dataset, read and checked, at the model's image size."""

from __future__ import annotations

from collections.abc import Callable

from mergan.config import DATASETS, ConfigError, DataConfig
from mergan.data.dataset import ClassDataset
from mergan.data.folder import load_folder
from mergan.data.lsun import load_lsun
from mergan.data.mnist import load_mnist, load_mnist5k
from mergan.data.svhn import load_svhn

LOADERS: dict[str, Callable[[DataConfig, int], ClassDataset]] = {
    "mnist5k": load_mnist5k,
    "mnist": load_mnist,
    "svhn": load_svhn,
    "lsun": load_lsun,
    "folder": load_folder,
}


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
