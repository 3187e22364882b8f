"""A bounded load on an MLflow tracking server: concurrent runs logging batches of metrics, every record checked.

Each of ``runs`` clients (one thread each, as concurrent sweep trials are) creates a run and sends ``batches``
``log_batch`` calls of ``metrics`` values at one step each, as a trial logs a task's metrics; then every run's
metric histories are read back and compared with what was sent::

    load = log_concurrently("http://127.0.0.1:5000", "load", runs=16, batches=10, metrics=20)
    assert check_records("http://127.0.0.1:5000", load) == []
    load.seconds_per_batch     # how long each log_batch call took, for the benchmark
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException


def sent_value(run: int, step: int, metric: int) -> float:
    """The value run ``run`` logs for metric ``metric`` at ``step``: distinct, so a mixed-up record shows."""
    return run * 1000.0 + step + metric / 1000.0


@dataclass
class Load:
    runs: int
    batches: int
    metrics: int
    run_ids: list[str] = field(default_factory=list)
    seconds_per_batch: list[float] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # calls the server answered with an error
    wall_seconds: float = 0.0

    def summary(self) -> dict[str, float]:
        """Median and 95th percentile of the time per logged batch, in milliseconds, and the batches per second."""
        times = sorted(self.seconds_per_batch)
        return {"batches": len(times), "median_ms": 1000 * statistics.median(times),
                "p95_ms": 1000 * times[max(0, round(0.95 * len(times)) - 1)],
                "batches_per_second": len(times) / self.wall_seconds}


def log_concurrently(uri: str, experiment: str, runs: int = 16, batches: int = 10, metrics: int = 20) -> Load:
    """``runs`` concurrent runs in ``experiment`` (created), each logging ``batches`` batches of ``metrics``."""
    experiment_id = MlflowClient(uri).create_experiment(experiment)
    load = Load(runs, batches, metrics)

    def one_run(index: int) -> tuple[str, list[float], list[str]]:
        client = MlflowClient(uri)
        run_id = client.create_run(experiment_id, run_name=f"load-{index}").info.run_id
        times, refused = [], []
        for step in range(batches):
            stamp = int(time.time() * 1000)
            batch = [Metric(f"metric_{k}", sent_value(index, step, k), stamp, step) for k in range(metrics)]
            started = time.perf_counter()
            try:
                client.log_batch(run_id, metrics=batch)
            except MlflowException as error:  # what a trial would see: the server refused the batch
                refused.append(f"run {index} step {step}: {str(error).splitlines()[0][:200]}")
            times.append(time.perf_counter() - started)
        client.set_terminated(run_id)
        return run_id, times, refused

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=runs) as pool:
        for run_id, times, refused in pool.map(one_run, range(runs)):
            load.run_ids.append(run_id)
            load.seconds_per_batch.extend(times)
            load.refused.extend(refused)
    load.wall_seconds = time.perf_counter() - started
    return load


def check_records(uri: str, load: Load) -> list[str]:
    """What the store holds that differs from what was sent: records lost, duplicated or changed (empty: none)."""
    client = MlflowClient(uri)
    problems: list[str] = [f"refused: {refusal}" for refusal in load.refused]
    for index, run_id in enumerate(load.run_ids):
        run = client.get_run(run_id)
        if run.info.status != "FINISHED":
            problems.append(f"run {index}: status {run.info.status}")
        for metric in range(load.metrics):
            history: Sequence = client.get_metric_history(run_id, f"metric_{metric}")
            steps = sorted(m.step for m in history)
            if steps != list(range(load.batches)):
                problems.append(f"run {index} metric_{metric}: steps {steps} (sent 0..{load.batches - 1} once each)")
            wrong = [m.step for m in history if m.value != sent_value(index, m.step, metric)]
            if wrong:
                problems.append(f"run {index} metric_{metric}: other values at steps {wrong}")
    return problems
