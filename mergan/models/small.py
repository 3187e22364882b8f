"""The fast CPU preset (its speed: bench/trainer_overhead.py): one-hot class concatenated to z, no normalisation,
~0.3M + 0.07M weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mergan.models.norm import NormGroups


class SmallGenerator(nn.Module):
    """[z, onehot(c)] -> Linear -> width x 8 x 8 -> two stride-2 transposed convs -> 32x32, tanh."""

    def __init__(self, z_dim: int, num_classes: int, channels: int, width: int = 64, image_size: int = 32):
        super().__init__()
        self.z_dim, self.num_classes, self.width = z_dim, num_classes, width
        self.register_buffer("onehot", torch.eye(num_classes), persistent=False)
        self.project = nn.Linear(z_dim + num_classes, width * 8 * 8)
        self.up1 = nn.ConvTranspose2d(width, width // 2, 4, stride=2, padding=1)
        self.up2 = nn.ConvTranspose2d(width // 2, channels, 4, stride=2, padding=1)

    def forward(self, z: torch.Tensor, labels: torch.Tensor, groups: NormGroups | None = None) -> torch.Tensor:
        """``groups`` is accepted for the common generator interface; this net has no normalisation."""
        onehot = self.onehot[labels].to(z.dtype)  # (F.one_hot cannot run under vmap, used by EWC)
        x = F.relu(self.project(torch.cat([z, onehot], dim=1))).view(-1, self.width, 8, 8)
        x = F.relu(self.up1(x))
        return torch.tanh(self.up2(x))


class SmallCritic(nn.Module):
    """Two stride-2 convs (width, 2*width), LeakyReLU 0.2, then the Wasserstein and class heads."""

    def __init__(self, num_classes: int, channels: int, width: int = 32, image_size: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        flat = 2 * width * (image_size // 4) ** 2
        self.score = nn.Linear(flat, 1)
        self.classify = nn.Linear(flat, num_classes)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(images)
        return self.score(h).squeeze(1), self.classify(h)
