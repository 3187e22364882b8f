"""Tiny datasets written in each real on-disk format, for tests.

Every writer takes a folder, writes the dataset's standard files there and returns what it wrote.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from pathlib import Path

import numpy as np

LSUN_CATEGORIES = ("bedroom", "kitchen", "church_outdoor", "tower")
# The ten categories of the authors' LSUN evaluator, in their label order.
LSUN_TEN = ("bedroom", "kitchen", "dining_room", "conference_room", "living_room", "bridge", "tower", "classroom",
            "church_outdoor", "restaurant")
# One solid colour per LSUN category, so decoded images can be checked against their label.
LSUN_COLORS = {"bedroom": (200, 40, 40), "kitchen": (40, 200, 40), "church_outdoor": (40, 40, 200),
               "tower": (220, 220, 60), "dining_room": (220, 60, 220), "conference_room": (60, 220, 220),
               "living_room": (120, 120, 120), "bridge": (250, 250, 250), "classroom": (10, 10, 10),
               "restaurant": (250, 140, 20)}
MNIST_NAMES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
               "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: magic 0x0000 08 ndim, big-endian int32 dims, then the bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    return header + array.tobytes()


def write_idx(path: str | Path, array: np.ndarray, gz: bool = False) -> Path:
    """Write one IDX file (gzipped when ``gz``; ``.gz`` is then appended to the name)."""
    path = Path(str(path) + ".gz") if gz else Path(path)
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def digit_images(labels: np.ndarray, size: int = 28, seed: int = 0) -> np.ndarray:
    """uint8 [N, size, size] digit-like images: background 0, a bright block whose place depends on the label."""
    rng = np.random.default_rng(seed)
    images = np.zeros((labels.size, size, size), dtype=np.uint8)
    for i, label in enumerate(labels):
        row = 2 + int(label) * (size - 8) // 10
        images[i, row:row + 6, 4:size - 4] = rng.integers(128, 256, size=(6, size - 8))
    return images


def write_mnist(root: str | Path, train_per_class: int = 3, test_per_class: int = 2, gz: bool = False,
                torchvision_layout: bool = False, seed: int = 0) -> dict[str, np.ndarray]:
    """The four MNIST IDX files (10 classes); ``torchvision_layout`` puts them in root/MNIST/raw."""
    folder = Path(root) / "MNIST" / "raw" if torchvision_layout else Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels = np.tile(np.arange(10, dtype=np.uint8), per_class)
        arrays[f"{split}_labels"] = labels
        arrays[f"{split}_images"] = digit_images(labels, seed=seed + (split == "test"))
    for role, array in arrays.items():
        write_idx(folder / MNIST_NAMES[role], array, gz=gz)
    return arrays


def write_svhn(root: str | Path, train_per_class: int = 2, test_per_class: int = 1,
               seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``train_32x32.mat`` / ``test_32x32.mat`` with X [32, 32, 3, N] uint8 and y [N, 1] (10 means digit 0).

    Returns split -> (X, y) exactly as written.
    """
    import scipy.io

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        y = np.tile(np.arange(1, 11, dtype=np.uint8), per_class).reshape(-1, 1)
        x = rng.integers(0, 256, size=(32, 32, 3, y.shape[0]), dtype=np.uint8)
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": x, "y": y})
        written[split] = (x, y)
    return written


def encode_image(array: np.ndarray, fmt: str = "JPEG") -> bytes:
    """uint8 [H, W, 3] or [H, W] -> encoded bytes (JPEG, PNG, WEBP ...) by PIL."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    return buffer.getvalue()


def write_lmdb(path: str | Path, items: dict[bytes, bytes]) -> Path:
    """One LMDB environment folder (data.mdb, lock.mdb) holding ``items``."""
    import lmdb

    path = Path(path)
    env = lmdb.open(str(path), map_size=1 << 26, subdir=True)
    with env.begin(write=True) as txn:
        for key, value in items.items():
            txn.put(key, value)
    env.close()
    return path


def write_lsun(root: str | Path, train_per_category: int | dict[str, int] = 6, val_per_category: int = 3,
               categories: tuple[str, ...] = LSUN_CATEGORIES, fmt: str = "JPEG",
               left_strip: tuple[int, int, int] | None = None) -> dict[str, list[bytes]]:
    """``{category}_train_lmdb`` / ``{category}_val_lmdb`` folders of solid-colour images of varying sizes.

    ``train_per_category`` may give each category its own count; ``left_strip`` paints the left eighth of
    every image in that colour (what a centre crop of a wide image cuts away and a squash keeps).
    Keys are sha1 hex ids like LSUN's. Returns folder name -> sorted keys.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sizes = [(80, 60), (64, 100), (128, 128), (70, 90), (100, 66), (96, 72)]  # (width, height)
    written = {}
    for category in categories:
        train_count = (train_per_category.get(category, 6) if isinstance(train_per_category, dict)
                       else train_per_category)
        for split, count in (("train", train_count), ("val", val_per_category)):
            items = {}
            for i in range(count):
                width, height = sizes[i % len(sizes)]
                pixels = np.empty((height, width, 3), dtype=np.uint8)
                pixels[:] = LSUN_COLORS[category]
                if left_strip is not None:
                    pixels[:, : width // 8] = left_strip
                key = hashlib.sha1(f"{category}/{split}/{i}".encode()).hexdigest().encode()
                items[key] = encode_image(pixels, fmt)
            write_lmdb(root / f"{category}_{split}_lmdb", items)
            written[f"{category}_{split}_lmdb"] = sorted(items)
    return written


def write_image_folder(root: str | Path, classes: tuple[str, ...] = ("cat", "dog", "owl"), per_class: int = 5,
                       size: tuple[int, int] = (40, 30), mode: str = "RGB", ext: str = ".png",
                       seed: int = 0) -> dict[str, list[Path]]:
    """``root/<class>/<i><ext>``: random images of ``size`` (width, height) in PIL ``mode``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    written: dict[str, list[Path]] = {}
    for name in classes:
        folder = Path(root) / name
        folder.mkdir(parents=True, exist_ok=True)
        written[name] = []
        for i in range(per_class):
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            path = folder / f"{i:03d}{ext}"
            Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8)).convert(mode).save(path)
            written[name].append(path)
    return written
