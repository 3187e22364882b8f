"""Metric histories of many runs at once, in bulk where the store allows.

MLflow's public client reads one (run, metric) history per call. Its SQL store has a bulk query,
and its server the endpoint its UI charts use (``/ajax-api/2.0/mlflow/metrics/get-history-bulk``);
neither is public API, so both sit here, behind :func:`metric_history_rows`, with the public
per-run path as the fallback. ``tests/test_tracking_history.py`` pins them to the MLflow version
they were checked against (``CHECKED_MLFLOW``) and checks that both paths read the same values.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

CHECKED_MLFLOW = "3.17.2"  # the private store APIs below were checked against this MLflow release
SQL_RUNS_PER_QUERY = 500  # run ids per IN (...) clause
REST_RUNS_PER_REQUEST = 100  # the server's limit for get-history-bulk
MAX_HISTORY_ROWS = 25000  # MLflow's cap on one history answer

Row = tuple[str, str, int, float, int]  # run_id, key, step, value, timestamp


class HistoryTruncatedError(RuntimeError):
    """A bulk answer reached MLflow's cap, so it may miss values."""


def bulk_store(client: Any) -> Any:
    """The client's store when it can read histories in bulk (an SQL store or a REST store), else None."""
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    if hasattr(store, "get_metric_history_bulk") or type(store).__name__ == "RestStore":
        return store
    return None


def metric_history_rows(client: Any, wanted: Mapping[str, Iterable[str]], workers: int = 8,
                        bulk: bool = True) -> list[Row]:
    """Every logged (run_id, key, step, value, timestamp) of the metrics ``wanted[run_id]``.

    Batched where the store allows (SQL stores: one query per metric; an ``mlflow server``: one
    request per metric and 100 runs); otherwise, or with ``bulk=False``, one public
    ``get_metric_history`` per (run, metric) on ``workers`` threads.
    """
    pairs = [(run_id, key) for run_id, keys in wanted.items() for key in keys]
    by_key: dict[str, list[str]] = defaultdict(list)
    for run_id, key in pairs:
        by_key[key].append(run_id)
    store = bulk_store(client) if bulk else None
    rows: list[Row]
    if hasattr(store, "get_metric_history_bulk"):
        rows = _sql_bulk(store, by_key)
    elif store is not None:
        try:
            rows = _rest_bulk(store, by_key, workers)
        except Exception as error:  # noqa: BLE001 - a server without the bulk endpoint: per-run calls
            warnings.warn(f"bulk metric history unavailable ({type(error).__name__}); fetching per run",
                          stacklevel=3)
            rows = _threaded(client, pairs, workers)
    else:
        rows = _threaded(client, pairs, workers)
    return rows


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _sql_bulk(store: Any, by_key: Mapping[str, list[str]]) -> list[Row]:
    rows = []
    for key, run_ids in by_key.items():
        for chunk in _chunks(run_ids, SQL_RUNS_PER_QUERY):
            found = store.get_metric_history_bulk(list(chunk), key, MAX_HISTORY_ROWS)
            if len(found) < MAX_HISTORY_ROWS:
                rows += [(m.run_id, key, m.step, m.value, m.timestamp) for m in found]
            else:  # truncated: ask run by run instead
                rows += [(run_id, key, m.step, m.value, m.timestamp)
                         for run_id in chunk for m in store.get_metric_history(run_id, key)]
    return rows


def _rest_bulk(store: Any, by_key: Mapping[str, list[str]], workers: int) -> list[Row]:
    """The server's ``get-history-bulk`` endpoint (the one its UI charts use), 100 runs a request."""
    from mlflow.utils.rest_utils import http_request, verify_rest_response

    endpoint = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"

    def fetch(key: str, chunk: Sequence[str]) -> list[Row]:
        params = [("metric_key", key), ("max_results", str(MAX_HISTORY_ROWS))] + [("run_id", r) for r in chunk]
        response = verify_rest_response(http_request(store.get_host_creds(), endpoint, "GET", params=params),
                                        endpoint)
        metrics = response.json().get("metrics", [])
        if len(metrics) >= MAX_HISTORY_ROWS:
            raise HistoryTruncatedError(f"history of {key} truncated at {MAX_HISTORY_ROWS} values")
        return [(m["run_id"], key, int(m.get("step", 0)), float(m["value"]), int(m.get("timestamp", 0)))
                for m in metrics]

    jobs = [(key, chunk) for key, run_ids in by_key.items() for chunk in _chunks(run_ids, REST_RUNS_PER_REQUEST)]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        return [row for part in pool.map(lambda job: fetch(*job), jobs) for row in part]


def _threaded(client: Any, pairs: Sequence[tuple[str, str]], workers: int) -> list[Row]:
    def fetch(pair: tuple[str, str]) -> list[Row]:
        run_id, key = pair
        return [(run_id, key, m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, key)]

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return [row for part in pool.map(fetch, pairs) for row in part]
