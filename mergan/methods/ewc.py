"""EWC on the generator (Kirkpatrick et al. 2017, for GANs after Seff et al. 2017).

After each task the diagonal Fisher information of the generator's weights is estimated and
added to the Fisher of earlier tasks; theta* becomes the current weights. Every later generator
step adds

    lambda_EWC / 2 * mean_i F_i (theta_i - theta*_i)^2      (paper: lambda_EWC = 1e9)

Estimator: the empirical Fisher of the generator's own objective, as Seff et al. use it:
F_i = mean over n samples of (d loss_G(z, c) / d theta_i)^2 with per-sample gradients
(torch.func.vmap), loss_G = -D(G(z, c)) + lambda_CLS * CE(aux(G(z, c)), c), and (z, c) drawn
over every class learned so far (``ewc_fisher_samples`` samples). Per-sample squares, not the
square of a batch mean, because the batch mean's square shrinks with the batch size and would
make lambda_EWC depend on it; each sample is normalised by its own batch-norm statistics (a batch
of one), so its gradient does not depend on which samples share its batch.

Normalisation: the penalty is the MEAN over the generator's weights, not the sum. The authors'
code has no EWC, and the paper gives only lambda_EWC = 1e9; with the sum, that lambda freezes a
32x32 DCGAN generator (measured on ``dcgan32`` after a first digit: median lambda * F_i = 3.5e6
against median |dL/dtheta_i| = 6.4e-3, an equilibrium step of 2e-9 per weight, and five-task
accuracies of about [0.32, 0.17, 0.00, 0.42, 0.01]). With the mean, lambda * F_i / N has a median
of about 7 on ``dcgan32`` (N = 0.53M) and about 1 on the ``small`` nets (N = 0.34M): the new
task's gradient still moves each weight by about 1e-3 (weights are about 3e-2), so EWC learns the
new class and holds part of the old, and one lambda means about the same on both sizes of net.
``method.ewc_reduction: sum`` restores the unnormalised sum (docs/fidelity.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from mergan.methods.base import Method
from mergan.methods.context import TaskContext, Training
from mergan.settings import NON_NEGATIVE, POSITIVE, Allowed, Knob

LAMBDA_EWC = Knob("lambda_ewc", 1e9, "weight of the Fisher penalty", NON_NEGATIVE)
EWC_REDUCTION = Knob("ewc_reduction", "mean", "the weight penalty F (theta - theta*)^2 averaged over the "
                                              "generator's weights (mean, so the paper's 1e9 learns) or summed (sum)",
                     Allowed(("mean", "sum")))
EWC_FISHER_SAMPLES = Knob("ewc_fisher_samples", 1024, "generated samples the Fisher is estimated from", POSITIVE)

_CHUNK = 64  # samples per vmapped per-sample-gradient pass


def estimate_fisher(generator, critic, classes: list[int], num_samples: int, z_dim: int, lambda_cls: float,
                    device: torch.device) -> dict[str, torch.Tensor]:
    """Diagonal empirical Fisher of the generator loss, per parameter name."""
    params = {k: v.detach() for k, v in generator.named_parameters()}
    buffers = {k: v.detach() for k, v in generator.named_buffers()}

    def sample_loss(p, z, label):
        image = functional_call(generator, (p, buffers), (z[None], label[None]))
        score, logits = critic(image)
        return -score.sum() + lambda_cls * F.cross_entropy(logits, label[None])

    per_sample_grad = vmap(grad(sample_loss), in_dims=(None, 0, 0))
    fisher = {k: torch.zeros_like(v) for k, v in params.items()}
    class_tensor = torch.tensor(classes, device=device)
    done = 0
    while done < num_samples:
        n = min(_CHUNK, num_samples - done)
        labels = class_tensor[torch.randint(len(classes), (n,), device=device)]
        z = torch.randn(n, z_dim, device=device)
        with torch.no_grad():  # grad() still differentiates inside; nothing joins the outer graph
            grads = per_sample_grad(params, z, labels)
        for k in fisher:
            fisher[k] += grads[k].detach().pow(2).sum(0)
        done += n
    return {k: v / num_samples for k, v in fisher.items()}


def ewc_penalty(parameters: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor],
                fisher: dict[str, torch.Tensor], reduction: str = "mean") -> torch.Tensor:
    """1/2 * mean_i F_i (theta_i - theta*_i)^2 over every weight (``reduction="sum"``: the sum), without lambda."""
    total = sum((fisher[k] * (parameters[k] - anchor[k]).pow(2)).sum() for k in fisher)
    if reduction == "mean":
        total = total / sum(f.numel() for f in fisher.values())
    return 0.5 * total


class ElasticWeightConsolidation(Method):
    name = "ewc"
    summary = "elastic weight consolidation: a Fisher-weighted penalty keeps G near its weights after each task"
    changes = "the generator's weight penalty"
    needs_previous_task = True
    knobs = (LAMBDA_EWC, EWC_FISHER_SAMPLES, EWC_REDUCTION)
    name_knobs = ("lambda_ewc",)
    penalty_term = "loss_ewc"  # the loss term's name in logs and MLflow

    def __init__(self, config=None):
        super().__init__(config)
        self.fisher: dict[str, torch.Tensor] | None = None
        self.anchor: dict[str, torch.Tensor] | None = None

    def penalty_weight(self) -> float:
        return self.config.lambda_ewc

    def after_task(self, training: Training, task: TaskContext) -> None:
        config = training.config
        fisher = estimate_fisher(training.generator, training.critic, list(task.seen_classes),
                                 self.config.ewc_fisher_samples, config.model.z_dim, config.optim.lambda_cls,
                                 training.device)
        self.fisher = fisher if self.fisher is None else {k: self.fisher[k] + fisher[k] for k in fisher}
        self.anchor = {k: v.detach().clone() for k, v in training.generator.named_parameters()}

    def generator_terms(self, training: Training, task: TaskContext) -> dict[str, torch.Tensor]:
        if self.fisher is None:
            return {}
        parameters = dict(training.generator.named_parameters())
        penalty = ewc_penalty(parameters, self.anchor, self.fisher, self.config.ewc_reduction)
        return {self.penalty_term: self.penalty_weight() * penalty}

    def state_dict(self) -> dict:
        return {"fisher": self.fisher, "anchor": self.anchor}

    def load_state_dict(self, state: dict, training: Training) -> None:
        to = training.device
        self.fisher = {k: v.to(to) for k, v in state["fisher"].items()} if state.get("fisher") else None
        self.anchor = {k: v.to(to) for k, v in state["anchor"].items()} if state.get("anchor") else None
