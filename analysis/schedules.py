"""PBT schedules read back from a sweep: the knob values each task of a trial's final weights was trained with,
a figure of the winning schedules, and the best schedule beside the best constant value of a search.

```python
pbt, tpe = load_sweep(pbt_run_id, uri), load_sweep(tpe_run_id, uri)
schedules(pbt)                                  # one row per (run, task, knob): value, trained_by, avg_acc
copies(pbt)                                     # one row per copy: which trial copied whom after which task
schedule_figure(pbt)                            # knob vs task: every trial's final weights, the winner bold
schedule_vs_constant(pbt, tpe)                  # a table: the best schedule vs the best constant, same budget
schedule_vs_constant_figure(pbt, tpe)           # the two as knob and average accuracy vs task
```

A PBT trial's run holds its final weights' schedule in the tag ``pbt.schedule`` (trainables/pbt.py):
per task, the trial that trained it and the knob values in force. The weights' average accuracy after
task k is what that trial logged at step k (before any later copy), so the curve follows the lineage.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.errors import NothingToPlotError
from analysis.figures import styled
from analysis.load import ExperimentData
from mergan.settings import value_text

SCHEDULE_TAG = "tag.pbt.schedule"
COPY_TAG = "tag.pbt.copied_after_task_"
WINNER_COLOR, OTHERS_COLOR, CONSTANT_COLOR = "#D55E00", "#999999", "#0072B2"


def schedules(data: ExperimentData, metric: str = "avg_acc") -> pd.DataFrame:
    """One row per (run, task, knob) of every PBT run: ``value``, ``trained_by`` (trial id) and the
    weights' ``metric`` after that task; empty when no run holds a schedule."""
    columns = ["run_id", "trial_id", "task", "knob", "value", "trained_by", metric]
    if SCHEDULE_TAG not in data.runs:
        return pd.DataFrame(columns=columns)
    logged = data.task_metrics.set_index(["run_id", "after_task"])[metric] if metric in data.task_metrics else None
    run_of_trial = dict(zip(data.runs["trial_id"], data.runs["run_id"]))
    records = []
    for _, run in data.runs.dropna(subset=[SCHEDULE_TAG]).iterrows():
        for entry in json.loads(run[SCHEDULE_TAG]):
            source_run = run_of_trial.get(entry["trial_id"])
            value_then = (logged.get((source_run, entry["task"]), np.nan) if logged is not None else np.nan)
            for knob, value in entry["knobs"].items():
                records.append([run["run_id"], run["trial_id"], entry["task"], knob, value, entry["trial_id"],
                                value_then])
    return pd.DataFrame.from_records(records, columns=columns)


def copies(data: ExperimentData) -> pd.DataFrame:
    """One row per copy a PBT trial made: ``run_id``, ``trial_id``, ``after_task``, ``from_trial`` (its tags
    ``pbt.copied_after_task_<t>``); empty when no trial copied another."""
    columns = [c for c in data.runs.columns if c.startswith(COPY_TAG)]
    records = [(run["run_id"], run["trial_id"], int(c[len(COPY_TAG):]), run[c])
               for _, run in data.runs.iterrows() for c in columns if isinstance(run[c], str)]
    frame = pd.DataFrame.from_records(records, columns=["run_id", "trial_id", "after_task", "from_trial"])
    return frame.sort_values(["after_task", "trial_id"]).reset_index(drop=True)


def best_run(data: ExperimentData, metric: str = "avg_acc", mode: str = "max") -> pd.Series:
    """The run with the best final ``metric`` among those that finished the most tasks."""
    done = data.runs[data.runs["tasks_done"] == data.runs["tasks_done"].max()].dropna(subset=[metric])
    if done.empty:
        raise NothingToPlotError(f"no run of {data.experiment!r} logged {metric!r} after its last task")
    return done.loc[done[metric].idxmax() if mode == "max" else done[metric].idxmin()]


def _knobs(frame: pd.DataFrame, knob: str | None) -> list[str]:
    knobs = sorted(frame["knob"].unique())
    if knob is not None:
        if knob not in knobs:
            raise NothingToPlotError(f"no schedule holds knob {knob!r}; knobs: {', '.join(knobs) or 'none'}")
        return [knob]
    return knobs


def _value_axis(axes: Any, values: np.ndarray) -> None:
    positive = values[np.isfinite(values) & (values > 0)]
    if len(positive) == len(values) and len(values) and positive.max() / positive.min() > 10:
        axes.set_yscale("log")


@styled
def schedule_figure(data: ExperimentData, knob: str | None = None, metric: str = "avg_acc") -> Figure:
    """Each knob vs task for the final weights of every PBT trial; the best trial's schedule in bold."""
    frame = schedules(data, metric)
    if frame.empty:
        raise NothingToPlotError(f"no run of {data.experiment!r} holds a PBT schedule (tag pbt.schedule); "
                                 f"was it a sweep with --scheduler pbt?")
    knobs = _knobs(frame, knob)
    winner = best_run(data, metric)["run_id"]
    figure = Figure(figsize=(3.4 * len(knobs), 2.6), layout="constrained")
    panels = np.atleast_1d(figure.subplots(1, len(knobs)))
    for axes, name in zip(panels, knobs):
        rows = frame[frame["knob"] == name]
        for run_id, run_rows in rows.groupby("run_id"):
            best = run_id == winner
            axes.plot(run_rows["task"], run_rows["value"], marker="o", zorder=3 if best else 2,
                      color=WINNER_COLOR if best else OTHERS_COLOR, linewidth=2.2 if best else 1.0,
                      label=f"best: {run_rows['trial_id'].iloc[0]}" if best else None)
        _value_axis(axes, rows["value"].to_numpy(float))
        axes.set_xticks(sorted(rows["task"].unique()))
        axes.set_xlabel("task trained with this value")
        axes.set_ylabel(name)
        axes.legend(frameon=False)
    figure.suptitle(f"{data.experiment}: PBT schedules of the final weights (grey: other trials)")
    return figure


def schedule_vs_constant(pbt: ExperimentData, search: ExperimentData, knob: str | None = None,
                         metric: str = "avg_acc") -> pd.DataFrame:
    """The best PBT schedule beside the best constant value of a search on the same stream: the knob per
    task, final ``metric`` and forgetting, and the budget (trials x tasks trained)."""
    frame = schedules(pbt, metric)
    if frame.empty:
        raise NothingToPlotError(f"no run of {pbt.experiment!r} holds a PBT schedule (tag pbt.schedule)")
    name = _knobs(frame, knob)[0]
    winner = best_run(pbt, metric)
    path = frame[(frame["run_id"] == winner["run_id"]) & (frame["knob"] == name)].sort_values("task")
    constant = best_run(search, metric)
    param = next((c for c in search.runs.columns if c.rsplit(".", 1)[-1] == name and "." in c), None)
    if param is None:
        raise NothingToPlotError(f"the search {search.experiment!r} has no param {name!r} to compare with")
    rows = [
        {"search": "PBT schedule", "trial": winner["trial_id"], name: " -> ".join(value_text(v) for v in path["value"]),
         metric: winner[metric], "forgetting": winner.get("forgetting", np.nan),
         "budget (trials x tasks)": int(pbt.runs["tasks_done"].sum())},
        {"search": "best constant", "trial": constant["trial_id"], name: value_text(constant[param]),
         metric: constant[metric], "forgetting": constant.get("forgetting", np.nan),
         "budget (trials x tasks)": int(search.runs["tasks_done"].sum())},
    ]
    return pd.DataFrame(rows)


@styled
def schedule_vs_constant_figure(pbt: ExperimentData, search: ExperimentData, knob: str | None = None,
                                metric: str = "avg_acc") -> Figure:
    """Left: the knob per task, best PBT schedule vs best constant; right: ``metric`` after each task of both."""
    frame = schedules(pbt, metric)
    if frame.empty:
        raise NothingToPlotError(f"no run of {pbt.experiment!r} holds a PBT schedule (tag pbt.schedule)")
    name = _knobs(frame, knob)[0]
    winner, constant = best_run(pbt, metric), best_run(search, metric)
    path = frame[(frame["run_id"] == winner["run_id"]) & (frame["knob"] == name)].sort_values("task")
    param = next(c for c in search.runs.columns if c.rsplit(".", 1)[-1] == name and "." in c)
    flat = search.task_metrics[search.task_metrics["run_id"] == constant["run_id"]].sort_values("after_task")
    figure = Figure(figsize=(6.8, 2.6), layout="constrained")
    left, right = figure.subplots(1, 2)
    left.plot(path["task"], path["value"], marker="o", color=WINNER_COLOR, label=f"PBT ({winner['trial_id']})")
    left.plot(path["task"], [constant[param]] * len(path), marker="s", color=CONSTANT_COLOR,
              label=f"constant ({constant['trial_id']})")
    _value_axis(left, np.append(path["value"].to_numpy(float), float(constant[param])))
    left.set(xlabel="task", ylabel=name, xticks=list(path["task"]))
    right.plot(path["task"], path[metric] * 100, marker="o", color=WINNER_COLOR, label="PBT schedule")
    right.plot(flat["after_task"], flat[metric] * 100, marker="s", color=CONSTANT_COLOR, label="best constant")
    right.set(xlabel="tasks trained", ylabel=f"{metric} (%)", xticks=list(path["task"]))
    for axes in (left, right):
        axes.legend(frameon=False)
    figure.suptitle(f"best PBT schedule vs best constant {name}")
    return figure
