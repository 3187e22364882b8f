"""The Tune trainable under a real local Ray: per-task reports with checkpoints, a crashed trial resumed
from its checkpoint (not from zero) with the same result as an uninterrupted run, divergence recorded."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from mlflow import MlflowClient
from ray import tune

from mergan.callbacks import Callback, TaskResult
from mergan.trainer import Trainer
from trainables.trainable import (
    TrialSettings,
    stream_average_accuracy,
    task_report,
    train_trial,
    trial_config,
)

TINY = {"tasks": "0|1", "iterations_per_task": 2, "critic_steps": 1, "batch_size": 8, "g_width": 8, "d_width": 8,
        "z_dim": 8, "eval_samples_per_class": 10, "evaluator_epochs": 1, "device": "cpu", "log_every": 1,
        "grid_per_class": 2, "seed": 3}
DIVERGING_LR = 1e30  # the generator's weights blow up in the first steps: a NaN loss


def test_stream_accuracy_counts_tasks_not_learned_yet_as_zero():
    assert stream_average_accuracy([0.9, 0.5], 4) == pytest.approx(0.35)
    assert stream_average_accuracy([0.9, None, 0.5], 3) == pytest.approx(1.4 / 3)
    result = TaskResult(task=2, num_tasks=3, classes=[1], seen_classes=[0, 1],
                        metrics={"avg_acc": 0.7, "forgetting": 0.2, "acc_task_1": 0.6, "acc_task_2": 0.8},
                        accuracy_matrix=[[0.8, None, None], [0.6, 0.8, None]], train_seconds=2.0, eval_seconds=1.0)
    first = TaskResult(task=1, num_tasks=3, classes=[0], seen_classes=[0], train_seconds=3.0)
    report = task_report(result, [first, result], resumed_from_task=1)
    assert report["stream_avg_acc"] == pytest.approx(1.4 / 3)  # avg_acc 0.7 over 2 of 3 tasks
    assert (report["tasks_done"], report["num_tasks"], report["train_seconds_total"]) == (2, 3, 5.0)
    assert (report["avg_acc"], report["resumed_from_task"], report["diverged"]) == (0.7, 1, 0)


class CrashOnFirstAttempt(Callback):
    """A trial's process dies after ``after_task`` is reported, unless the trial resumed from a checkpoint."""

    def __init__(self, after_task: int):
        self.after_task, self.resumed = after_task, False

    def on_run_start(self, trainer) -> None:
        self.resumed = trainer.tasks_done > 0

    def on_task_end(self, trainer, result: TaskResult) -> None:
        if result.task == self.after_task and not self.resumed:
            raise RuntimeError(f"crash after task {result.task}; Ray restarts the trial from its checkpoint")


def run_trials(root, name: str, params: dict, settings: TrialSettings, max_failures: int = 0) -> tune.ResultGrid:
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(train_trial, settings=settings), {"cpu": 1}),
        param_space=params,
        run_config=tune.RunConfig(name=name, storage_path=str(root / "tune"), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=max_failures)))
    return tuner.fit()


@pytest.mark.slow
def test_a_crashed_trial_resumes_from_its_checkpoint_and_ends_as_if_never_interrupted(local_ray):
    uri = f"sqlite:///{local_ray / 'mlflow.db'}"
    settings = TrialSettings(preset="small", fixed=TINY, tracking_uri=uri, experiment="trainable",
                             callbacks=(functools.partial(CrashOnFirstAttempt, after_task=1),))
    results = run_trials(local_ray, "crash", {"method": "ra", "lambda_ra": 1e-2}, settings, max_failures=1)
    result = results[0]
    assert result.error is None
    history = result.metrics_dataframe
    assert list(history["tasks_done"]) == [1, 2]  # task 1 reported once, before the crash
    assert list(history["training_iteration"]) == [1, 2]  # Tune's time unit is tasks
    final = result.metrics
    assert final["resumed_from_task"] == 1  # the second attempt started after task 1, not from zero
    assert {"avg_acc", "forgetting", "acc_task_1", "acc_task_2", "fid_classifier", "stream_avg_acc"} <= set(final)
    assert result.checkpoint is not None

    # The trial alone, in one process without Ray or a crash, gives the same numbers.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the trial had (1 CPU)
    try:
        config = trial_config(settings, {"method": "ra", "lambda_ra": 1e-2}, local_ray / "alone")
        alone = Trainer(config).fit()[-1].metrics
    finally:
        torch.set_num_threads(threads)
    for name in ("avg_acc", "acc_task_1", "acc_task_2", "forgetting", "fid_classifier"):
        assert final[name] == pytest.approx(alone[name], abs=1e-6), name

    # MLflow holds one run for the trial, continued by the second attempt: each task's metrics once.
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("trainable")
    runs = client.search_runs([experiment.experiment_id], f"tags.trial_id = '{final['trial_id']}'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "avg_acc")] == [1, 2]


@pytest.mark.slow
def test_a_diverging_trial_stops_with_its_reason_instead_of_being_retried(local_ray):
    uri = f"sqlite:///{local_ray / 'mlflow.db'}"
    settings = TrialSettings(preset="small", fixed=TINY, tracking_uri=uri, experiment="divergence")
    results = run_trials(local_ray, "diverge", {"lr_g": DIVERGING_LR}, settings, max_failures=2)
    result = results[0]
    assert result.error is None  # finished with a reason, not an error Ray would retry
    assert len(result.metrics_dataframe) == 1  # one report: no retry, no budget burnt
    final = result.metrics
    assert final["diverged"] == 1 and "diverged" in final["divergence"] and "task 1" in final["divergence"]
    assert (final["tasks_done"], final["stream_avg_acc"]) == (0, 0.0)
    assert not math.isnan(final["forgetting"])
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("divergence")
    (run,) = client.search_runs([experiment.experiment_id], f"tags.trial_id = '{final['trial_id']}'")
    assert run.info.status == "FAILED"
    assert run.data.tags["diverged"] == "1" and "diverged" in run.data.tags["divergence"]
