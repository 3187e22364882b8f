"""How long ``analysis.load.load_experiment`` takes on a few hundred runs, against naive per-metric loading.

    .venv/bin/python bench/analysis_load.py [--runs 200] [--tasks 10] [--server]

Writes ``--runs`` synthetic finished runs (10 tasks, every per-task metric at step = task, training
losses at 40 steps per task, the params of a real config) into an SQLite store in ``--store``
(kept and reused), then times, median of ``--repeat``:
- ``load_experiment``: search_runs pages + bulk per-task history (what analysis does);
- ``threaded``: the same frames through per-(run, metric) ``get_metric_history`` on 8 threads;
- ``naive``: search_runs + one ``get_metric_history`` per (run, per-task metric), sequentially.
With ``--server`` the same against an ``mlflow server`` (platform/mlflow_server.py) over that store.
Results go to ``bench/results/analysis_load.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform as stdlib_platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository: its tests/support helpers write the store

from analysis.load import (
    SUMMARY_METRICS,
    TASK_ACCURACY,
    fetch_metric_histories,
    load_experiment,
    search_all_runs,
)

EXPERIMENT = "bench-analysis-load"
METHODS = ("jt", "sft", "ewc", "dgr", "jtr", "ra", "jtr+ra", "ra+ewc")


def build_store(store: Path, runs: int, tasks: int, steps_per_task: int) -> float:
    """Write the synthetic runs (skipped when the store already holds them); returns seconds spent."""
    from mlflow import MlflowClient

    from tests.support.mlflow_stores import make_config, method_accuracy, write_run

    client = MlflowClient(f"sqlite:///{store}")
    found = client.get_experiment_by_name(EXPERIMENT)
    if found and len(search_all_runs(client, [found.experiment_id])) == runs:
        return 0.0
    if found:
        client.delete_experiment(found.experiment_id)
        client.rename_experiment(found.experiment_id, f"{EXPERIMENT}-old-{int(time.time())}")
    experiment_id = client.create_experiment(EXPERIMENT)
    started = time.perf_counter()
    for index in range(runs):
        method, seed = METHODS[index % len(METHODS)], index // len(METHODS)
        config = make_config(method, seed % 5, tasks, store.parent / "runs" / str(index),
                             lambda_ra=10.0 ** -(1 + seed % 4), lambda_ewc=10.0 ** (6 + seed % 4))
        write_run(client, experiment_id, config, method_accuracy(method, seed % 5), num_tasks=tasks,
                  steps_per_task=steps_per_task, artifacts=False)
    return time.perf_counter() - started


def naive_load(uri: str) -> int:
    """What a first notebook does: search, then one get_metric_history per (run, per-task metric)."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    count = 0
    for run in client.search_runs([experiment.experiment_id], max_results=1000):
        for key in run.data.metrics:
            if TASK_ACCURACY.match(key) or key in SUMMARY_METRICS:
                count += len(client.get_metric_history(run.info.run_id, key))
    return count


def threaded_load(uri: str) -> int:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = search_all_runs(client, [experiment.experiment_id])
    wanted = {r.info.run_id: [k for k in r.data.metrics if TASK_ACCURACY.match(k) or k in SUMMARY_METRICS]
              for r in runs}
    return len(fetch_metric_histories(client, wanted, workers=8, bulk=False))  # the per-run path


def timed(function, repeat: int) -> dict:
    seconds, result = [], None
    for _ in range(repeat):
        tic = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - tic)
    return {"median_s": round(statistics.median(seconds), 3), "all_s": [round(s, 3) for s in seconds],
            "result": result}


def measure(uri: str, repeat: int) -> dict:
    def analysis() -> dict:
        data = load_experiment(EXPERIMENT, uri)
        return {"runs": len(data.runs), "accuracy_rows": len(data.accuracy),
                "task_metric_rows": len(data.task_metrics),
                "timings_s": {k: round(v, 3) for k, v in data.timings.items()}}

    return {"load_experiment": timed(analysis, repeat),
            "threaded_per_run_history": timed(lambda: threaded_load(uri), repeat),
            "naive_sequential": timed(lambda: naive_load(uri), 1)}


def with_server(store: Path, repeat: int) -> dict:
    from tests.support.mlflow_process import free_port

    root = Path(tempfile.mkdtemp(prefix="bench-mlflow-server-"))
    port = free_port()
    script = ROOT / "platform" / "mlflow_server.py"
    start = [sys.executable, str(script), "start", "--root", str(root), "--port", str(port), "--wait", "120",
             "--backend-store-uri", f"sqlite:///{store}"]
    subprocess.run(start, check=True, capture_output=True, text=True, timeout=200)
    try:
        return measure(f"http://127.0.0.1:{port}", repeat)
    finally:
        subprocess.run([sys.executable, str(script), "stop", "--root", str(root)], check=False, timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--steps-per-task", type=int, default=40, help="logged training steps per task")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--store", type=Path, default=Path(tempfile.gettempdir()) / "mergan-bench-analysis" /
                        "mlflow.db")
    parser.add_argument("--server", action="store_true", help="also measure through an mlflow server")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "analysis_load.json")
    args = parser.parse_args()

    args.store.parent.mkdir(parents=True, exist_ok=True)
    write_seconds = build_store(args.store, args.runs, args.tasks, args.steps_per_task)
    uri = f"sqlite:///{args.store}"
    results = {
        "what": f"{args.runs} finished runs x {args.tasks} tasks ({args.steps_per_task} logged training steps "
                f"per task) in one experiment; times to get runs + accuracy matrices + per-task summaries",
        "command": "python bench/analysis_load.py " + " ".join(sys.argv[1:]),
        "machine": {"python": stdlib_platform.python_version(), "cpus": os.cpu_count(),
                    "note": "2 CPU cores shared with other developers' jobs: expect noise"},
        "store_write_s": round(write_seconds, 1),
        "sqlite": measure(uri, args.repeat),
    }
    if args.server:
        results["mlflow_server"] = with_server(args.store, args.repeat)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
