"""MeRGAN-JTR, joint retraining with replayed samples (Wu et al. 2018, Sec. 3.2).

Before task t > 1 a frozen copy G_{t-1} draws images of every earlier class. They join each real
batch of the current task: the critic scores them as real and classifies them as their classes
(no gradient penalty on them), and the generator's step draws their classes too, so G keeps
learning old and new classes together. Two replay modes:
- ``fresh`` (the authors' code): new images every step, batch // t per earlier class per real
  batch of ``batch`` images (t the 1-based task number);
- ``fixed``: a replay set of ``replay_size_per_class`` images per earlier class, drawn once at the
  start of the task (the paper's S~_c), sampled from at every step.
``replay_share`` replaces the batch // t rule by a fixed share of each batch.
"""

from __future__ import annotations

import torch

from mergan.methods.base import PreviousGeneratorMethod, earlier_classes, per_class_replay_count

_DRAW_CHUNK = 512  # images per forward when drawing a fixed replay set


class JointRetraining(PreviousGeneratorMethod):
    name = "jtr"

    def __init__(self):
        super().__init__()
        self.replay_images: torch.Tensor | None = None  # fixed mode: [n_earlier * N, C, S, S]

    def before_task(self, trainer, t: int) -> None:
        super().before_task(trainer, t)
        self.replay_images = None
        if self.previous_generator is not None and trainer.config.method.replay_mode == "fixed":
            self.replay_images = self._draw_replay_set(trainer, t)

    def _draw_replay_set(self, trainer, t: int) -> torch.Tensor:
        per_class = trainer.config.method.replay_size_per_class
        labels = torch.tensor(earlier_classes(trainer, t), device=trainer.device).repeat_interleave(per_class)
        chunks = []
        with torch.no_grad():
            for start in range(0, labels.shape[0], _DRAW_CHUNK):
                chunk = labels[start:start + _DRAW_CHUNK]
                z = torch.randn(chunk.shape[0], trainer.config.model.z_dim, device=trainer.device)
                chunks.append(self.previous_generator(z, chunk))
        return torch.cat(chunks)

    def replay_labels(self, trainer, t: int, n_real: int) -> torch.Tensor | None:
        if self.previous_generator is None:
            return None
        per_class = per_class_replay_count(trainer, t, n_real)
        return torch.tensor(earlier_classes(trainer, t), device=trainer.device).repeat_interleave(per_class)

    def replay(self, trainer, t: int, n_real: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        labels = self.replay_labels(trainer, t, n_real)
        if labels is None:
            return None
        if self.replay_images is None:
            z = torch.randn(labels.shape[0], trainer.config.model.z_dim, device=trainer.device)
            with torch.no_grad():
                return self.previous_generator(z, labels), labels
        # Fixed set: class k of the earlier classes occupies rows [k * N, (k + 1) * N).
        per_class = trainer.config.method.replay_size_per_class
        n_earlier = len(earlier_classes(trainer, t))
        slot = torch.arange(n_earlier, device=trainer.device).repeat_interleave(labels.shape[0] // n_earlier)
        rows = slot * per_class + torch.randint(per_class, slot.shape, device=trainer.device)
        return self.replay_images[rows], labels
