"""MeRGAN-JTR, joint retraining with replayed samples (Wu et al. 2018, Sec. 3.2).

Before task t > 1 a frozen copy G_{t-1} is kept; it draws images of every earlier class, which
train the critic and the generator together with the current task's real images. Two loss forms:

- ``per-class`` (default, the authors' code): for each earlier class c separately, with the same
  noise z fed to both generators, a Wasserstein term in which G_{t-1}(z, c) is "real" and
  G_t(z, c) is "fake", plus the class loss: the critic gets
  mean D(G_t(z, c)) - mean D(G_{t-1}(z, c)) + CE(aux(G_{t-1}(z, c)), c), the generator
  -mean D(G_t(z, c)) + CE(aux(G_t(z, c)), c). The per-class terms are summed, so every earlier
  class weighs as much as the current one (whose ordinary WGAN-GP + AC-GAN terms the trainer adds);
  LSUN (no reduced batch) divides the sums by the number of earlier classes. No gradient penalty
  on replayed images.
- ``concatenated``: the replayed images join each real batch (scored and classified as real) and
  the generator step draws their classes too; the current class then weighs as much as all
  earlier classes together. Kept as an option for comparison.

Replay modes: ``fresh`` (the authors' code) draws new noise every step, ``batch // class_count``
per earlier class (LSUN: a whole batch); ``fixed`` draws a replay set of ``replay_size_per_class``
images (and their noise) per earlier class once at the start of the task (the paper's S~_c) and
samples from it. ``replay_share`` replaces the per-class count by a share of each step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mergan.methods.base import (
    REDUCE_BATCH,
    REPLAY_SHARE,
    REPLAY_SIZE_PER_CLASS,
    GeneratorSampler,
    PreviousGeneratorMethod,
)
from mergan.methods.context import TaskContext, Training, class_runs
from mergan.settings import Allowed, Knob

REPLAY_MODE = Knob("replay_mode", "fresh", "fresh replay every step (the authors' code), or a fixed set drawn once "
                                           "per task (the paper's)", Allowed(("fresh", "fixed")))
JTR_LOSS = Knob("jtr_loss", "per-class", "per-class (the authors' code: a WGAN + class term per earlier class, "
                                         "G_{t-1}'s images as real) or concatenated (replay joins the real batch)",
                Allowed(("per-class", "concatenated")))
_DRAW_CHUNK = 512  # images per forward when drawing a fixed replay set


def per_class_sum(values: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Sum over classes of each class's mean, for ``values`` grouped by class in equal runs."""
    return values.view(num_classes, -1).mean(1).sum()


def per_class_replay_loss(critic: nn.Module, generated: torch.Tensor, labels: torch.Tensor, num_classes: int,
                          lambda_cls: float, replayed: torch.Tensor | None = None) -> torch.Tensor:
    """JTR's idea in one function: each earlier class is a small GAN game of its own, summed over the classes.

    For each class c (``labels`` grouped by class in equal runs), the replayed images of c are "real" and
    the generated images of c "fake": with ``replayed`` (the critic's side) the loss is
    mean D(generated_c) - mean D(replayed_c) + lambda_cls * CE(aux(replayed_c), c); without it (the
    generator's side), -mean D(generated_c) + lambda_cls * CE(aux(generated_c), c). Every class weighs the
    same, whatever its number of samples; there is no gradient penalty on replayed images.
    """
    if replayed is None:
        score, logits = critic(generated)
        adversarial = -per_class_sum(score, num_classes)
    else:
        score, logits = critic(torch.cat([replayed, generated]))
        replayed_score, generated_score = score.split(labels.shape[0])
        adversarial = per_class_sum(generated_score, num_classes) - per_class_sum(replayed_score, num_classes)
        logits = logits[: labels.shape[0]]
    classify = per_class_sum(F.cross_entropy(logits, labels, reduction="none"), num_classes)
    return adversarial + lambda_cls * classify


class JointRetraining(PreviousGeneratorMethod):
    name = "jtr"
    summary = "MeRGAN joint retraining: G_{t-1}'s images of each earlier class are 'real' in a per-class term"
    changes = "replay"
    knobs = (REPLAY_MODE, REPLAY_SIZE_PER_CLASS, REPLAY_SHARE, REDUCE_BATCH, JTR_LOSS)
    knob_conditions: ClassVar[Mapping[str, tuple[str, Any]]] = {"replay_size_per_class": ("replay_mode", "fixed")}
    name_knobs = ("replay_mode", "replay_size_per_class")

    def __init__(self, config=None):
        super().__init__(config)
        self.replay_set: tuple[torch.Tensor, torch.Tensor] | None = None  # fixed mode: (z, images) by class
        self.set_rows: torch.Tensor | None = None  # fixed mode: where each replayed sample's class starts in the set

    def before_task(self, training: Training, task: TaskContext) -> None:
        super().before_task(training, task)
        self.replay_set, self.set_rows = None, None
        if self.previous_generator is not None and self.config.replay_mode == "fixed":
            self.replay_set = self._draw_replay_set(training, task)
            # Earlier class k occupies rows [k * N, (k + 1) * N) of the set.
            slot = torch.arange(len(task.earlier_classes), device=training.device)
            self.set_rows = slot.repeat_interleave(task.replay_per_class) * self.config.replay_size_per_class

    def _draw_replay_set(self, training: Training, task: TaskContext) -> tuple[torch.Tensor, torch.Tensor]:
        labels = class_runs(task.earlier_classes, self.config.replay_size_per_class, training.device)
        z = torch.randn(labels.shape[0], training.config.model.z_dim, device=training.device)
        sampler = self.previous_sampler(training)  # batch-sized groups of one class, as when training
        images = torch.cat([sampler.sample(y, noise) for y, noise in zip(labels.split(_DRAW_CHUNK),
                                                                         z.split(_DRAW_CHUNK))])
        return z, images

    def previous_sampler(self, training: Training) -> GeneratorSampler:
        return GeneratorSampler(self.previous_generator, training.config.model.z_dim,
                                training.config.optim.batch_size)

    def replay_pairs(self, training: Training, task: TaskContext, with_previous: bool = True
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(labels, z, G_{t-1}(z, labels) or None) for one step, grouped by earlier class. The critic's side
        (``with_previous``) and the generator's draw into buffers of their own."""
        labels = task.replay_labels
        side = "critic" if with_previous else "generator"
        if self.replay_set is None:
            z = training.draws.normal(f"jtr.{side}.z", (labels.shape[0], training.config.model.z_dim))
            if not with_previous:
                return labels, z, None
            with torch.no_grad():
                return labels, z, self.previous_generator(z, labels)
        rows = self.set_rows + training.draws.integers(f"jtr.{side}.rows", self.config.replay_size_per_class,
                                                       tuple(self.set_rows.shape))
        set_z, set_images = self.replay_set
        return labels, set_z[rows], set_images[rows]

    def _per_class_form(self) -> bool:
        return self.config.jtr_loss == "per-class"

    @staticmethod
    def _reduce(task: TaskContext, total: torch.Tensor) -> torch.Tensor:
        return total if task.reduces_batch else total / len(task.earlier_classes)

    def critic_terms(self, training: Training, task: TaskContext) -> dict[str, torch.Tensor]:
        if self.previous_generator is None or not self._per_class_form():
            return {}
        labels, z, previous = self.replay_pairs(training, task)
        with torch.no_grad():
            current = training.generator(z, labels)
        loss = per_class_replay_loss(training.critic, current, labels, len(task.earlier_classes),
                                     training.config.optim.lambda_cls, replayed=previous)
        return {"loss_jtr_d": self._reduce(task, loss)}

    def generator_terms(self, training: Training, task: TaskContext) -> dict[str, torch.Tensor]:
        if self.previous_generator is None or not self._per_class_form():
            return {}
        labels, z, _ = self.replay_pairs(training, task, with_previous=False)
        loss = per_class_replay_loss(training.critic, training.generator(z, labels), labels,
                                     len(task.earlier_classes), training.config.optim.lambda_cls)
        return {"loss_jtr_g": self._reduce(task, loss)}

    # -- the concatenated form: replay joins the real batch ------------------------------------
    def replay_labels(self, training: Training, task: TaskContext) -> torch.Tensor | None:
        if self.previous_generator is None or self._per_class_form():
            return None
        return task.replay_labels

    def replay(self, training: Training, task: TaskContext) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.previous_generator is None or self._per_class_form():
            return None
        labels, _, images = self.replay_pairs(training, task)
        return images, labels
