"""``mergan sync``: replay run folders' records into MLflow (what a run could not send, or a run never sent)."""

from __future__ import annotations

import argparse


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``mergan sync [FOLDER ...] [--tracking-uri URI] [--experiment NAME]``."""
    parser = subparsers.add_parser(
        "sync", help="send run folders' records to MLflow (what they could not send while training)",
        description="Mirror every run folder at or below the given folders into MLflow: each run's record "
                    "(record.jsonl) goes to the MLflow run its folder names (mirrors/mlflow.json), or to a new "
                    "one; what the run holds already is not sent again.")
    parser.add_argument("folders", nargs="*", metavar="FOLDER", default=["runs"],
                        help="run folders, or folders searched for them, e.g. a sweep's storage (default: ./runs)")
    parser.add_argument("--tracking-uri", metavar="URI",
                        help="send to this store instead of the one each folder names (default for folders that "
                             "name none: MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    parser.add_argument("--experiment", metavar="NAME", help="MLflow experiment instead of each folder's")
    parser.set_defaults(handler=sync_command)


def sync_command(args: argparse.Namespace) -> int:
    """``mergan sync``: 0 when every folder is in MLflow, 1 when some could not be sent (the reason is printed)."""
    from tracking.mirror import sync_folders

    done = sync_folders(args.folders, args.tracking_uri, args.experiment)
    if not done:
        print(f"no run folders in {', '.join(args.folders)}")
        return 0
    for folder, result in done:
        if isinstance(result, str):
            print(f"{folder}: not sent: {result}")
        else:
            print(f"{folder}: MLflow run {result.run_id} ({result.status}): sent {result.steps} steps, "
                  f"{result.tasks} tasks")
    return 1 if any(isinstance(result, str) for _, result in done) else 0
