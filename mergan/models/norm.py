"""Batch normalisation with statistics per group of samples (by default, per class), as the authors' code has it.

The authors' conditional batch norm always normalises with the statistics of the call's own
batch, and every generator call in their ``mergan.py`` holds one class: the live generator's
batch, the frozen G_{t-1}'s replay of each earlier class, and every evaluation batch. Here one
vectorised forward may hold several classes (the replay of all earlier classes, a mixed JT batch),
so each sample is normalised with the mean and variance of ITS group only. The result for a
class is then exactly what a separate single-class call would give, whatever else shares the
batch, and nothing depends on running statistics (there are none).

Groups are given as ``NormGroups(index, count)``: ``index[n]`` in ``[0, count)``. By default the
group is the class label (``count`` = number of classes). Samplers that draw many images of one
class split them into groups of the training batch size, so that evaluation sees the statistics
training saw (``groups_of_size``). Joint training (``jt``) normalises each mixed-class batch as one, as
the authors' ``joint.py`` does (``consecutive_groups``). Everything is one-hot matrix products: no Python loop over
groups, no host sync, deterministic on CUDA.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

EPS = 1e-5  # tf.nn.batch_normalization's and torch's default


class NormGroups(NamedTuple):
    index: torch.Tensor  # [N] long: the statistics group of each sample
    count: int  # number of groups (an upper bound: empty groups are allowed)


def _one_hot(index: torch.Tensor, count: int) -> torch.Tensor:
    """[N, count] long one-hot rows (a comparison, since F.one_hot cannot run under torch.func.vmap)."""
    return (index[:, None] == torch.arange(count, device=index.device)).long()


def class_groups(labels: torch.Tensor, num_classes: int) -> NormGroups:
    """One statistics group per class."""
    return NormGroups(labels, num_classes)


def groups_of_size(labels: torch.Tensor, num_classes: int, size: int) -> NormGroups:
    """Per-class groups of at most ``size`` samples, in order: the k-th ``size`` samples of a class form a group."""
    n = labels.shape[0]
    chunks = max(1, -(-n // size))  # groups a class can need at most
    rank = (_one_hot(labels, num_classes).cumsum(0) - 1).gather(1, labels[:, None]).squeeze(1)  # place in its class
    return NormGroups(labels * chunks + rank // size, num_classes * chunks)


def consecutive_groups(n: int, size: int, device: torch.device | str | None = None) -> NormGroups:
    """Groups of ``size`` consecutive samples whatever their classes (the last may be smaller):
    a mixed-class batch normalised as one, as the authors' ``joint.py`` does."""
    return NormGroups(torch.arange(n, device=device) // size, max(1, -(-n // size)))


def group_batch_norm(x: torch.Tensor, groups: NormGroups, eps: float = EPS) -> torch.Tensor:
    """(x - mean_g) / sqrt(var_g + eps) per channel, with mean_g and (biased) var_g over the sample's group."""
    membership = _one_hot(groups.index, groups.count).to(x.dtype)  # [N, G]
    per_group = membership.sum(0).clamp_min(1.0)[:, None]  # samples per group [G, 1]
    sample_mean = x.mean(dim=(2, 3))  # [N, C]; every sample has the same number of pixels
    group_mean = membership.T @ sample_mean / per_group  # [G, C]
    centred = x - (membership @ group_mean)[:, :, None, None]
    group_var = membership.T @ centred.pow(2).mean(dim=(2, 3)) / per_group  # [G, C], two-pass: no cancellation
    inv_std = torch.rsqrt(membership @ group_var + eps)  # [N, C]
    return centred * inv_std[:, :, None, None]


class GroupedBatchNorm2d(nn.Module):
    """Batch norm over each sample's group; an affine per class (conditional) or per channel (plain)."""

    def __init__(self, num_features: int, num_classes: int, conditional: bool):
        super().__init__()
        self.conditional = conditional
        rows = num_classes if conditional else 1
        self.scale = nn.Parameter(torch.ones(rows, num_features))
        self.shift = nn.Parameter(torch.zeros(rows, num_features))

    def forward(self, x: torch.Tensor, labels: torch.Tensor, groups: NormGroups) -> torch.Tensor:
        out = group_batch_norm(x, groups)
        if self.conditional:  # indexing, not nn.Embedding: works under torch.func.vmap (EWC's Fisher)
            scale, shift = self.scale[labels], self.shift[labels]
        else:
            scale, shift = self.scale.expand(x.shape[0], -1), self.shift.expand(x.shape[0], -1)
        return out * scale[:, :, None, None] + shift[:, :, None, None]
