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

from mergan.config import MethodConfig
from mergan.methods.base import (
    GeneratorSampler,
    PreviousGeneratorMethod,
    earlier_classes,
    per_class_replay_count,
    reduces_batch,
    replayed_labels,
)

_DRAW_CHUNK = 512  # images per forward when drawing a fixed replay set


def per_class_sum(values: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Sum over classes of each class's mean, for ``values`` grouped by class in equal runs."""
    return values.view(num_classes, -1).mean(1).sum()


class JointRetraining(PreviousGeneratorMethod):
    name = "jtr"
    knobs = ("replay_mode", "replay_size_per_class", "replay_share", "reduce_batch", "jtr_loss")
    knob_conditions: ClassVar[Mapping[str, tuple[str, Any]]] = {"replay_size_per_class": ("replay_mode", "fixed")}
    name_knobs = ("replay_mode", "replay_size_per_class")

    def __init__(self, config: MethodConfig | None = None):
        super().__init__(config)
        self.replay_set: tuple[torch.Tensor, torch.Tensor] | None = None  # fixed mode: (z, images) by class

    def before_task(self, trainer, t: int) -> None:
        super().before_task(trainer, t)
        self.replay_set = None
        if self.previous_generator is not None and self.config.replay_mode == "fixed":
            self.replay_set = self._draw_replay_set(trainer, t)

    def _draw_replay_set(self, trainer, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = replayed_labels(trainer, t, self.config.replay_size_per_class)
        z = torch.randn(labels.shape[0], trainer.config.model.z_dim, device=trainer.device)
        sampler = self.previous_sampler(trainer)  # batch-sized groups of one class, as when training
        images = torch.cat([sampler.sample(y, noise) for y, noise in zip(labels.split(_DRAW_CHUNK),
                                                                         z.split(_DRAW_CHUNK))])
        return z, images

    def previous_sampler(self, trainer) -> GeneratorSampler:
        return GeneratorSampler(self.previous_generator, trainer.config.model.z_dim, trainer.config.optim.batch_size)

    def replay_pairs(self, trainer, t: int, with_previous: bool = True
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(labels, z, G_{t-1}(z, labels) or None) for one step, grouped by earlier class."""
        per_class = per_class_replay_count(trainer, t, trainer.config.optim.batch_size)
        labels = replayed_labels(trainer, t, per_class)
        if self.replay_set is None:
            z = torch.randn(labels.shape[0], trainer.config.model.z_dim, device=trainer.device)
            if not with_previous:
                return labels, z, None
            with torch.no_grad():
                return labels, z, self.previous_generator(z, labels)
        # Fixed set: earlier class k occupies rows [k * N, (k + 1) * N).
        size = self.config.replay_size_per_class
        n_earlier = len(earlier_classes(trainer, t))
        slot = torch.arange(n_earlier, device=trainer.device).repeat_interleave(per_class)
        rows = slot * size + torch.randint(size, slot.shape, device=trainer.device)
        set_z, set_images = self.replay_set
        return labels, set_z[rows], set_images[rows]

    def _per_class_form(self, trainer) -> bool:
        return self.config.jtr_loss == "per-class"

    def _reduce(self, trainer, t: int, total: torch.Tensor) -> torch.Tensor:
        return total if reduces_batch(trainer) else total / len(earlier_classes(trainer, t))

    def critic_terms(self, trainer, t: int) -> dict[str, torch.Tensor]:
        if self.previous_generator is None or not self._per_class_form(trainer):
            return {}
        labels, z, previous = self.replay_pairs(trainer, t)
        with torch.no_grad():
            current = trainer.generator(z, labels)
        n_earlier = len(earlier_classes(trainer, t))
        score, logits = trainer.critic(torch.cat([previous, current]))
        previous_score, current_score = score.split(labels.shape[0])
        wasserstein = per_class_sum(current_score, n_earlier) - per_class_sum(previous_score, n_earlier)
        classify = per_class_sum(F.cross_entropy(logits[: labels.shape[0]], labels, reduction="none"), n_earlier)
        return {"loss_jtr_d": self._reduce(trainer, t, wasserstein + trainer.config.optim.lambda_cls * classify)}

    def generator_terms(self, trainer, t: int) -> dict[str, torch.Tensor]:
        if self.previous_generator is None or not self._per_class_form(trainer):
            return {}
        labels, z, _ = self.replay_pairs(trainer, t, with_previous=False)
        score, logits = trainer.critic(trainer.generator(z, labels))
        n_earlier = len(earlier_classes(trainer, t))
        adversarial = -per_class_sum(score, n_earlier)
        classify = per_class_sum(F.cross_entropy(logits, labels, reduction="none"), n_earlier)
        return {"loss_jtr_g": self._reduce(trainer, t, adversarial + trainer.config.optim.lambda_cls * classify)}

    # -- the concatenated form: replay joins the real batch ------------------------------------
    def replay_labels(self, trainer, t: int, n_real: int) -> torch.Tensor | None:
        if self.previous_generator is None or self._per_class_form(trainer):
            return None
        return replayed_labels(trainer, t, per_class_replay_count(trainer, t, n_real))

    def replay(self, trainer, t: int, n_real: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.previous_generator is None or self._per_class_form(trainer):
            return None
        labels, _, images = self.replay_pairs(trainer, t)
        return images, labels
