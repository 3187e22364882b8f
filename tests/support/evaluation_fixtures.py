"""Stand-ins for evaluation tests: a deterministic conditional generator and a tiny three-class dataset."""

from __future__ import annotations

import torch

from mergan.config import EvalConfig
from mergan.data import ClassDataset, TensorImageSet


class LinearGenerator:
    """A deterministic conditional generator: images depend on z and the class."""

    z_dim = 8

    def __init__(self, num_classes: int, size: int):
        weights = torch.Generator().manual_seed(1)
        self.size = size
        self.project = torch.randn(self.z_dim, size * size, generator=weights)
        self.embed = torch.randn(num_classes, size * size, generator=weights)

    def sample(self, labels: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z @ self.project + self.embed[labels]).view(-1, 1, self.size, self.size)


# -- datasets and evaluators -----------------------------------------------------------------
def toy_dataset(per_class: int = 24, size: int = 8, seed: int = 0) -> ClassDataset:
    """Three classes of 8x8 images: a bright horizontal band at a class-specific height, plus noise."""
    generator = torch.Generator().manual_seed(seed)

    def split(count: int) -> TensorImageSet:
        labels = torch.arange(3).repeat_interleave(count)
        images = torch.rand(len(labels), 1, size, size, generator=generator) * 80
        for i, cls in enumerate(labels.tolist()):
            images[i, :, 2 * cls + 1: 2 * cls + 3] += 170
        return TensorImageSet(images.clamp(0, 255).to(torch.uint8), labels)

    return ClassDataset(name="toy", class_names=["a", "b", "c"], channels=1, image_size=size,
                        train=split(per_class), test=split(per_class // 2), fingerprint=f"toy-{seed}")


def toy_config(tmp_path, **values) -> EvalConfig:
    defaults = {"cache_dir": str(tmp_path / "cache"), "evaluator_epochs": 1, "eval_samples_per_class": 12,
                "grid_per_class": 3}
    return EvalConfig(**{**defaults, **values})
