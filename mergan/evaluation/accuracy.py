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

SAMPLE_BATCH = 500  # generated images per generator forward, at most (rounded down to whole groups)

BatchHook = Callable[[int, torch.Tensor, torch.Tensor], None]  # (class, images, evaluator features)


class Sampler(Protocol):
    """Draws images of given classes from given noise. Optional attributes: ``group_size`` (the
    generator normalises with the statistics of groups of that many samples) and ``mixes_classes``
    (a group holds images of several classes, as a joint-training batch does)."""

    z_dim: int

    def sample(self, labels: torch.Tensor, z: torch.Tensor) -> torch.Tensor: ...


def group_size_of(sampler: Any) -> int:
    """The sampler's normalisation group size (0: its images do not depend on the batch)."""
    return int(getattr(sampler, "group_size", 0) or 0)


def forward_size(group: int, wanted: int = SAMPLE_BATCH) -> int:
    """Images per generator forward: ``wanted`` rounded down to whole groups of ``group`` (at least one)."""
    return wanted if group <= 0 else max(1, wanted // group) * group


def padded_count(count: int, group: int) -> int:
    """``count`` rounded up to whole groups of ``group`` (``count`` itself when ``group`` is 0)."""
    return count if group <= 0 else -(-count // group) * group


def class_latents(sampler: Any, cls: int, count: int, seed: int, padded: int | None = None) -> torch.Tensor:
    """The fixed z of ``count`` images of ``cls``, then ``padded - count`` more from a seed of their own.

    The padding fills the last normalisation group so that every group has exactly ``group_size``
    samples; its images are never scored, and the first ``count`` z stay the class's fixed ones.
    """
    z = fixed_normal(count, sampler.z_dim, derive_seed(seed, "accuracy-z", cls))
    extra = (padded or count) - count
    if extra <= 0:
        return z
    return torch.cat([z, fixed_normal(extra, sampler.z_dim, derive_seed(seed, "accuracy-z-padding", cls))])


def generated_batches(sampler: Sampler, cls: int, count: int, seed: int, device: torch.device | str,
                      batch_size: int = SAMPLE_BATCH) -> Iterator[torch.Tensor]:
    """``count`` images of class ``cls`` in batches, in [-1, 1], from the class's fixed z.

    A sampler with a ``group_size`` is called on whole groups only: the forward size is a multiple
    of it and the last group is filled with padding images that are drawn but not returned.
    """
    group = group_size_of(sampler)
    z_all = class_latents(sampler, cls, count, seed, padded_count(count, group))
    remaining = count
    with torch.no_grad():
        for z in z_all.split(forward_size(group, batch_size)):
            labels = torch.full((len(z),), cls, dtype=torch.long, device=device)
            images = sampler.sample(labels, z.to(device))[:remaining]
            remaining -= len(images)
            if len(images):
                yield images.float().clamp_(-1.0, 1.0)


def mixed_class_batches(sampler: Sampler, classes: Sequence[int], count: int, seed: int,
                        device: torch.device | str, batch_size: int = SAMPLE_BATCH
                        ) -> Iterator[tuple[int, torch.Tensor]]:
    """(class, images) for ``count`` images of every class, drawn in mixed batches as joint training draws them.

    The classes take turns (c0, c1, ..., c0, c1, ...), like the authors' ``joint.py`` evaluation labels
    ``[0, ..., 9] * 10``, so every normalisation group of ``group_size`` holds an equal share of each
    class; each class keeps its own fixed z, and padding fills the last group.
    """
    classes = [int(c) for c in classes]
    group, k = group_size_of(sampler), len(classes)
    total = padded_count(count * k, group)
    per_class = -(-total // k)  # z per class, padding included
    latents = torch.stack([class_latents(sampler, c, count, seed, per_class) for c in classes], dim=1)
    z_all = latents.reshape(per_class * k, sampler.z_dim)[:total]  # row p: class p % k, its (p // k)-th z
    labels_all = torch.tensor(classes, dtype=torch.long).repeat(per_class)[:total]
    scored = torch.arange(total) < count * k
    size = forward_size(group, batch_size)
    with torch.no_grad():
        for z, labels, keep in zip(z_all.split(size), labels_all.split(size), scored.split(size)):
            images = sampler.sample(labels.to(device), z.to(device)).float().clamp_(-1.0, 1.0)
            keep = keep.to(images.device)
            labels = labels.to(images.device)
            for cls in classes:
                chosen = images[keep & (labels == cls)]
                if len(chosen):
                    yield cls, chosen


def generated_class_batches(sampler: Sampler, classes: Sequence[int], count: int, seed: int,
                            device: torch.device | str, batch_size: int = SAMPLE_BATCH
                            ) -> Iterator[tuple[int, torch.Tensor]]:
    """(class, images) batches holding ``count`` generated images of each class: one class at a time, or
    in mixed batches for a sampler that ``mixes_classes`` (joint training)."""
    if getattr(sampler, "mixes_classes", False):
        yield from mixed_class_batches(sampler, classes, count, seed, device, batch_size)
        return
    for cls in classes:
        for images in generated_batches(sampler, cls, count, seed, device, batch_size):
            yield int(cls), images


def evaluator_output(evaluator: Any, cls: int) -> int:
    """The evaluator's output that stands for class ``cls`` (its label map; ``cls`` itself without one)."""
    output_of = getattr(evaluator, "output_of", None)
    return int(cls) if output_of is None else output_of(cls)


def generated_class_accuracy(sampler: Sampler, evaluator: Any, classes: Sequence[int], samples_per_class: int,
                             seed: int, device: torch.device | str, on_batch: BatchHook | None = None,
                             batch_size: int = SAMPLE_BATCH) -> dict[int, float]:
    """{class: share of its generated images that the evaluator labels as that class (through its label map)}.

    ``on_batch(class, images, features)`` sees every generated batch with the evaluator's
    penultimate features, so FID and reverse accuracy reuse this pass instead of sampling again.
    """
    correct = {int(c): torch.zeros((), dtype=torch.long, device=evaluator.device) for c in classes}
    for cls, images in generated_class_batches(sampler, classes, samples_per_class, seed, device, batch_size):
        logits, features = evaluator.logits_and_features(images)
        correct[cls] += (logits.argmax(1) == evaluator_output(evaluator, cls)).sum()
        if on_batch is not None:
            on_batch(cls, images, features)
    return {cls: int(hits) / samples_per_class for cls, hits in correct.items()}  # one host sync per class


def class_coverage(unconditional: Callable[[torch.Tensor], torch.Tensor], z_dim: int, evaluator: Any,
                   classes: Sequence[int], samples_per_class: int, seed: int, device: torch.device | str,
                   batch_size: int = SAMPLE_BATCH, group_size: int = 0) -> dict[str, float]:
    """How an unconditional generator covers the seen classes, judged by the evaluator alone.

    ``len(classes) * samples_per_class`` images from ``unconditional(z)`` are labelled by the
    evaluator: ``coverage_class_{c}`` is the share labelled c, ``coverage_unseen`` the share
    labelled a class not seen yet, and ``coverage_acc`` the mean over seen classes of
    min(1, share_c * number of seen classes): 1 when every seen class gets at least its fair share.
    Unlike class-conditional accuracy through a solver (DGR's sampler), no second classifier is involved.
    A generator normalised in groups of ``group_size`` is called on whole groups (padding, not scored,
    fills the last one).
    """
    total = samples_per_class * len(classes)
    z_all = fixed_normal(total, z_dim, derive_seed(seed, "coverage-z"))
    padding = padded_count(total, group_size) - total
    if padding:
        z_all = torch.cat([z_all, fixed_normal(padding, z_dim, derive_seed(seed, "coverage-z-padding"))])
    counts = torch.zeros(evaluator.num_classes, dtype=torch.long, device=evaluator.device)
    remaining = total
    with torch.no_grad():
        for z in z_all.split(forward_size(group_size, batch_size)):
            images = unconditional(z.to(device)).float().clamp_(-1.0, 1.0)[:remaining]
            remaining -= len(images)
            logits, _ = evaluator.logits_and_features(images)
            counts += torch.bincount(logits.argmax(1), minlength=evaluator.num_classes)
    outputs = (counts.double() / total).tolist()  # one host sync
    seen = [int(c) for c in classes]
    shares = {c: outputs[evaluator_output(evaluator, c)] for c in seen}
    metrics = {f"coverage_class_{c}": shares[c] for c in seen}
    metrics["coverage_unseen"] = 1.0 - sum(shares.values())
    metrics["coverage_acc"] = sum(min(1.0, shares[c] * len(seen)) for c in seen) / len(seen)
    return metrics
