"""Combining runs over seeds: final values, each method's best configuration, mean and spread, mean matrices."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.errors import MixedDatasetsError
from analysis.load import ExperimentData
from analysis.paper import method_sort_key

GROUP = ["method", "config"]  # a configuration: the method plus the params that vary between its runs
CONFIDENCE = 0.95  # of the intervals over seeds, and 1 - the test level behind seeds_to_separate
POWER = 0.8  # the chance seeds_to_separate asks for of finding a true difference
MOST_SEEDS = 1000  # seeds_to_separate gives up beyond this many


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


def split_joint_references(data: ExperimentData) -> tuple[ExperimentData, ExperimentData]:
    """(the runs to compare, the JT runs trained on a shorter stream than the others).

    The paper's JT after k tasks is a joint model of the first k tasks' classes (``joint.py`` scores its
    final model), so a JT run on the first k tasks is the reference for column k, not a configuration
    of its own; ``mergan reproduce table1`` runs one per seed.
    """
    lengths = data.runs["stream_tasks"] if "stream_tasks" in data.runs else pd.Series(np.nan, index=data.runs.index)
    shorter = (data.runs["method"] == "jt") & lengths.notna() & (lengths < lengths.max())
    return (data.subset(data.runs.loc[~shorter, "run_id"]), data.subset(data.runs.loc[shorter, "run_id"]))


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
    """Mean, sample std (NaN for one seed), count and the 95% t-interval of the mean (``ci_low``,
    ``ci_high``; NaN for one seed) of ``value`` per group of ``by``."""
    grouped = frame.dropna(subset=[value]).groupby(by, dropna=False, sort=False)[value]
    stats = grouped.agg(mean="mean", std="std", n="count").reset_index()
    half = confidence_half_width(stats["std"].to_numpy(float), stats["n"].to_numpy(float))
    return stats.assign(ci_low=stats["mean"] - half, ci_high=stats["mean"] + half)


def confidence_half_width(std: np.ndarray | float, n: np.ndarray | float, confidence: float = CONFIDENCE
                          ) -> np.ndarray:
    """Half the width of the t-interval of a mean over ``n`` seeds with sample std ``std``: t(n-1) * std / sqrt(n).

    Seeds are few, so the interval uses Student's t with n - 1 degrees of freedom, not the normal's
    1.96 (over 3 seeds the 95% factor is 4.30 / sqrt(3)). NaN where n < 2.
    """
    from scipy import stats

    std, n = np.asarray(std, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = stats.t.ppf(0.5 + confidence / 2, np.where(n >= 2, n - 1, np.nan))
        return np.where(n >= 2, factor * std / np.sqrt(n), np.nan)


def seeds_to_separate(difference: float, std: float, alpha: float = 1 - CONFIDENCE, power: float = POWER,
                      most: int = MOST_SEEDS) -> int | None:
    """Seeds per method a two-sided two-sample t-test at level ``alpha`` needs to find a true difference
    ``difference`` between two methods' means with probability ``power``, when each seed's result spreads
    with standard deviation ``std`` (the measured, pooled spread).

    Exact power from the noncentral t distribution (df = 2n - 2, noncentrality d * sqrt(n / 2) with
    d = difference / std), not the normal approximation. None when no number of seeds up to ``most``
    does (a difference of 0, or one tiny against the spread); 2 when the spread is 0.
    """
    from scipy import stats

    if not np.isfinite(difference) or not np.isfinite(std) or difference == 0:
        return None
    if std == 0:
        return 2
    effect = abs(difference) / std
    for n in range(2, most + 1):
        df = 2 * n - 2
        critical = stats.t.ppf(1 - alpha / 2, df)
        shift = effect * np.sqrt(n / 2)
        if stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift) >= power:
            return n
    return None


def pooled_std(groups: list[tuple[float, float]]) -> float:
    """The pooled sample std of groups given as (std, n); groups of one seed add nothing (NaN: none has two)."""
    measured = [(std, n) for std, n in groups if n >= 2 and np.isfinite(std)]
    if not measured:
        return np.nan
    return float(np.sqrt(sum((n - 1) * std**2 for std, n in measured) / sum(n - 1 for _, n in measured)))


ORDER_SPREAD_COLUMNS = [*GROUP, "orders", "seeds", "runs", "mean", "std_seeds", "std_orders"]


def order_spread(data: ExperimentData, metric: str = "avg_acc") -> pd.DataFrame:
    """Per configuration, its final ``metric`` (complete runs) spread over task orders beside its spread over
    seeds: forgetting is known to depend on the order the classes come in.

    Columns: method, config, orders (how many), seeds (the most of one order), runs, mean (over every run),
    std_seeds (the std over seeds within an order, pooled over orders; NaN without two seeds of one order),
    std_orders (the std over orders of each order's mean over its seeds; NaN with one order).
    """
    complete = complete_runs(data)
    runs = complete.runs.assign(value=complete.runs["run_id"].map(value_at(complete, metric)))
    runs = runs.dropna(subset=["value"])
    if "order" not in runs:  # frames made elsewhere (a CSV of runs) from runs of one order
        runs = runs.assign(order="label")
    rows = []
    for (method, config), group in runs.groupby(GROUP, sort=False):
        per_order = group.groupby("order")["value"].agg(["mean", "std", "count"])
        rows.append({"method": method, "config": config, "orders": len(per_order),
                     "seeds": int(per_order["count"].max()), "runs": len(group), "mean": group["value"].mean(),
                     "std_seeds": pooled_std(list(zip(per_order["std"], per_order["count"]))),
                     "std_orders": per_order["mean"].std(ddof=1) if len(per_order) >= 2 else np.nan})
    frame = pd.DataFrame(rows, columns=ORDER_SPREAD_COLUMNS)
    return frame.sort_values(GROUP, key=lambda s: s.map(method_sort_key) if s.name == "method" else s,
                             ignore_index=True)


def curves(data: ExperimentData) -> pd.DataFrame:
    """Per method/config and tasks trained: accuracy on task 1 and the average accuracy, over seeds.

    Columns: method, config, after_task, measure ("task_1" or "avg_acc"), mean, std, n.
    """
    first = data.accuracy[data.accuracy["task"] == 1].rename(columns={"accuracy": "value"})
    average = data.task_metrics.rename(columns={"avg_acc": "value"})
    parts = [seed_stats(first, [*GROUP, "after_task"], "value").assign(measure="task_1"),
             seed_stats(average, [*GROUP, "after_task"], "value").assign(measure="avg_acc")]
    return pd.concat(parts, ignore_index=True).sort_values([*GROUP, "measure", "after_task"], ignore_index=True)


def metric_curves(data: ExperimentData, metrics: list[str]) -> pd.DataFrame:
    """Per method/config and tasks trained: each of ``metrics`` (task-level summaries such as
    ``fr_recall_classifier``) over seeds. Columns: method, config, after_task, measure, mean, std, n."""
    parts = [seed_stats(data.task_metrics, [*GROUP, "after_task"], name).assign(measure=name)
             for name in metrics if name in data.task_metrics]
    if not parts:
        return pd.DataFrame(columns=[*GROUP, "after_task", "mean", "std", "n", "ci_low", "ci_high", "measure"])
    return pd.concat(parts, ignore_index=True).sort_values([*GROUP, "measure", "after_task"], ignore_index=True)


def mean_matrices(data: ExperimentData, measure: str = "accuracy") -> dict[tuple[str, str], np.ndarray]:
    """Per (method, config): the element-wise mean of its runs' accuracy matrices (or quality matrices
    ``measure``, e.g. "fid_classifier"), NaN where none measured."""
    out: dict[tuple[str, str], np.ndarray] = {}
    for (method, config), group in data.runs.groupby(GROUP, sort=False):
        matrices = [data.matrix(run_id, measure) for run_id in group["run_id"]]
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
