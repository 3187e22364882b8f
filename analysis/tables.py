"""The paper's result tables from our runs, beside its numbers: Table 1 (digits) or Table 2 (LSUN).

```python
table = results_table(data)            # one dataset; each method's best configuration
table.cells                            # tidy numbers: row, method, config, header, source, tasks, metric, mean,
                                       # std, n, ci_low, ci_high
table.separation()                     # seeds per method to tell each row from the best one
print(table.to_markdown()); table.to_latex(); table.to_html()
```
Accuracies are shown in percent (MLflow holds fractions), FID as is; "mean ± std [95% t-interval of the
mean]" over seeds.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import pandas as pd

from analysis.aggregate import (
    CONFIDENCE,
    GROUP,
    POWER,
    order_spread,
    pooled_std,
    seed_stats,
    seeds_to_separate,
    select_best,
    single_dataset,
    split_joint_references,
    value_at,
)
from analysis.errors import NoTaskMetricsError
from analysis.load import ExperimentData
from analysis.paper import (
    NOT_IN_PAPER_MARK,
    TABLE1,
    TABLE1_TASKS,
    TABLE2,
    TABLE2_LABELS,
    TABLE2_TASKS,
    in_paper,
    method_label,
    method_sort_key,
    paper_dataset,
)

MISSING = "–"
SEPARATION_COLUMNS = ["row", "best_row", "tasks", "mean", "std", "n", "difference", "spread", "seeds_needed"]
PERCENT_METRICS = {"avg_acc", "reverse_acc"}


@dataclass
class ResultTable:
    """A results table: tidy ``cells`` plus how to show them."""

    dataset: str
    paper_dataset: str | None
    num_tasks: int
    kind: str  # "table1" (digits: accuracy after 5 and T tasks) or "table2" (LSUN: acc, rev. acc, FID)
    cells: pd.DataFrame
    caption: str

    def display(self) -> pd.DataFrame:
        """Rows (methods) x headers, each cell the formatted "mean ± std" (or the paper's number)."""
        headers = list(dict.fromkeys(self.cells["header"]))
        rows = list(dict.fromkeys(self.cells["row"]))
        text = self.cells.assign(text=[format_cell(*values) for values in zip(
            self.cells["mean"], self.cells["std"], self.cells["ci_low"], self.cells["ci_high"])])
        table = text.pivot(index="row", columns="header", values="text").reindex(index=rows, columns=headers)
        seeds = self.cells[self.cells["source"] == "ours"].groupby("row", sort=False)["n"].max()
        table["Seeds"] = seeds.reindex(rows).map(lambda n: MISSING if pd.isna(n) else str(int(n)))
        table = table.fillna(MISSING)
        table.index.name, table.columns.name = "Method", None
        return table

    def separation(self) -> pd.DataFrame:
        """Each row of our results against the best one (highest mean accuracy after the most tasks): the
        difference of means, the pooled spread over seeds, and the seeds per method a two-sided t-test
        needs to tell the two apart (5% level, 80% power) if the difference and spread are as measured.

        Columns: row, best_row, tasks, mean, std, n, difference, spread, seeds_needed (None: no spread
        measured yet, or a difference too small against it). Empty when no row has a result.
        """
        ours = self.cells[(self.cells["source"] == "ours") & (self.cells["metric"] == "avg_acc")].dropna(
            subset=["mean"])
        if ours.empty:
            return pd.DataFrame(columns=SEPARATION_COLUMNS)
        ours = ours[ours["tasks"] == ours["tasks"].max()]
        best = ours.loc[ours["mean"].idxmax()]
        rows = []
        for _, row in ours.iterrows():
            if row["row"] == best["row"]:
                continue
            spread = pooled_std([(row["std"], row["n"]), (best["std"], best["n"])])
            difference = row["mean"] - best["mean"]
            rows.append({"row": row["row"], "best_row": best["row"], "tasks": int(row["tasks"]),
                         "mean": row["mean"], "std": row["std"], "n": row["n"], "difference": difference,
                         "spread": spread, "seeds_needed": seeds_to_separate(difference, spread)})
        return pd.DataFrame(rows, columns=SEPARATION_COLUMNS)

    def separation_note(self) -> str:
        """What :meth:`separation` tells, in one sentence ("" without rows)."""
        frame = self.separation()
        if frame.empty:
            return ""
        return (f"Seeds per method to tell each from {frame['best_row'].iloc[0]} (the best after "
                f"{frame['tasks'].iloc[0]} tasks) with a two-sided t-test at the {1 - CONFIDENCE:.0%} level and "
                f"{POWER:.0%} power, if the difference and the spread over seeds are as measured here "
                f"({MISSING} where no method of the pair has two seeds to measure a spread).")

    def separation_display(self) -> pd.DataFrame:
        """:meth:`separation` as text cells, indexed by method."""
        frame = self.separation()
        shown = pd.DataFrame({
            "Difference (points)": frame["difference"].map(lambda v: f"{v:+.2f}"),
            "Spread (pooled std)": frame["spread"].map(lambda v: MISSING if pd.isna(v) else f"{v:.2f}"),
            "Seeds now": frame["n"].map(lambda v: str(int(v))),
            "Seeds needed": frame["seeds_needed"].map(lambda v: MISSING if v is None or pd.isna(v) else str(int(v)))})
        shown.index = pd.Index(frame["row"], name="Method")
        return shown

    def to_markdown(self) -> str:
        text = f"{self.caption}\n\n{markdown_table(self.display())}"
        note = self.separation_note()
        return text + (f"\n{note}\n\n{markdown_table(self.separation_display())}" if note else "")

    def to_latex(self) -> str:
        table = self.display()
        header = " & ".join(latex_escape(h) for h in ["Method", *table.columns]) + r" \\"
        body = [" & ".join(latex_escape(str(v)) for v in [index, *row]) + r" \\"
                for index, row in zip(table.index, table.values)]
        return "\n".join([r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(self.caption)}}}",
                          rf"\begin{{tabular}}{{l{'r' * len(table.columns)}}}", r"\toprule", header, r"\midrule",
                          *body, r"\bottomrule", r"\end{tabular}", r"\end{table}"]) + "\n"

    def to_html(self) -> str:
        parts = [(self.caption, self.display(), "results")]
        note = self.separation_note()
        if note:
            parts.append((note, self.separation_display(), "separation"))
        return "".join(f"<figure class='table'><figcaption>{html.escape(caption)}</figcaption>"
                       f"{frame.to_html(classes=kind, border=0, escape=True)}</figure>"
                       for caption, frame, kind in parts)


def markdown_table(table: pd.DataFrame) -> str:
    """A frame of text cells as a Markdown table: its index (named) first, left-aligned; columns right-aligned."""
    header = [table.index.name or "", *table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * len(table.columns)) + "|"]
    lines += ["| " + " | ".join([str(index), *row]) + " |" for index, row in zip(table.index, table.values)]
    return "\n".join(lines) + "\n"


def format_cell(mean: float, std: float, ci_low: float = math.nan, ci_high: float = math.nan) -> str:
    """``"81.20 ± 1.30 [78.0, 84.4]"``: mean ± std over seeds and the 95% t-interval of the mean; the
    mean alone for one seed (or a number of the paper)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return MISSING
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.2f}"
    interval = f" [{ci_low:.1f}, {ci_high:.1f}]" if math.isfinite(ci_low) and math.isfinite(ci_high) else ""
    return f"{mean:.2f} ± {std:.2f}{interval}"


def latex_escape(text: str) -> str:
    for plain, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                           ("$", r"\$"), ("{", r"\{"), ("}", r"\}")):
        text = text.replace(plain, escaped)
    return text.replace("±", r"$\pm$").replace(MISSING, "--")


def results_table(data: ExperimentData, select: str = "best") -> ResultTable:
    """Table 1 (MNIST/SVHN, or any non-LSUN dataset without paper numbers) or Table 2 (LSUN) for ``data``.

    ``select="best"``: each method's best configuration by mean final average accuracy (rows say
    which); ``"all"``: one row per configuration.
    """
    dataset = single_dataset(data)
    if data.accuracy.empty:
        raise NoTaskMetricsError(f"experiment {data.experiment!r}: no per-task accuracies to tabulate")
    data, joint_references = split_joint_references(data)
    if select == "best":
        data = select_best(data)
    elif select != "all":
        raise ValueError(f"select: {select!r}; allowed: 'best', 'all'")
    paper = paper_dataset(dataset)
    chosen = "each method's best configuration by final average accuracy" if select == "best" else "every configuration"
    replicates = "seeds and task orders" if data.runs.get("order", pd.Series(dtype=object)).nunique() > 1 else "seeds"
    ours = f"Ours: mean ± std over {replicates} [{CONFIDENCE:.0%} t-interval of the mean] ({chosen})"
    judged = evaluator_caption(data)
    if paper == "LSUN":
        cells = _table2_cells(data)
        caption = (f"{dataset} after {data.num_tasks} tasks: accuracy (%), reverse accuracy (%), FID. {ours}; "
                   f"paper: Wu et al. 2018, Table 2 (after the 4th task). {judged}")
        kind = "table2"
    else:
        cells, jt_note = _table1_cells(data, dataset, joint_references)
        source = f"paper: Wu et al. 2018, Table 1, {paper} rows." if paper else "the paper reports no such dataset."
        caption = f"Average accuracy (%) over the classes seen on {dataset}. {ours}; {source}{jt_note} {judged}"
        kind = "table1"
    if not all(in_paper(m) for m in data.runs["method"]):
        caption += (f" {NOT_IN_PAPER_MARK} not in the paper: this platform's reference baselines (ER, L2), "
                    f"combinations and plugins; the paper has no numbers for them.")
    return ResultTable(dataset=dataset, paper_dataset=paper, num_tasks=data.num_tasks, kind=kind, cells=cells,
                       caption=caption)


# CLoG's summaries (arXiv 2406.04584) of the accuracy and FID matrices, and forgetting of variety.
QUALITY_TABLE_COLUMNS = {"aiq_acc": "AIQ acc (%)", "afq_acc": "AFQ acc (%)", "fr_acc": "FR acc (%)",
                         "aiq_fid_classifier": "AIQ FID", "afq_fid_classifier": "AFQ FID",
                         "fr_fid_classifier": "FR FID",
                         "fr_recall_classifier": "FR recall (%)", "fr_coverage_classifier": "FR coverage (%)"}
QUALITY_CAPTION = ("CLoG's summaries (Zhang et al. 2024, arXiv 2406.04584) after the last task: AIQ (average "
                   "incremental quality), AFQ (average final quality), FR (forgetting rate: how far each earlier "
                   "task fell from its value right after it was learned; a rise for FID) of the accuracy and FID "
                   "matrices, and FR of recall and coverage (variety lost). FID in the evaluator's feature space "
                   "(comparable between runs of one evaluator only). Mean ± std over seeds.")


def quality_table(data: ExperimentData, select: str = "best") -> pd.DataFrame | None:
    """Table-1-style AIQ/AFQ/FR of accuracy and FID, FR of recall and coverage, per method (mean ± std over
    seeds, after each run's last task); None when no run measured per-task quality."""
    if data.quality.empty:
        return None
    data, _ = split_joint_references(data)
    if select == "best":
        data = select_best(data)
    shown = [name for name in QUALITY_TABLE_COLUMNS if name in data.task_metrics]
    runs = data.runs[[*GROUP, "run_id"]]
    cells: dict[str, dict[str, str]] = {}
    for name in shown:
        percent = "(%)" in QUALITY_TABLE_COLUMNS[name]
        values = runs.assign(value=runs["run_id"].map(value_at(data, name)) * (100 if percent else 1))
        for _, row in seed_stats(values, GROUP, "value").iterrows():
            label = method_label(row["method"]) + (f" ({row['config']})" if row["config"] else "")
            cells.setdefault(label, {})[QUALITY_TABLE_COLUMNS[name]] = format_cell(row["mean"], row["std"])
    order = sorted(set(zip(runs["method"], runs["config"])), key=lambda p: (method_sort_key(p[0]), p[1]))
    labels = [method_label(m) + (f" ({c})" if c else "") for m, c in order]
    table = pd.DataFrame.from_dict(cells, orient="index").reindex(index=labels,
                                                                  columns=[QUALITY_TABLE_COLUMNS[n] for n in shown])
    table.index.name = "method"
    return table.fillna(MISSING)


def drift_alarm_table(data: ExperimentData) -> pd.DataFrame | None:
    """The runs whose drift alarm fired (``eval.drift_alarm``): first task and what lost its variety."""
    column = "tag.drift_alarms"
    if column not in data.runs or data.runs[column].isna().all():
        return None
    fired = data.runs[data.runs[column].notna()].sort_values(["method", "config", "seed"])
    first = fired.get("tag.drift_alarm_first_task", "")
    table = pd.DataFrame({"run": fired["run_name"].astype(str).to_numpy(),
                          "first alarm after task": pd.Series(first, index=fired.index).astype(str).to_numpy(),
                          "alarms": fired[column].astype(str).to_numpy()}).set_index("run")
    return table


def evaluator_caption(data: ExperimentData) -> str:
    """"Accuracy judged by <architecture> (real test accuracy 97.1%, 10 classes, chance 10.0%)." from the
    runs' evaluator params; runs that predate those params were judged by the small CNN."""
    runs = data.runs
    parts = []
    for architecture, group in runs.groupby(_column(runs, "evaluator_architecture", "a small CNN"), sort=True):
        accuracy = pd.to_numeric(_column(group, "evaluator_test_accuracy", math.nan), errors="coerce").dropna()
        chance = pd.to_numeric(_column(group, "evaluator_chance_accuracy", math.nan), errors="coerce").dropna()
        facts = [f"real test accuracy {_percent_range(accuracy)}" if len(accuracy)
                 else "real test accuracy not recorded"]
        if len(chance):
            facts.append(f"{round(1 / chance.iloc[0])} classes, chance {_percent_range(chance)}")
        parts.append(f"{architecture} ({', '.join(facts)})")
    return f"Accuracy judged by {'; '.join(parts)}." if parts else ""


def _column(frame: pd.DataFrame, name: str, default: object) -> pd.Series:
    return frame[name].fillna(default) if name in frame else pd.Series(default, index=frame.index)


def _percent_range(values: pd.Series) -> str:
    low, high = values.min() * 100, values.max() * 100
    return f"{low:.1f}%" if round(low, 1) == round(high, 1) else f"{low:.1f}-{high:.1f}%"


def orders_table(data: ExperimentData, metric: str = "avg_acc") -> pd.DataFrame | None:
    """The spread over task orders beside the spread over seeds (final ``metric``, %, complete runs), one row
    per configuration, as text cells; None when no configuration ran more than one order."""
    spread = order_spread(data, metric)
    if spread.empty or spread["orders"].max() < 2:
        return None
    scale = 100.0 if metric in PERCENT_METRICS else 1.0

    def number(value: float) -> str:
        return MISSING if pd.isna(value) else f"{value * scale:.2f}"

    shown = pd.DataFrame({"Orders": spread["orders"].astype(str), "Seeds per order": spread["seeds"].astype(str),
                          "Mean": spread["mean"].map(number), "Std over seeds": spread["std_seeds"].map(number),
                          "Std over orders": spread["std_orders"].map(number)})
    shown.index = pd.Index([method_label(m) + (f" ({c})" if c else "") for m, c in zip(spread["method"],
                                                                                          spread["config"])],
                           name="Method")
    return shown


ORDERS_CAPTION = ("Final average accuracy (%) over task orders and seeds: the std over seeds within an order "
                  "(pooled over orders) beside the std over orders of each order's mean over its seeds.")


def _groups(data: ExperimentData) -> pd.DataFrame:
    """One row per configuration in the table's order: paper methods first, then by config label."""
    pairs = sorted(set(zip(data.runs["method"], data.runs["config"])),
                   key=lambda pair: (method_sort_key(pair[0]), pair[1]))
    rows = [method_label(method) + ("" if in_paper(method) else NOT_IN_PAPER_MARK) + (f" ({config})" if config else "")
            for method, config in pairs]
    return pd.DataFrame({"method": [p[0] for p in pairs], "config": [p[1] for p in pairs], "row": rows})


def _ours(data: ExperimentData, groups: pd.DataFrame, metric: str, after_task: int, header: str) -> pd.DataFrame:
    values = value_at(data, metric, after_task)
    runs = data.runs.assign(value=data.runs["run_id"].map(values))
    if metric in PERCENT_METRICS:
        runs["value"] = runs["value"] * 100.0
    stats = groups.merge(seed_stats(runs, GROUP, "value"), on=GROUP, how="left")
    return stats.assign(header=header, source="ours", tasks=after_task, metric=metric)


def _paper(groups: pd.DataFrame, numbers: dict[str, float], metric: str, tasks: int, header: str) -> pd.DataFrame:
    return groups.assign(mean=[numbers.get(m, math.nan) for m in groups["method"]], std=math.nan, n=math.nan,
                         ci_low=math.nan, ci_high=math.nan, header=header, source="paper", tasks=tasks, metric=metric)


def _table1_cells(data: ExperimentData, dataset: str, joint_references: ExperimentData | None = None
                  ) -> tuple[pd.DataFrame, str]:
    """The cells, and a sentence on where JT's earlier column comes from (empty when there is no such column)."""
    groups, total = _groups(data), data.num_tasks
    paper = paper_dataset(dataset)
    ours = {k for k in (TABLE1_TASKS[0], total) if k <= total}
    paper_tasks = set(TABLE1[paper]) if paper in TABLE1 else set()
    parts, notes = [], []
    for k in sorted(ours | paper_tasks):
        if k in ours:
            part = _ours(data, groups, "avg_acc", k, f"Ours ({k} tasks)")
            if k < total and (groups["method"] == "jt").any():
                part, note = _joint_reference(part, joint_references, k, total)
                notes.append(note)
            parts.append(part)
        if k in paper_tasks:
            parts.append(_paper(groups, TABLE1[paper][k], "avg_acc", k, f"Paper ({k} tasks)"))
    return _tidy(parts), "".join(f" {note}" for note in notes)


def _joint_reference(part: pd.DataFrame, references: ExperimentData | None, k: int, total: int
                     ) -> tuple[pd.DataFrame, str]:
    """JT's cell after k < total tasks: the final average accuracy of JT runs trained on the first k tasks
    only, as the paper's (``joint.py`` scores its final model), when the experiment holds them."""
    runs = references.runs if references is not None else pd.DataFrame(columns=["run_id", "stream_tasks"])
    runs = runs[runs["stream_tasks"] == k]
    if runs.empty:
        return part, (f"JT after {k} tasks: row {k} of its {total}-task run, a model of all {total} tasks' classes "
                      f"(the paper's is a JT model of the first {k} tasks' classes; `mergan reproduce table1` "
                      f"runs one).")
    values = runs.assign(value=runs["run_id"].map(value_at(references, "avg_acc")) * 100.0)
    stats = seed_stats(values.assign(method="jt"), ["method"], "value").iloc[0]
    rows = part["method"] == "jt"
    part = part.copy()
    for column in ("mean", "std", "n", "ci_low", "ci_high"):
        part.loc[rows, column] = stats[column]
    return part, f"JT after {k} tasks: JT runs trained on the first {k} tasks' classes only, as the paper's JT."


def _table2_cells(data: ExperimentData) -> pd.DataFrame:
    groups, total = _groups(data), data.num_tasks
    parts = []
    for metric, label in TABLE2_LABELS.items():
        parts.append(_ours(data, groups, metric, total, f"{label} ours"))
        parts.append(_paper(groups, TABLE2[metric], metric, TABLE2_TASKS, f"{label} paper"))
    return _tidy(parts)


def _tidy(parts: list[pd.DataFrame]) -> pd.DataFrame:
    columns = ["row", "method", "config", "header", "source", "tasks", "metric", "mean", "std", "n", "ci_low",
               "ci_high"]
    return pd.concat(parts, ignore_index=True)[columns]
