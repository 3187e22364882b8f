"""Sample quality and diversity of one generated set against a real reference, in a feature space.

Each function takes two feature tensors (rows: samples) on one device and returns a float:
- ``kernel_inception_distance``: the unbiased MMD^2 with the cubic polynomial kernel
  k(x, y) = (x.y / d + 1)^3 (Binkowski et al. 2018, "Demystifying MMD GANs"), over all samples
  at once (no subsets: the sets here hold hundreds to a few thousand samples).
- ``precision_recall_density_coverage``: the k-nearest-neighbour manifold estimates of Kynkaanniemi
  et al. 2019 ("Improved precision and recall metric for assessing generative models": precision,
  recall) and Naeem et al. 2020 ("Reliable fidelity and diversity metrics for generative models":
  density, coverage), with the strict ``<`` of the ``prdc`` package's reference code.
Nearest neighbours come from batched ``torch.cdist`` on the features' device, in row chunks so a
large set never holds more than ``CHUNK`` rows of its distance matrix beyond the one needed.
The Frechet distance of the same sets is ``frechet.fid_from_stats`` (``FeatureStats`` of the features).
"""

from __future__ import annotations

import torch

NEAREST_K = 5  # k of the k-nearest-neighbour balls (Naeem et al. 2020 recommend 5)
CHUNK = 4096  # rows of a distance matrix computed at once


def _kernel_sum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a @ b.T) / a.shape[1] + 1.0).pow(3).sum()


def kernel_within(features: torch.Tensor) -> float:
    """Mean of k(x_i, x_j) over the pairs i != j of one set: its term of the unbiased MMD^2 (float64)."""
    if len(features) < 2:
        raise ValueError(f"KID needs at least 2 samples per set, have {len(features)}")
    x = features.double()
    diagonal = ((x * x).sum(1) / x.shape[1] + 1.0).pow(3).sum()  # the k(x_i, x_i) the estimator leaves out
    return float((_kernel_sum(x, x) - diagonal) / (len(x) * (len(x) - 1)))


def kernel_inception_distance(real: torch.Tensor, fake: torch.Tensor, real_within: float | None = None) -> float:
    """Unbiased MMD^2 between ``real`` [m, d] and ``fake`` [n, d] with k(x, y) = (x.y / d + 1)^3;
    ``real_within``: ``kernel_within(real)`` when already known (a fixed reference)."""
    within_real = kernel_within(real) if real_within is None else real_within
    between = _kernel_sum(real.double(), fake.double()) / (len(real) * len(fake))
    return float(within_real + kernel_within(fake) - 2.0 * between)


def kth_neighbour_radii(features: torch.Tensor, k: int = NEAREST_K) -> torch.Tensor:
    """Distance from each sample to its k-th nearest other sample of the same set [n]."""
    if len(features) <= k:
        raise ValueError(f"{k}-nearest neighbours need more than {k} samples, have {len(features)}")
    radii = []
    for chunk in features.split(CHUNK):
        # k + 1 smallest: the sample itself (distance 0) is among them
        radii.append(torch.cdist(chunk, features).topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def precision_recall_density_coverage(real: torch.Tensor, fake: torch.Tensor, k: int = NEAREST_K,
                                      real_radii: torch.Tensor | None = None) -> dict[str, float]:
    """{"precision", "recall", "density", "coverage"} of ``fake`` [n, d] against ``real`` [m, d].

    precision: share of generated samples inside some real sample's k-NN ball; recall: share of real
    samples inside some generated sample's k-NN ball; density: mean number of real balls holding a
    generated sample, divided by k; coverage: share of real balls holding at least one generated sample.
    ``real_radii``: ``kth_neighbour_radii(real, k)`` when already known (a fixed reference).
    """
    real, fake = real.float(), fake.float()
    real_radii = kth_neighbour_radii(real, k) if real_radii is None else real_radii
    fake_radii = kth_neighbour_radii(fake, k)
    in_real_ball_count = torch.zeros(len(fake), device=fake.device)
    recalled = torch.zeros(len(real), dtype=torch.bool, device=real.device)
    covered = torch.zeros(len(real), dtype=torch.bool, device=real.device)
    start = 0
    for chunk in real.split(CHUNK):
        distances = torch.cdist(chunk, fake)  # [chunk of real, fake]
        radii = real_radii[start:start + len(chunk), None]
        inside = distances < radii
        in_real_ball_count += inside.sum(0).float()
        recalled[start:start + len(chunk)] = (distances < fake_radii[None, :]).any(1)
        covered[start:start + len(chunk)] = distances.min(1).values < radii[:, 0]
        start += len(chunk)
    values = torch.stack([(in_real_ball_count > 0).float().mean(), recalled.float().mean(),
                          in_real_ball_count.mean() / k, covered.float().mean()]).tolist()  # one host sync
    return dict(zip(("precision", "recall", "density", "coverage"), values))
