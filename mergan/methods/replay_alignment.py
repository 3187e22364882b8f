"""MeRGAN-RA, replay alignment (Wu et al. 2018, Sec. 3.3).

Before task t > 1 a frozen copy G_{t-1} of the generator is kept. Every generator step adds

    lambda_RA * sum over earlier classes c of 1/2 ||G_t(z_c, c) - G_{t-1}(z_c, c)||^2  [/ class_count]

with the same noise z_c fed to both. The reduction is the authors' code's: the squared error is
summed (not averaged) over every replayed image and pixel, halved (``tf.nn.l2_loss``), and, when
the batch is reduced (digits), divided by ``class_count``, the number of earlier classes; for
LSUN it is not divided. That is the scale at which the paper's lambda_RA (1e-3 MNIST/LSUN, 1e-2
SVHN) holds. Each earlier class gets ``batch // class_count`` replayed samples (LSUN: a whole
batch), or ``method.ra_batch_size`` spread evenly over the earlier classes. All earlier classes go
through one forward of each generator; the class-grouped batch norm (models/norm.py) makes that
equal to the authors' one call per class, so identical G_t and G_{t-1} give a term of exactly 0.
"""

from __future__ import annotations

import torch

from mergan.methods.base import (
    PreviousGeneratorMethod,
    earlier_classes,
    per_class_replay_count,
    reduces_batch,
    replayed_labels,
)


def replay_alignment_loss(current: torch.Tensor, previous: torch.Tensor, num_earlier_classes: int,
                          divide_by_classes: bool = True) -> torch.Tensor:
    """1/2 * sum of squared differences over the batch, divided by the number of earlier classes for digits."""
    loss = 0.5 * (current - previous).pow(2).sum()
    return loss / num_earlier_classes if divide_by_classes else loss


class ReplayAlignment(PreviousGeneratorMethod):
    name = "ra"
    knobs = ("lambda_ra", "ra_batch_size", "replay_share", "reduce_batch")
    name_knobs = ("lambda_ra",)

    def alignment_labels(self, trainer, t: int) -> torch.Tensor:
        size = self.config.ra_batch_size
        per_class = (max(1, size // len(earlier_classes(trainer, t))) if size else
                     per_class_replay_count(trainer, t, trainer.config.optim.batch_size))
        return replayed_labels(trainer, t, per_class)

    def generator_terms(self, trainer, t: int) -> dict[str, torch.Tensor]:
        if self.previous_generator is None:
            return {}
        labels = self.alignment_labels(trainer, t)
        z = torch.randn(labels.shape[0], trainer.config.model.z_dim, device=trainer.device)
        with torch.no_grad():
            target = self.previous_generator(z, labels)
        loss = replay_alignment_loss(trainer.generator(z, labels), target, len(earlier_classes(trainer, t)),
                                     divide_by_classes=reduces_batch(trainer))
        return {"loss_ra": self.config.lambda_ra * loss}
