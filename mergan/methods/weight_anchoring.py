"""L2, plain weight anchoring: EWC's penalty with the Fisher replaced by 1 (CLoG's L2; not in the paper).

After each task the generator's weights become the anchor theta*; every later generator step adds

    lambda_L2 / 2 * mean_i (theta_i - theta*_i)^2        (``ewc_reduction: sum``: the sum)

which is ``ewc_penalty`` with every F_i = 1, so the two methods differ only in EWC's per-weight Fisher
weighting (and its accumulation over tasks: here the weight stays 1, it does not count the tasks).
CLoG (Zhang et al. 2024) sums per-tensor mean squares; the mean over all weights keeps one lambda meaning
the same on nets of different sizes, as EWC's does here (docs/fidelity.md). Default lambda_L2 = 1e6: on
the ``small`` nets (0.34M weights) that is a stiffness lambda/N of about 3 per weight, near the median
lambda_EWC * F_i / N of EWC at the paper's 1e9 (about 1 on ``small``, 7 on ``dcgan32``).
"""

from __future__ import annotations

import torch

from mergan.methods.context import TaskContext, Training
from mergan.methods.ewc import EWC_REDUCTION, ElasticWeightConsolidation
from mergan.settings import NON_NEGATIVE, Knob

LAMBDA_L2 = Knob("lambda_l2", 1e6, "weight of the L2 penalty that keeps G near its weights after the last task",
                 NON_NEGATIVE)


class WeightAnchoring(ElasticWeightConsolidation):
    name = "l2"
    summary = "L2 weight anchoring (not in the paper): EWC's penalty with the Fisher replaced by 1 (CLoG's L2)"
    knobs = (LAMBDA_L2, EWC_REDUCTION)
    name_knobs = ("lambda_l2",)
    penalty_term = "loss_l2"

    def penalty_weight(self) -> float:
        return self.config.lambda_l2

    def after_task(self, training: Training, task: TaskContext) -> None:
        self.anchor = {k: v.detach().clone() for k, v in training.generator.named_parameters()}
        self.fisher = {k: torch.ones_like(v) for k, v in self.anchor.items()}
