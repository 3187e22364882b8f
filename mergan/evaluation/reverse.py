"""Reverse accuracy: a fresh classifier trained on generated images only, tested on real ones."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from mergan.evaluation.classifier import ClassifierSettings, accuracy_on, train_classifier

MIN_STEPS = 300  # a small generated set (few samples per class) still gets this many optimizer steps


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8 on the CPU: generated images stored the way a saved dataset holds them."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round_().to(torch.uint8).cpu()


def from_uint8(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1.0


def reverse_accuracy(generated: dict[int, Sequence[torch.Tensor]], ds: Any, settings: ClassifierSettings,
                     device: torch.device | str, seed: int) -> float:
    """Accuracy on ``ds.test`` images of the generated classes of a classifier trained on ``generated``.

    ``generated`` maps each seen class to uint8 image batches (see ``to_uint8``); the classifier
    chooses among those classes only, and only their real test images are scored.
    """
    classes = sorted(generated)
    images = torch.cat([torch.cat(list(generated[c])) for c in classes])
    labels = torch.cat([torch.full((sum(len(b) for b in generated[c]),), i, dtype=torch.long)
                        for i, c in enumerate(classes)])
    shape = {"channels": images.shape[1], "image_size": images.shape[-1], "num_classes": len(classes)}
    net = train_classifier(lambda index: from_uint8(images[index]), labels, shape,
                           replace(settings, seed=seed, min_steps=MIN_STEPS), device)
    test_index = torch.isin(ds.test.labels.cpu(), torch.tensor(classes)).nonzero().flatten()
    return accuracy_on(net, lambda index: ds.test.get(test_index[index]), ds.test.labels.cpu()[test_index],
                       device, label_map=torch.tensor(classes))
