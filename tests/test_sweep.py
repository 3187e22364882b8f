"""sweep.py on a local Ray (started once for the module): trials reach Tune, the Optuna study and MLflow.

Trials are tiny (two steps per task, 8-channel nets): these tests check the platform, not the GANs.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

import sweep
from tests.support.sweeps import TINY_SETS
from tracking.sweep_run import trial_runs
from trainables.plan import SweepPlan, make_plan
from trainables.tuner import build_searcher, optuna_sampler

DIVERGING_SPACE = '''
def space(trial):
    """Does a sweep survive a trial whose generator learning rate makes it diverge?"""
    trial.suggest_float("lambda_ra", 1e-3, 1e-1, log=True)
    trial.suggest_categorical("lr_g", [2e-4, 1e30])
    return {"method": "ra"}


points_to_evaluate = [{"lr_g": 2e-4}, {"lr_g": 1e30}, {"lr_g": 2e-4}]
'''


def tiny_args(tmp_path, name: str, *extra: str) -> list[str]:
    sets = [arg for item in TINY_SETS for arg in ("--set", item)]
    return [*sets, "--storage-path", str(tmp_path / "sweeps"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
            "--experiment", "sweeps", "--name", name, "--verbose", "0", *extra]


def children(client: MlflowClient, parent_run_id: str) -> dict[str, object]:
    runs = trial_runs(client, parent_run_id)
    return {run.data.tags["trial_id"]: run for run in runs}


@pytest.mark.slow
def test_a_local_sweep_reports_every_trial_to_tune_optuna_and_mlflow(local_ray, capsys):
    space = local_ray / "diverging_space.py"
    space.write_text(DIVERGING_SPACE)
    args = tiny_args(local_ray, "local", "--space", str(space), "--tasks", "0|1", "--num-samples", "3",
                     "--max-concurrent", "2", "--seed", "5")
    assert sweep.main(args) == 0
    out = capsys.readouterr().out
    plan = SweepPlan.load(str(local_ray / "sweeps"), "local")
    assert plan.defaults["seed"] == 5 and plan.parent_run_id

    # The table: every trial, the diverged one with its reason, the best, and where MLflow is.
    table = out[out.index("trial  "):out.index("Best:")]
    assert table.count(" finished ") == 2 and table.count(" diverged ") == 1
    assert "training diverged" in table
    assert f"mlflow ui --backend-store-uri sqlite:///{local_ray / 'mlflow.db'}" in out
    assert "experiment 'sweeps'" in out and f"optuna-dashboard {plan.optuna_storage}" in out

    # Optuna received the objective of each finished trial; the diverged one is FAILED, not scored.
    study = optuna.load_study(study_name="local", storage=plan.optuna_storage)
    states = sorted(t.state.name for t in study.trials)
    assert states == ["COMPLETE", "COMPLETE", "FAIL"]
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert all(t.params["lr_g"] == 2e-4 and 0.0 <= t.value <= 1.0 for t in complete)
    assert study.best_trial.intermediate_values.keys() == {1, 2}  # reported after every task

    # MLflow: one child run per Tune trial, keyed by the trial id, each task's metrics once.
    client = MlflowClient(plan.tracking_uri)
    runs = children(client, plan.parent_run_id)
    best_line = out[out.index("Best:"):].splitlines()[0]
    assert len(runs) == 3 and any(best_line.startswith(f"Best: {trial_id} ") for trial_id in runs)
    statuses = sorted(run.info.status for run in runs.values())
    assert statuses == ["FAILED", "FINISHED", "FINISHED"]
    for run in runs.values():
        if run.info.status == "FINISHED":
            assert [m.step for m in client.get_metric_history(run.info.run_id, "avg_acc")] == [1, 2]
        else:
            assert run.data.tags["diverged"] == "1" and "diverged" in run.data.tags["divergence"]
    parent = client.get_run(plan.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["best_trial_id"] in runs
    assert parent.data.metrics["best.stream_avg_acc"] == pytest.approx(max(t.value for t in complete))


@pytest.mark.slow
def test_a_multi_objective_sweep_with_asha_never_stops_a_trial_before_two_tasks(local_ray, capsys):
    # ASHA ranks by the first objective. Training time makes its decisions certain with trials this tiny (their
    # accuracies tie): trials in reused workers run faster, so with "max" they fall below the cutoff at task 2.
    args = tiny_args(local_ray, "multi", "--space", "ra-lambda", "--tasks", "0|1|2", "--num-samples", "4",
                     "--objective", "train_seconds_total:max,forgetting:min", "--scheduler", "asha")
    assert sweep.main(args) == 0
    out = capsys.readouterr().out
    assert "Pareto front (train_seconds_total max, forgetting min):" in out
    plan = SweepPlan.load(str(local_ray / "sweeps"), "multi")
    assert isinstance(optuna_sampler(plan), optuna.samplers.NSGAIISampler)
    study = optuna.load_study(study_name="multi", storage=plan.optuna_storage)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert len(study.trials) == 4 and all(t.state.name == "COMPLETE" and len(t.values) == 2 for t in study.trials)

    client = MlflowClient(plan.tracking_uri)
    runs = children(client, plan.parent_run_id)
    history = {trial_id: [m.step for m in client.get_metric_history(run.info.run_id, "avg_acc")]
               for trial_id, run in runs.items()}
    assert len(runs) == 4 and min(map(len, history.values())) == 2  # the grace period: two tasks at least
    assert [3] in [h[2:] for h in history.values()] and [] in [h[2:] for h in history.values()]  # some stopped
    assert " stopped early " in out
    for trial_id, run in runs.items():
        assert run.info.status == "FINISHED"  # an early stop is not a failure
        assert (run.data.tags.get("stopped_early") == "1") == (history[trial_id] == [1, 2])


@pytest.mark.slow
def test_a_trial_whose_configuration_cannot_run_is_reported_once_and_never_retried(local_ray, capsys):
    # An image folder the driver cannot see may exist on a cluster's workers, so the plan lets it through;
    # here it exists nowhere, and every attempt would fail the same way.
    missing = local_ray / "no_such_images"
    args = tiny_args(local_ray, "refused", "--space", "ra-lambda", "--dataset", "folder", "--set",
                     f"data_root={missing}", "--tasks", "0|1", "--num-samples", "1", "--max-failures", "2")
    assert sweep.main(args) == 1
    out = capsys.readouterr().out
    table = out[out.index("trial  "):]
    assert table.count(" error ") == 1 and f"folder dataset: the folder does not exist (looked at {missing})" in table
    plan = SweepPlan.load(str(local_ray / "sweeps"), "refused")
    assert not list(Path(plan.experiment_path).rglob("error.txt"))  # Tune saw no failure: nothing retried
    study = optuna.load_study(study_name="refused", storage=plan.optuna_storage)
    assert [t.state.name for t in study.trials] == ["FAIL"]


def test_a_searcher_restored_from_before_a_trial_finished_accepts_its_results_again(tmp_path):
    # The driver died after trial t1 finished (the study holds it COMPLETE) but before Tune saved its state:
    # the resumed sweep re-runs t1's last task from an older checkpoint and reports it again.
    plan = make_plan(space="ra-lambda", storage_path=str(tmp_path / "sweeps"), name="race",
                     tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    live = build_searcher(plan, plan.load_space())
    live.suggest("t1")
    live.save(str(tmp_path / "searcher.pkl"))  # Tune's last saved state
    result = {"stream_avg_acc": 0.5, "training_iteration": 2, "tasks_done": 2}
    live.on_trial_result("t1", result)
    live.on_trial_complete("t1", result)
    restored = build_searcher(plan, plan.load_space())
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.on_trial_result("t1", {**result, "training_iteration": 3})  # no UpdateFinishedTrialError
    restored.on_trial_complete("t1", result)
    study = optuna.load_study(study_name="race", storage=plan.optuna_storage)
    assert [(t.state.name, t.value) for t in study.trials] == [("COMPLETE", 0.5)]


def test_a_multi_objective_searcher_saves_and_restores_with_its_sampler(tmp_path):
    # Tune pickles the searcher to resume a sweep; Optuna 5.1's NSGA-II holds a thread lock that cannot be
    # pickled. The restored searcher must go on suggesting in the same study.
    plan = make_plan(space="ra-lambda", storage_path=str(tmp_path / "sweeps"), name="pareto", num_samples=8,
                     objective="avg_acc:max,forgetting:min", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    live = build_searcher(plan, plan.load_space())
    assert live.suggest("t1")["lambda_ra"] > 0
    live.save(str(tmp_path / "searcher.pkl"))
    restored = build_searcher(plan, plan.load_space())
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.suggest("t2")["lambda_ra"] > 0
    restored.on_trial_complete("t1", {"avg_acc": 0.5, "forgetting": 0.1})
    study = optuna.load_study(study_name="pareto", storage=plan.optuna_storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "RUNNING"]
