"""Combining runs over seeds: final values, each method's best configuration, mean and spread, mean matrices."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.errors import MixedDatasetsError
from analysis.load import ExperimentData, accuracy_matrix
from analysis.paper import method_sort_key

GROUP = ["method", "config"]  # a configuration: the method plus the params that vary between its runs


def single_dataset(data: ExperimentData, what: str = "a table") -> str:
    """The one dataset of ``data``; a :class:`MixedDatasetsError` naming them all otherwise."""
    datasets = data.datasets
    if len(datasets) != 1:
        raise MixedDatasetsError(
            f"experiment {data.experiment!r} mixes datasets {datasets}: {what} compares runs of one dataset; "
            f"take one with data.for_dataset(name)" if datasets else
            f"experiment {data.experiment!r}: no run names its dataset (tag 'dataset' or param 'data.dataset')")
    return datasets[0]


def value_at(data: ExperimentData, metric: str, after_task: int | None = None) -> pd.Series:
    """Per run id: ``metric`` after task ``after_task`` (default: after the run's last task)."""
    frame = data.task_metrics
    if metric not in frame:
        return pd.Series(dtype=float, name=metric)
    if after_task is None:
        frame = frame.loc[frame.groupby("run_id")["after_task"].idxmax()]
    else:
        frame = frame[frame["after_task"] == after_task]
    return frame.set_index("run_id")[metric].dropna().rename(metric)


def complete_runs(data: ExperimentData) -> ExperimentData:
    """Only the runs that finished as many tasks as the longest run (early-stopped trials aside)."""
    return data.subset(data.runs.loc[data.runs["tasks_done"] == data.num_tasks, "run_id"])


def best_configs(data: ExperimentData, metric: str = "avg_acc", higher_is_better: bool = True) -> pd.DataFrame:
    """Per method, the configuration whose complete runs have the best mean final ``metric``.

    Columns: method, config, mean, std, n (seeds). Methods that ran one configuration keep it.
    """
    complete = complete_runs(data)
    runs = complete.runs.assign(value=complete.runs["run_id"].map(value_at(complete, metric)))
    # A method none of whose runs finished every task competes with what its runs reached.
    unfinished = data.runs[~data.runs["method"].isin(runs["method"])]
    runs = pd.concat([runs, unfinished.assign(value=unfinished["run_id"].map(value_at(data, metric)))])
    stats = seed_stats(runs, GROUP, "value")
    stats = stats.sort_values("mean", ascending=not higher_is_better, na_position="last")
    best = stats.groupby("method", sort=False).head(1)
    return best.sort_values("method", key=lambda s: s.map(method_sort_key)).reset_index(drop=True)


def select_best(data: ExperimentData, metric: str = "avg_acc") -> ExperimentData:
    """The runs (every seed, complete or not) of each method's best configuration (:func:`best_configs`)."""
    best = best_configs(data, metric)
    keep = data.runs.merge(best[GROUP], on=GROUP)["run_id"]
    return data.subset(keep)


def seed_stats(frame: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """Mean, sample std (NaN for one seed) and count of ``value`` per group of ``by``."""
    grouped = frame.dropna(subset=[value]).groupby(by, dropna=False, sort=False)[value]
    return grouped.agg(mean="mean", std="std", n="count").reset_index()


def curves(data: ExperimentData) -> pd.DataFrame:
    """Per method/config and tasks trained: accuracy on task 1 and the average accuracy, over seeds.

    Columns: method, config, after_task, measure ("task_1" or "avg_acc"), mean, std, n.
    """
    first = data.accuracy[data.accuracy["task"] == 1].rename(columns={"accuracy": "value"})
    average = data.task_metrics.rename(columns={"avg_acc": "value"})
    parts = [seed_stats(first, [*GROUP, "after_task"], "value").assign(measure="task_1"),
             seed_stats(average, [*GROUP, "after_task"], "value").assign(measure="avg_acc")]
    return pd.concat(parts, ignore_index=True).sort_values([*GROUP, "measure", "after_task"], ignore_index=True)


def mean_matrices(data: ExperimentData) -> dict[tuple[str, str], np.ndarray]:
    """Per (method, config): the element-wise mean of its runs' accuracy matrices (NaN where none measured)."""
    out: dict[tuple[str, str], np.ndarray] = {}
    for (method, config), group in data.runs.groupby(GROUP, sort=False):
        matrices = [accuracy_matrix(data.accuracy, run_id) for run_id in group["run_id"]]
        matrices = [m for m in matrices if m.size]
        if not matrices:
            continue
        size = max(len(m) for m in matrices)
        stack = np.full((len(matrices), size, size), np.nan)
        for index, matrix in enumerate(matrices):
            stack[index, :len(matrix), :len(matrix)] = matrix
        with np.errstate(all="ignore"):
            counts = np.sum(~np.isnan(stack), axis=0)
            out[(method, config)] = np.where(counts > 0, np.nansum(stack, axis=0) / np.maximum(counts, 1), np.nan)
    return dict(sorted(out.items(), key=lambda item: (method_sort_key(item[0][0]), item[0][1])))
