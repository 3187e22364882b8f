"""Bulk metric histories (``tracking.history``): private MLflow APIs, pinned to the version they were checked on."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from analysis.load import fetch_metric_histories
from tracking.history import CHECKED_MLFLOW, bulk_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Three runs, two per-task metrics each over three tasks, one value logged twice at a step."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('history') / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("history")
    wanted = {}
    for r in range(3):
        run_id = client.create_run(experiment).info.run_id
        metrics = [Metric(key, 0.1 * r + 0.01 * task, 1000 + task, task)
                   for task in (1, 2, 3) for key in ("acc_task_1", "avg_acc")]
        metrics.append(Metric("avg_acc", 0.5, 2000, 3))  # a re-logged step: the latest value counts
        client.log_batch(run_id, metrics=metrics, synchronous=True)
        wanted[run_id] = ["acc_task_1", "avg_acc"]
    return client, wanted


def test_the_private_bulk_apis_are_the_ones_checked_for_this_mlflow():
    """Fails on an MLflow upgrade: check ``tracking/history.py``'s private calls, then raise CHECKED_MLFLOW."""
    assert mlflow.__version__ == CHECKED_MLFLOW


def test_an_sql_store_reads_in_bulk(store):
    client, _ = store
    assert hasattr(bulk_store(client), "get_metric_history_bulk")


def test_the_public_fallback_reads_the_same_frame_as_the_bulk_path(store):
    client, wanted = store
    bulk = fetch_metric_histories(client, wanted)
    public = fetch_metric_histories(client, wanted, bulk=False)
    assert len(bulk) == 3 * 2 * 3
    pd.testing.assert_frame_equal(bulk, public)
    assert set(bulk.loc[(bulk["key"] == "avg_acc") & (bulk["step"] == 3), "value"]) == {0.5}
