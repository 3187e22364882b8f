"""MeRGAN-RA, replay alignment (Wu et al. 2018, Sec. 3.3).

Before task t > 1 a frozen copy G_{t-1} of the generator is kept. Every generator step adds

    lambda_RA * 1/2 * sum over the replayed batch of ||G_t(z, c) - G_{t-1}(z, c)||^2  [/ n_earlier]

for earlier classes c, the same z and c fed to both. The reduction is the authors' code's: the
squared error is summed (not averaged) over the whole replayed batch and every pixel, halved
(``tf.nn.l2_loss``), and for digits divided by the number of earlier classes; for LSUN it is not
divided. That is the scale at which the paper's lambda_RA (1e-3 MNIST/LSUN, 1e-2 SVHN) holds here.
The replayed batch holds ``method.ra_batch_size`` samples spread evenly over the earlier classes,
or by default the authors' batch // t per earlier class (t the 1-based task number).
"""

from __future__ import annotations

import torch

from mergan.methods.base import PreviousGeneratorMethod, earlier_classes, per_class_replay_count


def replay_alignment_loss(current: torch.Tensor, previous: torch.Tensor, num_earlier_classes: int,
                          divide_by_classes: bool = True) -> torch.Tensor:
    """1/2 * sum of squared differences over the batch, divided by the number of earlier classes for digits."""
    loss = 0.5 * (current - previous).pow(2).sum()
    return loss / num_earlier_classes if divide_by_classes else loss


class ReplayAlignment(PreviousGeneratorMethod):
    name = "ra"

    def replayed_labels(self, trainer, t: int) -> torch.Tensor:
        classes = earlier_classes(trainer, t)
        size = trainer.config.method.ra_batch_size
        per_class = (max(1, size // len(classes)) if size else
                     per_class_replay_count(trainer, t, trainer.config.optim.batch_size))
        return torch.tensor(classes, device=trainer.device).repeat_interleave(per_class)

    def generator_terms(self, trainer, t: int) -> dict[str, torch.Tensor]:
        if self.previous_generator is None:
            return {}
        labels = self.replayed_labels(trainer, t)
        z = torch.randn(labels.shape[0], trainer.config.model.z_dim, device=trainer.device)
        with torch.no_grad():
            target = self.previous_generator(z, labels)
        loss = replay_alignment_loss(trainer.generator(z, labels), target, len(earlier_classes(trainer, t)),
                                     divide_by_classes=trainer.config.data.dataset != "lsun")
        return {"loss_ra": trainer.config.method.lambda_ra * loss}
