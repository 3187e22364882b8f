#!/usr/bin/env python3
"""Summarise a PBT sweep beside a TPE search on the same stream (the README's "Lambda schedules" example).

    python bench/pbt_schedule.py --storage-path RUNS/sweeps --pbt pbt --search tpe --out bench/results

Writes ``pbt_ra_schedule.md`` (the comparison table and every trial's schedule), ``pbt_ra_schedule.json``
(the same as data, with the sweeps' wall times when ``--seconds`` gives them) and the two figures as PNG.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from analysis.figures import save_figure
from analysis.load import load_sweep
from analysis.schedules import schedule_figure, schedule_vs_constant, schedule_vs_constant_figure, schedules
from analysis.tables import markdown_table
from trainables.plan import SweepPlan


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage-path", required=True)
    parser.add_argument("--pbt", required=True, help="the PBT sweep's --name")
    parser.add_argument("--search", required=True, help="the TPE sweep's --name")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--stem", default="pbt_ra_schedule")
    parser.add_argument("--seconds", nargs=2, type=float, metavar=("PBT", "SEARCH"), help="wall time of each sweep")
    args = parser.parse_args()
    plans = {role: SweepPlan.load(args.storage_path, name)
             for role, name in (("pbt", args.pbt), ("search", args.search))}
    data = {role: load_sweep(plan.parent_run_id, plan.tracking_uri) for role, plan in plans.items()}
    table = schedule_vs_constant(data["pbt"], data["search"])
    frame = schedules(data["pbt"])
    runs = data["pbt"].runs.set_index("run_id")
    per_trial = {runs.at[run_id, "trial_id"]: {"final_avg_acc": float(runs.at[run_id, "avg_acc"]),
                                               "schedule": rows.sort_values("task")[["task", "knob", "value",
                                                                                     "trained_by"]].to_dict("records"),
                                               "copies": {k.split("_")[-1]: v for k, v in runs.loc[run_id].items()
                                                          if str(k).startswith("tag.pbt.copied_after_task_")
                                                          and isinstance(v, str)}}
                 for run_id, rows in frame.groupby("run_id")}
    search_runs = data["search"].runs
    constants = {row["trial_id"]: {"lambda_ra": float(row["method.lambda_ra"]), "final_avg_acc": float(row["avg_acc"])}
                 for _, row in search_runs.iterrows()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"comparison": json.loads(table.to_json(orient="records")), "pbt_trials": per_trial,
              "search_trials": constants, "settings": {role: {"name": p.name, "defaults": p.defaults, "fixed": p.fixed,
                                                              "num_samples": p.num_samples, "scheduler": p.scheduler}
                                                       for role, p in plans.items()}}
    if args.seconds:
        record["wall_seconds"] = {"pbt": args.seconds[0], "search": args.seconds[1]}
    (out / f"{args.stem}.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    shown = table.set_index("search").map(lambda v: f"{v:.3f}" if isinstance(v, float) else str(v))
    lines = [f"# Best PBT schedule vs best constant ({args.pbt} vs {args.search})", "", markdown_table(shown), "",
             "## Every PBT trial's final weights: lambda_ra per task (trained by)", ""]
    for trial, info in per_trial.items():
        steps = ", ".join(f"{e['task']}: {e['value']:.3g} ({e['trained_by']})" for e in info["schedule"])
        lines.append(f"- {trial} (final avg_acc {info['final_avg_acc']:.3f}; copied {info['copies'] or 'never'}): "
                     f"{steps}")
    lines += ["", "## The search's constants", ""]
    lines += [f"- {t}: lambda_ra {c['lambda_ra']:.3g}, final avg_acc {c['final_avg_acc']:.3f}"
              for t, c in constants.items()]
    (out / f"{args.stem}.md").write_text("\n".join(lines) + "\n")
    for name, figure in ((f"{args.stem}_schedules", schedule_figure(data["pbt"])),
                         (f"{args.stem}_vs_constant", schedule_vs_constant_figure(data["pbt"], data["search"]))):
        files = save_figure(figure, out, name)
        files.get("pdf") and files["pdf"].unlink()  # the PNG is enough beside the README
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
