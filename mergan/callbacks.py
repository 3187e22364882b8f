"""How the trainer reports progress: a callback object with three hooks.

The trainer knows nothing of Ray, MLflow or terminals; the CLI, the Ray Tune trainable,
MLflow logging and tests each pass their own ``Callback``. All values handed over are plain
Python (floats, ints, lists, str paths), so a callback never touches tensors.

Metric names (shared by the CLI, MLflow, Tune and analysis; task numbers are 1-based):
- ``acc_task_{j}``: accuracy of the evaluator on generated images of task j's classes,
  measured after the current task i (that is R[i][j]); reported for every j <= i.
- ``acc_class_{c}``: the same per class c.
- ``avg_acc``, ``bwt``, ``forgetting``, ``intransigence`` (when a JT reference is given),
  ``reverse_acc``, ``fid_classifier`` (Frechet distance in the evaluator's feature space),
  ``fid_inception`` (standard FID, only with Inception weights).
- quality (``eval.quality``; ``{space}`` is ``classifier``, or ``inception`` with Inception weights):
  ``{m}_{space}_task_{j}`` and ``{m}_{space}_class_{c}`` for m in fid, kid (fast) and precision, recall,
  density, coverage (full); CLoG's summaries ``aiq_acc``, ``afq_acc``, ``fr_acc``, ``aiq_fid_{space}``,
  ``afq_fid_{space}``, ``fr_fid_{space}``, ``fr_recall_{space}``, ``fr_coverage_{space}``; ``drift_alarms``
  (how many replayed classes lost more than ``eval.drift_alarm`` of their recall or coverage).
- unconditional generators (DGR) also: ``coverage_acc``, ``coverage_class_{c}``, ``coverage_unseen``
  (the evaluator's labels of unconditional samples; no solver involved).
- training (reported per step): ``loss_d``, ``loss_g``, ``wasserstein``, ``gp``, ``cls_real``,
  ``cls_fake`` and a method's own terms (``loss_ra``, ``loss_ewc`` ...), ``steps_per_second``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class StepInfo:
    task: int  # 1-based task number
    step: int  # generator iterations done in this task
    steps_in_task: int
    global_step: int  # generator iterations done in the whole run
    losses: dict[str, float]
    steps_per_second: float


@dataclass
class TaskResult:
    task: int  # 1-based task number just finished
    num_tasks: int
    classes: list[int]  # classes of this task
    seen_classes: list[int]  # classes of tasks 1..task
    metrics: dict[str, float] = field(default_factory=dict)  # names as in this module's docstring
    accuracy_matrix: list[list[float | None]] = field(default_factory=list)  # R so far; None: not measured
    class_accuracy: dict[int, float] = field(default_factory=dict)
    samples_path: str | None = None  # PNG grid of every seen class, same fixed z every task
    checkpoint_path: str | None = None  # directory holding checkpoint.pt of this task
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. evaluator identity
    # Quality matrices so far by name (``fid_classifier``, ``recall_inception`` ...), rows as accuracy_matrix's.
    quality_matrices: dict[str, list[list[float | None]]] = field(default_factory=dict)
    drift_alarms: list[dict[str, Any]] = field(default_factory=list)  # mergan.evaluation.metrics.drift_alarms


class Callback:
    """Override any of the hooks; the defaults do nothing."""

    def on_run_start(self, trainer: Any) -> None:
        pass

    def on_step(self, trainer: Any, info: StepInfo) -> None:
        pass

    def on_task_end(self, trainer: Any, result: TaskResult) -> None:
        pass

    def on_run_end(self, trainer: Any, results: list[TaskResult]) -> None:
        pass


class CallbackList(Callback):
    def __init__(self, callbacks: list[Callback] | None = None):
        self.callbacks = [c for c in (callbacks or []) if c is not None]

    def on_run_start(self, trainer: Any) -> None:
        for callback in self.callbacks:
            callback.on_run_start(trainer)

    def on_step(self, trainer: Any, info: StepInfo) -> None:
        for callback in self.callbacks:
            callback.on_step(trainer, info)

    def on_task_end(self, trainer: Any, result: TaskResult) -> None:
        for callback in self.callbacks:
            callback.on_task_end(trainer, result)

    def on_run_end(self, trainer: Any, results: list[TaskResult]) -> None:
        for callback in self.callbacks:
            callback.on_run_end(trainer, results)


class DivergenceError(RuntimeError):
    """Training produced a NaN or infinite loss; the message names the loss, task and step."""
