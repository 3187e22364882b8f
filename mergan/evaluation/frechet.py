"""The Frechet distance between two Gaussians fitted to image features, and the feature spaces.

Two spaces, reported under different names so they are never confused:
- ``fid_inception``: the standard FID, Inception-v3 pool3 features (2048-d). Needs a weights
  file (no download): ``EvalConfig.inception_weights`` or $MERGAN_INCEPTION_WEIGHTS. Either
  torchvision's ``inception_v3`` state_dict (``inception_v3_google-0cc3c7bd.pth``, 1000 classes)
  or pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (1008 classes, the TF FID graph;
  detected by its 1008-way fc, built with the FID variants of the Inception blocks: use this
  file for numbers comparable to published FIDs). Images in [-1, 1] are resized to 299x299
  (bilinear) and grayscale is repeated to 3 channels.
- ``fid_classifier``: the evaluator classifier's penultimate layer; offline, and comparable
  only between runs sharing that evaluator (``Evaluator.cache_key``).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

INCEPTION_SIZE = 299
INCEPTION_BATCH = 100
INCEPTION_ENV = "MERGAN_INCEPTION_WEIGHTS"


class InceptionWeightsError(ValueError):
    """An Inception weights file that is missing or unusable; the message says what to give."""


# -- the distance ------------------------------------------------------------------------
def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) for Gaussians N(mu1, S1), N(mu2, S2).

    tr (S1 S2)^(1/2) is computed as the sum of square roots of the eigenvalues of the symmetric
    S1^(1/2) S2 S1^(1/2) (same spectrum), which stays real and stable for singular covariances.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"frechet_distance: shapes differ: mu {mu1.shape} / {mu2.shape}, "
                         f"sigma {sigma1.shape} / {sigma2.shape}")
    root1 = _sqrt_psd(sigma1)
    product_eigenvalues = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    trace_covmean = np.sqrt(np.clip(product_eigenvalues, 0.0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_covmean)


class FeatureStats:
    """Running count, sum and sum of outer products of features (float64), to fit a Gaussian."""

    def __init__(self, dim: int, device: torch.device | str = "cpu"):
        self.count = 0
        self.total = torch.zeros(dim, dtype=torch.float64, device=device)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64, device=device)

    def add(self, features: torch.Tensor) -> None:
        features = features.to(self.total.device, torch.float64)
        self.count += len(features)
        self.total += features.sum(0)
        self.outer += features.T @ features

    def __add__(self, other: FeatureStats) -> FeatureStats:
        merged = FeatureStats(len(self.total), self.total.device)
        merged.count = self.count + other.count
        merged.total = self.total + other.total.to(self.total.device)
        merged.outer = self.outer + other.outer.to(self.total.device)
        return merged

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """Sample mean and (unbiased) covariance."""
        if self.count < 2:
            raise ValueError(f"need at least 2 feature vectors for a covariance, have {self.count}")
        mean = self.total / self.count
        cov = (self.outer - self.count * torch.outer(mean, mean)) / (self.count - 1)
        return mean.cpu().numpy(), cov.cpu().numpy()


def fid_from_stats(first: FeatureStats, second: FeatureStats) -> float:
    return frechet_distance(*first.mean_cov(), *second.mean_cov())


# -- Inception pool3 features ------------------------------------------------------------
def inception_weights_path(eval_config: Any = None) -> str | None:
    """``eval_config.inception_weights``, else $MERGAN_INCEPTION_WEIGHTS, else None (no fid_inception)."""
    return (getattr(eval_config, "inception_weights", None) or os.environ.get(INCEPTION_ENV)) or None


def _fid_blocks() -> dict[str, nn.Module]:
    """The TF FID graph's Inception blocks (pytorch-fid): avg pools exclude padding, the last block max-pools."""
    from torchvision.models import inception as tv

    def avg_pool(x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)

    class FIDInceptionA(tv.InceptionA):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
            branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            return torch.cat([self.branch1x1(x), branch5x5, branch3x3dbl, self.branch_pool(avg_pool(x))], 1)

    class FIDInceptionC(tv.InceptionC):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            branch7x7dbl = self.branch7x7dbl_1(x)
            for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
                branch7x7dbl = layer(branch7x7dbl)
            return torch.cat([self.branch1x1(x), branch7x7, branch7x7dbl, self.branch_pool(avg_pool(x))], 1)

    class FIDInceptionE(tv.InceptionE):
        def __init__(self, in_channels: int, max_pool: bool):
            super().__init__(in_channels)
            self.max_pool = max_pool

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            branch3x3 = self.branch3x3_1(x)
            branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
            branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            branch3x3dbl = torch.cat([self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1)
            pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else avg_pool(x)
            return torch.cat([self.branch1x1(x), branch3x3, branch3x3dbl, self.branch_pool(pooled)], 1)

    return {"Mixed_5b": FIDInceptionA(192, pool_features=32), "Mixed_5c": FIDInceptionA(256, pool_features=64),
            "Mixed_5d": FIDInceptionA(288, pool_features=64), "Mixed_6b": FIDInceptionC(768, channels_7x7=128),
            "Mixed_6c": FIDInceptionC(768, channels_7x7=160), "Mixed_6d": FIDInceptionC(768, channels_7x7=160),
            "Mixed_6e": FIDInceptionC(768, channels_7x7=192), "Mixed_7b": FIDInceptionE(1280, max_pool=False),
            "Mixed_7c": FIDInceptionE(2048, max_pool=True)}


def _read_inception_state(path: str) -> dict[str, torch.Tensor]:
    hint = (f"give torchvision's inception_v3 state_dict (inception_v3_google-0cc3c7bd.pth) or pytorch-fid's "
            f"pt_inception-2015-12-05-6726825d.pth via eval.inception_weights or ${INCEPTION_ENV}")
    if not os.path.isfile(path):
        raise InceptionWeightsError(f"Inception weights {path}: no such file; {hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a damaged file fails in many ways (KeyError, EOFError ...)
        raise InceptionWeightsError(f"Inception weights {path}: cannot be read "
                                    f"({type(error).__name__}: {error}); {hint}") from None
    if not isinstance(state, dict) or not isinstance(state.get("fc.weight"), torch.Tensor):
        raise InceptionWeightsError(f"Inception weights {path}: not an inception_v3 state_dict "
                                    f"(no 'fc.weight'); {hint}")
    return state


class InceptionFeatures(nn.Module):
    """Inception-v3 pool3 features (2048-d) of images in [-1, 1], loaded from a local weights file."""

    def __init__(self, path: str, device: torch.device | str = "cpu", image_size: int = INCEPTION_SIZE):
        super().__init__()
        from torchvision.models import inception_v3

        state = _read_inception_state(path)
        num_classes = int(state["fc.weight"].shape[0])
        has_aux = any(name.startswith("AuxLogits.") for name in state)
        with torch.random.fork_rng(devices=[]):  # building initialises weights: keep the global RNG
            net = inception_v3(weights=None, aux_logits=has_aux, init_weights=False, num_classes=num_classes,
                               transform_input=False)
            self.variant = "torchvision"
            if num_classes == 1008:
                for name, block in _fid_blocks().items():
                    setattr(net, name, block)
                self.variant = "pytorch-fid"
        try:
            net.load_state_dict(state)
        except RuntimeError as error:
            raise InceptionWeightsError(f"Inception weights {path}: do not fit inception_v3: {error}") from None
        net.fc = nn.Identity()  # the forward then returns the 2048-d pool3 features (dropout is off in eval)
        self.net = net.to(device).eval()
        self.device = torch.device(device)
        self.image_size = image_size
        self.key = f"inception:{os.path.abspath(path)}:{os.path.getmtime(path)}:{image_size}"
        self.feature_dim = 2048
        self.real_stats_memo: dict[Any, FeatureStats] = {}

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = []
        for chunk in images.split(INCEPTION_BATCH):
            chunk = chunk.to(self.device, torch.float32)
            if chunk.shape[1] == 1:
                chunk = chunk.repeat(1, 3, 1, 1)
            chunk = F.interpolate(chunk, size=(self.image_size, self.image_size), mode="bilinear",
                                  align_corners=False)
            out.append(self.net(chunk))
        return torch.cat(out)


_INCEPTION_CACHE: dict[tuple[str, float, str, int], InceptionFeatures] = {}


def load_inception(path: str, device: torch.device | str, image_size: int | None = None) -> InceptionFeatures:
    """InceptionFeatures for a weights file (input size default ``INCEPTION_SIZE``), built once per process."""
    image_size = image_size or INCEPTION_SIZE
    mtime = os.path.getmtime(path) if os.path.isfile(path) else -1.0
    key = (os.path.abspath(path), mtime, str(torch.device(device)), image_size)
    if key not in _INCEPTION_CACHE:
        _INCEPTION_CACHE.clear()  # one Inception at a time: it is 100 MB
        _INCEPTION_CACHE[key] = InceptionFeatures(path, device, image_size)
    return _INCEPTION_CACHE[key]
