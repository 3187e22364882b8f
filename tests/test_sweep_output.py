"""What a sweep prints: a row per trial at each task boundary, named as MLflow names the trial, with the method
and the knobs that act in it; Tune's and Ray's own output only with --verbose."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.support.sweeps import REPO, TINY_SETS
from tracking.sweep_run import trial_runs
from trainables.plan import SweepPlan
from trainables.progress import TrialLabeller
from trainables.results import TrialRow

# Printed by Tune or Ray, never by the sweep itself.
TUNE_AND_RAY = ("Trial status", "TensorBoard", "View detailed results", "Checkpoint successfully created",
                "saved a checkpoint", "train_trial_", "Started a local Ray instance")


def run_sweep(tmp_path: Path, env: dict[str, str], *extra: str) -> tuple[str, SweepPlan]:
    sets = [arg for item in TINY_SETS for arg in ("--set", item)]
    done = subprocess.run([sys.executable, str(REPO / "sweep.py"), "--num-samples", "3", "--tasks", "0|1", *sets,
                           "--storage-path", str(tmp_path / "sweeps"), "--tracking-uri",
                           f"sqlite:///{tmp_path / 'mlflow.db'}", "--name", "shown", *extra],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    return out, SweepPlan.load(str(tmp_path / "sweeps"), "shown")


def mlflow_names(plan: SweepPlan) -> dict[str, str]:
    """Trial id -> the name of its MLflow run."""
    return {run.data.tags["trial_id"]: run.info.run_name
            for run in trial_runs(MlflowClient(plan.tracking_uri), plan.parent_run_id)}


def test_a_label_shows_each_knob_where_it_acts_and_the_run_name():
    labeller = TrialLabeller("small", {"seed": 0, "tasks": "0|1"}, {},
                             ("lambda_ra", "replay_mode", "replay_size_per_class"))
    assert labeller.knob_columns == ["lambda_ra", "replay_mode", "replay_size_per_class"]
    fresh = labeller.label({"method": "jtr", "replay_mode": "fresh"})
    assert (fresh.method, list(fresh.knobs.values()), fresh.name) == ("jtr", ["-", "fresh", "-"],
                                                                     "jtr replay_mode=fresh seed=0")
    fixed = labeller.label({"method": "jtr+ra", "lambda_ra": 0.01, "replay_mode": "fixed",
                            "replay_size_per_class": 131})
    assert list(fixed.knobs.values()) == ["0.01", "fixed", "131"]
    assert fixed.name == "jtr+ra lambda_ra=0.01 replay_mode=fixed replay_size_per_class=131 seed=0"
    assert list(labeller.label({"method": "sft"}).knobs.values()) == ["-", "-", "-"]


@pytest.mark.slow
def test_the_main_job_prints_a_row_per_task_named_as_mlflow_names_the_trial_and_nothing_of_tune(tmp_path, sweep_env):
    out, plan = run_sweep(tmp_path, sweep_env)
    assert not [marker for marker in TUNE_AND_RAY if marker in out], out[-4000:]
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["time", "task", "method"])
    assert lines[header].split() == ["time", "task", "method", "lambda_l2", "lambda_ra", "replay_mode",
                                     "replay_size_per_class", "avg_acc", "forgetting", "stream_avg_acc", "name"]
    names = mlflow_names(plan)
    assert len(names) == 3
    rows = lines[header + 1: header + 1 + 2 * len(names)]  # every trial after each of its two tasks
    for name in names.values():
        mine = [row for row in rows if row.endswith(f"  {name}")]
        assert [row.split()[1] for row in mine] == ["1/2", "2/2"], (name, rows)
        method = name.split()[0]
        knobs = mine[0].split()[3:7]
        assert knobs[0] == ("-" if method != "l2" else name.split("lambda_l2=")[1].split()[0])
        assert knobs[1] == ("-" if "ra" not in method.split("+") else name.split("lambda_ra=")[1].split()[0])
        if method == "jtr":
            assert knobs[2] == "fresh" and knobs[3] == "-"  # fresh replay: the replay set's size does not act
    table = out[out.index("\ntrial  "):]
    for trial_id, name in names.items():
        assert any(line.startswith(trial_id) and line.endswith(name) for line in table.splitlines())


@pytest.mark.slow
def test_verbose_shows_tunes_own_output_with_its_trials_named_as_in_mlflow(tmp_path, sweep_env):
    out, plan = run_sweep(tmp_path, sweep_env, "--space", "ra-lambda", "--verbose")
    assert "Trial status" in out and "Checkpoint successfully created" in out
    for name in mlflow_names(plan).values():
        assert f"Trial {name} started with configuration" in out


def test_the_final_table_has_the_method_and_acting_knobs_as_columns(tmp_path):
    from trainables.plan import make_plan
    from trainables.results import format_table

    plan = make_plan(space="ra-lambda", storage_path=str(tmp_path / "sweeps"), name="p",
                     tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    rows = [TrialRow("a", "finished", {"method": "sft"}, {"avg_acc": 0.4, "tasks_done": 3, "num_tasks": 3}),
            TrialRow("b", "finished", {"method": "ra", "lambda_ra": 0.01}, {"avg_acc": 0.8, "tasks_done": 3,
                                                                              "num_tasks": 3})]
    table = format_table(rows, plan).splitlines()
    assert table[0].split() == ["trial", "status", "tasks", "method", "lambda_ra", "avg_acc", "forgetting",
                                "stream_avg_acc", "train_s", "total_s", "name"]
    assert set(table[1]) == {"-", " "}
    assert table[2].split()[:5] == ["a", "finished", "3/3", "sft", "-"] and table[2].endswith("sft seed=0")
    assert table[3].split()[:5] == ["b", "finished", "3/3", "ra", "0.01"]
    assert table[3].endswith("ra lambda_ra=0.01 seed=0")
