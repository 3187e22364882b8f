"""The team MLflow server under a sweep's load, on PostgreSQL and on SQLite: time per logged batch, records checked.

For each backend store and number of server workers: a fresh store (a throwaway PostgreSQL started here,
loopback only, fsync on as a team's would be; or the script's default SQLite file), ``platform/mlflow_server.py
start`` on it, then ``--runs`` concurrent runs each sending ``--batches`` ``log_batch`` calls of ``--metrics``
values at one step (tests/support/mlflow_load.py), every record read back and compared. Writes the median
and 95th percentile of the time per batch, the batches per second and the records lost or duplicated to
``bench/results/team_server_load.{json,md}``::

    python bench/team_server_load.py                       # 16 runs x 40 batches x 20 metrics, 1 and 4 workers
    python bench/team_server_load.py --backends sqlite --workers 1 --batches 10

Exits 1 when a store lost, duplicated or changed a record.
"""

from __future__ import annotations

import argparse
import json
import os
import platform as stdlib_platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository: its tests/support helpers start the servers and the load

from tests.support.mlflow_load import check_records, log_concurrently
from tests.support.mlflow_process import start_mlflow_server
from tests.support.postgres import start_postgres

RESULTS = ROOT / "bench" / "results"


def measure(backend: str, workers: int, args: argparse.Namespace) -> dict:
    """One backend with ``workers`` server workers: the load's timings and what the store got wrong."""
    postgres = start_postgres(durable=True) if backend == "postgresql" else None
    if backend == "postgresql" and postgres is None:
        return {"backend": backend, "workers": workers, "skipped": "PostgreSQL is not installed here"}
    with tempfile.TemporaryDirectory(prefix="team-server-load-") as folder:
        options: tuple[str, ...] = ("--workers", str(workers))
        if postgres is not None:
            options += ("--backend-store-uri", postgres.create_database("mlflow"))
        server = start_mlflow_server(Path(folder) / "server", options=options)
        try:
            load = log_concurrently(server.uri, "load", runs=args.runs, batches=args.batches, metrics=args.metrics)
            problems = check_records(server.uri, load)
        finally:
            server.stop()
            if postgres is not None:
                postgres.stop()
    return {"backend": backend, "workers": workers, **load.summary(), "problems": len(problems),
            "first_problems": problems[:5]}


def markdown(rows: list[dict], args: argparse.Namespace, command: str) -> str:
    title = (f"# Team MLflow server under load ({args.runs} concurrent runs, {args.batches} batches of "
             f"{args.metrics} metrics each)")
    where = f"`{command}` on {stdlib_platform.node()} ({os.cpu_count()} CPUs), {time.strftime('%Y-%m-%d')}."
    lines = [title, "", where, "",
             "| backend | server workers | batches | median ms per batch | p95 ms | batches/s | records wrong |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        if "skipped" in row:
            lines.append(f"| {row['backend']} | {row['workers']} | skipped: {row['skipped']} | | | | |")
        else:
            lines.append(f"| {row['backend']} | {row['workers']} | {row['batches']} | {row['median_ms']:.1f} | "
                         f"{row['p95_ms']:.1f} | {row['batches_per_second']:.1f} | {row['problems']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="postgresql,sqlite", help="comma-separated: postgresql, sqlite")
    parser.add_argument("--workers", default="1,4", help="server worker counts to measure, comma-separated")
    parser.add_argument("--runs", type=int, default=16, help="concurrent runs (default 16)")
    parser.add_argument("--batches", type=int, default=40, help="log_batch calls per run (default 40)")
    parser.add_argument("--metrics", type=int, default=20, help="metrics per batch (default 20)")
    parser.add_argument("--out", type=Path, default=RESULTS / "team_server_load", help="results path, less suffix")
    args = parser.parse_args(argv)
    rows = []
    for backend in args.backends.split(","):
        for workers in map(int, args.workers.split(",")):
            row = measure(backend.strip(), workers, args)
            print(json.dumps(row), flush=True)
            rows.append(row)
    command = "python bench/team_server_load.py " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"command": command.strip(), "cpus": os.cpu_count(),
                                                          "runs": args.runs, "batches": args.batches,
                                                          "metrics": args.metrics, "results": rows}, indent=1))
    args.out.with_suffix(".md").write_text(markdown(rows, args, command.strip()))
    return 1 if any(row.get("problems") for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
