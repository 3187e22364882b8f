"""The team server on the stores teams use: ``platform/mlflow_server.py start`` on a real PostgreSQL (started
here, loopback only) and on SQLite, under 16 concurrent runs logging batches: no record lost or duplicated.

The time per batch on each store is what ``bench/team_server_load.py`` measures (bench/results/)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.support.mlflow_load import check_records, log_concurrently
from tests.support.mlflow_process import start_mlflow_server
from tests.support.postgres import start_postgres

RUNS, BATCHES, METRICS = 16, 8, 20


@pytest.fixture(scope="module")
def postgres():
    server = start_postgres(durable=True)  # as a team's: every commit written to disk
    if server is None:
        pytest.skip("PostgreSQL is not installed here (.ci/install-test-tools installs Debian's postgresql)")
    yield server
    server.stop()


@pytest.mark.slow
def test_a_team_server_on_postgresql_keeps_every_record_of_16_concurrent_runs(postgres, tmp_path):
    import psycopg

    uri = postgres.create_database("mlflow")
    server = start_mlflow_server(tmp_path / "server", options=("--backend-store-uri", uri))
    try:
        # Its connection pool holds every concurrent run (MLflow's default, 5 + 10, is fewer than 16).
        pid = json.loads((server.root / "mlflow.pid").read_text())["pid"]
        variables = Path(f"/proc/{pid}/environ").read_text().split("\0")
        environ = dict(item.split("=", 1) for item in variables if "=" in item)
        assert int(environ["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"]) >= RUNS
        load = log_concurrently(server.uri, "load", runs=RUNS, batches=BATCHES, metrics=METRICS)
        assert check_records(server.uri, load) == []
    finally:
        server.stop()
    with psycopg.connect(uri) as connection, connection.cursor() as cursor:  # in PostgreSQL, nowhere else
        cursor.execute("SELECT count(*) FROM metrics")
        assert cursor.fetchone()[0] == RUNS * BATCHES * METRICS
        cursor.execute("SELECT count(*) FROM runs")
        assert cursor.fetchone()[0] == RUNS
    assert not (tmp_path / "server" / "mlflow.db").exists()


@pytest.mark.slow
def test_a_team_server_on_sqlite_keeps_every_record_of_16_concurrent_runs(tmp_path):
    server = start_mlflow_server(tmp_path / "server")
    try:
        load = log_concurrently(server.uri, "load", runs=RUNS, batches=BATCHES, metrics=METRICS)
        assert check_records(server.uri, load) == []
    finally:
        server.stop()
    with sqlite3.connect(tmp_path / "server" / "mlflow.db") as connection:
        assert connection.execute("SELECT count(*) FROM metrics").fetchone()[0] == RUNS * BATCHES * METRICS
