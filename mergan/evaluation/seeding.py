"""Seeds and latent codes for evaluation, drawn from dedicated generators.

Evaluation never touches the global torch RNG, so a run's training is the same whether or
not (and however often) it is evaluated.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed for one purpose (e.g. ``derive_seed(run_seed, "accuracy", class)``)."""
    text = "/".join(str(part) for part in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def fixed_normal(n: int, dim: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """[n, dim] standard normal values, the same for a seed on every device (drawn on the CPU)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=generator).to(device)
