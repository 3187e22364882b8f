"""Small real MLflow stores for the analysis tests and bench, written in the schema tracking/mirror.py logs.

:func:`write_run` logs one finished run with ``MlflowClient`` directly (fast: a few batched calls);
:func:`log_with_real_logger` drives the real record and its MLflow mirror like the trainer does.
``tests/test_handwritten_runs.py`` keeps the two in step: same params, tags, metric keys and steps, artifact paths.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from PIL import Image

import mergan
from mergan.callbacks import StepInfo, TaskResult
from mergan.config import ExperimentConfig
from mergan.config_io import save_yaml
from mergan.evaluation.metrics import summarize
from mergan.presets import build_config

STEP_KEYS = ("loss_d", "loss_g", "wasserstein", "steps_per_second")
Accuracy = Callable[[int, int], float]  # (after task i, task j), 1-based -> accuracy in [0, 1]


_EMPTY_STORE: Path | None = None


def empty_store(path: str | Path) -> str:
    """A fresh, empty MLflow SQLite store at ``path``; returns its URI.

    MLflow builds a new database by running its whole migration history (seconds); this does it
    once per process and copies the result.
    """
    global _EMPTY_STORE
    if _EMPTY_STORE is None or not _EMPTY_STORE.is_file():
        template = Path(tempfile.mkdtemp(prefix="mlflow-empty-")) / "mlflow.db"
        MlflowClient(f"sqlite:///{template}").search_experiments()
        _EMPTY_STORE = template
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_EMPTY_STORE, path)
    return f"sqlite:///{Path(path).resolve()}"


def make_config(method: str, seed: int, num_tasks: int, out_dir: str | Path, dataset: str = "mnist5k",
                **overrides: Any) -> ExperimentConfig:
    tasks = "|".join(str(t) for t in range(num_tasks))
    values = {"method": method, "seed": seed, "tasks": tasks, "device": "cpu", "out_dir": str(out_dir),
              "dataset": dataset, **overrides}
    return build_config("small", values, validate=False)


def method_accuracy(method: str, seed: int) -> Accuracy:
    """Distinct, plausible R[i][j] per (method, seed): SFT forgets, replay keeps old tasks."""
    keep = {"jt": 0.99, "sft": 0.2, "ewc": 0.6, "dgr": 0.8, "jtr": 0.95, "ra": 0.97}.get(method.split("+")[0], 0.9)
    return lambda i, j: round(0.9 - 0.01 * j + 0.003 * seed - (i - j) * (1 - keep) * 0.3 + 0.0007 * i, 6)


def run_values(num_tasks: int, accuracy: Accuracy) -> list[dict[str, Any]]:
    """Per task: the accuracy row, the metrics the trainer reports (names as in mergan/callbacks.py)."""
    matrix: list[list[float | None]] = []
    out = []
    for t in range(1, num_tasks + 1):
        row = [accuracy(t, j) for j in range(1, t + 1)]
        matrix.append(row)
        metrics = {f"acc_task_{j}": v for j, v in enumerate(row, 1)}
        metrics.update(summarize(matrix))
        metrics["fid_classifier"] = round(50.0 / t + 1.0, 4)
        out.append({"task": t, "matrix": [list(r) for r in matrix], "metrics": metrics,
                    "class_accuracy": {c: row[c] for c in range(t)}})
    return out


def sample_grid(path: Path, task: int, size: int = 16) -> Path:
    image = np.full((size, size * task, 3), 40 * task % 255, dtype=np.uint8)
    image[:, ::size, :] = 255
    Image.fromarray(image).save(path)
    return path


def write_run(client: MlflowClient, experiment_id: str, config: ExperimentConfig, accuracy: Accuracy, *,
              num_tasks: int | None = None, parent_run_id: str | None = None, sweep_id: str | None = None,
              trial_id: str | None = None, steps_per_task: int = 3, artifacts: bool = True,
              task_metrics: bool = True, keep_metric: Callable[[str], bool] | None = None,
              extra_metrics: Callable[[int], Mapping[str, float]] | None = None, status: str = "FINISHED") -> str:
    """Log one run the way ``MLflowCallback`` stores it; returns the run id.

    ``task_metrics=False``: no per-task metrics at all; ``keep_metric``: log only the per-task metrics
    it accepts; ``extra_metrics(t)``: more metrics at step t (e.g. ``reverse_acc``).
    """
    from mergan.naming import config_run_name
    from tracking.artifacts import (
        square_matrix,
        write_matrix_csv,
        write_matrix_json,
        write_matrix_png,
    )

    num_tasks = num_tasks or len(config.data.tasks.split("|"))
    name = config_run_name(config)
    tags = {"method": config.method.method, "dataset": config.data.dataset, "preset": config.preset,
            "mergan_version": mergan.__version__, "device": "cpu", "out_dir": str(config.run.out_dir),
            "mergan.run_key": f"handwritten-{name}", "mlflow.runName": name}
    tags.update({k: v for k, v in {"sweep_id": sweep_id, "trial_id": trial_id,
                                   "mlflow.parentRunId": parent_run_id}.items() if v})
    run_id = client.create_run(experiment_id, tags=tags, run_name=name).info.run_id
    stamp = 1_700_000_000_000
    params = [Param(k, str(v)) for k, v in config.flat().items()]
    params += [Param("evaluator_cache_key", f"{config.data.dataset}-abc123"), Param("evaluator_test_accuracy", "0.987")]
    client.log_batch(run_id, params=params[:100])
    metrics: list[Metric] = []
    for task in run_values(num_tasks, accuracy):
        t = task["task"]
        for s in range(1, steps_per_task + 1):
            g = (t - 1) * steps_per_task + s
            metrics += [Metric(k, float(g % 7) - 3.0, stamp + g, g) for k in STEP_KEYS]
        if task_metrics:
            values = dict(task["metrics"])
            values.update({f"acc_class_{c}": a for c, a in task["class_accuracy"].items()})
            values.update(train_seconds=1.0 * t, eval_seconds=0.5, **(extra_metrics(t) if extra_metrics else {}))
            metrics += [Metric(k, float(v), stamp + 10_000 * t, t) for k, v in values.items()
                        if keep_metric is None or keep_metric(k)]
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start:start + 1000])
    client.log_batch(run_id, tags=[RunTag("mergan.last_task", str(num_tasks)),
                                   RunTag("mergan.last_step", str(num_tasks * steps_per_task)),
                                   RunTag("mergan.starts", "1"),
                                   RunTag("evaluator_cache_key", f"{config.data.dataset}-abc123"),
                                   RunTag("evaluator_test_accuracy", "0.987")])
    if artifacts:
        folder = Path(config.run.out_dir) / "artifacts"
        folder.mkdir(parents=True, exist_ok=True)
        save_yaml(config, folder / "config.yaml")
        client.log_artifact(run_id, str(folder / "config.yaml"))
        last = run_values(num_tasks, accuracy)[-1]
        matrix = square_matrix(last["matrix"], num_tasks)
        files = [write_matrix_csv(matrix, folder / "accuracy_matrix.csv"),
                 write_matrix_json(matrix, folder / "accuracy_matrix.json", after_task=num_tasks,
                                   num_tasks=num_tasks, metrics=last["metrics"]),
                 write_matrix_png(matrix, folder / "accuracy_matrix.png")]
        for file in files:
            client.log_artifact(run_id, str(file), "accuracy")
        for t in range(1, num_tasks + 1):
            client.log_artifact(run_id, str(sample_grid(folder / f"task_{t}.png", t)), "samples")
    client.set_terminated(run_id, status)
    return run_id


def log_with_real_logger(tracking_uri: str, experiment: str, config: ExperimentConfig, accuracy: Accuracy,
                         steps_per_task: int = 3, **target_args: Any) -> str:
    """Drive the real ``mergan.record.RunRecord`` and ``tracking.mirror.MLflowMirror`` through a whole run."""
    from mergan.record import RunRecord
    from tests.support.fake_runs import FakeTrainer
    from tracking.mirror import MLflowMirror, Target

    num_tasks = len(config.data.tasks.split("|"))
    out = Path(config.run.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(config, out / "config.yaml")
    callbacks = [RunRecord(), MLflowMirror(Target(tracking_uri, experiment, log_checkpoint=False, **target_args),
                                           interval_s=0)]
    trainer = FakeTrainer(config)
    for callback in callbacks:
        callback.on_run_start(trainer)
    for task in run_values(num_tasks, accuracy):
        t = task["task"]
        for s in range(1, steps_per_task + 1):
            g = trainer.global_step = (t - 1) * steps_per_task + s
            losses = {k: float(g % 7) - 3.0 for k in STEP_KEYS if k != "steps_per_second"}
            for callback in callbacks:
                callback.on_step(trainer, StepInfo(t, s, steps_per_task, g, losses,
                                                   steps_per_second=float(g % 7) - 3.0))
        result = TaskResult(task=t, num_tasks=num_tasks, classes=[t - 1], seen_classes=list(range(t)),
                            metrics=task["metrics"], accuracy_matrix=task["matrix"],
                            class_accuracy=task["class_accuracy"], samples_path=str(sample_grid(out / f"s{t}.png", t)),
                            train_seconds=1.0 * t, eval_seconds=0.5,
                            extra={"evaluator_cache_key": f"{config.data.dataset}-abc123",
                                   "evaluator_test_accuracy": 0.987})
        trainer.tasks_done = t
        trainer.results.append(result)
        for callback in callbacks:
            callback.on_task_end(trainer, result)
    for callback in callbacks:
        callback.on_run_end(trainer, trainer.results)
    return callbacks[1].run_id
