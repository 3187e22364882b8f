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

from mergan.methods.base import REDUCE_BATCH, REPLAY_SHARE, PreviousGeneratorMethod
from mergan.methods.context import TaskContext, Training, class_runs
from mergan.settings import NON_NEGATIVE, POSITIVE, Knob

LAMBDA_RA = Knob("lambda_ra", 1e-3, "weight of the replay-alignment loss", NON_NEGATIVE)
RA_BATCH_SIZE = Knob("ra_batch_size", None, "replayed samples per step, spread evenly over the earlier classes "
                                            "(empty: the authors' batch // number of earlier classes, per earlier "
                                            "class)", POSITIVE, type="int")


def replay_alignment_loss(current: torch.Tensor, previous: torch.Tensor, num_earlier_classes: int,
                          divide_by_classes: bool = True) -> torch.Tensor:
    """1/2 * sum of squared differences over the batch, divided by the number of earlier classes for digits."""
    loss = 0.5 * (current - previous).pow(2).sum()
    return loss / num_earlier_classes if divide_by_classes else loss


class ReplayAlignment(PreviousGeneratorMethod):
    name = "ra"
    summary = "MeRGAN replay alignment: G(z, c) is pulled toward G_{t-1}(z, c) for earlier classes c"
    changes = "the generator's alignment to its previous copy"
    knobs = (LAMBDA_RA, RA_BATCH_SIZE, REPLAY_SHARE, REDUCE_BATCH)
    name_knobs = ("lambda_ra",)

    def __init__(self, config=None):
        super().__init__(config)
        self.labels: torch.Tensor | None = None  # the earlier classes each step aligns, set before each task

    def alignment_labels(self, task: TaskContext) -> torch.Tensor:
        """The task's earlier classes, each ``ra_batch_size // earlier`` times (default: the authors' count)."""
        size = self.config.ra_batch_size
        if not size:
            return task.replay_labels
        return class_runs(task.earlier_classes, max(1, size // len(task.earlier_classes)), task.earlier.device)

    def before_task(self, training: Training, task: TaskContext) -> None:
        super().before_task(training, task)
        self.labels = None if task.first else self.alignment_labels(task)

    def generator_terms(self, training: Training, task: TaskContext) -> dict[str, torch.Tensor]:
        if self.previous_generator is None:
            return {}
        z = training.draws.normal("ra.z", (self.labels.shape[0], training.config.model.z_dim))
        with torch.no_grad():
            target = self.previous_generator(z, self.labels)
        loss = replay_alignment_loss(training.generator(z, self.labels), target, len(task.earlier_classes),
                                     divide_by_classes=task.reduces_batch)
        return {"loss_ra": self.config.lambda_ra * loss}
