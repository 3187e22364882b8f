"""Table 1 over seeds measured in separate runs of ``mergan reproduce table1``.

Each run of the command writes its report's data beside it (``<report>/data/runs.csv``: one row
per run, with every metric's last value). When the seeds of one protocol were measured in
separate sessions (``--first-seed``), this script reads those files, keeps the finished runs, and
builds the report's own Table 1 (``analysis.tables.results_table``: mean ± std, 95% t-interval,
seeds needed) over their union, plus a per-seed table of the numbers the README quotes.

    python bench/table1_merge.py bench/results/table1_small_runs.csv runs/reports/NAME/data/runs.csv \
        --out bench/results/table1_small.md --runs-out bench/results/table1_small_runs.csv

Two runs of one (method, seed) are refused: seeded CPU runs repeat exactly, so a duplicate would
only inflate the seed count.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from analysis.load import SUMMARY_METRICS, TASK_ACCURACY, ExperimentData
from analysis.paper import method_label, method_sort_key
from analysis.tables import results_table


def finished_runs(paths: list[Path]) -> pd.DataFrame:
    """The FINISHED runs of every file, one row per (method, seed); a repeated pair is an error."""
    frames = [pd.read_csv(path).assign(source=str(path)) for path in paths]
    runs = pd.concat(frames, ignore_index=True)
    runs = runs[(runs["status"] == "FINISHED") & (runs["tasks_done"] == runs["tasks_done"].max())]
    repeated = runs[runs.duplicated(["method", "seed"], keep=False)]
    if not repeated.empty:
        pairs = sorted(set(zip(repeated["method"], repeated["seed"])))
        raise SystemExit(f"table1_merge: (method, seed) measured twice: {pairs}; keep one file per seed")
    return runs.reset_index(drop=True)


def experiment_data(runs: pd.DataFrame) -> ExperimentData:
    """The runs as the report's frames, from each run's final row R[T][j] and final summaries."""
    runs = runs.assign(config=runs["config"].astype(object).where(runs["config"].notna(), ""))
    tasks = sorted(int(m.group(1)) for c in runs.columns if (m := TASK_ACCURACY.match(c)))
    accuracy = pd.DataFrame([{"run_id": r.run_id, "after_task": int(r.tasks_done), "task": j,
                              "accuracy": getattr(r, f"acc_task_{j}")}
                             for r in runs.itertuples() for j in tasks if j <= r.tasks_done])
    summaries = [c for c in SUMMARY_METRICS if c in runs]
    task_metrics = runs[["run_id", "tasks_done", *summaries]].rename(columns={"tasks_done": "after_task"})
    return ExperimentData(experiment="merged", tracking_uri="csv", runs=runs, accuracy=accuracy,
                          task_metrics=task_metrics)


def per_seed_table(runs: pd.DataFrame) -> str:
    """Per method: final average accuracy (mean ± std), task 1 still recognised per seed, forgetting, wall minutes."""
    header = ("| method | seeds | average accuracy (%) | task 1 still recognised, per seed | forgetting | "
              "wall minutes per run |")
    lines = [header, "|---|---|---|---|---|---|"]
    for method, group in sorted(runs.groupby("method"), key=lambda item: method_sort_key(item[0])):
        group = group.sort_values("seed")
        acc = group["avg_acc"] * 100
        minutes = (pd.to_datetime(group["end_time"]) - pd.to_datetime(group["start_time"])).dt.total_seconds() / 60
        lines.append(f"| {method_label(method)} | {', '.join(str(int(s)) for s in group['seed'])} | "
                     f"{acc.mean():.1f} ± {acc.std():.1f} | {', '.join(f'{v:.2f}' for v in group['acc_task_1'])} | "
                     f"{group['forgetting'].mean():.2f} | {minutes.min():.0f}-{minutes.max():.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_csv", nargs="+", type=Path, help="runs.csv files of `mergan report` data folders")
    parser.add_argument("--out", type=Path, help="write the Markdown here (default: print it)")
    parser.add_argument("--runs-out", type=Path, help="write the union of the finished runs here")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.runs_csv if not p.is_file()]
    if missing:
        print(f"table1_merge: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    runs = finished_runs(args.runs_csv)
    table = results_table(experiment_data(runs))
    text = (f"{table.to_markdown()}\nPer method, over the seeds above (task 1 = the first class; wall minutes from "
            f"each run's MLflow start and end times, so they include time the cores were shared):\n\n"
            f"{per_seed_table(runs)}")
    if args.runs_out:
        runs.drop(columns="source").to_csv(args.runs_out, index=False)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
