"""``mergan sync``: send the MLflow records runs kept in their outbox while the store was unreachable."""

from __future__ import annotations

import argparse
import os

from tracking.callback import OUTBOX_ENV
from tracking.sync import sync_outbox


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``mergan sync [--outbox DIR] [--tracking-uri URI]`` (calls ``args.func(args)``)."""
    parser = subparsers.add_parser(
        "sync", help="send MLflow records kept locally while the tracking server was unreachable",
        description="Send the records that runs kept in their MLflow outbox folders (JSONL files) while "
                    "the tracking store could not be reached. Each file names the store it was meant for.")
    parser.add_argument("--outbox", action="append", metavar="DIR",
                        help=f"an outbox folder, or a folder searched for them (repeatable; default: "
                             f"${OUTBOX_ENV} if set, else ./runs)")
    parser.add_argument("--tracking-uri", metavar="URI",
                        help="send to this store instead of the one each file names")
    parser.set_defaults(handler=sync_command)


def sync_command(args: argparse.Namespace) -> int:
    """``mergan sync``: 0 when every record was sent, 1 when some are left (the reason is printed)."""
    paths = args.outbox or [os.environ.get(OUTBOX_ENV) or "runs"]
    results = sync_outbox(paths, args.tracking_uri)
    if not results:
        print(f"no MLflow outbox files in {', '.join(map(str, paths))}")
        return 0
    for path, result in results:
        line = f"{path}: sent {result.sent}, left {result.left}, refused {result.rejected}"
        print(line + (f" ({result.error})" if result.error else ""))
    return 1 if any(r.left for _, r in results) else 0

