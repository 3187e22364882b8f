"""Sample grids: one row per seen class, the same fixed z in every row and after every task."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torchvision.utils import save_image

from mergan.evaluation.seeding import derive_seed, fixed_normal


def class_grid(sampler, classes: Sequence[int], per_class: int, seed: int,
               device: torch.device | str) -> torch.Tensor:
    """[len(classes) * per_class, C, S, S] images in [-1, 1]; column k uses the same z for every class.

    A sampler whose generator normalises with batch statistics in groups of ``group_size`` draws a
    whole group per class, so the grid shows images as the evaluation sees them (not the statistics
    of only ``per_class`` samples); the first ``per_class`` of each class are shown. A sampler that
    ``mixes_classes`` (joint training) draws the classes in turns, as its evaluation does."""
    group, count = int(getattr(sampler, "group_size", 0) or 0), len(classes)
    mixed = bool(getattr(sampler, "mixes_classes", False))
    drawn = max(per_class, -(-group // count) if mixed else group)
    z = fixed_normal(drawn, sampler.z_dim, derive_seed(seed, "grid-z"), device)
    wanted = torch.tensor(list(classes), dtype=torch.long, device=device)
    with torch.no_grad():
        if mixed:  # row p: class p % count, z p // count
            images = sampler.sample(wanted.repeat(drawn), z.repeat_interleave(count, dim=0)).float().clamp(-1.0, 1.0)
            images = images.view(drawn, count, *images.shape[1:]).transpose(0, 1)
        else:
            images = sampler.sample(wanted.repeat_interleave(drawn), z.repeat(count, 1)).float().clamp(-1.0, 1.0)
            images = images.view(count, drawn, *images.shape[1:])
    return images[:, :per_class].reshape(-1, *images.shape[2:])


def save_class_grid(sampler, classes: Sequence[int], per_class: int, seed: int, device: torch.device | str,
                    path: str | os.PathLike) -> str:
    """Write the grid of ``class_grid`` as a PNG and return its path."""
    images = class_grid(sampler, classes, per_class, seed, device)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_image(images.cpu() * 0.5 + 0.5, path, nrow=per_class, padding=2, pad_value=1.0)
    return str(path)
