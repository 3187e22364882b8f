"""A sweep's plan is validated before Ray starts: bad spaces, fields, objectives and resources are refused."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
import torch

import sweep
from search_spaces import SpaceError
from trainables.plan import (
    PlanError,
    SweepPlan,
    check_resources,
    concurrent_trials,
    make_plan,
    parse_objective,
)

REPO = Path(__file__).resolve().parents[1]


def plan(tmp_path, **overrides) -> SweepPlan:
    values = {"space": "ra-lambda", "storage_path": str(tmp_path / "sweeps"),
                  "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "name": "p"}
    return make_plan(**{**values, **overrides})


def test_the_main_job_plan_is_a_small_methods_search_on_the_embedded_digits(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert sweep.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "space: methods (optuna)" in out and "trials: 6, at most 2 at once, 1 CPU and 0 GPU" in out
    assert '"iterations_per_task": 300' in out and '"tasks": "0|1|2"' in out and "3 tasks" in out
    assert "sampler TPE, seed 0" in out and f"{tmp_path}/runs/sweeps/methods-" in out
    assert '{"method": "sft"}' in out  # the baselines run first
    assert not ray.is_initialized() and not (tmp_path / "runs").exists()  # a dry run starts and writes nothing


def test_plan_resolves_defaults_under_the_users_values(tmp_path):
    made = plan(tmp_path, sets=["iterations_per_task=50", "lr_d=1e-4"], dataset="mnist5k", tasks="0|1",
                gpus_per_trial=0.25, seed=7)
    assert made.fixed == {"iterations_per_task": "50", "lr_d": "1e-4", "dataset": "mnist5k", "tasks": "0|1"}
    assert made.defaults["seed"] == 7 and made.defaults["device"] == "cuda"
    assert made.num_tasks == 2 and made.num_samples == 6 and made.objective == [("stream_avg_acc", "max")]
    assert made.optuna_storage == f"sqlite:///{tmp_path / 'sweeps' / 'p' / 'optuna.db'}"
    assert made.name_keys == ["lambda_ra"]
    made.save()
    loaded = SweepPlan.load(str(tmp_path / "sweeps"), "p")
    assert loaded == made and json.loads(loaded.to_json())["objective"] == [["stream_avg_acc", "max"]]


def test_objectives_by_name_or_metric_mode_pairs():
    assert parse_objective("multi") == [("stream_avg_acc", "max"), ("forgetting", "min"),
                                        ("train_seconds_total", "min")]
    assert parse_objective("avg_acc:max,acc_task_1:max") == [("avg_acc", "max"), ("acc_task_1", "max")]
    with pytest.raises(PlanError, match="unknown metric 'accuracy'"):
        parse_objective("accuracy:max")
    with pytest.raises(PlanError, match="has no mode min or max"):
        parse_objective("avg_acc")


@pytest.mark.parametrize("overrides,error,message", [
    ({"space": "nope"}, SpaceError, "unknown search space 'nope'"),
    ({"sets": ["lamda_ra=1"]}, PlanError, "unknown config field 'lamda_ra'"),
    ({"sets": ["lambda_ra=1e-3"]}, PlanError, "searches 'lambda_ra', so it cannot also be fixed"),
    ({"sets": ["out_dir=/tmp/x"]}, PlanError, "set by the sweep itself"),
    ({"sets": ["eval_when=final"]}, PlanError, "evaluates every task"),
    ({"space": "ablation", "tasks": "0"}, PlanError, "protects earlier tasks, but the stream has 1 task"),
    ({"sets": ["lr_g=-1"]}, PlanError, "refuses .*optim.lr_g: -1.0 must be > 0"),
    ({"scheduler": "hyperband"}, PlanError, "allowed: asha"),
    ({"grace_period": 1}, PlanError, "at least 2 tasks"),
    ({"cpus_per_trial": 0}, PlanError, "--cpus-per-trial 0: allowed: > 0"),
    ({"gpus_per_trial": 1.5}, PlanError, "a fraction in \\(0, 1\\)"),
    ({"preset": "tiny"}, PlanError, "--preset 'tiny': unknown"),
    ({"name": "a b"}, PlanError, "--name 'a b'"),
])
def test_bad_settings_are_refused_with_the_flag_and_what_is_allowed(tmp_path, overrides, error, message):
    with pytest.raises(error, match=message):
        plan(tmp_path, **overrides)


def test_a_grid_sweep_without_a_scheduler_may_evaluate_only_at_the_end(tmp_path):
    made = plan(tmp_path, space="ablation", sets=["eval_when=final"])
    assert made.space_kind == "grid" and made.num_samples == 1 and made.optuna_storage is None


def test_a_wrong_parameter_behind_a_condition_is_found_before_the_sweep(tmp_path):
    path = tmp_path / "space.py"
    path.write_text('def space(trial):\n    """Q?"""\n'
                    '    if trial.suggest_categorical("method", ["sft", "ra"]) == "ra":\n'
                    '        trial.suggest_float("lamda_ra", 1e-4, 1e-1, log=True)\n')
    with pytest.raises(SpaceError, match="parameter 'lamda_ra' is not a field of the trainer's config"):
        plan(tmp_path, space=str(path))
    path.write_text('def space(trial):\n    """Q?"""\n    trial.suggest_int("batch_size", 0, 8)\n')
    with pytest.raises(SpaceError, match="refuses the sampled configuration .*optim.batch_size: 0 must be > 0"):
        plan(tmp_path, space=str(path))


def test_resource_requests_no_node_can_hold_are_refused():
    made = SweepPlan.__new__(SweepPlan)
    made.cpus_per_trial, made.gpus_per_trial = 1.0, 0.5
    nodes = [{"CPU": 4.0}, {"CPU": 2.0, "GPU": 1.0}]
    check_resources(made, nodes, "the cluster")
    assert concurrent_trials(made, nodes) == 2  # two half-GPU trials share the one card
    made.gpus_per_trial = 2.0
    with pytest.raises(PlanError, match="--gpus-per-trial 2: the cluster has no node with that many GPUs .*most on "
                                        "one node: 1"):
        check_resources(made, nodes, "the cluster")
    made.cpus_per_trial, made.gpus_per_trial = 3.0, 1.0
    with pytest.raises(PlanError, match="no node of the cluster has both at once"):
        check_resources(made, nodes, "the cluster")
    made.cpus_per_trial, made.gpus_per_trial = 8.0, 0.0
    with pytest.raises(PlanError, match="--cpus-per-trial 8: the cluster has no node with that many CPUs .*: 4"):
        check_resources(made, nodes, "the cluster")


@pytest.mark.parametrize("args,message", [
    (["--space", "nope"], "unknown search space 'nope'"),
    (["--space", "ra-lambda", "--set", "lambda_foo=1"], "unknown config field 'lambda_foo'"),
    (["--cpus-per-trial", "999"], "--cpus-per-trial 999: this machine has no node with that many CPUs"),
    (["--gpus-per-trial", str(torch.cuda.device_count() + 1)], "this machine has no node with that many GPUs"),
    # The dataset's classes are known without reading an image (an image folder's: its sub-folders).
    (["--tasks", "0|11", "--dry-run"],
     "--tasks/--set: data.tasks: class 11 is not in dataset 'mnist5k'; allowed: 0..9 "),
    (["--dataset", "lsun", "--set", "data_root=.", "--tasks", "0|4", "--dry-run"],
     "data.tasks: class 4 is not in dataset 'lsun'; allowed: 0..3 (0=bedroom, 1=kitchen, 2=church_outdoor, 3=tower)"),
    (["--dataset", "folder", "--set", "data_root=classes", "--tasks", "0|2"],
     "data.tasks: class 2 is not in dataset 'folder'; allowed: 0..1 (0=cats, 1=dogs)"),
])
def test_sweep_refuses_bad_input_before_ray_starts(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for name in ("cats", "dogs"):  # an image folder's classes (its images are never read by the plan)
        (tmp_path / "classes" / name).mkdir(parents=True)
    assert sweep.main([*args, "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert message in line
    assert not ray.is_initialized()
    assert not (tmp_path / "m.db").exists()  # nothing was written either


@pytest.mark.parametrize("args,message", [
    (["--num-samples", "0"], "--num-samples 0: allowed: >= 1"),  # not the main job's 6
    (["--space", "ra-lambda", "--num-samples", "0"], "--num-samples 0: allowed: >= 1"),
    (["--max-concurrent", "0"], "--max-concurrent 0: allowed: >= 1"),  # not "as many as fit"
])
def test_zero_is_a_value_the_plan_checks_not_a_request_for_the_default(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert sweep.main([*args, "--dry-run"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--space", "--name", "--storage-path", "--experiment", "--tracking-uri"])
def test_an_empty_value_is_refused_not_taken_for_the_default(tmp_path, capsys, monkeypatch, flag):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        sweep.main([flag, "", "--dry-run"])
    assert stopped.value.code == 2
    assert f"{flag}: empty; give a value, or leave the flag out for the default" in capsys.readouterr().err


def test_make_plan_refuses_empty_names_and_folders(tmp_path):
    with pytest.raises(PlanError, match="--storage-path: empty"):
        plan(tmp_path, storage_path="")
    with pytest.raises(PlanError, match="--name ''"):
        plan(tmp_path, name="")


@pytest.mark.parametrize("where", ["--address", "RAY_ADDRESS"])
def test_an_address_where_no_ray_answers_is_refused_in_seconds(tmp_path, where):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    args = [sys.executable, str(REPO / "sweep.py"), "--space", "ra-lambda", "--tracking-uri",
            f"sqlite:///{tmp_path / 'm.db'}", "--storage-path", str(tmp_path / "sweeps")]
    if where == "--address":
        args += ["--address", address]
    else:
        env["RAY_ADDRESS"] = address
    started = time.monotonic()
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"{where} {address}: no Ray cluster answers at {address}" in done.stderr
    assert "start one with `ray start --head`" in done.stderr
    assert ("leave out --address" if where == "--address" else "unset RAY_ADDRESS") in done.stderr
    assert time.monotonic() - started < 60  # Python's start-up and imports included


def test_a_second_sweep_of_the_same_name_is_refused_and_resume_names_what_exists(tmp_path, capsys):
    plan(tmp_path).save()
    common = ["--storage-path", str(tmp_path / "sweeps"), "--name", "p", "--dry-run"]
    assert sweep.main(["--space", "ra-lambda", *common]) == 2
    assert "continue it with --resume --name p" in capsys.readouterr().err
    assert sweep.main(["--resume", "--storage-path", str(tmp_path / "sweeps"), "--name", "q", "--dry-run"]) == 2
    assert "no sweep named 'q'" in capsys.readouterr().err
    assert sweep.main(["--resume", "--storage-path", str(tmp_path / "sweeps"), "--dry-run"]) == 0
    assert "sweep p:" in capsys.readouterr().out  # the latest sweep when no --name is given


def test_the_table_and_the_best_trial_by_one_objective_or_a_pareto_front(tmp_path):
    from trainables.results import TrialRow, best_rows, format_table

    rows = [TrialRow("a", "finished", {"method": "sft"}, {"avg_acc": 0.4, "forgetting": 0.6, "stream_avg_acc": 0.4,
                                                         "train_seconds_total": 50.0, "tasks_done": 3, "num_tasks": 3}),
            TrialRow("b", "finished", {"method": "ra", "lambda_ra": 0.01},
                     {"avg_acc": 0.8, "forgetting": 0.1, "stream_avg_acc": 0.8, "train_seconds_total": 70.0,
                      "tasks_done": 3, "num_tasks": 3}),
            TrialRow("c", "diverged", {"method": "ra", "lambda_ra": 1.0},
                     {"stream_avg_acc": 0.9, "forgetting": 0.0, "train_seconds_total": 1.0, "tasks_done": 1,
                      "num_tasks": 3}, error="training diverged: loss_g became nan")]
    single = plan(tmp_path)
    assert [r.trial_id for r in best_rows(rows, single)] == ["b"]  # a diverged trial is never the best
    multi = plan(tmp_path, objective="multi")
    assert [r.trial_id for r in best_rows(rows, multi)] == ["a", "b"]  # a is faster, b more accurate
    table = format_table(rows, single).splitlines()
    assert table[0].split() == ["trial", "status", "tasks", "method", "lambda_ra", "avg_acc", "forgetting",
                                "stream_avg_acc", "train_s", "total_s", "name"]
    assert table[3].split()[:5] == ["b", "finished", "3/3", "ra", "0.01"]
    assert table[-1] == "c: diverged: training diverged: loss_g became nan"
