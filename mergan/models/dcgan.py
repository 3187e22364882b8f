"""The paper's 32x32 digit pair (MNIST, SVHN), after the authors' code (PAPER.md, "Shared model").

G: Linear(z -> 4x4x(4w)), three 5x5 stride-2 transposed convs (4w -> 2w -> w -> C), conditional
batch norm (a scale and shift per class, statistics of each class's own samples: models/norm.py)
after every hidden layer, ReLU, tanh out. With w = 32
that is 128 -> 64 -> 32 -> C as in the paper.
D: three 5x5 stride-2 convs (w, 2w, 4w), LeakyReLU 0.2, no normalisation (the gradient penalty
is per-sample), then the Wasserstein and class heads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mergan.models.norm import GroupedBatchNorm2d, NormGroups, class_groups


class DCGANGenerator(nn.Module):
    def __init__(self, z_dim: int, num_classes: int, channels: int, width: int = 32, image_size: int = 32):
        super().__init__()
        self.z_dim, self.num_classes, self.width = z_dim, num_classes, width
        self.project = nn.Linear(z_dim, 4 * width * 4 * 4)
        self.norm0 = GroupedBatchNorm2d(4 * width, num_classes, conditional=True)
        self.up1 = nn.ConvTranspose2d(4 * width, 2 * width, 5, stride=2, padding=2, output_padding=1)
        self.norm1 = GroupedBatchNorm2d(2 * width, num_classes, conditional=True)
        self.up2 = nn.ConvTranspose2d(2 * width, width, 5, stride=2, padding=2, output_padding=1)
        self.norm2 = GroupedBatchNorm2d(width, num_classes, conditional=True)
        self.up3 = nn.ConvTranspose2d(width, channels, 5, stride=2, padding=2, output_padding=1)

    def forward(self, z: torch.Tensor, labels: torch.Tensor, groups: NormGroups | None = None) -> torch.Tensor:
        groups = class_groups(labels, self.num_classes) if groups is None else groups
        x = self.project(z).view(-1, 4 * self.width, 4, 4)
        x = F.relu(self.norm0(x, labels, groups))
        x = F.relu(self.norm1(self.up1(x), labels, groups))
        x = F.relu(self.norm2(self.up2(x), labels, groups))
        return torch.tanh(self.up3(x))


class DCGANCritic(nn.Module):
    def __init__(self, num_classes: int, channels: int, width: int = 32, image_size: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 5, stride=2, padding=2), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 5, stride=2, padding=2), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 4 * width, 5, stride=2, padding=2), nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        flat = 4 * width * (image_size // 8) ** 2
        self.score = nn.Linear(flat, 1)
        self.classify = nn.Linear(flat, num_classes)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(images)
        return self.score(h).squeeze(1), self.classify(h)
