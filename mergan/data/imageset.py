"""Image sets: labelled images that hand out float batches in [-1, 1] at the model's image size."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [n, C, S, S] -> float32 in [-1, 1]."""
    return images.float().div_(127.5).sub_(1.0)


def as_index(indices: torch.Tensor | Sequence[int]) -> torch.Tensor:
    return torch.as_tensor(indices, dtype=torch.long)


class ImageSet:
    """Base class. ``labels`` is a LongTensor [N] on CPU; ``get`` returns [n, C, S, S] on ``device``."""

    labels: torch.Tensor
    device: torch.device
    in_memory: bool

    def __len__(self) -> int:
        return int(self.labels.numel())

    def indices_of(self, classes: Iterable[int]) -> torch.Tensor:
        """CPU LongTensor of the positions whose label is in ``classes``."""
        wanted = torch.as_tensor(list(classes), dtype=torch.long)
        return torch.nonzero(torch.isin(self.labels, wanted), as_tuple=False).flatten()

    def get(self, indices: torch.Tensor | Sequence[int]) -> torch.Tensor:
        raise NotImplementedError

    def to(self, device: torch.device | str) -> ImageSet:
        raise NotImplementedError


class TensorImageSet(ImageSet):
    """All images in one uint8 tensor [N, C, S, S]; moves whole between devices."""

    in_memory = True

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 [N, C, S, S], got {images.dtype} {tuple(images.shape)}")
        if images.shape[0] != labels.numel():
            raise ValueError(f"{images.shape[0]} images but {labels.numel()} labels")
        self.images = images
        self.labels = labels.to("cpu", torch.long)
        self.device = images.device

    def get(self, indices: torch.Tensor | Sequence[int]) -> torch.Tensor:
        return to_unit_range(self.images[as_index(indices).to(self.device)])

    def to(self, device: torch.device | str) -> TensorImageSet:
        device = torch.device(device)
        if device == self.device:
            return self
        return TensorImageSet(self.images.to(device), self.labels)

    def __repr__(self) -> str:
        return f"TensorImageSet(n={len(self)}, shape={tuple(self.images.shape[1:])}, device={self.device})"
