"""``ClassDataset`` (a named, labelled train/test pair), its content fingerprint and the seeded split."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import numpy as np
import torch

from mergan.data.imageset import ImageSet, TensorImageSet

SPLIT_SEED = 0  # the held-out part of a split dataset is fixed, independent of the run seed


@dataclass
class ClassDataset:
    """A class-labelled dataset at the model's image size."""

    name: str
    class_names: list[str]
    channels: int
    image_size: int
    train: ImageSet
    test: ImageSet
    fingerprint: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to(self, device: torch.device | str) -> ClassDataset:
        """The same dataset with both image sets moved to ``device``."""
        return replace(self, train=self.train.to(device), test=self.test.to(device))


def fingerprint(parts: Iterable[bytes | str | np.ndarray | torch.Tensor]) -> str:
    """A short stable hash of strings, bytes and arrays (dtype, shape and bytes)."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        if isinstance(part, torch.Tensor):
            part = part.detach().cpu().contiguous().numpy()
        if isinstance(part, np.ndarray):
            part = np.ascontiguousarray(part)
            digest.update(f"{part.dtype.str}{part.shape}".encode())
            digest.update(memoryview(part).cast("B"))
        elif isinstance(part, str):
            digest.update(part.encode() + b"\0")
        else:
            digest.update(bytes(part))
    return digest.hexdigest()


def split_per_class(labels: np.ndarray, test_count: Callable[[int], int],
                    seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Seeded per-class split -> (train indices, test indices), each sorted.

    ``test_count(n)`` says how many of a class's ``n`` images go to the test part.
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        chosen = rng.permutation(members.size)[:test_count(members.size)]
        mask = np.zeros(members.size, dtype=bool)
        mask[chosen] = True
        test.append(members[mask])
        train.append(members[~mask])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def in_memory_dataset(name: str, class_names: list[str], image_size: int,
                      train: tuple[torch.Tensor, torch.Tensor],
                      test: tuple[torch.Tensor, torch.Tensor]) -> ClassDataset:
    """A ``ClassDataset`` from uint8 [N, C, S, S] images and labels already at ``image_size``."""
    (train_x, train_y), (test_x, test_y) = train, test
    train_y, test_y = torch.as_tensor(train_y, dtype=torch.long), torch.as_tensor(test_y, dtype=torch.long)
    digest = fingerprint([name, "|".join(class_names), str(image_size), train_y, train_x, test_y, test_x])
    return ClassDataset(name=name, class_names=list(class_names), channels=int(train_x.shape[1]),
                        image_size=image_size, train=TensorImageSet(train_x, train_y),
                        test=TensorImageSet(test_x, test_y), fingerprint=digest)
