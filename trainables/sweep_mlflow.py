"""A sweep's MLflow parent run: started (or continued on resume) with the sweep's settings, its trials'
runs closed when a scheduler or Ctrl-C stops them, and at the end the best trial and the sweep's
tables and figures as its artifacts; and where to look once the sweep is done."""

from __future__ import annotations

import logging
import math
import tempfile
import warnings
from collections.abc import Callable
from typing import Any

from ray import tune

from search_spaces import SearchSpace
from tracking.store import resolve_tracking_uri
from tracking.sweep_run import (
    chart_view_target,
    chart_view_url,
    close_stopped_trial,
    finish_sweep_run,
    log_sweep_files,
    mark_sweep_killed,
    run_page_url,
    save_chart_view,
    start_sweep_run,
    trial_run_id,
)
from trainables.plan import SweepPlan
from trainables.results import TrialRow, format_table
from trainables.trainable import CONFIGURATION_ERROR

logger = logging.getLogger("trainables.sweep_mlflow")

ReportBuilder = Callable[..., Any]  # analysis.report.build_report(experiment, tracking_uri, out, sweep_run=...)
SUMMARY_FOLDER = "sweep"  # the parent run's artifact folder for the sweep's own files (settings, best, trials)
LOCAL_UI_URL = "http://127.0.0.1:5000"  # where `mlflow ui` serves an SQLite store by default


class CloseStoppedRuns(tune.Callback):
    """Ends the MLflow runs of trials a scheduler stopped early, in case the worker could not.

    Tune stops such a trial by ending its process right after its last report; the trial's own
    callback may not get to close its run, which would stay RUNNING.
    """

    def __init__(self, tracking_uri: str, parent_run_id: str | None):
        self.tracking_uri, self.parent_run_id = tracking_uri, parent_run_id

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        if (not self.parent_run_id or result.get("diverged") or result.get(CONFIGURATION_ERROR)
                or "tasks_done" not in result):
            return
        if result["tasks_done"] >= result.get("num_tasks", math.inf):
            return
        try:
            close_stopped_trial(self.tracking_uri, self.parent_run_id, trial.trial_id)
        except Exception as error:  # noqa: BLE001 - bookkeeping must not stop the sweep
            logger.warning("could not close the MLflow run of stopped trial %s: %s", trial.trial_id, error)


def mark_runs_killed(plan: SweepPlan, unfinished: set[str] | None = None) -> None:
    """After Ctrl-C: the sweep's MLflow run and its trials' unfinished runs end KILLED; a resume continues them.

    ``unfinished``: the ids of trials with work left, whose runs end KILLED even if the trial closed its
    run itself (Tune stops a trial as a scheduler does, so the trial took it for an early stop).
    """
    if not plan.parent_run_id:
        return
    try:
        mark_sweep_killed(plan.tracking_uri, plan.parent_run_id, unfinished or set())
    except Exception as error:  # noqa: BLE001 - the store may be what is down; resuming fixes the statuses
        logger.warning("could not mark the sweep's MLflow runs KILLED: %s", error)


def space_for_mlflow(space: SearchSpace) -> Any:
    """What the sweep's parent run records of the space: a grid's values, a function's source, a YAML mapping."""
    if space.grid is not None:
        return dict(space.grid)
    params = getattr(space.define, "params", None)
    return dict(params) if isinstance(params, dict) else space.define


def sweep_settings(plan: SweepPlan) -> dict[str, Any]:
    """The parent run's params: how the sweep ran (identical on resume, as MLflow params must be)."""
    settings = {"question": plan.question, "preset": plan.preset,
                "num_samples": plan.num_samples, "max_concurrent": plan.max_concurrent,
                "cpus_per_trial": plan.cpus_per_trial, "gpus_per_trial": plan.gpus_per_trial,
                "objective": ",".join(f"{m}:{mode}" for m, mode in plan.objective), "scheduler": plan.scheduler,
                "seed": plan.seed, "storage_path": plan.storage_path, "optuna_storage": plan.optuna_storage}
    settings.update({f"set.{k}": v for k, v in {**plan.defaults, **plan.fixed}.items()})
    return settings


def start_tracking(plan: SweepPlan) -> str:
    """Create (or on resume, continue) the sweep's MLflow parent run; returns its id."""
    space = plan.load_space()
    run_id = start_sweep_run(plan.tracking_uri, plan.experiment, plan.name, space_for_mlflow(space),
                             sweep_settings(plan), sweep_id=plan.sweep_id,
                             tags={"space": plan.space, "storage": plan.experiment_path})
    plan.parent_run_id = run_id
    # At the start, so that the trials can be watched while they run.
    save_chart_view(plan.tracking_uri, plan.parent_run_id, plan.sweep_id)
    return run_id


def record_best(plan: SweepPlan, best: list[TrialRow]) -> None:
    if not plan.parent_run_id:
        return
    if len(best) == 1:
        row = best[0]
        summary = {"trial_id": row.trial_id,
                   "run_id": trial_run_id(plan.tracking_uri, plan.parent_run_id, row.trial_id),
                   "config": row.params, "metrics": {m: row.value(m) for m in plan.metrics}}
    else:
        summary = {"pareto_front": [{"trial_id": r.trial_id, "config": r.params,
                                     "metrics": {m: r.value(m) for m in plan.metrics}} for r in best]}
    finish_sweep_run(plan.tracking_uri, plan.parent_run_id, summary if best else None)


def record_summary(plan: SweepPlan, rows: list[TrialRow], build_report: ReportBuilder | None = None) -> None:
    """The sweep's results as artifacts of its parent run, at the top of the run's page in the MLflow UI:
    the trials table the sweep prints (``sweep/trials.txt``) and, given ``build_report`` (``mergan report``'s
    ``analysis.report.build_report``, handed in by the command that runs the sweep: analysis sits beside
    trainables, not below it), its figures as PNG (forgetting curves, accuracy matrices ...), its results
    table (``results.md``) and ``report.html``.
    """
    if not plan.parent_run_id:
        return
    try:
        texts = {f"{SUMMARY_FOLDER}/trials.txt": format_table(rows, plan) + "\n"}
        if build_report is None:
            log_sweep_files(plan.tracking_uri, plan.parent_run_id, texts)
            return
        with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
            # Trials that diverged or failed before their first task have no per-task metrics, and
            # analysis warns about them; the trials table printed beside this says what became of each.
            warnings.simplefilter("ignore", UserWarning)
            report = build_report(None, plan.tracking_uri, folder, sweep_run=plan.parent_run_id)
            files = [p for p in report.figure_files if p.suffix == ".png"]
            files += sorted((report.out_dir / "tables").glob("*.md")) + [report.html_path]
            log_sweep_files(plan.tracking_uri, plan.parent_run_id, texts, files)
    except Exception as error:  # noqa: BLE001 - the trials are done and recorded; a summary must not undo that
        logger.warning("could not add the sweep's figures and tables to its MLflow run %s (%s: %s); "
                       "`mergan report --sweep-run %s` draws them", plan.parent_run_id, type(error).__name__,
                       error, plan.parent_run_id)


def mlflow_hint(plan: SweepPlan) -> str:
    """Where to look in MLflow (and at the Optuna study) once the sweep is done."""
    uri = resolve_tracking_uri(plan.tracking_uri)
    lines = [(f"MLflow: tracking URI {uri}, experiment {plan.experiment!r}, sweep run {plan.parent_run_id} "
              f"({plan.name}; trials are its child runs)")]
    served = uri.startswith(("http://", "https://"))
    ui_url = uri if served else LOCAL_UI_URL
    if not served:
        lines.append(f"  mlflow ui --backend-store-uri {uri}    # serves {LOCAL_UI_URL}")
    experiment_id, share_key = chart_view_target(plan.tracking_uri, plan.parent_run_id, plan.sweep_id)
    if experiment_id and plan.parent_run_id:
        lines.append(f"  every trial's forgetting curves: {chart_view_url(ui_url, experiment_id, share_key)}")
        lines.append(f"  the sweep's figures and tables:  "
                     f"{run_page_url(ui_url, experiment_id, plan.parent_run_id, 'forgetting_curves.png')}")
    else:
        lines.append(f"  open {ui_url} in a browser")
    if plan.optuna_storage:
        lines.append(f"Optuna study {plan.name!r}: optuna-dashboard {plan.optuna_storage}")
    lines.append(f"Tune results: {plan.experiment_path}")
    return "\n".join(lines)
