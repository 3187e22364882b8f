"""The paper's 64x64 ResNet pair (LSUN), after the WGAN-GP 64x64 ResNet the authors built on.

G: [z, onehot(c)] -> Linear -> 8w x 4 x 4, four up-sampling residual blocks (8w -> 8w -> 4w -> 2w -> w;
w = 64 gives 512 -> 64), batch norm with each class's own statistics (models/norm.py), ReLU,
3x3 conv, tanh.
D: 3x3 conv to w, four down-sampling residual blocks with layer norm (w -> 2w -> 4w -> 8w -> 8w;
64 -> 512), then the Wasserstein and class heads on the 4x4 features.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from mergan.models.norm import GroupedBatchNorm2d, NormGroups, class_groups


class UpBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = GroupedBatchNorm2d(in_channels, 1, conditional=False)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = GroupedBatchNorm2d(out_channels, 1, conditional=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor, groups: NormGroups) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=2, mode="nearest")
        h = self.conv1(F.interpolate(F.relu(self.norm1(x, labels, groups)), scale_factor=2, mode="nearest"))
        h = self.conv2(F.relu(self.norm2(h, labels, groups)))
        return h + self.shortcut(up)


class DownBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        # GroupNorm with one group normalises over (C, H, W) per sample: layer norm, safe with the GP.
        self.norm1 = nn.GroupNorm(1, in_channels)
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(1, in_channels)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(self.norm1(x)))
        h = F.avg_pool2d(self.conv2(F.relu(self.norm2(h))), 2)
        return h + self.shortcut(F.avg_pool2d(x, 2))


class ResNetGenerator(nn.Module):
    def __init__(self, z_dim: int, num_classes: int, channels: int, width: int = 64, image_size: int = 64):
        super().__init__()
        self.z_dim, self.num_classes, self.width = z_dim, num_classes, width
        self.register_buffer("onehot", torch.eye(num_classes), persistent=False)
        self.project = nn.Linear(z_dim + num_classes, 8 * width * 4 * 4)
        widths = [8 * width, 8 * width, 4 * width, 2 * width, width]
        self.blocks = nn.ModuleList([UpBlock(a, b) for a, b in itertools.pairwise(widths)])
        self.norm = GroupedBatchNorm2d(width, 1, conditional=False)
        self.out = nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, z: torch.Tensor, labels: torch.Tensor, groups: NormGroups | None = None) -> torch.Tensor:
        groups = class_groups(labels, self.num_classes) if groups is None else groups
        onehot = self.onehot[labels].to(z.dtype)  # (F.one_hot cannot run under vmap, used by EWC)
        x = self.project(torch.cat([z, onehot], dim=1)).view(-1, 8 * self.width, 4, 4)
        for block in self.blocks:
            x = block(x, labels, groups)
        return torch.tanh(self.out(F.relu(self.norm(x, labels, groups))))


class ResNetCritic(nn.Module):
    def __init__(self, num_classes: int, channels: int, width: int = 64, image_size: int = 64):
        super().__init__()
        self.stem = nn.Conv2d(channels, width, 3, padding=1)
        widths = [width, 2 * width, 4 * width, 8 * width, 8 * width]
        self.blocks = nn.Sequential(*[DownBlock(a, b) for a, b in itertools.pairwise(widths)])
        flat = 8 * width * (image_size // 16) ** 2
        self.score = nn.Linear(flat, 1)
        self.classify = nn.Linear(flat, num_classes)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.flatten(self.blocks(self.stem(images)), 1)
        return self.score(h).squeeze(1), self.classify(h)
