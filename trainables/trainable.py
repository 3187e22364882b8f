"""The Ray Tune trainable: one trial config -> one sequential mergan run, reported task by task.

After every task the trial calls ``tune.report`` with the evaluation metrics (names as in
``mergan/callbacks.py``, plus the sweep's own below) and the task's checkpoint. A trial that Ray
restarts resumes from its last task's checkpoint (``tune.get_checkpoint`` ->
``Trainer.from_checkpoint``); its record's run key is made of the sweep and Tune trial ids, so its
MLflow child run is continued. A trial that diverges reports ``diverged=1`` with the message and ends
as finished, not retried; one whose configuration cannot run (``CONFIGURATION_ERRORS``) reports
``configuration_error`` and ends the same way.

The trial's run folder is ``run/`` in Tune's trial working directory, which Tune's artifact sync
(``SyncConfig(sync_artifacts=True)``) copies to the sweep's storage after every task and at the end:
``<storage>/<sweep>/<trial>/run/`` holds the trial's record for ``mergan report --runs`` and
``mergan sync``. Checkpoints leave the run folder before Tune copies them, so they reach the storage once.

Metrics the sweep adds to each report:
- ``stream_avg_acc``: accuracy averaged over every task of the stream, tasks not learned yet
  counting 0; equal to ``avg_acc`` after the last task, and comparable between trials stopped
  at different tasks (what the searcher optimises by default).
- ``tasks_done``, ``num_tasks``, ``train_seconds_total``, ``eval_seconds_total``,
  ``resumed_from_task`` (0 on a first attempt), ``diverged`` (0/1) and ``divergence`` (message),
  ``node_id`` (the Ray node that ran the task).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from ray import tune

from mergan.callbacks import Callback, DivergenceError, TaskResult
from mergan.checkpoint import CheckpointError
from mergan.config import ExperimentConfig
from mergan.data import DatasetError
from mergan.naming import config_run_name
from mergan.presets import build_config
from mergan.record import RunRecord
from mergan.settings import ConfigError, is_number
from mergan.trainer import Trainer
from tracking.mirror import MLflowMirror, Target
from tracking.store import DEFAULT_EXPERIMENT, resolve_tracking_uri
from trainables import pbt

logger = logging.getLogger("trainables.trainable")
# A trial's configuration that cannot run (a class or file its node lacks, a refused value, a checkpoint
# that does not fit): retrying it would fail the same way.
CONFIGURATION_ERRORS = (ConfigError, DatasetError, CheckpointError)
CONFIGURATION_ERROR = "configuration_error"  # the report key that says why


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of one sweep shares (handed to trials with ``tune.with_parameters``).

    ``defaults`` are the sweep's implicit values, ``fixed`` the user's ``--set`` values; a trial's
    own parameters (from the search space) go over both. ``callbacks``: factories of further trainer
    callbacks, one of each made per attempt of every trial, run after the trial has reported each task.
    """

    preset: str
    defaults: dict[str, Any] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    cpus_per_trial: float = 1.0
    tracking_uri: str | None = None
    experiment: str = DEFAULT_EXPERIMENT
    parent_run_id: str | None = None
    sweep_id: str | None = None
    name_keys: tuple[str, ...] | None = None
    callbacks: tuple[Callable[[], Callback], ...] = ()
    pbt_knobs: tuple[str, ...] = ()  # --scheduler pbt: the knobs a restored trial takes from Tune, not its checkpoint
    objective: tuple[str, ...] = ("stream_avg_acc",)  # the metrics the searcher and scheduler read


def trial_config(settings: TrialSettings, params: dict[str, Any], out_dir: str | Path) -> ExperimentConfig:
    """The trial's full config: preset <- sweep defaults <- ``--set`` values <- the trial's parameters."""
    overrides = {**settings.defaults, **settings.fixed, **params, "out_dir": str(out_dir), "save_checkpoints": True}
    return build_config(settings.preset, overrides)


def stream_average_accuracy(row: list[float | None], num_tasks: int) -> float:
    """Mean accuracy over all ``num_tasks`` tasks of the stream; tasks not measured or not learned count 0."""
    return sum(v for v in row if v is not None) / num_tasks


def task_report(result: TaskResult, results: list[TaskResult], resumed_from_task: int) -> dict[str, Any]:
    """What ``tune.report`` gets after one task: numeric evaluation metrics plus the sweep's own."""
    report: dict[str, Any] = {k: float(v) for k, v in result.metrics.items() if is_number(v)}
    row = result.accuracy_matrix[-1] if result.accuracy_matrix else []
    if any(v is not None for v in row):
        report["stream_avg_acc"] = stream_average_accuracy(row, result.num_tasks)
    report.update(tasks_done=result.task, num_tasks=result.num_tasks,
                  train_seconds_total=sum(r.train_seconds for r in results),
                  eval_seconds_total=sum(r.eval_seconds for r in results),
                  resumed_from_task=resumed_from_task, diverged=0)
    return report


def node_id() -> str | None:
    """The Ray node running this trial (Tune records its IP; several nodes may share one)."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


class TuneReporter(Callback):
    """Reports each finished task to Tune with its checkpoint, moved out of the run folder first (Tune's
    artifact sync copies that folder to storage; the checkpoint goes there once, as Tune's own)."""

    def __init__(self) -> None:
        self.resumed_from_task = 0  # set to the checkpoint's task when the trial resumes
        self.last_report: dict[str, Any] = {}
        self.checkpoints = Path(tempfile.mkdtemp(prefix="mergan-checkpoints-"))

    def on_task_end(self, trainer: Trainer, result: TaskResult) -> None:
        self.last_report = {**task_report(result, trainer.results, self.resumed_from_task), "node_id": node_id()}
        checkpoint = None
        if result.checkpoint_path:
            moved = self.checkpoints / f"task_{result.task}"
            shutil.rmtree(moved, ignore_errors=True)
            shutil.move(result.checkpoint_path, moved)
            checkpoint = tune.Checkpoint.from_directory(str(moved))
        tune.report(self.last_report, checkpoint=checkpoint)  # Tune copies the checkpoint to its storage
        shutil.rmtree(self.checkpoints / f"task_{result.task}", ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.checkpoints, ignore_errors=True)


def divergence_report(trainer: Trainer, error: DivergenceError, last_report: dict[str, Any]) -> dict[str, Any]:
    """The final report of a trial that diverged: what it had learned, ``diverged=1`` and why."""
    num_tasks = len(trainer.tasks)
    row = trainer.accuracy_matrix[-1] if trainer.accuracy_matrix else []
    return {**last_report, "stream_avg_acc": stream_average_accuracy(row, num_tasks),
            "forgetting": last_report.get("forgetting", 0.0), "tasks_done": trainer.tasks_done,
            "num_tasks": num_tasks, "train_seconds_total": sum(r.train_seconds for r in trainer.results),
            "diverged": 1, "divergence": str(error)}


def refusal_report(error: Exception, objective: tuple[str, ...], trainer: Trainer | None,
                   last_report: dict[str, Any]) -> dict[str, Any]:
    """The final report of a trial whose configuration cannot run: ``configuration_error`` says why, and the
    objective's metrics are NaN (Tune wants them in every report; the searcher records the trial FAILED)."""
    done = trainer.tasks_done if trainer is not None else 0
    return {**last_report, **{metric: float("nan") for metric in objective},
            "tasks_done": done, "num_tasks": len(trainer.tasks) if trainer is not None else max(done, 1),
            "diverged": 0, CONFIGURATION_ERROR: str(error)}


def scratch_dir(trial_id: str) -> Path:
    """The trial's run folder: in Tune's per-trial working directory (the current one), which Tune's artifact
    sync copies to the sweep's storage; else (``RAY_CHDIR_TO_TRIAL_DIR=0``) a node-local temporary folder."""
    if os.environ.get("RAY_CHDIR_TO_TRIAL_DIR", "1") != "0":
        return Path.cwd() / "run"
    return Path(tempfile.gettempdir()) / "mergan-trials" / trial_id / "run"


def trial_run_key(settings: TrialSettings, trial_id: str) -> str:
    """The trial's run key (its record's, its MLflow run's): the same for every attempt of the trial."""
    return f"trial:{settings.experiment}:{settings.sweep_id or ''}:{trial_id}"


def train_trial(params: dict[str, Any], settings: TrialSettings) -> None:
    """One trial: build (or restore) the trainer, train task by task, report after each task."""
    torch.set_num_threads(max(1, int(settings.cpus_per_trial)))
    context = tune.get_context()
    trial_id = context.get_trial_id()
    out_dir = scratch_dir(trial_id)
    checkpoint = tune.get_checkpoint()
    knobs = settings.pbt_knobs
    reporter = TuneReporter()
    try:
        config = trial_config(settings, params, out_dir)
    except CONFIGURATION_ERRORS as error:  # nothing was started: the report says why, once
        tune.report(refusal_report(error, settings.objective, None, reporter.last_report))
        return
    labels = {"trial_id": trial_id, "trial_name": context.get_trial_name(),
              **({"sweep_id": settings.sweep_id} if settings.sweep_id else {})}
    record = RunRecord(trial_run_key(settings, trial_id), config_run_name(config, settings.name_keys), labels)
    mirror = MLflowMirror(Target(resolve_tracking_uri(settings.tracking_uri), settings.experiment,
                                 settings.parent_run_id))
    recorder = pbt.ScheduleRecorder(trial_id, knobs, record.set_labels) if knobs else None
    # The recorder adds knob values to each task's result before the record writes it; Tune gets the
    # checkpoint after the record has put its copy in.
    callbacks = [*([recorder] if recorder else []), record, mirror, reporter,
                 *(make() for make in settings.callbacks)]
    with mirror, record.ending(), contextlib.closing(reporter):
        trainer = None
        try:
            if checkpoint is None:
                trainer = Trainer(config, callbacks=callbacks)
            else:
                with checkpoint.as_directory() as folder:
                    # The checkpoint's own config wins; only where and on what the run goes on may change,
                    # and under PBT the knobs Tune handed in (perhaps perturbed after copying another trial).
                    overrides = {"out_dir": str(out_dir), "device": config.run.device,
                                 **pbt.knob_overrides(config, knobs)}
                    trainer = Trainer.from_checkpoint(folder, callbacks=callbacks, overrides=overrides,
                                                      may_change=knobs)
                    if recorder:
                        pbt.check_same_run(trainer.config, config, knobs)
                        record.set_labels(recorder.on_restore(trainer, folder))
                reporter.resumed_from_task = trainer.tasks_done
                logger.info("trial %s resumes after task %d", trial_id, trainer.tasks_done)
            trainer.fit()
        except CONFIGURATION_ERRORS as error:
            # The same configuration fails the same way on every attempt: reported once, never retried.
            tune.report(refusal_report(error, settings.objective, trainer, reporter.last_report))
            record.set_labels({CONFIGURATION_ERROR: str(error)})
            record.end("FAILED", str(error))
        except DivergenceError as error:
            tune.report(divergence_report(trainer, error, reporter.last_report))
            record.set_labels({"diverged": "1", "divergence": str(error)})
            record.end("FAILED", str(error))
        except SystemExit:
            # Tune stopped the trial at a report: a scheduler such as ASHA (an early end, not a failure),
            # or ASHA's own stop at its last task.
            if trainer.tasks_done < len(trainer.tasks) and not knobs:  # PBT pauses every trial at a boundary
                record.set_labels({"stopped_early": "1"})
            record.end("FINISHED")
            raise
