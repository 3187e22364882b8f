"""A PBT sweep whose driver is SIGKILLed after the first task's checkpoints continues with ``sweep.py --resume``:
the population finishes every task, copies at the task boundaries go on, and MLflow holds each trial once."""

from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.support.sweeps import SETS, kill_after_first_checkpoint, resume_sweep
from tracking.sweep_run import trial_runs
from trainables.plan import SweepPlan

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_killed_pbt_sweep_resumes_to_the_end(tmp_path, sweep_env):
    storage = tmp_path / "sweeps"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sets = [arg for item in SETS for arg in ("--set", item.replace("iterations_per_task=60", "iterations_per_task=5"))]
    command = [sys.executable, str(REPO / "sweep.py"), "--space", "ra-schedule", "--scheduler", "pbt",
               "--tasks", "0|1|2", "--num-samples", "2", "--max-concurrent", "2", *sets, "--storage-path", str(storage),
               "--tracking-uri", uri, "--name", "killed", "--verbose", "0"]
    kill_after_first_checkpoint(command, storage / "killed", sweep_env, tmp_path / "first.log")

    resumed = resume_sweep(storage, sweep_env, tmp_path, timeout=600)
    assert "Its schedule" in resumed.stdout

    plan = SweepPlan.load(str(storage), "killed")
    finals = {}
    for path in glob.glob(str(storage / "killed" / "train_trial_*" / "result.json")):
        rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
        finals[rows[0]["trial_id"]] = rows[-1]
    assert len(finals) == 2 and all(row["tasks_done"] == 3 for row in finals.values())

    client = MlflowClient(uri)
    runs = trial_runs(client, plan.parent_run_id)
    assert sorted(run.data.tags["trial_id"] for run in runs) == sorted(finals)
    for run in runs:
        assert run.info.status == "FINISHED"
        assert {m.step for m in client.get_metric_history(run.info.run_id, "knob/lambda_ra")} == {1, 2, 3}
        assert [e["task"] for e in json.loads(run.data.tags["pbt.schedule"])] == [1, 2, 3]
    # A population of two copies at every boundary: after task 2 at least, which ran after the resume.
    assert any("pbt.copied_after_task_2" in run.data.tags for run in runs)
