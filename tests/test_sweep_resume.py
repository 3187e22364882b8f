"""A sweep whose driver is SIGKILLed mid-sweep continues with ``sweep.py --resume``: every trial finishes,
once, in Tune's results, in MLflow and in the Optuna study; a trial with a checkpoint resumes from it."""

from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from ray.tune import ExperimentAnalysis

from analysis.load import load_run_folders
from mergan.record import read_record
from tests.support.sweeps import REPO, SETS, kill_after_first_checkpoint, resume_sweep
from tracking.sweep_run import trial_runs
from trainables.plan import SweepPlan


@pytest.mark.slow
def test_a_killed_sweep_resumes_every_unfinished_trial_once(tmp_path, sweep_env):
    storage = tmp_path / "sweeps"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sets = [arg for item in SETS for arg in ("--set", item)]
    command = [sys.executable, str(REPO / "sweep.py"), "--space", "ra-lambda", "--tasks", "0|1|2", "--num-samples", "3",
               "--max-concurrent", "2", *sets, "--storage-path", str(storage), "--tracking-uri", uri,
               "--name", "killed", "--verbose", "0"]
    kill_after_first_checkpoint(command, storage / "killed", sweep_env, tmp_path / "first.log")
    finished_before = [p for p in glob.glob(str(storage / "killed" / "train_trial_*" / "result.json"))
                       if len(Path(p).read_text().splitlines()) == 3]
    assert len(finished_before) < 3  # the kill left work to resume

    resumed = resume_sweep(storage, sweep_env, tmp_path, timeout=400)
    assert "Resuming on a local Ray" in resumed.stdout

    # Tune: three trials, each finished all three tasks, each task reported once per trial. (A trial the killed
    # driver had started but not yet saved is not one of them: the resumed sweep ran another in its place.)
    plan = SweepPlan.load(str(storage), "killed")
    finals = {}
    for trial in ExperimentAnalysis(str(storage / "killed")).trials:
        rows = [json.loads(line) for line in (Path(trial.path) / "result.json").read_text().splitlines()]
        assert [r["tasks_done"] for r in rows] == [1, 2, 3], trial.path
        finals[trial.trial_id] = rows[-1]
    assert len(finals) == 3
    assert any(r["resumed_from_task"] >= 1 for r in finals.values())  # continued from a checkpoint, not zero
    table = resumed.stdout[resumed.stdout.index("trial  "):]
    assert all(f"{trial_id}  finished  3/3" in table for trial_id in finals)

    # MLflow: one child run per Tune trial, continued across the kill, every task's metrics once.
    client = MlflowClient(uri)
    runs = trial_runs(client, plan.parent_run_id)
    assert sorted(run.data.tags["trial_id"] for run in runs) == sorted(finals)
    for run in runs:
        assert run.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "avg_acc")] == [1, 2, 3]
    assert client.get_run(plan.parent_run_id).info.status == "FINISHED"

    # The storage: each trial's run folder, synced by Tune, holds its record: every task once, finished, and no
    # checkpoint (those are Tune's, beside it); the report reads them without MLflow.
    folders = sorted((storage / "killed").glob("train_trial_*/run"))
    assert len(folders) >= 3
    records = {read_record(folder).labels["trial_id"]: read_record(folder) for folder in folders}
    for trial_id in finals:
        record = records[trial_id]
        assert [line["task"] for line in record.lines if line["kind"] == "task"] == [1, 2, 3], trial_id
        assert record.status == "FINISHED" and not list(record.folder.glob("task_*"))
    data = load_run_folders([storage / "killed"])
    assert sorted(data.runs.loc[data.runs["tasks_done"] == 3, "tag.trial_id"]) == sorted(finals)

    # Optuna: the study kept its trials across the kill; three complete with Tune's values, none left running.
    study = optuna.load_study(study_name="killed", storage=plan.optuna_storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]  # orphans: FAIL
    assert sorted(t.value for t in complete) == pytest.approx(sorted(r["stream_avg_acc"] for r in finals.values()))
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
