"""What a user sees of a finished sweep in MLflow: trial names, the parent run's figures, the chart view.

One real sweep (two tiny trials of the ``methods`` space on a local Ray) logs to a real ``mlflow server``;
headless Chromium then renders the pages of the MLflow UI that the sweep's closing lines point at.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

import sweep
from mergan.methods import REGISTRY, acting_knobs
from mergan.naming import name_values, run_name
from mergan.presets import build_config
from tests.support.mlflow_process import Server, start_mlflow_server
from tests.support.sweeps import TINY_SETS
from trainables.plan import SweepPlan

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


@dataclass
class FinishedSweep:
    server: Server
    plan: SweepPlan
    printed: str
    client: MlflowClient

    @property
    def experiment_id(self) -> str:
        return self.client.get_run(self.plan.parent_run_id).info.experiment_id

    def trials(self) -> list:
        query = f"tags.`mlflow.parentRunId` = '{self.plan.parent_run_id}'"
        return self.client.search_runs([self.experiment_id], query)


@pytest.fixture(scope="module")
def finished_sweep(local_ray, tmp_path_factory):
    """The first two trials of the ``methods`` space (SFT, then JTR), two tasks each, logged to a server."""
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow_view_server"))
    sets = [arg for item in TINY_SETS for arg in ("--set", item)]
    args = [*sets, "--space", "methods", "--num-samples", "2", "--max-concurrent", "2", "--tasks", "0|1",
            "--storage-path", str(local_ray / "sweeps"), "--tracking-uri", server.uri, "--experiment", "view",
            "--name", "view", "--verbose", "0"]
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            assert sweep.main(args) == 0
        plan = SweepPlan.load(str(local_ray / "sweeps"), "view")
        yield FinishedSweep(server, plan, printed.getvalue(), MlflowClient(server.uri))
    finally:
        server.stop()


# -- run names ------------------------------------------------------------------------------
def test_a_run_is_named_by_the_knobs_that_act_in_its_method_only():
    searched = ["lambda_ra", "replay_mode", "replay_size_per_class"]  # a sweep over several methods' knobs

    def name(**values) -> str:
        config = build_config("small", {"seed": 0, **values})
        return run_name(config.method.method, name_values(config, searched))

    assert name(method="sft") == "sft seed=0"
    assert name(method="ra", lambda_ra=3e-3) == "ra lambda_ra=3e-3 seed=0"
    assert name(method="jtr", replay_mode="fresh") == "jtr replay_mode=fresh seed=0"
    assert name(method="jtr", replay_mode="fixed", replay_size_per_class=131) == \
        "jtr replay_mode=fixed replay_size_per_class=131 seed=0"
    assert name(method="jtr+ra", lambda_ra=0.01) == "jtr+ra lambda_ra=0.01 replay_mode=fresh seed=0"
    config = build_config("small", {"method": "sft", "lr_g": 1e-4})
    assert run_name("sft", name_values(config, ["lr_g", "lambda_ra"])) == "sft lr_g=1e-4 seed=0", \
        "a searched field outside the method section acts in every method"
    # Outside a sweep: each method's main knob, where it acts.
    fixed = build_config("small", {"method": "jtr", "replay_mode": "fixed", "replay_size_per_class": 200})
    assert run_name("jtr", name_values(fixed, None)) == "jtr replay_mode=fixed replay_size_per_class=200 seed=0"


@pytest.mark.slow
@pytest.mark.parametrize("method", list(REGISTRY.built_in))
def test_the_method_fields_a_method_does_not_list_as_its_knobs_change_nothing_in_training(method, tiny_config, mnist5k):
    """acting_knobs is what names runs: a method field it leaves out must not change the run's training
    (for JTR with fresh replay, replay_size_per_class too)."""
    from mergan.trainer import Trainer

    others = {"lambda_ra": 0.5, "ra_batch_size": 5, "replay_mode": "fixed", "replay_size_per_class": 7,
              "replay_share": 0.3, "lambda_ewc": 77.0, "ewc_fisher_samples": 8, "dgr_solver_iterations": 2,
              "dgr_solver_lr": 0.05, "ewc_reduction": "sum", "reduce_batch": False, "jtr_loss": "concatenated",
              "lambda_l2": 3.0}
    assert set(others) == set(REGISTRY.built_in_knobs)
    config = tiny_config(method=method, tasks="0|1", save_checkpoints=False)
    changed = {k: v for k, v in others.items() if k not in acting_knobs(config)}
    weights = []
    for overrides in ({}, changed):
        trainer = Trainer(tiny_config(method=method, tasks="0|1", save_checkpoints=False, **overrides), dataset=mnist5k)
        trainer.fit()
        weights.append({k: v.clone() for k, v in trainer.generator.state_dict().items()})
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert (weights[0][key] == weights[1][key]).all(), f"{method}: {key} changed with {changed}"


@pytest.mark.slow
def test_trials_of_a_sweep_over_several_methods_carry_only_their_own_knobs(finished_sweep):
    names = sorted(run.info.run_name for run in finished_sweep.trials())
    assert names == ["jtr replay_mode=fresh seed=0", "sft seed=0"]


# -- the parent run -------------------------------------------------------------------------
@pytest.mark.slow
def test_the_sweep_run_holds_the_forgetting_curves_the_accuracy_matrices_and_the_results_table(finished_sweep):
    client, parent = finished_sweep.client, finished_sweep.plan.parent_run_id
    top = {f.path for f in client.list_artifacts(parent)}
    assert {"forgetting_curves.png", "accuracy_matrices.png", "results.md", "report.html"} <= top
    results = Path(client.download_artifacts(parent, "results.md")).read_text()
    assert "| SFT |" in results and "| MeRGAN-JTR |" in results
    trials = Path(client.download_artifacts(parent, "sweep/trials.txt")).read_text()
    printed_table = finished_sweep.printed[finished_sweep.printed.index("trial  "):].split("\n\n")[0]
    assert trials.strip() == printed_table.strip(), "the table the sweep printed"


@pytest.mark.slow
def test_the_closing_lines_print_the_chart_view_and_the_sweep_run_page(finished_sweep):
    experiment_id, parent = finished_sweep.experiment_id, finished_sweep.plan.parent_run_id
    ui, key = finished_sweep.server.uri, finished_sweep.plan.sweep_id
    assert chart_url(finished_sweep) == (f"{ui}/#/experiments/{experiment_id}/runs?compareRunsMode=CHART"
                                         f"&viewStateShareKey={key}")
    view = json.loads(finished_sweep.client.get_experiment(experiment_id).tags[f"mlflow.sharedViewState.{key}"])
    assert view["searchFilter"] == f"tags.sweep_id = '{key}'"
    expected = f"{ui}/#/experiments/{experiment_id}/runs/{parent}/artifacts/forgetting_curves.png"
    assert page_url(finished_sweep) == expected


def chart_url(finished: FinishedSweep) -> str:
    return re.search(r"every trial's forgetting curves: (\S+)", finished.printed).group(1)


def page_url(finished: FinishedSweep) -> str:
    return re.search(r"the sweep's figures and tables: +(\S+)", finished.printed).group(1)


# -- the MLflow UI in a browser -------------------------------------------------------------
def chromium() -> str:
    found = next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)
    if found is None:
        pytest.skip(f"no headless browser: none of {', '.join(CHROMIUM_NAMES)} is on PATH "
                    f"(Debian: apt-get install chromium; .ci/run installs it)")
    return found


def rendered_dom(url: str, profile: Path, budget_ms: int = 90000) -> str:
    """The page's DOM after its scripts ran (the MLflow UI is a JavaScript app) in a window large enough
    for the first rows of charts, which the UI draws only once they are in view. The budget is virtual
    time (timers run ahead); measured here, a 90 s budget takes 13-18 s."""
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--window-size=1600,1400", f"--virtual-time-budget={budget_ms}",
               "--dump-dom", url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def visible_text(dom: str) -> str:
    """The rendered page's text without scripts, styles and tags: what a user reads."""
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.DOTALL)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text))


@pytest.mark.slow
def test_the_sweep_runs_page_in_a_browser_lists_its_figures_and_tables(finished_sweep, tmp_path):
    text = visible_text(rendered_dom(page_url(finished_sweep), tmp_path / "profile"))
    for name in ("forgetting_curves.png", "accuracy_matrices.png", "results.md", "report.html"):
        assert name in text, f"{name} not on the sweep run's page: {text[:3000]}"


@pytest.mark.slow
def test_the_chart_view_in_a_browser_draws_every_trial_by_task(finished_sweep, tmp_path):
    dom = rendered_dom(chart_url(finished_sweep), tmp_path / "profile")
    text = visible_text(dom)
    for trial in ("sft seed=0", "jtr replay_mode=fresh seed=0"):
        assert text.count(trial) >= 2, f"trial {trial!r} not in the runs list and a chart's legend: {text[:3000]}"
    charts = set(re.findall(r'title="([^"]+)"', dom))
    # The UI draws only the charts in view (alphabetical): the per-task accuracy curves come first.
    assert {"acc_task_1", "acc_task_2", "avg_acc"} <= charts, f"charts drawn: {sorted(charts)}"
    assert "Step" in text, "lines against the task (step), not bars of the last value"
