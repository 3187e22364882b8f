"""The paper's result tables from our runs, beside its numbers: Table 1 (digits) or Table 2 (LSUN).

```python
table = results_table(data)            # one dataset; each method's best configuration
table.cells                            # tidy numbers: row, method, config, header, source, tasks, metric, mean, std, n
print(table.to_markdown()); table.to_latex(); table.to_html()
```
Accuracies are shown in percent (MLflow holds fractions), FID as is; "mean ± std" over seeds.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import pandas as pd

from analysis.aggregate import GROUP, seed_stats, select_best, single_dataset, value_at
from analysis.errors import NoTaskMetricsError
from analysis.load import ExperimentData
from analysis.paper import (
    TABLE1,
    TABLE1_TASKS,
    TABLE2,
    TABLE2_LABELS,
    TABLE2_TASKS,
    method_label,
    method_sort_key,
    paper_dataset,
)

MISSING = "–"
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
        text = self.cells.assign(text=[format_cell(m, s) for m, s in zip(self.cells["mean"], self.cells["std"])])
        table = text.pivot(index="row", columns="header", values="text").reindex(index=rows, columns=headers)
        seeds = self.cells[self.cells["source"] == "ours"].groupby("row", sort=False)["n"].max()
        table["Seeds"] = seeds.reindex(rows).map(lambda n: MISSING if pd.isna(n) else str(int(n)))
        table = table.fillna(MISSING)
        table.index.name, table.columns.name = "Method", None
        return table

    def to_markdown(self) -> str:
        table = self.display()
        header = ["Method", *table.columns]
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * len(table.columns)) + "|"]
        lines += ["| " + " | ".join([str(index), *row]) + " |" for index, row in zip(table.index, table.values)]
        return f"{self.caption}\n\n" + "\n".join(lines) + "\n"

    def to_latex(self) -> str:
        table = self.display()
        header = " & ".join(latex_escape(h) for h in ["Method", *table.columns]) + r" \\"
        body = [" & ".join(latex_escape(str(v)) for v in [index, *row]) + r" \\"
                for index, row in zip(table.index, table.values)]
        return "\n".join([r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(self.caption)}}}",
                          rf"\begin{{tabular}}{{l{'r' * len(table.columns)}}}", r"\toprule", header, r"\midrule",
                          *body, r"\bottomrule", r"\end{tabular}", r"\end{table}"]) + "\n"

    def to_html(self) -> str:
        body = self.display().to_html(classes="results", border=0, escape=True)
        return f"<figure class='table'><figcaption>{html.escape(self.caption)}</figcaption>{body}</figure>"


def format_cell(mean: float, std: float) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return MISSING
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {std:.2f}"


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
    if select == "best":
        data = select_best(data)
    elif select != "all":
        raise ValueError(f"select: {select!r}; allowed: 'best', 'all'")
    paper = paper_dataset(dataset)
    chosen = "each method's best configuration by final average accuracy" if select == "best" else "every configuration"
    if paper == "LSUN":
        cells = _table2_cells(data)
        caption = (f"{dataset} after {data.num_tasks} tasks: accuracy (%), reverse accuracy (%), FID. Ours: mean ± std "
                   f"over seeds ({chosen}); paper: Wu et al. 2018, Table 2 (after the 4th task).")
        kind = "table2"
    else:
        cells = _table1_cells(data, dataset)
        source = f"paper: Wu et al. 2018, Table 1, {paper} rows." if paper else "the paper reports no such dataset."
        caption = (f"Average accuracy (%) over the classes seen on {dataset}. Ours: mean ± std over seeds "
                   f"({chosen}); {source}")
        kind = "table1"
    return ResultTable(dataset=dataset, paper_dataset=paper, num_tasks=data.num_tasks, kind=kind, cells=cells,
                       caption=caption)


def _groups(data: ExperimentData) -> pd.DataFrame:
    """One row per configuration in the table's order: paper methods first, then by config label."""
    pairs = sorted(set(zip(data.runs["method"], data.runs["config"])),
                   key=lambda pair: (method_sort_key(pair[0]), pair[1]))
    rows = [method_label(method) + (f" ({config})" if config else "") for method, config in pairs]
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
                         header=header, source="paper", tasks=tasks, metric=metric)


def _table1_cells(data: ExperimentData, dataset: str) -> pd.DataFrame:
    groups, total = _groups(data), data.num_tasks
    paper = paper_dataset(dataset)
    ours = {k for k in (TABLE1_TASKS[0], total) if k <= total}
    paper_tasks = set(TABLE1[paper]) if paper in TABLE1 else set()
    parts = []
    for k in sorted(ours | paper_tasks):
        if k in ours:
            parts.append(_ours(data, groups, "avg_acc", k, f"Ours ({k} tasks)"))
        if k in paper_tasks:
            parts.append(_paper(groups, TABLE1[paper][k], "avg_acc", k, f"Paper ({k} tasks)"))
    return _tidy(parts)


def _table2_cells(data: ExperimentData) -> pd.DataFrame:
    groups, total = _groups(data), data.num_tasks
    parts = []
    for metric, label in TABLE2_LABELS.items():
        parts.append(_ours(data, groups, metric, total, f"{label} ours"))
        parts.append(_paper(groups, TABLE2[metric], metric, TABLE2_TASKS, f"{label} paper"))
    return _tidy(parts)


def _tidy(parts: list[pd.DataFrame]) -> pd.DataFrame:
    columns = ["row", "method", "config", "header", "source", "tasks", "metric", "mean", "std", "n"]
    return pd.concat(parts, ignore_index=True)[columns]
