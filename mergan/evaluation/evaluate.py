"""``evaluate_after_task``: the accuracy row, quality matrices, summaries, FID, reverse accuracy and grid after a
task."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from mergan.evaluation.accuracy import Sampler, class_coverage, generated_class_accuracy, group_size_of
from mergan.evaluation.classifier import Evaluator, cnn_settings, get_evaluator
from mergan.evaluation.frechet import FeatureStats, fid_from_stats, inception_weights_path, load_inception
from mergan.evaluation.grids import save_class_grid
from mergan.evaluation.metrics import (
    QUALITY_METRICS,
    Matrix,
    quality_key,
    quality_summaries,
    summarize,
    task_accuracy,
)
from mergan.evaluation.quality import (
    NEAREST_K,
    kernel_inception_distance,
    kernel_within,
    kth_neighbour_radii,
    precision_recall_density_coverage,
)
from mergan.evaluation.reverse import reverse_accuracy, to_uint8
from mergan.evaluation.seeding import derive_seed

REAL_SUBSET_SEED = 0  # which real train images form the FID reference: the same for every run


@dataclass
class EvalResult:
    row: list[float]  # R[i][j] for the tasks j = 1..i seen so far
    class_accuracy: dict[int, float]
    metrics: dict[str, float]  # names as in mergan/callbacks.py
    matrix: list[list[float | None]]  # the previous rows (padded with None) plus ``row``
    samples_path: str | None = None
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # seconds per part
    quality_matrices: dict[str, list[list[float | None]]] = field(default_factory=dict)  # e.g. "fid_classifier"


def real_feature_stats(extractor: Any, ds: Any, classes: Sequence[int], per_class: int,
                       device: torch.device | str) -> FeatureStats:
    """Feature statistics of up to ``per_class`` real train images of each class (memoised per class).

    The images are a fixed random subset of ``ds.train``, so the reference never depends on
    the run; ``extractor(images)`` returns features and carries ``key`` and ``real_stats_memo``.
    """
    memo: dict[Any, FeatureStats] = extractor.real_stats_memo
    total: FeatureStats | None = None
    for cls in classes:
        key = (extractor.key, ds.fingerprint, int(cls), per_class)
        if key not in memo:
            stats = FeatureStats(extractor.feature_dim, device)
            for chunk in real_reference_index(ds, cls, per_class).split(1000):
                stats.add(extractor(ds.train.get(chunk)))
            memo[key] = stats
        total = memo[key] if total is None else total + memo[key]
    assert total is not None, "no classes given"
    return total


def real_reference_index(ds: Any, cls: int, per_class: int) -> torch.Tensor:
    """Indices into ``ds.train`` of the fixed real reference of ``cls``: up to ``per_class`` of its images."""
    index = (ds.train.labels.cpu() == cls).nonzero().flatten()
    generator = torch.Generator().manual_seed(derive_seed(REAL_SUBSET_SEED, "fid-real", cls))
    return index[torch.randperm(len(index), generator=generator)[:per_class]]


@dataclass
class RealReference:
    """The fixed real images of some classes in one feature space, and what every comparison with them reuses."""

    features: torch.Tensor
    stats: FeatureStats
    kernel_within: float  # KID's real-real term
    radii: torch.Tensor | None  # k-nearest-neighbour radii (precision ... coverage); None for ``fast``


def real_reference(extractor: Any, ds: Any, classes: Sequence[int], per_class: int, radii: bool) -> RealReference:
    """The real reference of ``classes`` (the same fixed images ``real_feature_stats`` uses), memoised per
    extractor, so a class's reference is embedded and measured once per run."""
    memo: dict[Any, Any] = extractor.real_stats_memo
    key = ("reference", extractor.key, ds.fingerprint, tuple(int(c) for c in classes), per_class, radii)
    if key not in memo:
        index = torch.cat([real_reference_index(ds, c, per_class) for c in classes])
        features = torch.cat([extractor(ds.train.get(chunk)) for chunk in index.split(1000)])
        stats = FeatureStats(features.shape[1], features.device)
        stats.add(features)
        count = len(features)
        memo[key] = RealReference(features, stats, kernel_within(features) if count >= 2 else math.nan,
                                  kth_neighbour_radii(features.float()) if radii and count > NEAREST_K else None)
    return memo[key]


def quality_of(real: RealReference, fake: torch.Tensor, names: Sequence[str]) -> dict[str, float]:
    """The quality metrics ``names`` (of ``QUALITY_METRICS``) of generated features against a real reference.

    A class with too few real images for a metric (2 for FID and KID, more than k for the k-NN ones) goes
    without it: the entry stays unmeasured rather than made up."""
    values: dict[str, float] = {}
    if len(real.features) >= 2:
        fake_stats = FeatureStats(fake.shape[1], fake.device)
        fake_stats.add(fake)
        values.update(fid=fid_from_stats(fake_stats, real.stats),
                      kid=kernel_inception_distance(real.features, fake, real.kernel_within))
    if "precision" in names and real.radii is not None:
        values.update(precision_recall_density_coverage(real.features, fake, real_radii=real.radii))
    return {name: values[name] for name in names if name in values}


def quality_rows(reference: Callable[[Sequence[int]], RealReference], fake: dict[int, list[torch.Tensor]],
                 tasks: Sequence[Sequence[int]], names: Sequence[str], space: str
                 ) -> tuple[dict[str, list[float | None]], dict[str, float]]:
    """Per task j of ``tasks`` and per class: the quality of the class's (or task's pooled) generated features
    against ``reference(classes)``. Returns ({``quality_key``: row over tasks}, {metric name: value})."""
    by_class = {c: quality_of(reference([c]), torch.cat(fake[c]), names) for task in tasks for c in task}
    rows: dict[str, list[float | None]] = {quality_key(name, space): [] for name in names}
    metrics: dict[str, float] = {}
    for j, task in enumerate(tasks):
        if len(task) == 1:
            values = by_class[task[0]]
        else:
            values = quality_of(reference(task), torch.cat([f for c in task for f in fake[c]]), names)
        for name in names:
            rows[quality_key(name, space)].append(values.get(name))
            if name in values:
                metrics[f"{quality_key(name, space)}_task_{j + 1}"] = values[name]
    for cls, values in by_class.items():
        metrics.update({f"{quality_key(name, space)}_class_{cls}": value for name, value in values.items()})
    return rows, metrics


class _ClassifierSpace:
    """The evaluator's penultimate layer as a feature extractor for the Frechet distance."""

    def __init__(self, evaluator: Evaluator):
        self.evaluator = evaluator
        self.key = f"classifier:{evaluator.cache_key}"
        self.feature_dim = evaluator.feature_dim
        self.real_stats_memo = evaluator.real_stats_memo

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.evaluator.features(images)


def _previous_rows(previous_matrix: Matrix | None, task_index0: int) -> list[list[float | None]]:
    rows: list[list[float | None]] = []
    for i in range(task_index0):
        row = previous_matrix[i] if previous_matrix is not None and i < len(previous_matrix) else None
        row = list(row or [])[: i + 1]
        rows.append([None if v is None else float(v) for v in row] + [None] * (i + 1 - len(row)))
    return rows


def evaluate_after_task(sampler: Sampler, ds: Any, tasks: Sequence[Sequence[int]], task_index0: int,
                        eval_config: Any, evaluator: Evaluator | None, device: torch.device | str,
                        previous_matrix: Matrix | None, jt_matrix: Matrix | None = None, seed: int = 0,
                        samples_dir: str | os.PathLike | None = None,
                        previous_quality: dict[str, Matrix] | None = None) -> EvalResult:
    """Evaluate the generator after task ``task_index0`` (0-based) on every class of tasks 0..task_index0.

    ``previous_matrix`` holds the rows of earlier tasks (missing rows or entries: None), ``previous_quality``
    those of the quality matrices (``eval_config.quality``); ``jt_matrix`` a joint-training run's matrix for
    ``intransigence``. A sampler with an ``unconditional(z)`` method (DGR's) is also judged by class coverage
    (``class_coverage``). Everything random is drawn from generators seeded by ``seed``; the global torch RNG
    is left alone.
    """
    start = time.perf_counter()
    device = torch.device(device)
    evaluator = evaluator or get_evaluator(ds, eval_config, device)
    seen_tasks = [list(task) for task in tasks[: task_index0 + 1]]
    seen_classes = [c for task in seen_tasks for c in task]
    per_class = int(eval_config.eval_samples_per_class)
    timings: dict[str, float] = {}

    # One generated pass feeds accuracy, both FIDs, the quality matrices and the reverse-accuracy training set;
    # the quality matrices keep each class's generated features for comparison with its own real reference.
    want_fid = bool(getattr(eval_config, "fid", True)) and per_class * len(seen_classes) >= 2  # a covariance
    quality_names = QUALITY_METRICS[getattr(eval_config, "quality", "none")]
    inception_path = inception_weights_path(eval_config) if want_fid or quality_names else None
    inception = load_inception(inception_path, device) if inception_path else None
    classifier_space = _ClassifierSpace(evaluator)
    fake_classifier = FeatureStats(evaluator.feature_dim, evaluator.device)
    fake_inception = FeatureStats(inception.feature_dim, device) if inception and want_fid else None
    keep_images = bool(getattr(eval_config, "reverse_accuracy", False))
    kept: dict[int, list[torch.Tensor]] = {c: [] for c in seen_classes}
    inception_seconds = 0.0
    spaces = ["classifier"] + (["inception"] if inception is not None else [])
    class_features = {space: {c: [] for c in seen_classes} for space in spaces} if quality_names else {}

    def on_batch(cls: int, images: torch.Tensor, features: torch.Tensor) -> None:
        nonlocal inception_seconds
        if want_fid:
            fake_classifier.add(features)
        if quality_names:
            class_features["classifier"][cls].append(features)
        if inception is not None:
            tic = time.perf_counter()
            inception_features = inception(images)
            if fake_inception is not None:
                fake_inception.add(inception_features)
            if quality_names:
                class_features["inception"][cls].append(inception_features)
            inception_seconds += time.perf_counter() - tic
        if keep_images:
            kept[cls].append(to_uint8(images))

    tic = time.perf_counter()
    class_accuracy = generated_class_accuracy(sampler, evaluator, seen_classes, per_class, seed, device, on_batch)
    timings["generated_pass"] = time.perf_counter() - tic - inception_seconds
    row = [task_accuracy(class_accuracy, task) for task in seen_tasks]
    matrix = _previous_rows(previous_matrix, task_index0) + [row]

    metrics: dict[str, float] = {f"acc_task_{j + 1}": value for j, value in enumerate(row)}
    metrics.update({f"acc_class_{c}": value for c, value in class_accuracy.items()})
    metrics.update(summarize(matrix, jt_matrix))
    unconditional = getattr(sampler, "unconditional", None)
    if unconditional is not None:
        tic = time.perf_counter()
        metrics.update(class_coverage(unconditional, sampler.z_dim, evaluator, seen_classes, per_class, seed,
                                      device, group_size=group_size_of(sampler)))
        timings["coverage"] = time.perf_counter() - tic

    if want_fid:
        tic = time.perf_counter()
        real = real_feature_stats(classifier_space, ds, seen_classes, per_class, evaluator.device)
        metrics["fid_classifier"] = fid_from_stats(fake_classifier, real)
        timings["fid_classifier"] = time.perf_counter() - tic
    if inception is not None and fake_inception is not None:
        tic = time.perf_counter()
        real = real_feature_stats(inception, ds, seen_classes, per_class, device)
        metrics["fid_inception"] = fid_from_stats(fake_inception, real)
        timings["fid_inception"] = time.perf_counter() - tic + inception_seconds
    quality_matrices: dict[str, list[list[float | None]]] = {}
    for space, fake in class_features.items():
        tic = time.perf_counter()
        extractor = classifier_space if space == "classifier" else inception

        def reference(classes: Sequence[int], extractor: Any = extractor) -> RealReference:
            return real_reference(extractor, ds, classes, per_class, radii="precision" in quality_names)

        rows, values = quality_rows(reference, fake, seen_tasks, quality_names, space)
        metrics.update(values)
        for key, quality_row in rows.items():
            quality_matrices[key] = _previous_rows((previous_quality or {}).get(key), task_index0) + [quality_row]
        timings[f"quality_{space}"] = time.perf_counter() - tic
    metrics.update(quality_summaries(quality_matrices))
    if keep_images:
        tic = time.perf_counter()
        metrics["reverse_acc"] = reverse_accuracy(kept, ds, cnn_settings(eval_config), device,
                                                  seed=derive_seed(seed, "reverse", task_index0))
        timings["reverse_acc"] = time.perf_counter() - tic

    samples_path = None
    per_row = int(getattr(eval_config, "grid_per_class", 0) or 0)
    if samples_dir is not None and per_row > 0:
        tic = time.perf_counter()
        path = os.path.join(os.fspath(samples_dir), f"samples_task_{task_index0 + 1}.png")
        samples_path = save_class_grid(sampler, seen_classes, per_row, seed, device, path)
        timings["grid"] = time.perf_counter() - tic

    return EvalResult(row=row, class_accuracy=class_accuracy, metrics={k: float(v) for k, v in metrics.items()},
                      matrix=matrix, samples_path=samples_path, seconds=time.perf_counter() - start,
                      timings=timings, quality_matrices=quality_matrices)
