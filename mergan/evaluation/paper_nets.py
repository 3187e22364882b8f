"""The authors' evaluator classifiers (their ``pretrain/`` folder), in PyTorch, with their input scaling.

- ``mlp`` (MNIST, ``pretrain/mnist_test.py``): the flattened image as 0-255 pixel values ->
  1024 -> 512 -> 256 -> 128 -> classes, ReLU between.
- ``convnet`` (SVHN, ``pretrain/svhn_test.py``): 0-255 pixels as BGR minus the VGG means, 3x3 convs
  32, 32, pool, 64, 64, pool, 128, 128, 128, pool, then 512 -> 128 -> classes.
- ``vgg16`` (LSUN, ``pretrain/lsun_test.py``): the same input, VGG16's thirteen 3x3 convs
  (64 ... 512, five pools) on 64x64 images, then 1024 -> 512 -> classes (10-way in the paper).

None of them has normalisation layers, like the authors'; the conv nets drop out half of the first
fully connected layer's outputs in training, as the authors' SVHN training graph does (its released
``.meta``: ``dropout/keep_prob`` 0.5 after ``svhn_fc5``). ``width`` is the first layer's
size (1024, 32, 64 as published) and every other layer keeps its ratio to it, so tests can build the
same shapes narrow. Every net takes images in [-1, 1] (the platform's range) and does its own
scaling to pixel values; the penultimate layer (after its ReLU) is its feature space.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

VGG_MEAN_BGR = (103.939, 116.779, 123.68)  # the authors' VGG_MEAN, subtracted from B, G, R in 0-255

# Per architecture: the published width, conv stages (channels per conv as multiples of the width;
# a max-pool after each stage) and hidden fully connected sizes (multiples of the width).
MLP_HIDDEN = (1, 1 / 2, 1 / 4, 1 / 8)
CONVNET = dict(width=32, stages=((1, 1), (2, 2), (4, 4, 4)), hidden=(16, 4))
VGG16 = dict(width=64, stages=((1, 1), (2, 2), (4, 4, 4), (8, 8, 8), (8, 8, 8)), hidden=(16, 8))
PAPER_WIDTHS = {"mlp": 1024, "convnet": CONVNET["width"], "vgg16": VGG16["width"]}


def to_pixels(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> 0-255 pixel values (the inverse of the data layer's uint8 scaling)."""
    return (images + 1.0) * 127.5


def to_vgg_input(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] RGB -> 0-255 BGR minus the VGG means, as the authors' nets read their input."""
    pixels = to_pixels(images).flip(1)
    return pixels - pixels.new_tensor(VGG_MEAN_BGR)[None, :, None, None]


class PixelMLP(nn.Module):
    """The authors' MNIST evaluator: 0-255 pixels -> width, width/2, width/4, width/8 -> classes."""

    arch = "mlp"

    def __init__(self, channels: int, image_size: int, num_classes: int, width: int = 1024, dropout: float = 0.0):
        super().__init__()
        sizes = [channels * image_size * image_size] + [max(1, round(width * r)) for r in MLP_HIDDEN]
        self.sizes = sizes[1:] + [num_classes]
        layers: list[nn.Module] = [nn.Flatten()]
        for fan_in, fan_out in itertools.pairwise(sizes):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(sizes[-1], num_classes)
        self.shape = {"arch": self.arch, "channels": channels, "image_size": image_size,
                      "num_classes": num_classes, "width": width, "feature_dim": sizes[-1], "dropout": dropout}

    def description(self) -> str:
        return f"the authors' MNIST MLP {'-'.join(map(str, self.sizes))} on 0-255 pixels"

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(to_pixels(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


class VGGStyleNet(nn.Module):
    """3x3 conv + ReLU stages, each closed by a 2x2 max-pool, then ReLU fully connected layers: the
    authors' SVHN ``convnet`` and LSUN ``vgg16``, on BGR 0-255 input minus the VGG means."""

    def __init__(self, arch: str, stages: tuple[tuple[int, ...], ...], hidden: tuple[int, ...], channels: int,
                 image_size: int, num_classes: int, width: int, dropout: float = 0.5):
        super().__init__()
        if channels != 3:
            raise ValueError(f"the authors' {arch} reads RGB images, not {channels}-channel ones")
        if image_size % 2 ** len(stages):
            raise ValueError(f"the authors' {arch} needs an image size divisible by {2 ** len(stages)}, "
                             f"not {image_size}")
        layers: list[nn.Module] = []
        in_channels = channels
        for stage in stages:
            for multiple in stage:
                layers += [nn.Conv2d(in_channels, multiple * width, 3, padding=1), nn.ReLU(inplace=True)]
                in_channels = multiple * width
            layers.append(nn.MaxPool2d(2))
        side = image_size // 2 ** len(stages)
        sizes = [in_channels * side * side] + [multiple * width for multiple in hidden]
        layers.append(nn.Flatten())
        for index, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU(inplace=True)]
            if index == 0 and dropout > 0:
                layers.append(nn.Dropout(dropout))
        self.arch = arch
        self.convs = [multiple * width for stage in stages for multiple in stage]
        self.sizes = sizes[1:] + [num_classes]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(sizes[-1], num_classes)
        self._init_like_torchvision_vgg()
        self.shape = {"arch": arch, "channels": channels, "image_size": image_size, "num_classes": num_classes,
                      "width": width, "feature_dim": sizes[-1], "dropout": dropout}

    def _init_like_torchvision_vgg(self) -> None:
        """He-normal convs (fan out), N(0, 0.01) linear weights, zero biases: what trains a plain VGG from
        scratch (PyTorch's default shrinks the signal through thirteen plain layers, and so does the
        authors' truncated normal of std 0.001)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def description(self) -> str:
        name = {"convnet": "SVHN conv net", "vgg16": "VGG16"}.get(self.arch, self.arch)
        convs = "-".join(str(c) for i, c in enumerate(self.convs) if i == 0 or c != self.convs[i - 1])
        return (f"the authors' {name}: {len(self.convs)} convs {convs}, fc {'-'.join(map(str, self.sizes))}, on BGR "
                f"0-255 pixels minus the VGG means")

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(to_vgg_input(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def build_paper_net(arch: str, channels: int, image_size: int, num_classes: int, width: int | None = None,
                    dropout: float = 0.0) -> nn.Module:
    """One of the authors' evaluators (``mlp``, ``convnet``, ``vgg16``) at ``width`` (None: as published)."""
    width = PAPER_WIDTHS[arch] if width is None else int(width)
    if arch == "mlp":
        return PixelMLP(channels, image_size, num_classes, width, dropout)
    spec = {"convnet": CONVNET, "vgg16": VGG16}[arch]
    return VGGStyleNet(arch, spec["stages"], spec["hidden"], channels, image_size, num_classes, width, dropout)

