"""Accuracy of the evaluator on generated images, one pass over the classes asked for.

Each class gets ``samples_per_class`` images drawn from a fixed latent code (seeded from the
run seed and the class, independent of the training RNG), so rows of the accuracy matrix
measured after different tasks compare the generator on the same z.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import torch

from mergan.evaluation.seeding import derive_seed, fixed_normal

SAMPLE_BATCH = 500  # generated images per generator forward

BatchHook = Callable[[int, torch.Tensor, torch.Tensor], None]  # (class, images, evaluator features)


class Sampler(Protocol):
    z_dim: int

    def sample(self, labels: torch.Tensor, z: torch.Tensor) -> torch.Tensor: ...


def generated_batches(sampler: Sampler, cls: int, count: int, seed: int, device: torch.device | str,
                      batch_size: int = SAMPLE_BATCH) -> Iterator[torch.Tensor]:
    """``count`` images of class ``cls`` in batches, in [-1, 1], from the class's fixed z."""
    z_all = fixed_normal(count, sampler.z_dim, derive_seed(seed, "accuracy-z", cls))
    with torch.no_grad():
        for z in z_all.split(batch_size):
            labels = torch.full((len(z),), cls, dtype=torch.long, device=device)
            images = sampler.sample(labels, z.to(device))
            yield images.float().clamp_(-1.0, 1.0)


def generated_class_accuracy(sampler: Sampler, evaluator: Any, classes: Sequence[int], samples_per_class: int,
                             seed: int, device: torch.device | str, on_batch: BatchHook | None = None,
                             batch_size: int = SAMPLE_BATCH) -> dict[int, float]:
    """{class: share of its generated images that the evaluator labels as that class}.

    ``on_batch(class, images, features)`` sees every generated batch with the evaluator's
    penultimate features, so FID and reverse accuracy reuse this pass instead of sampling again.
    """
    accuracy: dict[int, float] = {}
    for cls in classes:
        correct = torch.zeros((), dtype=torch.long, device=evaluator.device)
        for images in generated_batches(sampler, cls, samples_per_class, seed, device, batch_size):
            logits, features = evaluator.logits_and_features(images)
            correct += (logits.argmax(1) == cls).sum()
            if on_batch is not None:
                on_batch(cls, images, features)
        accuracy[int(cls)] = int(correct) / samples_per_class  # one host sync per class
    return accuracy


def class_coverage(unconditional: Callable[[torch.Tensor], torch.Tensor], z_dim: int, evaluator: Any,
                   classes: Sequence[int], samples_per_class: int, seed: int, device: torch.device | str,
                   batch_size: int = SAMPLE_BATCH) -> dict[str, float]:
    """How an unconditional generator covers the seen classes, judged by the evaluator alone.

    ``len(classes) * samples_per_class`` images from ``unconditional(z)`` are labelled by the
    evaluator: ``coverage_class_{c}`` is the share labelled c, ``coverage_unseen`` the share
    labelled a class not seen yet, and ``coverage_acc`` the mean over seen classes of
    min(1, share_c * number of seen classes): 1 when every seen class gets at least its fair share.
    Unlike class-conditional accuracy through a solver (DGR's sampler), no second classifier is involved.
    """
    total = samples_per_class * len(classes)
    z_all = fixed_normal(total, z_dim, derive_seed(seed, "coverage-z"))
    counts = torch.zeros(evaluator.num_classes, dtype=torch.long, device=evaluator.device)
    with torch.no_grad():
        for z in z_all.split(batch_size):
            images = unconditional(z.to(device)).float().clamp_(-1.0, 1.0)
            logits, _ = evaluator.logits_and_features(images)
            counts += torch.bincount(logits.argmax(1), minlength=evaluator.num_classes)
    shares = (counts.double() / total).tolist()  # one host sync
    seen = [int(c) for c in classes]
    metrics = {f"coverage_class_{c}": shares[c] for c in seen}
    metrics["coverage_unseen"] = 1.0 - sum(shares[c] for c in seen)
    metrics["coverage_acc"] = sum(min(1.0, shares[c] * len(seen)) for c in seen) / len(seen)
    return metrics
