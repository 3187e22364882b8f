"""Image folders: one sub-folder per class (the ``torchvision.datasets.ImageFolder`` layout), read into memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mergan.config import DataConfig
from mergan.data.dataset import ClassDataset, in_memory_dataset, split_per_class
from mergan.data.errors import dataset_error
from mergan.data.transforms import fit_photo

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
GRAYSCALE_MODES = ("1", "L", "LA")


def class_folders(root: Path) -> list[Path]:
    """Sorted, non-hidden sub-folders of ``root``: one per class."""
    if not root.is_dir():
        raise dataset_error("folder", root, "the folder does not exist")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise dataset_error("folder", root, "no class sub-folders")
    return folders


def image_files(folder: Path) -> list[Path]:
    """Sorted image files of one class folder (other files, e.g. README.txt, are ignored like ImageFolder)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise dataset_error("folder", folder, f"class folder {folder.name} holds no images")
    return files


def read_images(folders: list[Path], image_size: int) -> tuple[list[np.ndarray], np.ndarray, bool]:
    """Decode every image as RGB [3, S, S] -> (images, labels, whether every image was grayscale)."""
    images, labels, gray = [], [], True
    for label, folder in enumerate(folders):
        for path in image_files(folder):
            try:
                with Image.open(path) as image:
                    gray = gray and image.mode in GRAYSCALE_MODES
                    images.append(fit_photo(image, image_size, "RGB"))
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
                raise dataset_error("folder", path, f"{path.name} is not a decodable image ({error})") from None
            labels.append(label)
    return images, np.asarray(labels, dtype=np.int64), gray


def stack(images: list[np.ndarray], channels: int) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)[:, :channels].copy())


def load_folder(config: DataConfig, image_size: int) -> ClassDataset:
    """Classes are the sorted sub-folder names; channels are 1 if every image is grayscale, else 3 (RGB).

    With both ``train/`` and ``test/`` under ``data_root`` they are the split; otherwise a seeded per-class
    split holds out ``test_per_class`` images of each class, or 10% (at least 1) of a class with fewer
    than twice that many.
    """
    root = Path(config.data_root or "")
    has_train, has_test = (root / "train").is_dir(), (root / "test").is_dir()
    if has_train != has_test:
        raise dataset_error("folder", root, f"{'train' if has_train else 'test'}/ exists without "
                                            f"{'test' if has_train else 'train'}/")
    if has_train:
        train_folders, test_folders = class_folders(root / "train"), class_folders(root / "test")
        names = [p.name for p in train_folders]
        if [p.name for p in test_folders] != names:
            raise dataset_error("folder", root / "test", f"test/ has classes {[p.name for p in test_folders]}"
                                                         f" but train/ has {names}; they must match")
        train_x, train_y, train_gray = read_images(train_folders, image_size)
        test_x, test_y, test_gray = read_images(test_folders, image_size)
        channels = 1 if train_gray and test_gray else 3
        train = (stack(train_x, channels), torch.from_numpy(train_y))
        test = (stack(test_x, channels), torch.from_numpy(test_y))
        return in_memory_dataset("folder", names, image_size, train, test)

    folders = class_folders(root)
    names = [p.name for p in folders]
    images, labels, gray = read_images(folders, image_size)
    counts = np.bincount(labels, minlength=len(folders))
    if counts.min() < 2:
        small = folders[int(counts.argmin())]
        raise dataset_error("folder", small, f"class folder {small.name} has {counts.min()} image; at least 2 "
                                             f"are needed to hold one out for testing")
    per_class = config.test_per_class
    train_idx, test_idx = split_per_class(labels, lambda n: per_class if n >= 2 * per_class else max(1, n // 10))
    all_images = stack(images, 1 if gray else 3)
    labels_t = torch.from_numpy(labels)
    train_t, test_t = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    return in_memory_dataset("folder", names, image_size, (all_images[train_t], labels_t[train_t]),
                             (all_images[test_t], labels_t[test_t]))
