"""Reading an MLflow experiment (or one sweep's trials), or run folders, into tidy pandas frames.

```python
data = load_experiment("mergan", "sqlite:///mlflow.db")          # or sweep_run="<parent run id>"
data = load_run_folders(["runs/"])                               # the same frames from the runs' records
data.runs          # one row per run: ids, method, dataset, seed, config, params (dotted names), final metrics
data.accuracy      # one row per (run, after_task i, task j): accuracy = R[i][j], a fraction in [0, 1]
data.task_metrics  # one row per (run, after_task): avg_acc, bwt, forgetting ... as logged at step = task
data.quality       # one row per (run, measure, after_task i, task j): value = Q[i][j] of e.g. "fid_classifier"
data.matrix(run_id)                                   # R as a T x T array, NaN where not measured
data.matrix(run_id, "recall_classifier")              # a quality matrix the same way
```

Cost: one ``search_runs`` call per page of 1,000 runs (params, tags and latest metrics together),
then the per-step history of only the per-task metrics (``acc_task_{j}`` and the summaries, never
the training losses) in bulk (``tracking.history``): one SQL query per metric for an SQLite/SQL
store, one request per metric and 100 runs against an ``mlflow server``, or per (run, metric)
calls on a thread pool for any other store. ``bench/analysis_load.py`` measures it. Run folders
need no store and no MLflow: their records (``mergan.record``) are read as the runs MLflow mirrors.
"""

from __future__ import annotations

import math
import os
import re
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd

from analysis.errors import (
    ExperimentNotFoundError,
    NoRunsError,
    NoTaskMetricsError,
    TrackingStoreNotFoundError,
)
from mergan.evaluation.metrics import FEATURE_SPACES, QUALITY_METRICS, SUMMARIES, TASK_METRICS  # pure Python
from mergan.record import Record, read_record, run_folders
from mergan.settings import value_text
from tracking.history import metric_history_rows
from tracking.store import resolve_tracking_uri

# Metrics logged once per task (step = task number); names as in mergan/callbacks.py.
TASK_ACCURACY = re.compile(r"^acc_task_(\d+)$")
# A quality matrix's entries (eval.quality): fid_classifier_task_3 is Q[i][3] of the matrix "fid_classifier".
TASK_QUALITY = re.compile(rf"^((?:{'|'.join(QUALITY_METRICS['full'])})_(?:{'|'.join(FEATURE_SPACES)}))_task_(\d+)$")
SUMMARY_METRICS = TASK_METRICS  # the per-task metrics besides acc_task_{j}, as mergan's evaluation names them
# Params that differ between runs of one configuration (seed, task order, paths, machine): never part of its
# label. Runs of one configuration over several task orders are its replicates, as its seeds are (the
# ``order`` column tells them apart; ``analysis.aggregate.order_spread`` compares the two spreads).
RUN_SPECIFIC_PARAMS = frozenset({
    "run.seed", "data.task_order", "data.order_seed", "run.out_dir", "run.device", "run.log_every",
    "run.save_checkpoints", "data.data_root", "eval.cache_dir", "eval.inception_weights",
    "eval.evaluator_weights", "evaluator_cache_key", "evaluator_test_accuracy", "evaluator_architecture",
    "evaluator_classes", "evaluator_chance_accuracy",
    # How many tasks of the stream a run trains: runs are compared at equal task counts, and a JT run on the
    # first k tasks is the paper's k-task JT (analysis.aggregate.split_joint_references), not another config.
    "data.num_tasks",
})
ID_COLUMNS = ("run_id", "method", "dataset", "seed", "config")
SWEEP_ROLE_TAG = "mergan.role"
PAGE_SIZE = 1000


# -- where the runs are -------------------------------------------------------------------
def tracking_client(tracking_uri: str | None = None) -> Any:
    """An ``MlflowClient`` for the store; refuses a missing SQLite file (MLflow would create an empty one)."""
    from mlflow import MlflowClient

    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith("sqlite:///") and ":memory:" not in uri:
        path = Path(uri[len("sqlite:///"):])
        if not path.is_file():
            raise TrackingStoreNotFoundError(f"no MLflow store at {uri}: {path} does not exist "
                                             f"(give --tracking-uri or set MLFLOW_TRACKING_URI)")
    return MlflowClient(uri)


# -- the loaded experiment ----------------------------------------------------------------
@dataclass
class ExperimentData:
    """An experiment's runs as tidy frames (see the module docstring for their columns)."""

    experiment: str
    tracking_uri: str
    runs: pd.DataFrame
    accuracy: pd.DataFrame
    task_metrics: pd.DataFrame
    quality: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=QUALITY_COLUMNS))
    sweep: dict[str, Any] | None = None  # the sweep parent run: run_id, name, params, tags, metrics
    folders: dict[str, Path] = field(default_factory=dict)  # run id -> run folder, for runs read from folders
    load_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def datasets(self) -> list[str]:
        return sorted(self.runs["dataset"].dropna().unique())

    @property
    def methods(self) -> list[str]:
        from analysis.paper import method_sort_key

        return sorted(self.runs["method"].dropna().unique(), key=method_sort_key)

    @property
    def num_tasks(self) -> int:
        """The most tasks any run finished (0 when none has per-task metrics)."""
        return int(self.runs["tasks_done"].max()) if len(self.runs) else 0

    def subset(self, run_ids: Iterable[str]) -> ExperimentData:
        """The same experiment restricted to ``run_ids`` (frames filtered, order kept)."""
        keep = set(run_ids)
        return replace(self, runs=self.runs[self.runs["run_id"].isin(keep)].reset_index(drop=True),
                       accuracy=self.accuracy[self.accuracy["run_id"].isin(keep)].reset_index(drop=True),
                       task_metrics=self.task_metrics[self.task_metrics["run_id"].isin(keep)]
                       .reset_index(drop=True),
                       quality=self.quality[self.quality["run_id"].isin(keep)].reset_index(drop=True))

    def for_dataset(self, dataset: str) -> ExperimentData:
        return self.subset(self.runs.loc[self.runs["dataset"] == dataset, "run_id"])

    def matrix(self, run_id: str, measure: str = "accuracy") -> np.ndarray:
        """R of one run (or its quality matrix ``measure``, e.g. "fid_classifier") as a ``tasks_done x
        tasks_done`` array (row: after task i, column: task j)."""
        if measure == "accuracy":
            return accuracy_matrix(self.accuracy, run_id)
        rows = self.quality[self.quality["measure"] == measure]
        return accuracy_matrix(rows.rename(columns={"value": "accuracy"}), run_id)

    @property
    def quality_measures(self) -> list[str]:
        """The quality matrices some run logged ("fid_classifier", "recall_classifier" ...)."""
        return sorted(self.quality["measure"].unique()) if len(self.quality) else []


QUALITY_COLUMNS = ["run_id", "measure", "after_task", "task", "value"]


def quality_frame(history: pd.DataFrame) -> pd.DataFrame:
    """History rows of ``{measure}_task_{j}`` -> run_id, measure, after_task (the step), task (j), value."""
    parts = history["key"].str.extract(TASK_QUALITY)
    rows = history[parts[0].notna()]
    parts = parts[parts[0].notna()]
    return pd.DataFrame({"run_id": rows["run_id"].to_numpy(), "measure": parts[0].to_numpy(),
                         "after_task": rows["step"].to_numpy(int), "task": parts[1].astype(int).to_numpy(),
                         "value": rows["value"].to_numpy(float)}, columns=QUALITY_COLUMNS)


def accuracy_matrix(accuracy: pd.DataFrame, run_id: str) -> np.ndarray:
    """R of ``run_id`` from an accuracy frame; NaN where an entry was not measured (or i < j)."""
    rows = accuracy[accuracy["run_id"] == run_id]
    size = int(max(rows["after_task"].max(), rows["task"].max())) if len(rows) else 0
    matrix = np.full((size, size), np.nan)
    matrix[rows["after_task"].to_numpy(int) - 1, rows["task"].to_numpy(int) - 1] = rows["accuracy"].to_numpy()
    return matrix


# -- loading ------------------------------------------------------------------------------
def load_experiment(experiment: str | None, tracking_uri: str | None = None, *,
                    sweep_run: str | Sequence[str] | None = None, workers: int = 8, client: Any = None
                    ) -> ExperimentData:
    """Every run of ``experiment`` (or only the trials of the sweep parent run(s) ``sweep_run``).

    Sweep parent runs themselves are left out of the frames; with ``sweep_run`` the (first) parent is
    described in ``ExperimentData.sweep``. ``experiment`` may be None when ``sweep_run`` is given.
    """
    started = time.perf_counter()
    client = client or tracking_client(tracking_uri)
    uri = client.tracking_uri if hasattr(client, "tracking_uri") else resolve_tracking_uri(tracking_uri)
    parents = [sweep_run] if isinstance(sweep_run, str) else list(sweep_run or [])
    sweeps = [_sweep_info(client, parent) for parent in parents]
    sweep = sweeps[0] if sweeps else None
    if experiment is None and sweep is None:
        raise ExperimentNotFoundError("give an experiment name or a sweep run id")
    exp = _experiment(client, experiment, uri) if experiment else client.get_experiment(sweep["experiment_id"])
    for info in sweeps:
        if info["experiment_id"] != exp.experiment_id:
            raise ExperimentNotFoundError(f"sweep run {info['run_id']} belongs to experiment "
                                          f"{client.get_experiment(info['experiment_id']).name!r}, not {exp.name!r}")
    what = (f"sweep run {', '.join(parents)} of experiment {exp.name!r}" if parents
            else f"experiment {exp.name!r}")
    queries = [f"tags.`mlflow.parentRunId` = '{parent}'" for parent in parents] or [""]

    tic = time.perf_counter()
    mlflow_runs = [r for query in queries for r in search_all_runs(client, [exp.experiment_id], query)
                   if r.data.tags.get(SWEEP_ROLE_TAG) != "sweep"]
    search_seconds = time.perf_counter() - tic
    if not mlflow_runs:
        raise NoRunsError(f"{what} at {uri} holds no runs")
    wanted = {r.info.run_id: [k for k in r.data.metrics if is_task_metric(k)] for r in mlflow_runs}
    _require_task_metrics(mlflow_runs, what)
    tic = time.perf_counter()
    history = fetch_metric_histories(client, wanted, workers=workers)
    timings = {"search_runs": search_seconds, "metric_history": time.perf_counter() - tic}
    return _experiment_data(exp.name, uri, mlflow_runs, history, what, sweep=sweep, started=started, timings=timings)


def load_run_folders(paths: Sequence[str | os.PathLike]) -> ExperimentData:
    """Every run folder at or below ``paths``, read from its record (or results.json): no tracking store.

    The frames are those :func:`load_experiment` builds from MLflow, with each folder's path as its run
    id. A run found twice (a trial's folder on its node and in the sweep's storage) counts once: the copy
    that finished most tasks.
    """
    started = time.perf_counter()
    what = f"run folders {', '.join(map(str, paths))}"
    by_key: dict[str, Record] = {}
    for record in map(read_record, run_folders(paths)):
        if record.run_key not in by_key or len(record.tasks) > len(by_key[record.run_key].tasks):
            by_key[record.run_key] = record
    if not by_key:
        raise NoRunsError(f"no run folders at or below {', '.join(map(str, paths))} (a run folder holds "
                          f"config.yaml and record.jsonl or results.json)")
    records = list(by_key.values())
    runs = [record_as_run(record) for record in records]
    _require_task_metrics(runs, what)
    rows = [(str(record.folder), *row) for record in records for row in record.metric_rows() if is_task_metric(row[0])]
    data = _experiment_data(", ".join(map(str, paths)), "", runs, _history_frame(rows), what, started=started)
    data.folders = {str(record.folder): record.folder for record in records}
    return data


def is_task_metric(key: str) -> bool:
    """A metric the frames read at every task: accuracy and quality matrix entries and the summaries (not the
    per-class values or the training losses)."""
    return bool(TASK_ACCURACY.match(key) or TASK_QUALITY.match(key) or key in SUMMARY_METRICS)


def record_as_run(record: Record) -> Any:
    """A run folder's record in the shape of an MLflow run (``info``, ``data``): what its mirror holds."""
    latest: dict[str, tuple[int, int, float]] = {}
    for key, step, value, stamp in record.metric_rows():
        if key not in latest or (step, stamp) >= latest[key][:2]:
            latest[key] = (step, stamp, value)
    info = SimpleNamespace(run_id=str(record.folder), run_name=record.name, status=record.status,
                           start_time=record.start_time, end_time=record.end_time)
    data = SimpleNamespace(params={k: str(v) for k, v in record.params().items()}, tags=record.tags(),
                           metrics={key: value for key, (_, _, value) in latest.items()})
    return SimpleNamespace(info=info, data=data)


def _require_task_metrics(mlflow_runs: Sequence[Any], what: str) -> None:
    if not any(TASK_ACCURACY.match(k) for run in mlflow_runs for k in run.data.metrics):
        names = ", ".join(str(run.info.run_name) for run in mlflow_runs[:10])
        raise NoTaskMetricsError(f"none of the {len(mlflow_runs)} runs of {what} logged per-task metrics "
                                 f"(acc_task_<j> at step = task); runs: {names}")


def _experiment_data(name: str, uri: str, mlflow_runs: Sequence[Any], history: pd.DataFrame, what: str, *,
                     sweep: dict[str, Any] | None = None, started: float, timings: dict[str, float] | None = None
                     ) -> ExperimentData:
    """The frames of runs (MLflow's, or records read as such) and their per-task metric history."""
    runs = runs_frame(mlflow_runs)
    ids = runs[list(ID_COLUMNS)]
    accuracy = accuracy_frame(history).merge(ids, on="run_id", how="left")
    task_metrics = task_metrics_frame(history, accuracy).merge(ids, on="run_id", how="left")
    done = accuracy.groupby("run_id")["after_task"].max()
    runs["tasks_done"] = runs["run_id"].map(done).fillna(0).astype(int)
    missing = runs.loc[runs["tasks_done"] == 0, "run_name"].astype(str).tolist()
    if missing:
        warnings.warn(f"{len(missing)} runs of {what} have no per-task metrics yet: {', '.join(missing[:10])}",
                      stacklevel=3)
    quality = quality_frame(history).merge(ids, on="run_id", how="left")
    return ExperimentData(
        experiment=name, tracking_uri=uri, runs=runs,
        accuracy=_ordered(accuracy, ["after_task", "task"]), task_metrics=_ordered(task_metrics, ["after_task"]),
        quality=_ordered(quality, ["measure", "after_task", "task"]),
        sweep=sweep, load_seconds=time.perf_counter() - started, timings=timings or {})


def load_sweep(sweep_run: str, tracking_uri: str | None = None, **kwargs: Any) -> ExperimentData:
    """The trials of one sweep parent run, wherever its experiment is."""
    return load_experiment(None, tracking_uri, sweep_run=sweep_run, **kwargs)


def _ordered(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    front = [c for c in ID_COLUMNS if c in frame] + keys
    return frame[front + [c for c in frame.columns if c not in front]].sort_values(
        ["run_id", *keys]).reset_index(drop=True)


def _experiment(client: Any, name: str, uri: str) -> Any:
    found = client.get_experiment_by_name(name)
    if found is None:
        known = sorted(e.name for e in client.search_experiments(max_results=50))
        raise ExperimentNotFoundError(f"no experiment named {name!r} at {uri}; experiments there: "
                                      f"{', '.join(known) if known else '(none)'}")
    return found


def _sweep_info(client: Any, run_id: str) -> dict[str, Any]:
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException as error:
        raise ExperimentNotFoundError(f"no sweep run {run_id!r} at {client.tracking_uri}: "
                                      f"{str(error).splitlines()[0]}") from None
    return {"run_id": run_id, "name": run.info.run_name, "experiment_id": run.info.experiment_id,
            "status": run.info.status, "params": dict(run.data.params), "tags": dict(run.data.tags),
            "metrics": dict(run.data.metrics)}


def search_all_runs(client: Any, experiment_ids: Sequence[str], filter_string: str = "") -> list[Any]:
    """Every active run matching ``filter_string``, one ``search_runs`` call per page of 1,000."""
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(list(experiment_ids), filter_string, max_results=PAGE_SIZE, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


# -- runs -------------------------------------------------------------------------------
def runs_frame(mlflow_runs: Sequence[Any]) -> pd.DataFrame:
    """One row per run: ids and status, method/dataset/seed/config, params (dotted, parsed), final metrics."""
    records = []
    for run in mlflow_runs:
        tags, params = run.data.tags, run.data.params
        record: dict[str, Any] = {
            "run_id": run.info.run_id, "run_name": run.info.run_name, "status": run.info.status,
            "method": tags.get("method") or params.get("method.method") or "unknown",
            "dataset": tags.get("dataset") or params.get("data.dataset"),
            "seed": params.get("run.seed"),
            "sweep_id": tags.get("sweep_id"), "trial_id": tags.get("trial_id"),
            "parent_run_id": tags.get("mlflow.parentRunId"),
            "start_time": run.info.start_time, "end_time": run.info.end_time,
        }
        record.update(params)
        record.update({f"tag.{k}": v for k, v in tags.items() if not k.startswith("mlflow.")})
        record.update(run.data.metrics)
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    param_names = sorted({k for run in mlflow_runs for k in run.data.params})
    for name in param_names:
        frame[name] = parse_values(frame[name])
    frame["seed"] = pd.to_numeric(frame["seed"], errors="coerce").astype("Int64")
    frame.insert(frame.columns.get_loc("seed") + 1, "order", task_orders(frame))
    for name in ("start_time", "end_time"):
        frame[name] = pd.to_datetime(frame[name], unit="ms", errors="coerce")
    frame.insert(frame.columns.get_loc("seed") + 1, "config", config_labels(frame, param_names))
    frame["stream_tasks"] = stream_lengths(frame)
    return frame


def stream_lengths(runs: pd.DataFrame) -> pd.Series:
    """Tasks in each run's stream: its ``data.tasks`` ("0|1|2"), cut to ``data.num_tasks``; NaN when not logged."""
    tasks = runs["data.tasks"] if "data.tasks" in runs else pd.Series(None, index=runs.index, dtype=object)
    cap = (pd.to_numeric(runs["data.num_tasks"], errors="coerce") if "data.num_tasks" in runs
           else pd.Series(np.nan, index=runs.index))
    counted = tasks.map(lambda text: np.nan if text is None or (isinstance(text, float) and math.isnan(text))
                        else float(len(str(text).split("|"))))
    return counted.where(cap.isna() | (counted <= cap), cap)


def task_orders(runs: pd.DataFrame) -> pd.Series:
    """Per run, the order its classes came in: "label", "random 3" (``data.order_seed`` 3) or "3,1,4,0,2"."""
    given = runs["data.task_order"] if "data.task_order" in runs else pd.Series(None, index=runs.index)
    given = given.fillna("label")
    seeds = runs["data.order_seed"] if "data.order_seed" in runs else pd.Series("0", index=runs.index)
    return given.where(given != "random", "random " + seeds.map(value_text))


def parse_values(values: pd.Series) -> pd.Series:
    """Logged param strings to numbers or booleans where every value is one ("None" counts as missing)."""
    text = values.where(~values.isin(["None", "null", ""]), None)
    present = text.dropna()
    numbers = pd.to_numeric(present, errors="coerce")
    if len(present) and numbers.notna().all():
        return pd.to_numeric(text, errors="coerce")
    if len(present) and present.isin(["True", "False"]).all():
        return text.map({"True": True, "False": False})
    return values


def config_labels(runs: pd.DataFrame, param_names: Iterable[str]) -> pd.Series:
    """Per run, ``"lambda_ra=0.001, replay_mode=fixed"``: the params that vary between runs of its method and
    act in the run (as run names are: a JTR run with fresh replay has no replay_size_per_class), seeds and
    paths aside; "" when a method ran one configuration only."""
    labels = pd.Series("", index=runs.index, dtype=object)
    candidates = [p for p in param_names if p not in RUN_SPECIFIC_PARAMS and "." in p]
    for method, group in runs.groupby("method", dropna=False):
        varying = [p for p in candidates if group[p].nunique(dropna=False) > 1]
        acting = [(p, group.apply(lambda row, name=p, of=method: param_acts(name, of, row), axis=1)) for p in varying]
        parts = [(p.rsplit(".", 1)[-1] + "=" + group[p].map(value_text)).where(acts, "") for p, acts in acting]
        if parts:
            labels[group.index] = pd.concat(parts, axis=1).apply(lambda row: ", ".join(t for t in row if t), axis=1)
    return labels


def param_acts(param: str, method: Any, params: Mapping[str, Any]) -> bool:
    """Whether the logged ``param`` changed the training of a run of ``method`` with ``params``: a method field
    acts only as a knob of one of the run's methods and under its condition (replay_size_per_class: fixed
    replay); every other field acts."""
    section, _, name = param.partition(".")
    if section != "method" or not isinstance(method, str):
        return True
    from mergan.methods import REGISTRY, knob_condition  # imports torch: only when methods' knobs are asked

    parts = method.split("+")
    users = [part for part in parts if part in REGISTRY.knob_users().get(name, [])]
    if not users:
        return not any(part in REGISTRY.methods() for part in parts)  # an unknown method: keep what it logged
    return all(params.get(field) == value for part in users for field, value in knob_condition(part, name).items())


# -- per-task history -------------------------------------------------------------------
def fetch_metric_histories(client: Any, wanted: Mapping[str, Iterable[str]], workers: int = 8,
                           bulk: bool = True) -> pd.DataFrame:
    """Every logged value of the metrics ``wanted[run_id]``: columns run_id, key, step, value, timestamp.

    Batched where the store allows (see :func:`tracking.history.metric_history_rows`); ``bulk=False``
    asks per (run, metric) through MLflow's public API only. Repeated (run, key, step) values keep the
    latest one logged.
    """
    return _history_frame(metric_history_rows(client, wanted, workers, bulk=bulk))


def _history_frame(rows: Sequence[tuple[str, str, int, float, int]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["run_id", "key", "step", "value", "timestamp"])
    frame = frame.sort_values(["run_id", "key", "step", "timestamp"], kind="stable")
    return frame.drop_duplicates(["run_id", "key", "step"], keep="last").reset_index(drop=True)


def accuracy_frame(history: pd.DataFrame) -> pd.DataFrame:
    """History rows of ``acc_task_{j}`` -> run_id, after_task (the step), task (j), accuracy."""
    task = history["key"].str.extract(TASK_ACCURACY, expand=False)
    rows = history[task.notna()]
    return pd.DataFrame({"run_id": rows["run_id"].to_numpy(), "after_task": rows["step"].to_numpy(int),
                         "task": task[task.notna()].astype(int).to_numpy(),
                         "accuracy": rows["value"].to_numpy(float)})


def task_metrics_frame(history: pd.DataFrame, accuracy: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, after_task) with the logged summaries; ``avg_acc``, ``bwt`` and ``forgetting``
    are computed from the accuracy matrix (mergan's metric functions) where a step did not log them."""
    summaries = history[history["key"].isin(SUMMARY_METRICS)]
    wide = summaries.pivot(index=["run_id", "step"], columns="key", values="value").reset_index()
    wide = wide.rename(columns={"step": "after_task"}).rename_axis(columns=None)
    steps = accuracy[["run_id", "after_task"]].drop_duplicates()
    frame = steps.merge(wide, on=["run_id", "after_task"], how="outer")
    for name in SUMMARIES:
        if name not in frame:
            frame[name] = np.nan
    gaps = frame[["avg_acc", "bwt", "forgetting"]].isna().any(axis=1)
    if gaps.any():
        _fill_from_matrices(frame, gaps, accuracy)
    return frame


def _fill_from_matrices(frame: pd.DataFrame, gaps: pd.Series, accuracy: pd.DataFrame) -> None:
    matrices: dict[str, list[list[float | None]]] = {}
    for index in frame.index[gaps]:
        run_id, k = frame.at[index, "run_id"], int(frame.at[index, "after_task"])
        if run_id not in matrices:
            values = accuracy_matrix(accuracy, run_id)
            matrices[run_id] = [[None if np.isnan(v) else float(v) for v in row] for row in values]
        rows = matrices[run_id][:k]
        for name, summary in SUMMARIES.items():
            if pd.isna(frame.at[index, name]) and len(rows) == k:
                value = summary(rows)
                frame.at[index, name] = np.nan if value is None else value


# -- artifacts and studies ----------------------------------------------------------------
def download_sample_grids(data: ExperimentData, run_ids: Iterable[str], dest: str | os.PathLike,
                          client: Any = None) -> dict[str, Path]:
    """The last ``samples/task_{t}.png`` of each run into ``dest/<run_id>/``; runs without one are left out.
    Runs read from folders give their own file."""
    found: dict[str, Path] = {}
    if data.folders:
        for run_id in run_ids:
            record = read_record(data.folders[run_id])
            grids = [grid for grid in (record.path(line.get("samples_path")) for line in record.tasks) if grid]
            if grids:
                found[run_id] = grids[-1]
        return found
    client = client or tracking_client(data.tracking_uri)
    # No MLflow progress bar per downloaded file (it would fill the terminal of `mergan report`).
    with mock.patch.dict(os.environ, {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}):
        for run_id in run_ids:
            _download_last_grid(client, run_id, Path(dest), found)
    return found


def _download_last_grid(client: Any, run_id: str, dest: Path, found: dict[str, Path]) -> None:
    try:
        files = [f.path for f in client.list_artifacts(run_id, "samples") if not f.is_dir]
    except Exception as error:  # noqa: BLE001 - an unreachable artifact store: that run has no grid
        warnings.warn(f"run {run_id}: cannot list its samples ({type(error).__name__}: {error})", stacklevel=3)
        return
    numbered = [(int(m.group(1)), path) for path in files if (m := re.search(r"task_(\d+)\.\w+$", path))]
    if numbered:
        folder = dest / run_id
        folder.mkdir(parents=True, exist_ok=True)
        found[run_id] = Path(client.download_artifacts(run_id, max(numbered)[1], str(folder)))


def load_optuna_study(storage: str, study_name: str | None = None) -> Any:
    """An Optuna study from its storage URL (``sqlite:///optuna.db``, a journal file ...); with no
    ``study_name`` the storage must hold exactly one study."""
    import optuna

    if study_name is None:
        names = optuna.get_all_study_names(storage)
        if len(names) != 1:
            raise ExperimentNotFoundError(f"{storage} holds {len(names)} studies ({', '.join(names)}); name one")
        study_name = names[0]
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        names = optuna.get_all_study_names(storage)
        raise ExperimentNotFoundError(f"no Optuna study {study_name!r} in {storage}; studies there: "
                                      f"{', '.join(names) if names else '(none)'}") from None
