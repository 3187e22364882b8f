"""Continual-learning summaries as pure functions over an accuracy matrix (after Mammoth).

``matrix[i][j]`` (0-based here; tasks are 1-based in metric names) is the accuracy on the
classes of task j measured after training through task i: row i holds entries j = 0..i.
An entry that was not measured is ``None`` and is skipped. Accuracies are fractions in
[0, 1]. A summary with nothing to average returns ``None``, except that after the first
task backward transfer and forgetting are 0.0 (nothing earlier exists to forget).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

Matrix = Sequence[Sequence[float | None] | None]


def _entry(matrix: Matrix, i: int, j: int) -> float | None:
    row = matrix[i] if i < len(matrix) else None
    if row is None or j >= len(row):
        return None
    return None if row[j] is None else float(row[j])


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _last(matrix: Matrix, k: int | None) -> int:
    return len(matrix) - 1 if k is None else k


def average_accuracy(matrix: Matrix, k: int | None = None) -> float | None:
    """A_k = mean_{j<=k} R[k][j]: accuracy over every task seen, after task k (default: the last)."""
    k = _last(matrix, k)
    return _mean([v for j in range(k + 1) if (v := _entry(matrix, k, j)) is not None])


def backward_transfer(matrix: Matrix, k: int | None = None) -> float | None:
    """BWT_k = mean_{j<k} (R[k][j] - R[j][j]); negative means forgetting (Lopez-Paz & Ranzato 2017)."""
    k = _last(matrix, k)
    if k == 0:
        return 0.0
    terms = [now - then for j in range(k)
             if (now := _entry(matrix, k, j)) is not None and (then := _entry(matrix, j, j)) is not None]
    return _mean(terms)


def task_forgetting(matrix: Matrix, j: int, k: int | None = None) -> float | None:
    """f_j^k = max_{l<k} R[l][j] - R[k][j]: how far task j fell from its best earlier accuracy."""
    k = _last(matrix, k)
    now = _entry(matrix, k, j)
    earlier = [v for row in range(j, k) if (v := _entry(matrix, row, j)) is not None]
    if now is None or not earlier:
        return None
    return max(earlier) - now


def average_forgetting(matrix: Matrix, k: int | None = None) -> float | None:
    """F_k = mean_{j<k} f_j^k (Chaudhry et al. 2018): the max runs over earlier rows l<k only,
    and the current task j=k is excluded; positive means forgetting. 0.0 after the first task."""
    k = _last(matrix, k)
    if k == 0:
        return 0.0
    return _mean([f for j in range(k) if (f := task_forgetting(matrix, j, k)) is not None])


def intransigence(matrix: Matrix, jt_matrix: Matrix, k: int | None = None) -> float | None:
    """I_k = mean_{j<=k} (R_JT[j][j] - R[j][j]): how much worse each task was learnt when it
    arrived than by joint training on all data so far (Chaudhry et al. 2018's I_j, averaged over
    the tasks seen); positive means the method is slower to learn new tasks than the JT reference."""
    k = _last(matrix, k)
    terms = [ref - own for j in range(k + 1)
             if (ref := _entry(jt_matrix, j, j)) is not None and (own := _entry(matrix, j, j)) is not None]
    return _mean(terms)


def task_accuracy(class_accuracy: dict[int, float], classes: Sequence[int]) -> float:
    """Accuracy on one task: the mean of its classes' accuracies."""
    return sum(class_accuracy[c] for c in classes) / len(classes)


# -- CLoG's summaries (Zhang et al. 2024, "CLoG: Benchmarking Continual Learning of Image Generation Models",
# arXiv 2406.04584, section "Evaluation metrics"). a[t][i] is a quality of task i measured after task t (FID,
# or accuracy); T the tasks learned so far (1-based in the paper, 0-based rows here).
def average_incremental_quality(matrix: Matrix, k: int | None = None) -> float | None:
    """AIQ_k = 1/(k+1) sum_{t<=k} (1/(t+1) sum_{i<=t} a[t][i]) (CLoG, arXiv 2406.04584): the quality over the
    tasks seen, averaged over every step of the stream so far (rows without a measurement are skipped)."""
    k = _last(matrix, k)
    return _mean([v for t in range(k + 1) if (v := average_accuracy(matrix, t)) is not None])


def average_final_quality(matrix: Matrix, k: int | None = None) -> float | None:
    """AFQ_k = 1/(k+1) sum_{i<=k} a[k][i] (CLoG, arXiv 2406.04584): the quality over every task seen, after task k."""
    return average_accuracy(matrix, k)


def forgetting_rate(matrix: Matrix, k: int | None = None, higher_is_better: bool = True) -> float | None:
    """FR_k = 1/k sum_{i<k} (a[i][i] - a[k][i]) (CLoG, arXiv 2406.04584, after Ke & Liu's forgetting rate): how far
    each earlier task fell from its value right after it was learned; for a quality where lower is better (FID,
    KID) the sign is turned (a[k][i] - a[i][i]), so positive always means forgetting. 0.0 after the first task."""
    k = _last(matrix, k)
    if k == 0:
        return 0.0
    sign = 1.0 if higher_is_better else -1.0
    return _mean([sign * (then - now) for i in range(k)
                  if (then := _entry(matrix, i, i)) is not None and (now := _entry(matrix, k, i)) is not None])


# Summaries by metric name (names as in mergan/callbacks.py).
SUMMARIES: dict[str, Callable[[Matrix], float | None]] = {
    "avg_acc": average_accuracy,
    "bwt": backward_transfer,
    "forgetting": average_forgetting,
    "aiq_acc": average_incremental_quality,
    "afq_acc": average_final_quality,
    "fr_acc": forgetting_rate,
}

# -- quality and diversity per task (mergan/evaluation/quality.py) ------------------------------------
# ``eval.quality`` selects which are measured; each is a matrix like the accuracy matrix, in the evaluator's
# feature space ("classifier") and, with Inception weights, in Inception's ("inception").
QUALITY_METRICS = {"none": (), "fast": ("fid", "kid"),
                   "full": ("fid", "kid", "precision", "recall", "density", "coverage")}
LOWER_IS_BETTER = ("fid", "kid")
FEATURE_SPACES = ("classifier", "inception")
DRIFT_METRICS = ("recall", "coverage")  # the variety a replayed class keeps (eval.drift_alarm)


def quality_key(metric: str, space: str) -> str:
    """The name of a quality matrix and of its summaries' stem: ``fid_classifier``, ``recall_inception`` ..."""
    return f"{metric}_{space}"


def quality_summary_names(space: str) -> tuple[str, ...]:
    """Names of the summaries ``quality_summaries`` gives for one feature space."""
    return (f"aiq_fid_{space}", f"afq_fid_{space}", f"fr_fid_{space}", f"fr_recall_{space}", f"fr_coverage_{space}")


def quality_summaries(matrices: dict[str, Matrix]) -> dict[str, float]:
    """CLoG's AIQ, AFQ and FR of each FID matrix, and the forgetting rates of recall and of coverage (how much
    variety each earlier task lost), for the quality matrices given (keys as ``quality_key``)."""
    values: dict[str, float | None] = {}
    for space in FEATURE_SPACES:
        fid = matrices.get(quality_key("fid", space))
        if fid:
            values[f"aiq_fid_{space}"] = average_incremental_quality(fid)
            values[f"afq_fid_{space}"] = average_final_quality(fid)
            values[f"fr_fid_{space}"] = forgetting_rate(fid, higher_is_better=False)
        for metric in DRIFT_METRICS:
            matrix = matrices.get(quality_key(metric, space))
            if matrix:
                values[f"fr_{metric}_{space}"] = forgetting_rate(matrix)
    return {name: value for name, value in values.items() if value is not None}


def drift_alarms(history: Sequence[Mapping[str, float] | None], tasks: Sequence[Sequence[int]],
                 threshold: float) -> list[dict[str, Any]]:
    """Replayed classes whose recall or coverage fell by more than ``threshold`` of its first value.

    ``history[i]`` holds the metrics measured after task i (0-based; None: not evaluated), the last entry
    the task just finished; a class of an earlier task j is compared on ``{metric}_{space}_class_{c}`` with
    its value in ``history[j]``, right after it was learned. Each alarm: class, tasks (1-based), metric,
    first and current value.
    """
    now_index = len(history) - 1
    now = history[now_index] if history else None
    alarms: list[dict[str, Any]] = []
    if not now:
        return alarms
    for j in range(min(now_index, len(tasks))):
        learned = history[j]
        if not learned:
            continue
        for cls in tasks[j]:
            for space in FEATURE_SPACES:
                for metric in DRIFT_METRICS:
                    key = f"{quality_key(metric, space)}_class_{cls}"
                    first, current = learned.get(key), now.get(key)
                    if first is None or current is None or first <= 0:
                        continue
                    if first - current > threshold * first:
                        alarms.append({"class": int(cls), "learned_in_task": j + 1, "after_task": now_index + 1,
                                       "metric": quality_key(metric, space), "first": float(first),
                                       "now": float(current)})
    return alarms


def drift_alarm_message(alarm: Mapping[str, Any], threshold: float) -> str:
    """One line naming the class and the tasks: what ``drift_alarms`` found."""
    return (f"drift alarm after task {alarm['after_task']}: class {alarm['class']} (learned in task "
            f"{alarm['learned_in_task']}) {alarm['metric']} fell from {alarm['first']:.3f} to {alarm['now']:.3f}, "
            f"more than {threshold:.0%} below its value right after it was learned")


# Every metric the evaluation reports once per task besides ``acc_task_{j}`` (TaskResult.metrics; MLflow
# metrics at step = task): the summaries above, intransigence (given a JT run's matrix), and what
# evaluate_after_task measures of the samples. Sweeps, tracking and analysis read the names from here.
QUALITY_SUMMARIES = tuple(name for space in FEATURE_SPACES for name in quality_summary_names(space))
TASK_METRICS = (*SUMMARIES, "intransigence", "reverse_acc", "fid_classifier", "fid_inception", "coverage_acc",
                *QUALITY_SUMMARIES, "drift_alarms")


def summarize(matrix: Matrix, jt_matrix: Matrix | None = None) -> dict[str, float]:
    """Every summary of the last row that is defined, plus ``intransigence`` when a JT matrix is given."""
    values = {name: summary(matrix) for name, summary in SUMMARIES.items()}
    if jt_matrix is not None:
        values["intransigence"] = intransigence(matrix, jt_matrix)
    return {name: value for name, value in values.items() if value is not None}
