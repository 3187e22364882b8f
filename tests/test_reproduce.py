"""``mergan reproduce table1``: every paper method x seeds through a real local sweep, then the Table-1 report."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from mergan_cli.main import main

TINY = ["iterations_per_task=2", "critic_steps=1", "batch_size=8", "g_width=8", "d_width=8", "z_dim=8",
        "eval_samples_per_class=10", "evaluator_epochs=1", "log_every=1", "grid_per_class=2",
        "dgr_solver_iterations=2", "ewc_fisher_samples=8"]


def tiny_args(tmp_path, *extra: str) -> list[str]:
    sets = [arg for item in TINY for arg in ("--set", item)]
    return ["reproduce", "table1", *sets, "--storage-path", str(tmp_path / "sweeps"),
            "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--out", str(tmp_path / "report"),
            "--name", "t1", "--verbose", "0", *extra]


def test_the_paper_scale_is_the_papers_protocol(tmp_path, capsys):
    assert main(["reproduce", "table1", "--scale", "paper", "--dry-run", "--storage-path", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "18 trials (seeds 0, 1, 2), preset paper-mnist, 10 tasks" in out and "0|1|2|3|4|5|6|7|8|9" in out
    # Table 1's JT after 5 tasks: JT trained on the first 5 tasks' classes, one run per seed
    assert "then 3 JT trials on the first 5 tasks (Table 1's 5-task JT)" in out
    assert main(["reproduce", "table1", "--dataset", "svhn", "--data-root", str(tmp_path), "--scale", "paper",
                 "--dry-run", "--storage-path", str(tmp_path)]) == 0
    assert "preset paper-svhn" in capsys.readouterr().out
    assert not (tmp_path / "t1").exists()  # a dry run writes nothing


def test_the_5_task_jt_runs_are_jt_on_the_first_5_tasks_of_the_same_stream(tmp_path):
    import argparse

    from mergan_cli.reproduce import table1_plan

    args = argparse.Namespace(scale="paper", dataset="mnist5k", seeds=2, first_seed=0, iterations=None, data_root=None,
                              sets=[], name="t1", max_concurrent=None, cpus_per_trial=1.0, gpus_per_trial=0.0,
                              storage_path=str(tmp_path), tracking_uri=None, experiment=None, started="now")
    main_plan, jt5 = table1_plan(args), table1_plan(args, jt_reference=True)
    assert jt5.name == "t1-jt5" and jt5.experiment == main_plan.experiment == "table1-mnist5k-paper"
    assert jt5.num_tasks == 5 and main_plan.num_tasks == 10
    assert jt5.fixed["tasks"] == main_plan.fixed["tasks"] and str(jt5.fixed["num_tasks"]) == "5"
    assert jt5.load_space().grid == {"method": ["jt"], "seed": [0, 1]}
    small = argparse.Namespace(**{**vars(args), "scale": "small"})
    from mergan_cli.reproduce import needs_jt_reference

    assert needs_jt_reference(args) and not needs_jt_reference(small)


def test_bad_input_is_refused_before_ray_starts(tmp_path, capsys):
    assert main(["reproduce", "table1", "--dataset", "mnist", "--dry-run", "--storage-path", str(tmp_path)]) == 2
    assert "data_root" in capsys.readouterr().err
    assert main(["reproduce", "table1", "--seeds", "0", "--dry-run", "--storage-path", str(tmp_path)]) == 2
    assert "--seeds 0" in capsys.readouterr().err
    assert main(["reproduce", "table1", "--first-seed", "-1", "--dry-run", "--storage-path", str(tmp_path)]) == 2
    assert "--first-seed -1" in capsys.readouterr().err


def test_first_seed_adds_later_seeds_to_the_same_experiment(tmp_path, capsys):
    assert main(["reproduce", "table1", "--first-seed", "3", "--seeds", "2", "--dry-run",
                 "--storage-path", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "12 trials (seeds 3, 4)" in out and "experiment 'table1-mnist5k-small'" in out


@pytest.mark.slow
def test_table1_runs_every_method_and_seed_and_writes_the_comparison(local_ray, capsys):
    args = tiny_args(local_ray, "--seeds", "2", "--max-concurrent", "2")
    args[args.index("iterations_per_task=2")] = "iterations_per_task=1"
    assert main(args) == 0
    out = capsys.readouterr().out
    client = MlflowClient(f"sqlite:///{local_ray / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("table1-mnist5k-small")
    runs = client.search_runs([experiment.experiment_id], "tags.`mlflow.parentRunId` != ''")
    methods = sorted((r.data.params["method.method"], r.data.params["run.seed"]) for r in runs)
    assert methods == sorted((m, s) for m in ("jt", "sft", "ewc", "dgr", "jtr", "ra") for s in ("0", "1"))
    assert all(r.data.params["data.tasks"] == "0|1|2|3|4" for r in runs)
    for label in ("JT", "SFT", "EWC", "DGR", "MeRGAN-JTR", "MeRGAN-RA"):
        assert f"| {label} " in out  # the Table-1 rows, the paper's numbers beside
    assert "97.66" in out and (local_ray / "report" / "report.html").is_file()

    # A third seed added later lands in the same experiment, and its report reads all three.
    later = tiny_args(local_ray, "--first-seed", "2", "--seeds", "1", "--max-concurrent", "2")
    later[later.index("iterations_per_task=2")] = "iterations_per_task=1"
    later[later.index("t1")] = "t1-seed2"
    assert main(later) == 0
    out = capsys.readouterr().out
    ours = [row for row in out.splitlines() if row.startswith("| ") and " ± " in row]  # Table 1's rows
    assert len(ours) == 6 and all(row.endswith("| 3 |") for row in ours)
