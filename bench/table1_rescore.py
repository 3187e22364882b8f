"""Table 1 judged by several evaluators, from one set of trained runs: no training, only evaluation.

``mergan reproduce table1`` keeps every trial's latest checkpoints in its sweep folder
(``<storage>/<sweep name>/<trial>/checkpoint_*/checkpoint.pt``). This script evaluates each trial's
final checkpoint again with each evaluator asked for (``eval.evaluator``: ``cnn``, the small CNN; ``paper``,
the authors' evaluator of the dataset), with the run's own samples per class, fixed z and normalisation
groups, and writes the average accuracy after the final task per method and evaluator, mean ± std over
seeds, beside the paper's numbers; and, in the first evaluator's feature space, the image quality and variety
after the final task (``eval.quality`` full: FID, and recall and coverage of the earlier tasks and the newest)::

    python bench/table1_rescore.py runs/sweeps/NAME --evaluator cnn --evaluator paper \
        --out bench/results/table1_small_evaluators.md --runs-out bench/results/table1_small_evaluators.csv

A sweep folder of ``NAME-jt5`` (the 5-task JT runs ``mergan reproduce table1 --scale paper`` adds) may
be given beside ``NAME``: each run is reported after its own number of tasks. Evaluators are trained once
and cached (``$MERGAN_CACHE_DIR``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

from analysis.paper import method_label, method_sort_key, paper_accuracy
from mergan.config import EVALUATORS


def final_checkpoints(sweep_dirs: list[Path]) -> list[Path]:
    """Per trial folder of each sweep, its newest ``checkpoint_*`` folder that holds a checkpoint.pt."""
    found = []
    for sweep in sweep_dirs:
        for trial in sorted(p for p in sweep.iterdir() if p.is_dir()):
            checkpoints = sorted(trial.glob("checkpoint_*/checkpoint.pt"))
            if checkpoints:
                found.append(checkpoints[-1].parent)
    return found


def rescore(checkpoints: list[Path], evaluators: list[str], device: str) -> pd.DataFrame:
    """One row per (checkpoint, evaluator): method, seed, dataset, tasks, avg_acc, the evaluator's facts."""
    from mergan_cli.evaluate import evaluate_checkpoint

    rows = []
    for checkpoint in checkpoints:
        for kind in evaluators:
            started = time.perf_counter()
            report = evaluate_checkpoint(checkpoint, {"evaluator": kind, "device": device})
            judge = report["evaluator"]
            rows.append({"checkpoint": str(checkpoint), "method": report["method"], "seed": report["seed"],
                         "dataset": report["dataset"], "tasks": report["task"], "evaluator": kind,
                         "avg_acc": report["metrics"]["avg_acc"], "acc_task_1": report["row"][0],
                         "evaluator_architecture": judge["architecture"],
                         "evaluator_test_accuracy": judge["test_accuracy"],
                         "evaluator_chance_accuracy": judge["chance_accuracy"],
                         "samples_per_class": report["samples_per_class"],
                         **final_quality(report["quality_matrices"]),
                         "seconds": round(time.perf_counter() - started, 2)})
            print(f"{report['method']} seed {report['seed']} after {report['task']} tasks, {kind}: "
                  f"avg_acc {report['metrics']['avg_acc']:.4f}", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def final_quality(matrices: dict[str, list[list[float | None]]]) -> dict[str, float]:
    """From the final row of each quality matrix (in the evaluator's feature space): FID averaged over every task,
    recall and coverage averaged over the earlier tasks (what replay must keep) and of the newest task."""
    row = {name.removesuffix("_classifier"): matrix[-1] for name, matrix in matrices.items()
           if name.endswith("_classifier") and matrix and None not in matrix[-1]}
    if not {"fid", "recall", "coverage"} <= set(row) or len(row["fid"]) < 2:
        return {}
    old, new = slice(0, -1), -1
    return {"fid_mean": statistics.mean(row["fid"]),
            "recall_earlier": statistics.mean(row["recall"][old]), "recall_newest": row["recall"][new],
            "coverage_earlier": statistics.mean(row["coverage"][old]), "coverage_newest": row["coverage"][new],
            "recall_min": min(row["recall"])}


# column -> (header, scale, decimals)
QUALITY_COLUMNS = {"avg_acc": ("Accuracy (%)", 100, 1), "fid_mean": ("FID, mean over tasks", 1, 1),
                   "recall_earlier": ("Recall, earlier tasks", 1, 2),
                   "coverage_earlier": ("Coverage, earlier tasks", 1, 2),
                   "recall_newest": ("Recall, newest task", 1, 2), "coverage_newest": ("Coverage, newest task", 1, 2),
                   "recall_min": ("Recall, worst task", 1, 2)}


def quality_table(runs: pd.DataFrame, evaluator: str) -> str:
    """Per method and number of tasks, after the final task, judged in ``evaluator``'s feature space: accuracy,
    FID and the variety (recall, coverage) of the earlier tasks' images beside the newest task's; mean over seeds."""
    judged = runs[(runs["evaluator"] == evaluator) & runs.get("fid_mean", pd.Series(dtype=float)).notna()]
    if judged.empty:
        return ""
    lines = ["| Method | Tasks | Seeds | " + " | ".join(header for header, _, _ in QUALITY_COLUMNS.values()) + " |",
             "|:---|---:|---:|" + "---:|" * len(QUALITY_COLUMNS)]
    groups = sorted(judged.groupby(["method", "tasks"]), key=lambda item: (method_sort_key(item[0][0]), item[0][1]))
    for (method, tasks), group in groups:
        cells = [f"{group[column].mean() * scale:.{decimals}f}"
                 for column, (_, scale, decimals) in QUALITY_COLUMNS.items()]
        seeds = ", ".join(str(seed) for seed in sorted(group["seed"].unique()))
        lines.append(f"| {method_label(method)} | {tasks} | {seeds} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def comparison_table(runs: pd.DataFrame, evaluators: list[str]) -> str:
    """Per method and number of tasks: mean ± std over seeds of the final average accuracy (%) per evaluator."""
    header = "| Method | Tasks | Seeds | " + " | ".join(f"Ours, {kind} evaluator" for kind in evaluators) + " | Paper |"
    lines = [header, "|:---|---:|---:|" + "---:|" * (len(evaluators) + 1)]
    groups = sorted(runs.groupby(["method", "tasks"]), key=lambda item: (method_sort_key(item[0][0]), item[0][1]))
    for (method, tasks), group in groups:
        cells = []
        for kind in evaluators:
            values = list(group.loc[group["evaluator"] == kind, "avg_acc"] * 100)
            cells.append("–" if not values else f"{statistics.mean(values):.2f}" +
                         (f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""))
        paper = paper_accuracy(group["dataset"].iloc[0], int(tasks), method)
        seeds = ", ".join(str(s) for s in sorted(group["seed"].unique()))
        lines.append(f"| {method_label(method)} | {tasks} | {seeds} | {' | '.join(cells)} | "
                     f"{'–' if paper is None else f'{paper:.2f}'} |")
    judges = runs.drop_duplicates("evaluator").set_index("evaluator")
    notes = [f"- {kind}: {judges.at[kind, 'evaluator_architecture']}, real test accuracy "
             f"{judges.at[kind, 'evaluator_test_accuracy'] * 100:.1f}%, chance "
             f"{judges.at[kind, 'evaluator_chance_accuracy'] * 100:.1f}%"
             for kind in evaluators if kind in judges.index]
    return "\n".join(lines) + "\n\nEvaluators:\n" + "\n".join(notes) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", type=Path, help="sweep folders of mergan reproduce table1 "
                                                              "(<storage>/<name>)")
    parser.add_argument("--evaluator", dest="evaluators", action="append", choices=EVALUATORS,
                        help="an evaluator to judge with (repeatable; default: cnn and paper)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="default: cpu")
    parser.add_argument("--out", type=Path, help="write the Markdown table here (default: print it)")
    parser.add_argument("--runs-out", type=Path, help="write one CSV row per (run, evaluator) here")
    args = parser.parse_args(argv)
    evaluators = args.evaluators or list(EVALUATORS)
    missing = [str(p) for p in args.sweeps if not p.is_dir()]
    if missing:
        print(f"table1_rescore: no such sweep folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    checkpoints = final_checkpoints(args.sweeps)
    if not checkpoints:
        print(f"table1_rescore: no trial checkpoints under {', '.join(map(str, args.sweeps))}", file=sys.stderr)
        return 2
    runs = rescore(checkpoints, evaluators, args.device)
    text = comparison_table(runs, evaluators)
    quality = quality_table(runs, evaluators[0])
    if quality:
        text += (f"\nImage quality and variety after the final task, in the {evaluators[0]} evaluator's feature space "
                 f"(eval.quality full: FID lower is better; recall and coverage in [0, 1], higher keeps more "
                 f"variety):\n\n{quality}")
    if args.runs_out:
        runs.to_csv(args.runs_out, index=False)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
