"""A sweep's parent run in MLflow: created or continued at the start, its trials' runs found,
closed and retired, the best trial and the sweep's files recorded at the end, the UI's chart view saved."""

from __future__ import annotations

import inspect
import json
import logging
import tempfile
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mergan.provenance import git_commit, mergan_version
from mergan.record import now_ms
from mergan.settings import is_number
from tracking.store import (
    configure_http_client,
    default_artifact_location,
    get_or_create_experiment,
    open_client,
    quote,
    resolve_tracking_uri,
)

logger = logging.getLogger("tracking.sweep_run")


def start_sweep_run(tracking_uri: str | None, experiment: str, name: str,
                    space: Mapping[str, Any] | Callable[..., Any] | str | None = None,
                    settings: Mapping[str, Any] | None = None, *, sweep_id: str | None = None,
                    tags: Mapping[str, Any] | None = None) -> str:
    """Create (or, for the same ``sweep_id``, continue) a sweep's parent run; returns its run id.

    ``space``: a mapping of hyperparameter -> distribution (logged as ``space.<name>`` params and
    ``search_space.json``), an Optuna define-by-run function (its source as ``search_space.py``) or
    a preset name. ``settings``: the sweep's own settings (metric, mode, samples, scheduler ...).
    Trial runs name this run as their ``tracking.mirror.Target(parent_run_id=...)``.
    """
    configure_http_client()
    from mlflow.entities import Param, RunTag

    uri = resolve_tracking_uri(tracking_uri)
    client = open_client(uri)
    experiment_id = get_or_create_experiment(client, experiment, default_artifact_location(uri, experiment))
    sweep_id = sweep_id or name
    run_tags = {"mergan.role": "sweep", "sweep_id": sweep_id, "mergan_version": mergan_version(),
                **{k: str(v) for k, v in (tags or {}).items()}}
    commit = git_commit()
    if commit:
        run_tags.update({"git_commit": commit, "mlflow.source.git.commit": commit})
    found = client.search_runs([experiment_id], f"tags.`mergan.role` = 'sweep' and tags.sweep_id = "
                                                f"{quote(sweep_id)}", max_results=1)
    if found:
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        logger.info("continuing sweep run %s (%s)", run_id, sweep_id)
    else:
        run_id = client.create_run(experiment_id, tags=run_tags, run_name=name).info.run_id
    params = [[str(k), param_text(v)] for k, v in (settings or {}).items()]
    with tempfile.TemporaryDirectory() as folder:
        files: list[Path] = []
        if isinstance(space, Mapping):
            params += [[f"space.{k}", param_text(v)] for k, v in space.items()]
            files.append(Path(folder) / "search_space.json")
            files[-1].write_text(json.dumps({k: param_text(v) for k, v in space.items()}, indent=1))
        elif callable(space):
            params.append(["space", getattr(space, "__qualname__", repr(space))])
            try:
                source = inspect.getsource(space)
            except (OSError, TypeError):
                source = None
            if source:
                files.append(Path(folder) / "search_space.py")
                files[-1].write_text(source)
        elif space is not None:
            params.append(["space", str(space)])
        if settings:
            files.append(Path(folder) / "sweep_settings.json")
            files[-1].write_text(json.dumps({k: param_text(v) for k, v in settings.items()}, indent=1))
        known = client.get_run(run_id).data.params  # a continued sweep keeps its first settings
        params = [Param(k, v[:6000]) for k, v in params if k not in known]
        for start in range(0, len(params), 100):
            client.log_batch(run_id, params=params[start:start + 100], synchronous=True)
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in run_tags.items()], synchronous=True)
        for file in files:
            client.log_artifact(run_id, str(file), "sweep")
    return run_id


def finish_sweep_run(tracking_uri: str | None, run_id: str, best: Mapping[str, Any] | None = None,
                     status: str = "FINISHED") -> None:
    """Record the best trial on the sweep's parent run and end it.

    ``best`` may hold ``metrics`` (logged as ``best.<name>`` metrics), ``config`` (tags
    ``best.<name>``), ``trial_id`` and ``run_id`` (tags ``best_trial_id``, ``best_run_id``); all of
    it also goes to ``sweep/best.json``.
    """
    configure_http_client()
    from mlflow.entities import Metric, RunTag

    client = open_client(resolve_tracking_uri(tracking_uri))
    if best:
        stamp = now_ms()
        metrics = [Metric(f"best.{k}", float(v), stamp, 0) for k, v in (best.get("metrics") or {}).items()
                   if is_number(v)]
        tags = [RunTag(f"best.{k}", param_text(v)) for k, v in (best.get("config") or {}).items()]
        tags += [RunTag(f"best_{k}", str(best[k])) for k in ("trial_id", "run_id") if best.get(k)]
        client.log_batch(run_id, metrics=metrics, tags=tags, synchronous=True)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "best.json"
            path.write_text(json.dumps(best, indent=1, default=str))
            client.log_artifact(run_id, str(path), "sweep")
    client.set_terminated(run_id, status)


def param_text(value: Any) -> str:
    """A param value: plain for str and numbers, readable for search-space objects (Ray Tune domains)."""
    if isinstance(value, str) or is_number(value):
        return str(value)
    text = repr(value)
    if " object at 0x" in text and hasattr(value, "__dict__"):  # e.g. tune.loguniform(1e-4, 1e-1)
        fields = {k: v for k, v in vars(value).items() if not k.startswith("_")}
        parts = [f"{k}={type(v).__name__.strip('_').lower() if ' object at 0x' in repr(v) else repr(v)}"
                 for k, v in fields.items()]
        text = f"{type(value).__name__}({', '.join(parts)})"
    return text

# -- the sweep's trials ---------------------------------------------------------------------
def trial_runs(client: Any, parent_run_id: str, trial_id: str | None = None) -> list:
    """The MLflow child runs of a sweep (of one trial when ``trial_id`` is given)."""
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    query = f"tags.`mlflow.parentRunId` = {quote(parent_run_id)}"
    if trial_id:
        query += f" and tags.trial_id = {quote(trial_id)}"
    return client.search_runs([experiment_id], query, max_results=10000)


def trial_tags(tracking_uri: str, parent_run_id: str, trial_id: str) -> dict[str, str]:
    """The tags of one trial's MLflow run in a sweep ({} when it has none)."""
    runs = trial_runs(open_client(tracking_uri), parent_run_id, trial_id)
    return dict(runs[0].data.tags) if runs else {}


def trial_run_id(tracking_uri: str, parent_run_id: str, trial_id: str) -> str | None:
    """The MLflow run id of one trial of the sweep, or None."""
    runs = trial_runs(open_client(tracking_uri), parent_run_id, trial_id)
    return runs[0].info.run_id if runs else None


def close_stopped_trial(tracking_uri: str, parent_run_id: str, trial_id: str) -> None:
    """A trial a scheduler stopped early: tag its run ``stopped_early`` and end it FINISHED if still RUNNING."""
    client = open_client(tracking_uri)
    for run in trial_runs(client, parent_run_id, trial_id):
        client.set_tag(run.info.run_id, "stopped_early", "1")
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, "FINISHED")


def mark_sweep_killed(tracking_uri: str, parent_run_id: str, unfinished: set[str]) -> None:
    """The sweep's run and its trials' RUNNING runs (and those of ``unfinished`` trial ids) end KILLED."""
    client = open_client(tracking_uri)
    for run in trial_runs(client, parent_run_id):
        if run.info.status == "RUNNING" or run.data.tags.get("trial_id") in unfinished:
            client.set_terminated(run.info.run_id, "KILLED")
            if "stopped_early" in run.data.tags:
                client.delete_tag(run.info.run_id, "stopped_early")
    finish_sweep_run(tracking_uri, parent_run_id, None, status="KILLED")


def retire_orphan_runs(tracking_uri: str, parent_run_id: str, trial_ids: set[str]) -> None:
    """Delete (restorably) the sweep's trial runs whose trial id is not in ``trial_ids``, tagged why."""
    client = open_client(tracking_uri)
    for run in trial_runs(client, parent_run_id):
        trial_id = run.data.tags.get("trial_id")
        if trial_id and trial_id not in trial_ids:
            client.set_tag(run.info.run_id, "mergan.orphan", "a trial Tune never recorded (driver killed)")
            client.delete_run(run.info.run_id)
            logger.warning("deleted MLflow run %s of unrecorded trial %s", run.info.run_id, trial_id)


def log_sweep_files(tracking_uri: str, run_id: str, texts: Mapping[str, str] | None = None,
                    paths: Sequence[Path] = ()) -> None:
    """Artifacts of the sweep's run: ``texts`` (artifact path -> text) and files ``paths`` at the top."""
    client = open_client(tracking_uri)
    for artifact_file, text in (texts or {}).items():
        client.log_text(run_id, text, artifact_file)
    for path in paths:
        client.log_artifact(run_id, str(path))


# -- the MLflow UI ------------------------------------------------------------------------
SHARED_VIEW_TAG = "mlflow.sharedViewState."  # the MLflow UI's saved views: experiment tags, key appended


def save_chart_view(tracking_uri: str, parent_run_id: str | None, sweep_id: str) -> str | None:
    """Save a view of the sweep's trials for the MLflow UI's chart view; returns its share key.

    Left to itself, the UI folds the trials under their parent run, whose only metrics are the best
    trial's, so its charts show one bar. This view (what the UI's "Share" button stores: an experiment
    tag ``mlflow.sharedViewState.<key>`` holding its state as JSON) keeps the sweep's runs and groups them
    by method, which unfolds them, and draws every trial in the charts: each per-task metric against the
    task, the forgetting curves. Returns None when the store refuses the tag (the URL then opens the plain view).
    """
    if not parent_run_id:
        return None
    state = {"searchFilter": f"tags.sweep_id = '{sweep_id}'",
             "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": "method"}]},
             "useGroupedValuesInCharts": False}
    try:
        client = open_client(tracking_uri)
        experiment_id = client.get_run(parent_run_id).info.experiment_id
        client.set_experiment_tag(experiment_id, f"{SHARED_VIEW_TAG}{sweep_id}", json.dumps(state))
    except Exception as error:  # noqa: BLE001 - a convenience: the sweep runs without it
        logger.warning("could not save the sweep's chart view in MLflow (%s: %s)", type(error).__name__, error)
        return None
    return sweep_id


def chart_view_url(ui_url: str, experiment_id: str, share_key: str | None) -> str:
    """The experiment's chart view in the MLflow UI, showing the saved view ``share_key`` (see save_chart_view)."""
    query = {"compareRunsMode": "CHART", **({"viewStateShareKey": share_key} if share_key else {})}
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{urllib.parse.urlencode(query)}"


def run_page_url(ui_url: str, experiment_id: str, run_id: str, artifact: str | None = None) -> str:
    """A run's artifacts in the MLflow UI, ``artifact`` opened (a sweep run's page lists its figures)."""
    page = f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}/artifacts"
    return page + (f"/{artifact}" if artifact else "")


def chart_view_target(tracking_uri: str, parent_run_id: str | None, sweep_id: str) -> tuple[str | None, str | None]:
    """The experiment of the sweep's parent run and the key of its saved chart view (None where missing)."""
    if not parent_run_id:
        return None, None
    try:
        client = open_client(tracking_uri)
        experiment_id = client.get_run(parent_run_id).info.experiment_id
        tags = client.get_experiment(experiment_id).tags
    except Exception:  # noqa: BLE001 - a hint: without them it points at the UI's front page
        return None, None
    return experiment_id, sweep_id if f"{SHARED_VIEW_TAG}{sweep_id}" in tags else None
