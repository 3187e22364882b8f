"""LSUN scene categories read lazily from the standard per-category LMDB folders.

The task stream's four categories are classes 0..3; the authors' 10-way evaluator reads ten
(``AUTHORS_CATEGORIES``, in their ``tflib/lsun.py`` label order). ``data.lsun_max_per_class``,
``lsun_balance`` and ``lsun_resize`` read them as the authors did (``paper-lsun``: 100,000 per category,
balanced, each whole image squashed to 64x64) or as LSUN's own tools do (all images, centre-cropped).
"""

from __future__ import annotations

import copy
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mergan.config import DataConfig
from mergan.data.dataset import ClassDataset, fingerprint
from mergan.data.errors import dataset_error
from mergan.data.imageset import ImageSet, as_index, to_unit_range
from mergan.data.transforms import PHOTO_RESIZES

CATEGORIES = ["bedroom", "kitchen", "church_outdoor", "tower"]  # class 0, 1, 2, 3
# The ten scene categories of the authors' LSUN evaluator, in their label order (tflib/lsun.py's Label): the
# task stream's four are outputs 0, 1, 8, 6 (mergan.py's label map).
AUTHORS_CATEGORIES = ["bedroom", "kitchen", "dining_room", "conference_room", "living_room", "bridge", "tower",
                      "classroom", "church_outdoor", "restaurant"]
SPLITS = {"train": "train", "test": "val"}  # our split -> LSUN's folder suffix

# LMDB path -> read-only environment, opened on first use in each process. A forked child (a DataLoader
# or Ray worker) keeps using the parent's handle: read-only and lock-free, it stays valid, and py-lmdb
# refuses to open the same environment twice in one process. A spawned process or an unpickled set in a
# fresh interpreter opens its own.
_ENVS: dict[str, object] = {}


def open_env(path: str):
    """This process's read-only LMDB environment for ``path``, opened on first use."""
    import lmdb

    env = _ENVS.get(path)
    if env is None:
        try:
            env = lmdb.open(path, readonly=True, lock=False, readahead=False, meminit=False, max_readers=1)
        except lmdb.Error as error:
            raise dataset_error("lsun", path, f"{Path(path).name} is not a readable LMDB environment "
                                              f"({error})") from None
        _ENVS[path] = env
    return env


def close_env(path: str) -> None:
    """Close this process's handle on ``path`` (if any), so that the next ``open_env`` reads it afresh."""
    env = _ENVS.pop(path, None)
    if env is not None:
        env.close()


def decode(path: str, key: bytes, value: bytes | None, image_size: int, resize: str = "center-crop") -> np.ndarray:
    """One stored JPEG/WebP value -> uint8 [3, S, S] (``resize``: center-crop or squash), or a
    ``DatasetError`` naming the folder and key."""
    if value is None:
        raise dataset_error("lsun", path, f"key {key!r} is no longer in {Path(path).name}")
    try:
        with Image.open(io.BytesIO(value)) as image:
            return PHOTO_RESIZES[resize](image, image_size, "RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise dataset_error("lsun", path, f"the value of key {key!r} in {Path(path).name} is not a "
                                          f"decodable image ({error})") from None


class LMDBImageSet(ImageSet):
    """Images decoded and resized per ``get``; only keys and labels are held. Picklable."""

    in_memory = False

    def __init__(self, paths: list[str], source: np.ndarray, keys: bytes, offsets: np.ndarray,
                 labels: torch.Tensor, image_size: int, device: torch.device | str = "cpu",
                 resize: str = "center-crop") -> None:
        self.paths, self.source, self.keys, self.offsets = paths, source, keys, offsets
        self.labels = labels.to("cpu", torch.long)
        self.image_size = image_size
        self.device = torch.device(device)
        self.resize = resize

    def key(self, index: int) -> bytes:
        return self.keys[self.offsets[index]:self.offsets[index + 1]]

    def get_uint8(self, indices: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """uint8 [n, 3, S, S] on CPU."""
        idx = as_index(indices).cpu().numpy().reshape(-1)
        out = np.empty((idx.size, 3, self.image_size, self.image_size), dtype=np.uint8)
        for src in np.unique(self.source[idx]):
            path = self.paths[src]
            with open_env(path).begin(buffers=False) as txn:
                for pos in np.flatnonzero(self.source[idx] == src):
                    key = self.key(int(idx[pos]))
                    out[pos] = decode(path, key, txn.get(key), self.image_size, self.resize)
        return torch.from_numpy(out)

    def get(self, indices: torch.Tensor | Sequence[int]) -> torch.Tensor:
        return to_unit_range(self.get_uint8(indices).to(self.device))

    def to(self, device: torch.device | str) -> LMDBImageSet:
        moved = copy.copy(self)
        moved.device = torch.device(device)
        return moved

    def __repr__(self) -> str:
        return f"LMDBImageSet(n={len(self)}, size={self.image_size}, device={self.device})"


def scan(path: str, cap: int | None) -> tuple[list[bytes], list[int]]:
    """Keys (sorted, at most ``cap``) and value sizes of one LMDB; sizes come without reading the values."""
    keys, sizes = [], []
    with open_env(path).begin(buffers=True) as txn:
        for key, value in txn.cursor().iternext(keys=True, values=True):
            keys.append(bytes(key))
            sizes.append(len(value))
            if cap is not None and len(keys) >= cap:
                break
    return keys, sizes


def categories_under(root: str | Path) -> list[str]:
    """The ``AUTHORS_CATEGORIES`` whose train and val LMDBs are both under ``root``, in their label order."""
    return [cat for cat in AUTHORS_CATEGORIES
            if all((Path(root) / f"{cat}_{suffix}_lmdb" / "data.mdb").is_file() for suffix in SPLITS.values())]


def load_lsun(config: DataConfig, image_size: int, categories: Sequence[str] = CATEGORIES) -> ClassDataset:
    """``categories`` (default bedroom, kitchen, church_outdoor, tower: classes 0..3), ``*_train_lmdb`` train,
    ``*_val_lmdb`` test.

    ``lsun_max_per_class`` keeps the first N keys of each category (in both parts); ``lsun_balance`` then
    cuts every category to the smallest one's count (per part); ``lsun_resize`` says how an image
    becomes a square.
    """
    root = Path(config.data_root or "")
    categories = list(categories)
    folders = {(cat, split): root / f"{cat}_{suffix}_lmdb" for split, suffix in SPLITS.items()
               for cat in categories}
    missing = [p.name for p in folders.values() if not (p / "data.mdb").is_file()]
    if missing:
        raise dataset_error("lsun", root, f"missing {', '.join(missing)}")
    resize = config.lsun_resize
    sets, digest_parts = {}, ["lsun", "|".join(categories), str(image_size), resize]
    for split in SPLITS:
        scanned = {}
        for cat in categories:
            path = str(folders[cat, split])
            close_env(path)  # the folder may have been replaced since this process last read it
            keys, sizes = scan(path, config.lsun_max_per_class)
            if not keys:
                raise dataset_error("lsun", path, f"{Path(path).name} holds no images")
            with open_env(path).begin() as txn:  # fail now, not mid-training, on a non-image value
                decode(path, keys[0], txn.get(keys[0]), image_size, resize)
            scanned[cat] = (path, keys, sizes)
        if config.lsun_balance:
            fewest = min(len(keys) for _, keys, _ in scanned.values())
            scanned = {cat: (path, keys[:fewest], sizes[:fewest]) for cat, (path, keys, sizes) in scanned.items()}
        paths, sources, labels, key_parts = [], [], [], []
        for label, cat in enumerate(categories):
            path, keys, sizes = scanned[cat]
            paths.append(path)
            sources.append(np.full(len(keys), label, dtype=np.int16))
            labels.append(torch.full((len(keys),), label, dtype=torch.long))
            key_parts.extend(keys)
            digest_parts += [f"{cat}_{split}", b"".join(keys), np.asarray([len(k) for k in keys], dtype=np.int64),
                             np.asarray(sizes, dtype=np.int64)]
        offsets = np.zeros(len(key_parts) + 1, dtype=np.int64)
        np.cumsum([len(k) for k in key_parts], out=offsets[1:])
        sets[split] = LMDBImageSet(paths, np.concatenate(sources), b"".join(key_parts), offsets,
                                   torch.cat(labels), image_size, resize=resize)
    return ClassDataset(name="lsun", class_names=categories, channels=3, image_size=image_size,
                        train=sets["train"], test=sets["test"], fingerprint=fingerprint(digest_parts))
