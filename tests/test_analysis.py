"""Analysis against small real MLflow stores: loading, tables beside the paper, figures, `mergan report`,
both notebooks, an Optuna study, bad input, and one real ``mlflow server``.

Every expected number is read back from MLflow with ``MlflowClient.get_metric_history``, never from the
code under test. Runs are written in tracking.py's schema by ``test_analysis_store.write_run`` (one by
the real ``MLflowCallback``), with artifacts under the tmp folder.
"""

from __future__ import annotations

import html
import math
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient
from nbclient import NotebookClient

from analysis import figures
from analysis.aggregate import best_configs, select_best
from analysis.errors import (
    ExperimentNotFoundError,
    MixedDatasetsError,
    NoRunsError,
    NoTaskMetricsError,
    NothingToPlotError,
    TrackingStoreNotFoundError,
)
from analysis.load import load_experiment, load_optuna_study, load_run_folders, load_sweep
from analysis.paper import TABLE1, TABLE2
from analysis.report import build_report
from analysis.tables import results_table
from mergan.settings import value_text
from tests.support.blocked_imports import attempted, without_packages
from tests.support.mlflow_process import start_mlflow_server
from tests.support.mlflow_stores import (
    empty_store,
    log_with_real_logger,
    make_config,
    method_accuracy,
    write_run,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "analysis" / "notebooks"
PAPER_MD = ROOT.parent / "shared" / "PAPER.md"  # the project's shared notes sit beside the checkout
RA_LAMBDAS = (1e-3, 1e-2)
ORDER_SEEDS = (0, 1, 2)


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")


@dataclass
class Store:
    root: Path
    uri: str
    client: MlflowClient
    sweep_run: str
    optuna_storage: str

    def history(self, run_id: str, key: str) -> dict[int, float]:
        return {m.step: m.value for m in self.client.get_metric_history(run_id, key)}

    def runs(self, experiment: str) -> list:
        experiment_id = self.client.get_experiment_by_name(experiment).experiment_id
        return self.client.search_runs([experiment_id])


def ra_accuracy(seed: int, lambda_ra: float):
    """RA runs: the larger lambda_RA is a little worse, so the best configuration is lambda_RA=1e-3."""
    base = method_accuracy("ra", seed)
    return lambda i, j: round(base(i, j) - (0.02 if lambda_ra > 1e-3 else 0.0), 6)


def build_multi_objective_study(storage: str, name: str = "ra-sweep") -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, study_name=name, directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.set_metric_names(["avg_acc", "fid_classifier"])

    def objective(trial):
        lam = trial.suggest_float("lambda_ra", 1e-4, 1e-1, log=True)
        size = trial.suggest_int("replay_size_per_class", 10, 1000, log=True)
        noise = trial.suggest_float("lr_g", 1e-5, 1e-3, log=True)
        accuracy = 0.9 - 0.05 * abs(np.log10(lam) + 3) + 0.01 * np.log10(size) + 0.001 * np.log10(noise)
        return accuracy, 30.0 + 10 * abs(np.log10(lam) + 2) - 2 * np.log10(size)

    study.optimize(objective, n_trials=16)
    return study


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    from tracking.sweep_run import finish_sweep_run, start_sweep_run

    root = tmp_path_factory.mktemp("analysis_store")
    uri = empty_store(root / "mlflow.db")
    client = MlflowClient(uri)

    def experiment(name: str) -> str:
        return client.create_experiment(name, artifact_location=(root / "artifacts" / name).as_uri())

    def out(*parts) -> Path:
        return root.joinpath("runs", *map(str, parts))

    # The main comparison: 4 methods x 2 seeds x 3 tasks, RA at two lambdas, one JTR seed by the real logger.
    main = experiment("cl")
    for method in ("sft", "ewc", "jtr"):
        for seed in (0, 1):
            write_run(client, main, make_config(method, seed, 3, out("cl", method, seed)),
                      method_accuracy(method, seed))
    for lambda_ra in RA_LAMBDAS:
        for seed in (0, 1):
            config = make_config("ra", seed, 3, out("cl", "ra", lambda_ra, seed), lambda_ra=lambda_ra)
            write_run(client, main, config, ra_accuracy(seed, lambda_ra))
    log_with_real_logger(uri, "cl", make_config("jtr", 2, 3, out("cl", "jtr-real")), method_accuracy("jtr", 2))

    # SVHN, 6 tasks (so "after 5 tasks" exists); one SFT run logged per-task accuracies only.
    long = experiment("svhn-long")
    for method in ("jt", "ra"):
        for seed in (0, 1):
            write_run(client, long, make_config(method, seed, 6, out("long", method, seed), dataset="svhn"),
                      method_accuracy(method, seed), artifacts=False)
    write_run(client, long, make_config("sft", 0, 6, out("long", "sft"), dataset="svhn"), method_accuracy("sft", 0),
              artifacts=False, keep_metric=lambda key: key.startswith("acc_task_"))

    lsun = experiment("lsun")
    for method in ("sft", "ra"):
        for seed in (0, 1):
            extra = (lambda t, m=method, s=seed: {"reverse_acc": 0.3 + 0.1 * t + 0.01 * s + (0.1 if m == "ra" else 0),
                                                  "fid_inception": 100.0 - 10 * t - s - (30 if m == "ra" else 0)})
            write_run(client, lsun, make_config(method, seed, 4, out("lsun", method, seed), dataset="lsun"),
                      method_accuracy(method, seed), artifacts=False, extra_metrics=extra)

    # Two methods over random class orders 0..2 x seeds 0, 1 (the orders space); ER is not in the paper.
    orders = experiment("orders")
    for method in ("ra", "er"):
        for order in ORDER_SEEDS:
            for seed in (0, 1):
                base = method_accuracy(method, seed)
                config = make_config(method, seed, 3, out("orders", method, order, seed), task_order="random",
                                     order_seed=order)
                write_run(client, orders, config, lambda i, j, b=base, o=order: round(b(i, j) - 0.03 * o, 6),
                          artifacts=False)

    mixed = experiment("mixed")
    for dataset in ("mnist5k", "svhn"):
        write_run(client, mixed, make_config("sft", 0, 2, out("mixed", dataset), dataset=dataset),
                  method_accuracy("sft", 0), artifacts=False)

    bare = experiment("no-task-metrics")
    for seed in (0, 1):
        write_run(client, bare, make_config("sft", seed, 2, out("bare", seed)), method_accuracy("sft", seed),
                  artifacts=False, task_metrics=False)
    experiment("empty")

    # A sweep over lambda_RA (parent run by the real tracking code) beside a run that is not its trial.
    optuna_storage = f"sqlite:///{root / 'optuna.db'}"
    build_multi_objective_study(optuna_storage)
    sweep = experiment("sweep")
    # As trainables/sweep_mlflow.py records it: the storage in the settings, the study named after the sweep.
    parent = start_sweep_run(uri, "sweep", "ra-sweep", space={"lambda_ra": "loguniform(1e-4, 1e-1)"},
                             settings={"objective": "avg_acc:max,fid_classifier:min", "optuna_storage": optuna_storage,
                                       "scheduler": None})
    for index, lambda_ra in enumerate((*RA_LAMBDAS, 1e-1)):
        config = make_config("ra", 0, 3, out("sweep", index), lambda_ra=lambda_ra)
        write_run(client, sweep, config, ra_accuracy(0, lambda_ra), parent_run_id=parent, sweep_id="ra-sweep",
                  trial_id=f"trial_{index}")
    write_run(client, sweep, make_config("sft", 0, 3, out("sweep", "outside")), method_accuracy("sft", 0))
    finish_sweep_run(uri, parent, best={"metrics": {"avg_acc": 0.9}, "config": {"lambda_ra": 1e-3},
                                        "trial_id": "trial_0"})
    return Store(root=root, uri=uri, client=client, sweep_run=parent, optuna_storage=optuna_storage)


# -- task orders and methods not in the paper ---------------------------------------------------------
def test_the_spread_over_task_orders_is_shown_beside_the_spread_over_seeds(store, tmp_path):
    from analysis.aggregate import order_spread
    from analysis.tables import ORDERS_CAPTION, orders_table

    data = load_experiment("orders", store.uri)
    assert set(data.runs["order"]) == {"random 0", "random 1", "random 2"} and set(data.runs["config"]) == {""}
    final = {}  # (method, order, seed) -> final avg_acc, read back from MLflow
    for run in store.runs("orders"):
        params = run.data.params
        key = (params["method.method"], int(params["data.order_seed"]), int(params["run.seed"]))
        final[key] = store.history(run.info.run_id, "avg_acc")[3]
    spread = order_spread(data).set_index("method")
    for method in ("ra", "er"):
        by_order = [[final[(method, o, s)] for s in (0, 1)] for o in ORDER_SEEDS]
        pooled = math.sqrt(statistics.mean(statistics.variance(values) for values in by_order))
        row = spread.loc[method]
        assert (row["orders"], row["seeds"], row["runs"]) == (3, 2, 6)
        assert row["std_seeds"] == pytest.approx(pooled)
        assert row["std_orders"] == pytest.approx(statistics.stdev(statistics.mean(v) for v in by_order))
        assert row["mean"] == pytest.approx(statistics.mean(v for values in by_order for v in values))
    table = orders_table(data)
    assert list(table.columns) == ["Orders", "Seeds per order", "Mean", "Std over seeds", "Std over orders"]
    assert table.loc["MeRGAN-RA", "Std over orders"] == f"{spread.loc['ra', 'std_orders'] * 100:.2f}"
    report = build_report("orders", store.uri, tmp_path / "report")
    assert "Std over orders" in (tmp_path / "report" / "tables" / "orders.md").read_text()
    page = report.html_path.read_text()
    assert html.escape(ORDERS_CAPTION) in page and "Std over orders" in page
    assert orders_table(load_experiment("cl", store.uri)) is None  # one order: nothing to show


def test_table1_marks_the_methods_the_paper_does_not_have(store):
    table = results_table(load_experiment("orders", store.uri))
    rows = list(table.display().index)
    assert rows == ["MeRGAN-RA", "ER*"]
    assert "* not in the paper" in table.caption and "seeds and task orders" in table.caption
    assert table.display().loc["ER*", "Paper (5 tasks)"] == "–"
    assert "not in the paper" not in results_table(load_experiment("cl", store.uri)).caption


# -- loading --------------------------------------------------------------------------------
def test_loaded_frames_hold_every_run_config_and_accuracy_matrix(store):
    data = load_experiment("cl", store.uri)
    mlflow_runs = store.runs("cl")
    assert sorted(data.runs["run_id"]) == sorted(r.info.run_id for r in mlflow_runs)
    assert data.methods == ["ewc", "jtr", "ra", "sft"] or set(data.methods) == {"sft", "ewc", "jtr", "ra"}
    assert data.datasets == ["mnist5k"] and data.num_tasks == 3

    runs = data.runs.set_index("run_id")
    for run in mlflow_runs:
        run_id, params = run.info.run_id, run.data.params
        row = runs.loc[run_id]
        assert row["method"] == params["method.method"] and row["seed"] == int(params["run.seed"])
        assert row["method.lambda_ra"] == pytest.approx(float(params["method.lambda_ra"]))
        assert row["tasks_done"] == 3 and row["avg_acc"] == pytest.approx(run.data.metrics["avg_acc"])
        expected_config = f"lambda_ra={value_text(float(params['method.lambda_ra']))}" if row["method"] == "ra" else ""
        assert row["config"] == expected_config
        # Each run's accuracy matrix is one filter away, and equals MLflow's acc_task_j histories.
        matrix = data.matrix(run_id)
        assert matrix.shape == (3, 3)
        for j in range(1, 4):
            for i, value in store.history(run_id, f"acc_task_{j}").items():
                assert matrix[i - 1, j - 1] == pytest.approx(value)
        assert np.isnan(matrix[0, 1]) and np.isnan(matrix[0, 2]) and np.isnan(matrix[1, 2])
        one = data.accuracy[data.accuracy["run_id"] == run_id]
        assert len(one) == 6 and set(one["method"]) == {row["method"]}
        steps = data.task_metrics[data.task_metrics["run_id"] == run_id].set_index("after_task")
        for key in ("avg_acc", "bwt", "forgetting", "fid_classifier"):
            assert steps[key].to_dict() == pytest.approx(store.history(run_id, key))

    real = runs[runs["run_name"] == "jtr replay_mode=fresh seed=2"]
    assert len(real) == 1, "the run logged by MLflowCallback loads like the hand-written ones"
    assert data.matrix(real.index[0])[2, 0] == pytest.approx(method_accuracy("jtr", 2)(3, 1))


def test_missing_summaries_are_computed_from_the_matrix_with_mergans_metrics(store):
    from mergan.evaluation.metrics import average_accuracy, average_forgetting, backward_transfer

    data = load_experiment("svhn-long", store.uri)
    run_id = data.runs.loc[data.runs["method"] == "sft", "run_id"].item()
    matrix = data.matrix(run_id)
    rows = [[None if np.isnan(v) else v for v in row] for row in matrix]
    steps = data.task_metrics[data.task_metrics["run_id"] == run_id].set_index("after_task")
    for k in range(1, 7):
        assert steps.at[k, "avg_acc"] == pytest.approx(average_accuracy(rows[:k]))
        assert steps.at[k, "bwt"] == pytest.approx(backward_transfer(rows[:k]))
        assert steps.at[k, "forgetting"] == pytest.approx(average_forgetting(rows[:k]))


def test_a_sweep_loads_only_its_trials(store):
    data = load_sweep(store.sweep_run, store.uri)
    assert data.experiment == "sweep" and len(data.runs) == 3
    assert set(data.runs["trial_id"]) == {"trial_0", "trial_1", "trial_2"}
    assert set(data.runs["parent_run_id"]) == {store.sweep_run}
    assert data.sweep["params"]["optuna_storage"] == store.optuna_storage
    assert data.sweep["name"] == "ra-sweep" and data.sweep["metrics"]["best.avg_acc"] == 0.9
    assert len(load_experiment("sweep", store.uri).runs) == 4, "the parent run is not a row; the outside run is"
    with pytest.raises(ExperimentNotFoundError, match="belongs to experiment 'sweep'"):
        load_experiment("cl", store.uri, sweep_run=store.sweep_run)


# -- tables ---------------------------------------------------------------------------------
def expected_cell(store: Store, run_ids: list[str], key: str, step: int, scale: float = 100.0) -> tuple[float, float]:
    values = [store.history(r, key)[step] * scale for r in run_ids]
    return statistics.mean(values), statistics.stdev(values)


def test_table1_numbers_equal_mlflow_and_sit_beside_the_papers(store):
    data = load_experiment("cl", store.uri)
    table = results_table(data)
    best = best_configs(data).set_index("method")
    assert best.at["ra", "config"] == "lambda_ra=1e-3" and best.at["jtr", "n"] == 3

    cells = table.cells.set_index(["row", "header"])
    markdown, latex = table.to_markdown(), table.to_latex()
    for method, label in {"sft": "SFT", "ewc": "EWC", "jtr": "MeRGAN-JTR", "ra": "MeRGAN-RA (lambda_ra=1e-3)"}.items():
        runs = data.runs[(data.runs["method"] == method) & (data.runs["config"] == best.at[method, "config"])]
        mean, std = expected_cell(store, list(runs["run_id"]), "avg_acc", 3)
        assert cells.at[(label, "Ours (3 tasks)"), "mean"] == pytest.approx(mean)
        assert cells.at[(label, "Ours (3 tasks)"), "std"] == pytest.approx(std)
        paper = TABLE1["MNIST"][5][method]
        assert cells.at[(label, "Paper (5 tasks)"), "mean"] == paper
        line = next(line for line in markdown.splitlines() if line.startswith(f"| {label} |"))
        assert f"{mean:.2f} ± {std:.2f}" in line and f"{paper:.2f}" in line
        assert f"{TABLE1['MNIST'][10][method]:.2f}" in line
        assert f"{mean:.2f} $\\pm$ {std:.2f}" in latex
    assert "MNIST rows" in table.caption and "\\begin{tabular}{lrrrr}" in latex and "lambda\\_ra" in latex
    assert "| JT" not in markdown, "only methods that ran get rows"

    every = results_table(data, select="all")
    assert {"MeRGAN-RA (lambda_ra=1e-3)", "MeRGAN-RA (lambda_ra=0.01)"} <= set(every.cells["row"])


def test_tables_give_the_95_percent_t_interval_over_seeds_and_the_seeds_needed_to_tell_methods_apart(store):
    from scipy import stats

    data = load_experiment("cl", store.uri)
    table = results_table(data)
    cells = table.cells.set_index(["row", "header"])
    markdown = table.to_markdown()
    finals = {}
    for method, label in {"sft": "SFT", "ewc": "EWC", "jtr": "MeRGAN-JTR", "ra": "MeRGAN-RA (lambda_ra=1e-3)"}.items():
        best = best_configs(data).set_index("method")
        runs = data.runs[(data.runs["method"] == method) & (data.runs["config"] == best.at[method, "config"])]
        values = [store.history(r, "avg_acc")[3] * 100 for r in runs["run_id"]]
        mean, std = statistics.mean(values), statistics.stdev(values)
        low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=std / len(values) ** 0.5)
        cell = cells.loc[(label, "Ours (3 tasks)")]
        assert (cell["ci_low"], cell["ci_high"]) == (pytest.approx(low), pytest.approx(high))
        line = next(line for line in markdown.splitlines() if line.startswith(f"| {label} |"))
        assert f"{mean:.2f} ± {std:.2f} [{low:.1f}, {high:.1f}]" in line
        finals[label] = values
    assert "95% t-interval of the mean" in table.caption

    # Each method against the best (RA here), at the spread measured over their seeds.
    separation = table.separation().set_index("row")
    assert set(separation["best_row"]) == {"MeRGAN-RA (lambda_ra=1e-3)"}
    ra = finals["MeRGAN-RA (lambda_ra=1e-3)"]
    for label in ("SFT", "EWC", "MeRGAN-JTR"):
        ours = finals[label]
        pooled = (((len(ours) - 1) * statistics.variance(ours) + (len(ra) - 1) * statistics.variance(ra))
                  / (len(ours) + len(ra) - 2)) ** 0.5
        row = separation.loc[label]
        assert row["difference"] == pytest.approx(statistics.mean(ours) - statistics.mean(ra))
        assert row["spread"] == pytest.approx(pooled) and row["n"] == len(ours)
        assert row["seeds_needed"] >= 2
    assert "Seeds needed" in markdown and "two-sided t-test at the 5% level and 80% power" in markdown
    assert "Seeds needed" in table.to_html()


def test_seeds_to_separate_gives_the_textbook_sample_sizes_and_the_power_it_promises():
    from scipy import stats

    from analysis.aggregate import seeds_to_separate

    # Cohen's table for a two-sided two-sample t-test at 5% with 80% power: d = 0.5, 0.8, 1.0 -> 64, 26, 17 per group.
    assert [seeds_to_separate(d, 1.0) for d in (0.5, 0.8, 1.0)] == [64, 26, 17]
    assert seeds_to_separate(-3.0, 2.0) == seeds_to_separate(3.0, 2.0), "the sign of a difference does not matter"
    assert seeds_to_separate(0.0, 1.0) is None and seeds_to_separate(1e-4, 1.0) is None
    assert seeds_to_separate(float("nan"), 1.0) is None and seeds_to_separate(1.0, 0.0) == 2

    # Simulated experiments: with the seeds it asks for the test finds the difference in >= 80% of them; with one
    # seed fewer, in fewer.
    rng = np.random.default_rng(0)
    difference, spread = 6.0, 4.0
    needed = seeds_to_separate(difference, spread)

    def power(seeds: int) -> float:
        a = rng.normal(0.0, spread, size=(20000, seeds))
        b = rng.normal(difference, spread, size=(20000, seeds))
        return float((stats.ttest_ind(a, b, axis=1).pvalue < 0.05).mean())

    assert power(needed) >= 0.79 and power(needed - 1) < 0.80


def test_table1_after_5_and_T_tasks_for_svhn(store):
    data = load_experiment("svhn-long", store.uri)
    table = results_table(data)
    assert list(table.display().columns) == ["Ours (5 tasks)", "Paper (5 tasks)", "Ours (6 tasks)",
                                             "Paper (10 tasks)", "Seeds"]
    cells = table.cells.set_index(["row", "header"])
    jt = list(data.runs.loc[data.runs["method"] == "jt", "run_id"])
    for k in (5, 6):
        mean, std = expected_cell(store, jt, "avg_acc", k)
        assert cells.at[("JT", f"Ours ({k} tasks)"), "mean"] == pytest.approx(mean)
        assert cells.at[("JT", f"Ours ({k} tasks)"), "std"] == pytest.approx(std)
    assert cells.at[("MeRGAN-RA", "Paper (5 tasks)"), "mean"] == TABLE1["SVHN"][5]["ra"]
    sft = table.display().loc["SFT"]
    assert sft["Seeds"] == "1" and "±" not in sft["Ours (6 tasks)"], "one seed: no spread shown"


def test_table1_jt_after_5_tasks_is_a_jt_model_of_the_first_5_tasks(tmp_path):
    """The paper's 5-task JT is a joint model of the first 5 tasks' classes (joint.py scores its final
    model), not row 5 of a longer JT run: JT runs on the first 5 tasks fill that cell, and only that cell."""
    from analysis.aggregate import split_joint_references

    uri = empty_store(tmp_path / "mlflow.db")
    client = MlflowClient(uri)
    experiment = client.create_experiment("t1", artifact_location=(tmp_path / "artifacts").as_uri())
    references = []
    for seed in (0, 1):
        for method in ("jt", "ra"):
            write_run(client, experiment, make_config(method, seed, 6, tmp_path / method / str(seed), dataset="svhn"),
                      method_accuracy(method, seed), artifacts=False)
        config = make_config("jt", seed, 6, tmp_path / "jt5" / str(seed), dataset="svhn", **{"data.num_tasks": 5})
        references.append(write_run(client, experiment, config,
                                    lambda i, j, s=seed: round(0.97 - 0.01 * j + 0.004 * s, 6),
                                    num_tasks=5, artifacts=False))
    data = load_experiment("t1", uri)
    store = Store(tmp_path, uri, client, "", "")
    table = results_table(data)
    cells = table.cells.set_index(["row", "header"])
    assert sorted(set(table.cells["row"])) == ["JT", "MeRGAN-RA"], \
        "the 5-task JT runs are no configuration of their own"
    mean, std = expected_cell(store, references, "avg_acc", 5)
    assert cells.at[("JT", "Ours (5 tasks)"), "mean"] == pytest.approx(mean)
    assert cells.at[("JT", "Ours (5 tasks)"), "std"] == pytest.approx(std)
    full = list(data.runs.loc[(data.runs["method"] == "jt") & ~data.runs["run_id"].isin(references), "run_id"])
    mean, std = expected_cell(store, full, "avg_acc", 6)
    assert cells.at[("JT", "Ours (6 tasks)"), "mean"] == pytest.approx(mean)
    ra = list(data.runs.loc[data.runs["method"] == "ra", "run_id"])
    assert cells.at[("MeRGAN-RA", "Ours (5 tasks)"), "mean"] == pytest.approx(expected_cell(store, ra, "avg_acc", 5)[0])
    assert "JT after 5 tasks: JT runs trained on the first 5 tasks' classes only" in table.caption
    main, joint = split_joint_references(data)
    assert sorted(joint.runs["run_id"]) == sorted(references) and not set(references) & set(main.runs["run_id"])

    without = data.subset(full + ra)
    note = results_table(without).caption
    assert "JT after 5 tasks: row 5 of its 6-task run" in note


def test_table2_for_lsun(store):
    data = load_experiment("lsun", store.uri)
    table = results_table(data)
    assert table.kind == "table2" and "Table 2" in table.caption
    cells = table.cells.set_index(["row", "header"])
    ra = list(data.runs.loc[data.runs["method"] == "ra", "run_id"])
    assert cells.at[("MeRGAN-RA", "Acc. (%) ours"), "mean"] == pytest.approx(expected_cell(store, ra, "avg_acc", 4)[0])
    assert cells.at[("MeRGAN-RA", "Rev. acc. (%) ours"), "mean"] == pytest.approx(
        expected_cell(store, ra, "reverse_acc", 4)[0])
    assert cells.at[("MeRGAN-RA", "FID ours"), "mean"] == pytest.approx(
        expected_cell(store, ra, "fid_inception", 4, scale=1.0)[0])
    assert cells.at[("SFT", "FID paper"), "mean"] == TABLE2["fid_inception"]["sft"]


@pytest.mark.skipif(not PAPER_MD.is_file(), reason="PAPER.md is not on this machine")
def test_paper_numbers_are_those_of_paper_md():
    text = PAPER_MD.read_text()
    methods = ("jt", "sft", "ewc", "dgr", "jtr", "ra")
    for dataset in ("MNIST", "SVHN"):
        for tasks in (5, 10):
            line = re.search(rf"^\| {dataset}, after {tasks} tasks \|(.*)\|$", text, re.MULTILINE).group(1)
            assert [float(v) for v in line.split("|")] == [TABLE1[dataset][tasks][m] for m in methods]
    for metric, label in {"avg_acc": "Acc. (%)", "reverse_acc": "Rev. acc. (%)", "fid_inception": "FID"}.items():
        line = re.search(rf"^\| {re.escape(label)} \|(.*)\|$", text, re.MULTILINE).group(1)
        assert [float(v) for v in line.split("|")] == [TABLE2[metric][m] for m in methods[1:]]


# -- figures --------------------------------------------------------------------------------
def assert_written(paths: dict[str, Path]) -> None:
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths["png"].stat().st_size > 5000
    assert paths["pdf"].read_bytes()[:5] == b"%PDF-" and paths["pdf"].stat().st_size > 2000


def test_every_figure_is_written_as_png_and_pdf(store, tmp_path):
    data = load_experiment("cl", store.uri)
    study = load_optuna_study(store.optuna_storage, "ra-sweep")
    from analysis.load import download_sample_grids

    grids = download_sample_grids(data, select_best(data).runs["run_id"], tmp_path / "grids")
    assert len(grids) == 9 and all(p.name == "task_3.png" for p in grids.values())
    made = {
        "curves": figures.forgetting_curves(data),
        "curves_all": figures.forgetting_curves(data, select="all"),
        "heatmaps": figures.accuracy_heatmaps(data),
        "response": figures.hyperparameter_response(data),
        "samples": figures.sample_grids({f"run {i}": p for i, p in enumerate(grids.values())}),
        "importances": figures.param_importances(study),
        "pareto": figures.pareto_front(study),
        "study_response": figures.study_response(study),
    }
    for name in ("curves_all", "samples"):  # the report tests save the others
        assert_written(figures.save_figure(made[name], tmp_path, name))
    assert len(made["heatmaps"].axes) == 5, "four methods and a colour bar"
    assert [t.get_text() for t in made["curves"].legends[0].get_texts()] == [
        "SFT", "EWC", "MeRGAN-JTR", "MeRGAN-RA (lambda_ra=1e-3)"]
    assert len(made["importances"].axes) == 2, "one panel per objective"


def drawn_texts(figure) -> list[tuple[str, object]]:
    """Every text a reader sees on ``figure`` with its box on the canvas: titles, axis labels, the labels of
    ticks in view, annotations, legends, the suptitle."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure).draw()
    renderer = figure.canvas.get_renderer()
    texts = list(figure.texts) + [t for legend in figure.legends for t in legend.get_texts()]
    for axes in figure.axes:
        if not axes.get_visible():
            continue
        texts += [axes.title, axes.xaxis.label, axes.yaxis.label, *axes.texts]
        texts += [t for legend in [axes.get_legend()] if legend for t in legend.get_texts()]
        texts += tick_labels(axes.xaxis) + tick_labels(axes.yaxis)
    return [(t.get_text(), t.get_window_extent(renderer)) for t in texts if t.get_visible() and t.get_text().strip()]


def tick_labels(axis) -> list:
    """The labels (major and minor) of an axis's ticks in view, as drawn."""
    low, high = sorted(axis.get_view_interval())
    ticks = axis.get_major_ticks() + axis.get_minor_ticks()
    return [t.label1 for t in ticks if low <= t.get_loc() <= high and t.label1.get_visible() and t.label1.get_text()]


def overlapping_texts(figure) -> list[tuple[str, str]]:
    """Pairs of drawn texts whose boxes overlap by more than a pixel: what a reader sees as a collision."""
    boxes = drawn_texts(figure)
    pairs = []
    for index, (text, box) in enumerate(boxes):
        for other, other_box in boxes[index + 1:]:
            if min(box.x1, other_box.x1) - max(box.x0, other_box.x0) > 1 and \
                    min(box.y1, other_box.y1) - max(box.y0, other_box.y0) > 1:
                pairs.append((text, other))
    return pairs


def test_configurations_are_labelled_by_the_knobs_that_act_in_them(tmp_path):
    # JTR with fresh replay keeps replay_size_per_class at its default, which no fresh run reads: its label must
    # not carry it (as its run name does not), in the loaded frame (which the figures' legends and the tables
    # read) and in the report's page.
    uri = empty_store(tmp_path / "mlflow.db")
    client = MlflowClient(uri)
    experiment = client.create_experiment("jtr", artifact_location=(tmp_path / "artifacts").as_uri())
    for label, overrides in (("fresh", {"replay_mode": "fresh"}),
                             ("131", {"replay_mode": "fixed", "replay_size_per_class": 131}),
                             ("1424", {"replay_mode": "fixed", "replay_size_per_class": 1424})):
        write_run(client, experiment, make_config("jtr", 0, 2, tmp_path / "runs" / label, **overrides),
                  method_accuracy("jtr", 0))
    write_run(client, experiment, make_config("sft", 0, 2, tmp_path / "runs" / "sft"), method_accuracy("sft", 0))
    data = load_experiment("jtr", uri)
    assert sorted(data.runs["config"]) == ["", "replay_mode=fixed, replay_size_per_class=131",
                                           "replay_mode=fixed, replay_size_per_class=1424", "replay_mode=fresh"]
    report = build_report("jtr", uri, tmp_path / "report")
    page = report.html_path.read_text()
    assert "replay_mode=fresh, replay_size_per_class" not in page and "replay_mode=fresh</td>" in page


@pytest.fixture(scope="module")
def long_names(tmp_path_factory):
    """Configurations with long names (RA over three knobs) and responses on short and long log ranges."""
    root = tmp_path_factory.mktemp("long_names")
    uri = empty_store(root / "mlflow.db")
    client = MlflowClient(uri)
    experiment = client.create_experiment("long-names", artifact_location=(root / "artifacts").as_uri())

    def log(method: str, seed: int, offset: float, **overrides) -> None:
        config = make_config(method, seed, 3, root / "runs" / f"{method}{len(overrides)}{offset}{seed}", **overrides)
        accuracy = method_accuracy(method, seed)
        write_run(client, experiment, config, lambda i, j: round(accuracy(i, j) - offset, 6), artifacts=False,
                  steps_per_task=1)

    for seed in (0, 1):
        for lambda_ra in (1e-3, 2e-3, 4e-3, 8e-3):  # less than a decade: matplotlib labels its minor ticks
            for share, batch in ((0.25, 32), (0.5, 48)):
                log("ra", seed, 2 * lambda_ra + share / 100, lambda_ra=lambda_ra, replay_share=share,
                    ra_batch_size=batch)
        for lambda_ewc in (10.0, 1e3, 1e5, 1e7, 1e9):  # eight decades
            log("ewc", seed, math.log10(lambda_ewc) / 100, lambda_ewc=lambda_ewc)
        log("sft", seed, 0.0)
    return load_experiment("long-names", uri)


def test_report_figures_keep_long_configuration_names_and_log_axis_labels_apart(long_names):
    made = {"heatmaps": figures.accuracy_heatmaps(long_names, select="all"),
            "curves": figures.forgetting_curves(long_names, select="all"),
            "response": figures.hyperparameter_response(long_names)}
    for name, figure in made.items():
        assert overlapping_texts(figure) == [], f"{name}: texts drawn over each other"
    titles = [axes.get_title() for axes in made["heatmaps"].axes if axes.get_title()]
    assert any("\n" in title for title in titles) and "lambda_ra=1e-3" in " ".join(titles).replace("\n", " ")
    for axes in made["response"].axes:  # two to five short labels per log axis
        labels = [label.get_text() for label in tick_labels(axes.xaxis)]
        assert 2 <= len(labels) <= 5 and all(len(label) <= 6 for label in labels), labels
    curves = made["curves"]
    assert curves.get_tightbbox().width <= curves.get_figwidth() + 0.05, "the legend fits the figure's width"


def test_figures_say_clearly_when_there_is_nothing_to_plot(store, tmp_path):
    data = load_experiment("svhn-long", store.uri)
    with pytest.raises(NothingToPlotError, match="lambda_ra"):
        figures.hyperparameter_response(data)
    with pytest.raises(NothingToPlotError, match="sample grids"):
        figures.sample_grids({})
    single = optuna.create_study(storage=f"sqlite:///{tmp_path / 'single.db'}", study_name="single")
    single.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=3)
    with pytest.raises(NothingToPlotError, match="one objective"):
        figures.pareto_front(single)


# -- bad input ------------------------------------------------------------------------------
def test_bad_input_raises_specific_errors_naming_what_is_wrong(store, tmp_path):
    with pytest.raises(ExperimentNotFoundError, match=r"no experiment named 'nope'.*cl"):
        load_experiment("nope", store.uri)
    with pytest.raises(TrackingStoreNotFoundError, match="missing.db"):
        load_experiment("cl", f"sqlite:///{tmp_path / 'missing.db'}")
    assert not (tmp_path / "missing.db").exists(), "no empty store is created on the way"
    with pytest.raises(NoTaskMetricsError, match=r"experiment 'no-task-metrics'.*sft seed=0"):
        load_experiment("no-task-metrics", store.uri)
    with pytest.raises(NoRunsError, match="'empty'"):
        load_experiment("empty", store.uri)
    with pytest.raises(ExperimentNotFoundError, match="no sweep run 'abc'"):
        load_sweep("abc", store.uri)
    mixed = load_experiment("mixed", store.uri)
    with pytest.raises(MixedDatasetsError, match=r"\['mnist5k', 'svhn'\]"):
        results_table(mixed)
    with pytest.raises(MixedDatasetsError, match=r"'mixed'.*\['mnist5k', 'svhn'\]"):
        figures.forgetting_curves(mixed)
    assert results_table(mixed.for_dataset("svhn")).paper_dataset == "SVHN"


# -- the report -----------------------------------------------------------------------------
def test_mergan_report_writes_one_self_contained_page_and_prints_the_table(store, tmp_path, capsys):
    from mergan_cli.main import main

    out = tmp_path / "report"
    assert main(["report", "--experiment", "cl", "--tracking-uri", store.uri, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    data = load_experiment("cl", store.uri)
    table = results_table(data)
    assert table.to_markdown() in printed and "report: " in printed

    page = (out / "report.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    names = ["forgetting_curves", "accuracy_matrices", "hyperparameter_response", "sample_grids"]
    assert len(images) == len(names) and "http" not in page.split("<body>")[1].split("sqlite")[0]
    for name in names:
        assert_written({kind: out / "figures" / f"{name}.{kind}" for kind in ("png", "pdf")})
    ra = table.cells[(table.cells["row"] == "MeRGAN-RA (lambda_ra=1e-3)") & (table.cells["source"] == "ours")]
    assert f"{ra['mean'].item():.2f} ± {ra['std'].item():.2f}" in page
    assert (out / "tables" / "results.md").read_text() == table.to_markdown()
    assert "\\toprule" in (out / "tables" / "results.tex").read_text()
    assert len((out / "data" / "accuracy.csv").read_text().splitlines()) == len(data.accuracy) + 1
    assert "jtr replay_mode=fresh seed=2" in page, "the runs table lists every run"


@pytest.fixture(scope="module")
def mirrored_folders(tmp_path_factory) -> tuple[Path, str]:
    """Run folders (each run's record, as the trainer writes it) and their MLflow mirror: SFT and RA at two
    lambdas, two seeds each."""
    root = tmp_path_factory.mktemp("folders")
    uri = empty_store(root / "mlflow.db")
    for seed in (0, 1):
        config = make_config("sft", seed, 3, root / "runs" / f"sft-{seed}")
        log_with_real_logger(uri, "mirrored", config, method_accuracy("sft", seed))
        for lambda_ra in RA_LAMBDAS:
            config = make_config("ra", seed, 3, root / "runs" / f"ra-{lambda_ra}-{seed}", lambda_ra=lambda_ra)
            log_with_real_logger(uri, "mirrored", config, ra_accuracy(seed, lambda_ra))
    return root / "runs", uri


def test_run_folders_give_the_frames_and_tables_their_mlflow_mirror_gives(mirrored_folders):
    runs, uri = mirrored_folders
    from_mlflow, from_folders = load_experiment("mirrored", uri), load_run_folders([runs])
    assert from_folders.tracking_uri == "" and sorted(from_folders.runs["run_id"]) == sorted(map(str, runs.iterdir()))
    folder_of = dict(zip(from_mlflow.runs["run_id"], from_mlflow.runs["tag.out_dir"]))

    def by_folder(frame):
        frame = frame.assign(run_id=frame["run_id"].map(lambda r: folder_of.get(r, r)))
        return frame.sort_values(list(frame.columns[:6])).reset_index(drop=True)

    pd.testing.assert_frame_equal(by_folder(from_folders.accuracy), by_folder(from_mlflow.accuracy))
    pd.testing.assert_frame_equal(by_folder(from_folders.task_metrics), by_folder(from_mlflow.task_metrics))
    columns = ["run_id", "run_name", "method", "dataset", "seed", "config", "status", "tasks_done", "avg_acc",
               "forgetting", "loss_d", "method.lambda_ra", "evaluator_cache_key", "tag.evaluator_cache_key"]
    pd.testing.assert_frame_equal(by_folder(from_folders.runs)[columns], by_folder(from_mlflow.runs)[columns])
    table = results_table(from_folders)
    assert table.to_markdown() == results_table(from_mlflow).to_markdown()
    assert "Paper (5 tasks)" in table.to_markdown() and "MeRGAN-RA (lambda_ra=1e-3)" in table.to_markdown()


def test_mergan_report_of_run_folders_needs_neither_mlflow_nor_ray_nor_optuna(mirrored_folders, tmp_path):
    runs, uri = mirrored_folders
    env = without_packages(tmp_path, {"mlflow", "ray", "optuna"})
    out = tmp_path / "report"
    done = subprocess.run([sys.executable, "-m", "mergan_cli.main", "report", "--runs", str(runs), "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert attempted(tmp_path) == [] and "from run folders" in done.stdout
    table = results_table(load_experiment("mirrored", uri))
    assert table.to_markdown() in done.stdout and (out / "tables" / "results.md").read_text() == table.to_markdown()
    for name in ("forgetting_curves", "accuracy_matrices", "hyperparameter_response", "sample_grids"):
        assert_written({kind: out / "figures" / f"{name}.{kind}" for kind in ("png", "pdf")})
    assert "read from run folders" in (out / "report.html").read_text()


def test_report_of_a_sweep_finds_its_optuna_study_and_splits_mixed_datasets(store, tmp_path):
    report = build_report(None, store.uri, tmp_path / "sweep", sweep_run=store.sweep_run)
    assert len(report.data.runs) == 3 and [s.title for s in report.sections] == ["Dataset mnist5k",
                                                                                 "Optuna study ra-sweep"]
    assert not report.sections[1].notes
    assert set(report.sections[1].figures) == {"study_importances", "study_pareto_front", "study_response"}
    page = report.html_path.read_text()
    assert "Sweep ra-sweep" in page and "best.avg_acc" in page and page.count("data:image/png") == 7
    for path in report.figure_files:
        assert path.stat().st_size > 2000

    mixed = build_report("mixed", store.uri, tmp_path / "mixed")
    assert [s.title for s in mixed.sections] == ["Dataset mnist5k", "Dataset svhn"]
    assert (tmp_path / "mixed" / "tables" / "results_svhn.md").is_file()
    assert any("not drawn" in note for note in mixed.sections[0].notes), "no samples logged: a note, not a crash"


def test_mergan_report_exits_2_with_the_reason_on_bad_input(store, tmp_path, capsys):
    from mergan_cli.main import main

    assert main(["report", "--experiment", "nope", "--tracking-uri", store.uri, "--out", str(tmp_path)]) == 2
    assert "no experiment named 'nope'" in capsys.readouterr().err


# -- notebooks ------------------------------------------------------------------------------
def run_notebook(name: str, parameters: dict, cwd: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = "\n".join(f"{key} = {value!r}" for key, value in parameters.items())
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return notebook


def outputs_text(notebook: nbformat.NotebookNode) -> str:
    return "\n".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)


@pytest.mark.parametrize("name", ["sweep_walkthrough", "search_insight"])
def test_notebooks_are_stored_without_outputs_and_tagged_for_parameters(name):
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert code[0].metadata.get("tags") == ["parameters"] and "TRACKING_URI" in code[0].source


def test_sweep_walkthrough_notebook_runs_end_to_end(store, tmp_path):
    out = tmp_path / "walk"
    notebook = run_notebook("sweep_walkthrough", {"TRACKING_URI": store.uri, "EXPERIMENT": "cl", "SWEEP_RUN": None,
                                                  "DATASET": None, "OUT_DIR": str(out)}, tmp_path)
    table = results_table(load_experiment("cl", store.uri))
    assert table.to_markdown().strip() in outputs_text(notebook)
    for name in ("forgetting_curves_mnist5k", "accuracy_matrices_mnist5k", "sample_grids_mnist5k"):
        assert_written({kind: out / f"{name}.{kind}" for kind in ("png", "pdf")})
    assert (out / "results_mnist5k.tex").is_file()


def test_search_insight_notebook_runs_end_to_end(store, tmp_path):
    out = tmp_path / "insight"
    notebook = run_notebook("search_insight", {
        "TRACKING_URI": store.uri, "EXPERIMENT": "sweep", "SWEEP_RUN": store.sweep_run,
        "OPTUNA_STORAGE": store.optuna_storage, "STUDY_NAME": None, "OUT_DIR": str(out)}, tmp_path)
    study = load_optuna_study(store.optuna_storage, "ra-sweep")
    assert f"study ra-sweep: {len(study.trials)} trials" in outputs_text(notebook)
    for name in ("study_importances", "study_response", "study_pareto_front", "hyperparameter_response_mnist5k"):
        assert_written({kind: out / f"{name}.{kind}" for kind in ("png", "pdf")})


# -- a real mlflow server -------------------------------------------------------------------
@pytest.mark.slow
def test_loading_and_report_through_a_real_mlflow_server(tmp_path_factory, recwarn):
    server_root = tmp_path_factory.mktemp("analysis_server")
    empty_store(server_root / "mlflow.db")  # the server's default store, already migrated
    server = start_mlflow_server(server_root)
    try:
        client = MlflowClient(server.uri)
        experiment_id = client.create_experiment("remote")
        root = tmp_path_factory.mktemp("remote_runs")
        for method in ("sft", "ra"):
            for seed in (0, 1):
                write_run(client, experiment_id, make_config(method, seed, 3, root / f"{method}{seed}"),
                          method_accuracy(method, seed))
        data = load_experiment("remote", server.uri)
        assert not [w for w in recwarn if "bulk metric history" in str(w.message)], "the bulk endpoint answered"
        for run_id in data.runs["run_id"]:
            history = {m.step: m.value for m in client.get_metric_history(run_id, "acc_task_1")}
            assert data.matrix(run_id)[:, 0] == pytest.approx([history[i] for i in (1, 2, 3)])
        report = build_report("remote", server.uri, tmp_path_factory.mktemp("remote_report"))
        assert "sample_grids" in report.sections[0].figures, "sample grids came through the server"
    finally:
        server.stop()
