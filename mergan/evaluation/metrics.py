"""Continual-learning summaries as pure functions over an accuracy matrix (after Mammoth).

``matrix[i][j]`` (0-based here; tasks are 1-based in metric names) is the accuracy on the
classes of task j measured after training through task i: row i holds entries j = 0..i.
An entry that was not measured is ``None`` and is skipped. Accuracies are fractions in
[0, 1]. A summary with nothing to average returns ``None``, except that after the first
task backward transfer and forgetting are 0.0 (nothing earlier exists to forget).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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


# Summaries by metric name (names as in mergan/callbacks.py).
SUMMARIES: dict[str, Callable[[Matrix], float | None]] = {
    "avg_acc": average_accuracy,
    "bwt": backward_transfer,
    "forgetting": average_forgetting,
}
# Every metric the evaluation reports once per task besides ``acc_task_{j}`` (TaskResult.metrics; MLflow
# metrics at step = task): the summaries above, intransigence (given a JT run's matrix), and what
# evaluate_after_task measures of the samples. Sweeps, tracking and analysis read the names from here.
TASK_METRICS = (*SUMMARIES, "intransigence", "reverse_acc", "fid_classifier", "fid_inception", "coverage_acc")


def summarize(matrix: Matrix, jt_matrix: Matrix | None = None) -> dict[str, float]:
    """Every summary of the last row that is defined, plus ``intransigence`` when a JT matrix is given."""
    values = {name: summary(matrix) for name, summary in SUMMARIES.items()}
    if jt_matrix is not None:
        values["intransigence"] = intransigence(matrix, jt_matrix)
    return {name: value for name, value in values.items() if value is not None}
