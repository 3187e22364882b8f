"""Hand-made runs: the trainer's callbacks (the record, its MLflow mirror) driven as the trainer drives them.

``fake_run(callbacks, config, num_tasks)`` runs tasks 1..T of ``STEPS`` steps each with distinct values
(``accuracy(i, j)`` is R[i][j]); ``upto`` stops early as a crash would, ``resume_after`` starts after
a task as a run resumed from its checkpoint does, ``offset`` shifts every value (another attempt).
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from mergan.callbacks import Callback, StepInfo, TaskResult
from mergan.config import ExperimentConfig
from mergan.config_io import save_yaml

STEPS = 3  # steps per task


def accuracy(i: int, j: int, offset: float = 0.0) -> float:
    """R[i][j] of the hand-made runs (1-based), distinct for every cell."""
    return round(0.5 + 0.1 * i - 0.03 * j + offset, 4)


@dataclass
class FakeTrainer:
    """What the callbacks read of a trainer."""

    config: ExperimentConfig
    tasks_done: int = 0
    global_step: int = 0
    results: list[TaskResult] = field(default_factory=list)
    device: str = "cpu"

    @property
    def out_dir(self) -> Path:
        return Path(self.config.run.out_dir)


def task_result(out: Path, t: int, num_tasks: int, offset: float) -> TaskResult:
    """Task t's result, with its checkpoint folder and sample grid written."""
    (out / f"task_{t}").mkdir(parents=True, exist_ok=True)
    (out / f"task_{t}" / "checkpoint.pt").write_bytes(b"checkpoint %d" % t)
    (out / "samples").mkdir(exist_ok=True)
    Image.new("L", (8, 8), color=t * 20).save(out / "samples" / f"samples_task_{t}.png")
    matrix = [[accuracy(i, j, offset) for j in range(1, i + 1)] for i in range(1, t + 1)]
    metrics = {f"acc_task_{j}": accuracy(t, j, offset) for j in range(1, t + 1)}
    metrics.update(avg_acc=sum(metrics.values()) / t, bwt=-0.01 * (t - 1) + offset)
    return TaskResult(task=t, num_tasks=num_tasks, classes=[t - 1], seen_classes=list(range(t)), metrics=metrics,
                      accuracy_matrix=matrix, class_accuracy={t - 1: metrics["avg_acc"]},
                      samples_path=str(out / "samples" / f"samples_task_{t}.png"),
                      checkpoint_path=str(out / f"task_{t}"), train_seconds=1.0 * t, eval_seconds=0.5,
                      extra={"evaluator_cache_key": "mnist5k-abc123", "evaluator_test_accuracy": 0.987})


def fake_run(callbacks: list[Callback], config: ExperimentConfig, num_tasks: int, upto: int | None = None,
             offset: float = 0.0, end: bool = True, resume_after: int = 0) -> types.SimpleNamespace:
    """Drive ``callbacks`` like the trainer would for tasks resume_after+1..upto (a crash when upto < num_tasks)."""
    out = Path(config.run.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(config, out / "config.yaml")
    earlier = [task_result(out, t, num_tasks, 0.0) for t in range(1, resume_after + 1)]
    trainer = FakeTrainer(config, tasks_done=resume_after, global_step=resume_after * STEPS, results=earlier)
    for callback in callbacks:
        callback.on_run_start(trainer)
    for t in range(resume_after + 1, (upto or num_tasks) + 1):
        for s in range(1, STEPS + 1):
            g = (t - 1) * STEPS + s
            info = StepInfo(t, s, STEPS, g, {"loss_d": g + offset, "loss_g": -g - offset}, steps_per_second=100.0 + g)
            trainer.global_step = g
            for callback in callbacks:
                callback.on_step(trainer, info)
        result = task_result(out, t, num_tasks, offset)
        trainer.tasks_done = t
        trainer.results.append(result)
        for callback in callbacks:
            callback.on_task_end(trainer, result)
    if end:
        for callback in callbacks:
            callback.on_run_end(trainer, trainer.results)
    return types.SimpleNamespace(results=trainer.results, trainer=trainer)


def empty_folders(folder: Path) -> list[Path]:
    """The empty folders at or below ``folder`` (none, in a tidy run folder)."""
    return [p for p in folder.rglob("*") if p.is_dir() and not any(p.iterdir())]
