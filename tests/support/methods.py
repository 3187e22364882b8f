"""Method tests' shared move: push the generator away from its previous copy, then take one step on a term."""

from __future__ import annotations

import torch


def term_before_and_after_one_step(trainer, task, term: str, lr: float, drift: float = 0.05) -> tuple[float, float]:
    """The method's generator term ``term`` once the generator has drifted (Gaussian noise of scale ``drift``
    on every weight), and again, on the same random draws, after one SGD step of the generator on it."""
    with torch.no_grad():
        for p in trainer.generator.parameters():
            p.add_(drift * torch.randn_like(p))
    optimizer = torch.optim.SGD(trainer.generator.parameters(), lr=lr)
    torch.manual_seed(1)
    before = trainer.method.generator_terms(trainer, task)[term]
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    torch.manual_seed(1)  # the same z and classes
    return before.item(), trainer.method.generator_terms(trainer, task)[term].item()
