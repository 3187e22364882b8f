"""Generators and critics. ``build_models`` picks the pair named by ``model.arch``.

Every generator is ``G(z [n, z_dim], labels [n]) -> images [n, C, S, S]`` in [-1, 1]; every
critic is ``D(images) -> (wasserstein_score [n], class_logits [n, num_classes])``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from mergan.models.dcgan import DCGANCritic, DCGANGenerator
from mergan.models.resnet import ResNetCritic, ResNetGenerator
from mergan.models.small import SmallCritic, SmallGenerator

if TYPE_CHECKING:  # the methods import models.norm, and the config imports the methods
    from mergan.config import ModelConfig

_ARCHITECTURES = {
    "small": (SmallGenerator, SmallCritic),
    "dcgan": (DCGANGenerator, DCGANCritic),
    "resnet": (ResNetGenerator, ResNetCritic),
}


def build_models(model: ModelConfig, num_classes: int, channels: int) -> tuple[nn.Module, nn.Module]:
    """The generator and critic of ``model.arch`` for ``num_classes`` classes of ``channels``-channel images."""
    generator_class, critic_class = _ARCHITECTURES[model.arch]
    generator = generator_class(z_dim=model.z_dim, num_classes=num_classes, channels=channels,
                                width=model.g_width, image_size=model.image_size)
    critic = critic_class(num_classes=num_classes, channels=channels, width=model.d_width,
                          image_size=model.image_size)
    return generator, critic


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["build_models", "count_parameters"]
