"""``sweep.py --scheduler pbt``: refusals before Ray starts, the explore step, and a real local PBT run in which
the worse trial provably copies the better one's checkpoint (task counter and weights) and trains on with its
own perturbed knob, recorded in MLflow as a schedule and a lineage."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from mlflow import MlflowClient

import sweep
from mergan.checkpoint import load_checkpoint
from search_spaces import load_space
from tracking.sweep_run import trial_runs
from trainables import pbt
from trainables.plan import SweepPlan

TINY_SETS = ["iterations_per_task=2", "critic_steps=1", "batch_size=8", "g_width=8", "d_width=8", "z_dim=8",
             "eval_samples_per_class=10", "evaluator_epochs=1", "log_every=1", "grid_per_class=2"]


def tiny_args(root: Path, name: str, *extra: str) -> list[str]:
    sets = [arg for item in TINY_SETS for arg in ("--set", item)]
    return [*sets, "--storage-path", str(root / "sweeps"), "--tracking-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--experiment", "pbt", "--name", name, "--verbose", "0", *extra]


@pytest.mark.parametrize("extra, says", [
    (["--space", "ablation"], "is a grid"),
    (["--space", "methods"], "only on some draws"),
    (["--space", "ra-schedule", "--tasks", "0"], "at least two tasks"),
    (["--space", "ra-schedule", "--num-samples", "1"], "--num-samples 1"),
    (["--space", "ra-schedule", "--objective", "multi"], "one metric"),
])
def test_pbt_refuses_what_it_cannot_perturb_before_ray_starts(tmp_path, capsys, extra, says):
    assert sweep.main([*extra, "--scheduler", "pbt", "--dry-run", "--storage-path", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert says in err and ("--scheduler pbt" in err or "--num-samples" in err or "--objective" in err)
    assert "Traceback" not in err


def test_pbt_refuses_a_knob_a_checkpoint_cannot_take(tmp_path, capsys):
    space = tmp_path / "widths.yaml"
    space.write_text("method: ra\ng_width: {type: int, low: 8, high: 64}\n")
    assert sweep.main(["--space", str(space), "--scheduler", "pbt", "--dry-run", "--storage-path", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--scheduler pbt" in err and "'g_width' (model.g_width)" in err and "lambda_ra" in err


def test_the_schedule_spaces_perturb_their_lambda_on_a_log_scale(tmp_path, capsys):
    for name, knob in (("ra-schedule", "lambda_ra"), ("ewc-schedule", "lambda_ewc")):
        knobs, constants = pbt.space_knobs(load_space(name))
        assert [(k.name, k.kind, k.log) for k in knobs] == [(knob, "float", True)]
        assert constants == {"method": name.split("-")[0]}
    assert sweep.main(["--space", "ra-schedule", "--scheduler", "pbt", "--dry-run",
                       "--storage-path", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "objective: avg_acc (max)" in out and "trials: 4" in out and "perturb lambda_ra" in out


def test_explore_clips_perturbed_numbers_and_resamples_categoricals():
    lam = pbt.Knob("lambda_ra", "float", low=1e-4, high=1.0, log=True)
    mode = pbt.Knob("replay_mode", "categorical", choices=("fresh", "fixed"))
    explore = pbt.Explore([lam, mode], seed=0)
    assert explore({"lambda_ra": 1.25, "replay_mode": "fresh"})["lambda_ra"] == 1.0  # 0.8 * 1.25 perturbed up
    assert {explore({"lambda_ra": 0.1, "replay_mode": "fresh"})["replay_mode"] for _ in range(50)} == {"fresh", "fixed"}
    rng = random.Random(0)
    assert all(1e-4 <= lam.sample(rng) <= 1.0 for _ in range(100))


def trial_rows(experiment_path: Path) -> dict[str, list[dict]]:
    """Each Tune trial's reported rows (result.json), by trial id."""
    rows = {}
    for path in experiment_path.glob("train_trial_*/result.json"):
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        rows[lines[0]["trial_id"]] = lines
    return rows


def checkpoint_of(experiment_path: Path, trial_id: str, task: int) -> dict:
    """The trainer checkpoint that ``trial_id`` reported after ``task``, from Tune's storage."""
    for path in experiment_path.glob(f"train_trial_{trial_id}_*/checkpoint_*/checkpoint.pt"):
        state = load_checkpoint(path)
        if state["task"] == task:
            return state
    raise AssertionError(f"no checkpoint of trial {trial_id} after task {task} in {experiment_path}")


@pytest.mark.slow
def test_pbt_copies_the_better_checkpoint_and_trains_on_with_the_perturbed_knob(local_ray, capsys):
    args = tiny_args(local_ray, "exploit", "--space", "ra-schedule", "--scheduler", "pbt", "--tasks", "0|1|2",
                     "--num-samples", "2", "--max-concurrent", "2", "--seed", "3")
    assert sweep.main(args) == 0
    out = capsys.readouterr().out
    plan = SweepPlan.load(str(local_ray / "sweeps"), "exploit")
    experiment = Path(plan.experiment_path)
    rows = trial_rows(experiment)
    assert len(rows) == 2 and all(r[-1]["tasks_done"] == 3 for r in rows.values())
    assert "Its schedule" in out and "task 3: lambda_ra=" in out

    client = MlflowClient(plan.tracking_uri)
    runs = {r.data.tags["trial_id"]: r for r in trial_runs(client, plan.parent_run_id)}
    assert sorted(runs) == sorted(rows)

    # With a population of two, after task 1 the worse trial copies the better one (every boundary has a copy).
    copier = [t for t, run in runs.items() if "pbt.copied_after_task_1" in run.data.tags]
    assert len(copier) == 1
    into = copier[0]
    source = runs[into].data.tags["pbt.copied_after_task_1"]
    assert source in rows and source != into

    # (Not in result.json: on a loaded machine a trial restored again after task 2 was seen to keep only its
    # rows after that restore. MLflow keeps every task; the copy after task 1 is checked there below.)

    # The last copy its final weights went through is the source's checkpoint as it was: its task counter,
    # and its generator's weights exactly (digest of the weights in memory after the copy was loaded).
    copy = json.loads(runs[into].data.tags["pbt.lineage"])[-1]
    task, source = copy["after_task"], copy["from_trial"]
    assert copy["into_trial"] == into and runs[into].data.tags[f"pbt.copied_after_task_{task}"] == source
    source_checkpoint = checkpoint_of(experiment, source, task)
    assert copy["generator_sha256"] == pbt.weights_digest(source_checkpoint["generator"])
    after = next(r for r in rows[into] if r["tasks_done"] == task + 1 and r["resumed_from_task"] == task)

    # It trained the next task with its own perturbed knob, handed in by Tune, not the checkpoint's.
    source_knob = source_checkpoint["config"]["method"]["lambda_ra"]
    assert copy["knobs_before"] == {"lambda_ra": source_knob}
    assert after["config"]["lambda_ra"] == after["knob/lambda_ra"] == copy["knobs_after"]["lambda_ra"]
    assert after["knob/lambda_ra"] != source_knob and 1e-4 <= after["knob/lambda_ra"] <= 1.0
    assert after["pbt/copied"] == 1.0

    # MLflow: knob values per task, the copy marked on the task after it, the params the first values.
    history = {m.step: m.value for m in client.get_metric_history(runs[into].info.run_id, "knob/lambda_ra")}
    assert sorted(history) == [1, 2, 3] and history[task + 1] == after["knob/lambda_ra"]
    copied = {m.step: m.value for m in client.get_metric_history(runs[into].info.run_id, "pbt/copied")}
    assert copied[2] == copied[task + 1] == 1.0
    assert float(runs[into].data.params["method.lambda_ra"]) == history[1]
    assert [m.step for m in client.get_metric_history(runs[into].info.run_id, "avg_acc")] == [1, 2, 3]
    # The schedule of its final weights: the source's tasks up to the copy, then its own with the new knob.
    schedule = json.loads(runs[into].data.tags["pbt.schedule"])
    assert [e["task"] for e in schedule] == [1, 2, 3]
    assert schedule[task - 1] == {"task": task, "trial_id": source, "knobs": {"lambda_ra": source_knob}}
    assert schedule[task] == {"task": task + 1, "trial_id": into, "knobs": {"lambda_ra": after["knob/lambda_ra"]}}
    assert all(run.info.status == "FINISHED" and "stopped_early" not in run.data.tags for run in runs.values())

    # analysis: the schedules, the figure of the winning one, the comparison table (here against itself).
    from analysis.load import load_sweep
    from analysis.schedules import copies, schedule_figure, schedule_vs_constant, schedules

    data = load_sweep(plan.parent_run_id, plan.tracking_uri)
    frame = schedules(data)
    assert set(frame["run_id"]) == {run.info.run_id for run in runs.values()} and set(frame["task"]) == {1, 2, 3}
    assert frame["avg_acc"].notna().all()
    made = copies(data)
    assert list(made["after_task"]) == [1, 2]  # a population of two copies at both boundaries
    assert (made.loc[made["trial_id"] == into, "from_trial"] != into).all()
    assert len(schedule_figure(data).axes) == 1
    table = schedule_vs_constant(data, data)
    assert list(table["search"]) == ["PBT schedule", "best constant"] and table["lambda_ra"][0].count("->") == 2
