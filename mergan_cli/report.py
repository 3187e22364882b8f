"""``mergan report``: an HTML report of an experiment, a sweep or run folders (``analysis.report`` writes it)."""

from __future__ import annotations

import argparse
import sys


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``mergan report`` (the handler is ``args.handler``)."""
    parser = subparsers.add_parser(
        "report", help="write an HTML report (tables beside the paper, forgetting curves, matrices) of an experiment",
        description="One self-contained HTML page (figures embedded) from an MLflow experiment or sweep, or from "
                    "run folders (their records; no tracking store needed).")
    parser.add_argument("--experiment", metavar="NAME",
                        help="MLflow experiment name (may be left out with --sweep-run)")
    parser.add_argument("--tracking-uri", metavar="URI",
                        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    parser.add_argument("--runs", nargs="+", metavar="FOLDER",
                        help="run folders, or folders searched for them (runs/, a sweep's storage), instead of MLflow")
    parser.add_argument("--out", metavar="DIR", required=True, help="folder for report.html, figures, tables, data")
    parser.add_argument("--sweep-run", metavar="RUN_ID", help="only the trials of this sweep's parent run")
    parser.add_argument("--optuna-storage", metavar="URL", help="Optuna storage of the sweep's study (importances, "
                        "Pareto front); default: the sweep run's settings if they name one")
    parser.add_argument("--study", metavar="NAME", help="Optuna study name in --optuna-storage")
    parser.add_argument("--select", choices=("best", "all"), default="best",
                        help="tables and figures show each method's best configuration, or every configuration")
    parser.set_defaults(handler=report_command)


def report_command(args: argparse.Namespace) -> int:
    """``mergan report``: print the results table(s) and where the report went."""
    from analysis.report import build_report  # pandas and matplotlib: only when a report is made
    from analysis.tables import markdown_table

    if args.runs and (args.experiment or args.sweep_run or args.tracking_uri):
        raise ValueError("--runs reads run folders: leave out --experiment, --sweep-run and --tracking-uri")
    if not args.runs and not args.experiment and not args.sweep_run:
        raise ValueError("give --experiment NAME, --sweep-run RUN_ID or --runs FOLDER ...")
    report = build_report(args.experiment, args.tracking_uri, args.out, sweep_run=args.sweep_run,
                          optuna_storage=args.optuna_storage, study_name=args.study, select=args.select,
                          runs=args.runs)
    for table in report.tables:
        print(table.to_markdown())
    for section in report.sections:
        for caption, frame in section.tables:  # the spread over task orders, when runs have several
            print(f"{caption}\n\n{markdown_table(frame)}")
        for note in section.notes:
            print(f"note: {note}", file=sys.stderr)
    source = "run folders" if args.runs else "MLflow"
    print(f"report: {report.html_path} ({len(report.data.runs)} runs from {source}, "
          f"{len(report.figure_files) // 2} figures, loaded in {report.data.load_seconds:.1f} s)")
    return 0
