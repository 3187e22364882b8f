"""The hand-written MLflow runs of ``tests/support/mlflow_stores.py`` hold what the real logger logs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mlflow import MlflowClient

from tests.support.mlflow_stores import (
    STEP_KEYS,
    empty_store,
    log_with_real_logger,
    make_config,
    method_accuracy,
    write_run,
)


def describe(client: MlflowClient, run_id: str) -> Mapping[str, Any]:
    """What a run holds, values aside: param/tag keys, (metric, step) pairs per task metric, artifacts."""
    run = client.get_run(run_id)
    volatile = {"mergan.run_key", "git_commit", "mlflow.source.git.commit", "mlflow.user", "mlflow.source.name",
                "mlflow.source.type"}
    steps = {key: sorted(m.step for m in client.get_metric_history(run_id, key)) for key in run.data.metrics
             if key not in STEP_KEYS}

    def listing(path: str | None = None) -> set[str]:
        found: set[str] = set()
        for info in client.list_artifacts(run_id, path):
            found |= listing(info.path) if info.is_dir else {info.path}
        return found

    return {"params": sorted(run.data.params), "tags": sorted(set(run.data.tags) - volatile),
            "metric_steps": steps, "step_metrics": sorted(k for k in run.data.metrics if k in STEP_KEYS),
            "artifacts": sorted(listing()), "status": run.info.status}


def test_handwritten_runs_hold_what_the_real_logger_logs(tmp_path):
    uri = empty_store(tmp_path / "mlflow.db")
    client = MlflowClient(uri)
    accuracy = method_accuracy("ra", 0)
    real = log_with_real_logger(uri, "parity", make_config("ra", 0, 3, tmp_path / "real"), accuracy)
    experiment_id = client.get_experiment_by_name("parity").experiment_id
    handwritten = write_run(client, experiment_id, make_config("ra", 0, 3, tmp_path / "hand"), accuracy)

    real_run, hand_run = describe(client, real), describe(client, handwritten)
    assert json.dumps(hand_run, sort_keys=True, indent=1) == json.dumps(real_run, sort_keys=True, indent=1)
    real_values, hand_values = client.get_run(real).data, client.get_run(handwritten).data
    for key in ("acc_task_1", "acc_task_3", "avg_acc", "bwt", "forgetting"):
        assert hand_values.metrics[key] == real_values.metrics[key]
    assert hand_values.params == {**real_values.params, "run.out_dir": hand_values.params["run.out_dir"]}
