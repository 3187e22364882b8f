"""The AC-GAN + WGAN-GP losses (PAPER.md): pure functions, so they can be checked on known inputs.

critic:    D(fake) - D(real) + lambda_GP * GP + lambda_CLS * CE(aux(real), y)
generator: -D(G(z, c)) + lambda_CLS * CE(aux(G(z, c)), c)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     alpha: torch.Tensor | None = None) -> torch.Tensor:
    """mean over samples of (||grad_x D(x_hat)||_2 - 1)^2 at random interpolates x_hat of real and fake.

    ``alpha`` [n, 1, 1, 1]: the interpolation weights (default: drawn uniform in [0, 1) here)."""
    if alpha is None:
        alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    interpolates = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    score, _ = critic(interpolates)
    (grad,) = torch.autograd.grad(score.sum(), interpolates, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def critic_loss(critic: nn.Module, real: torch.Tensor, real_labels: torch.Tensor, fake: torch.Tensor,
                lambda_gp: float, lambda_cls: float, penalty_real: torch.Tensor | None = None,
                alpha: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The critic's loss and its parts. ``real`` may include replayed images (scored and classified
    as real); the penalty interpolates only ``penalty_real`` (the task's true real images) with fake,
    with weights ``alpha`` (see ``gradient_penalty``)."""
    penalty_real = real if penalty_real is None else penalty_real
    both = torch.cat([real, fake])
    score, logits = critic(both)
    real_score, fake_score = score[: real.shape[0]], score[real.shape[0]:]
    wasserstein = real_score.mean() - fake_score.mean()
    cls_real = F.cross_entropy(logits[: real.shape[0]], real_labels) if lambda_cls else real.new_zeros(())
    gp = (gradient_penalty(critic, penalty_real, fake[: penalty_real.shape[0]], alpha) if lambda_gp
          else real.new_zeros(()))
    loss = -wasserstein + lambda_gp * gp + lambda_cls * cls_real
    return loss, {"wasserstein": wasserstein.detach(), "gp": gp.detach(), "cls_real": cls_real.detach()}


def generator_loss(critic: nn.Module, fake: torch.Tensor, labels: torch.Tensor, lambda_cls: float
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    score, logits = critic(fake)
    cls_fake = F.cross_entropy(logits, labels) if lambda_cls else fake.new_zeros(())
    loss = -score.mean() + lambda_cls * cls_fake
    return loss, {"cls_fake": cls_fake.detach()}
