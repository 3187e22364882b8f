"""A real two-node Ray cluster on this machine (``ray start`` twice, one CPU each) and an MLflow server:
``sweep.py --address`` spreads trials over both nodes, and ``ray job submit`` runs a sweep as a Ray job.

The nodes share this machine's disk, standing in for the shared storage (NFS/EFS, s3://) of a real
cluster. Teardown ends this cluster's processes by id: ``ray stop`` would end every Ray on the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.support.mlflow_process import free_port, start_mlflow_server
from tests.support.sweeps import kill_ray_of
from tracking.sweep_run import trial_runs
from trainables.plan import SweepPlan

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
SETS = ["iterations_per_task=2", "critic_steps=1", "batch_size=8", "g_width=8", "d_width=8", "z_dim=8",
        "eval_samples_per_class=10", "evaluator_epochs=1", "grid_per_class=2"]


def ray_start(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run([RAY, "start", "--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats",
                           "--dashboard-agent-listen-port", str(free_port()), "--metrics-export-port", str(free_port()),
                           "--runtime-env-agent-port", str(free_port()), *args],
                          env=env, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, f"ray start {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    temp = Path("/tmp") / f"rc{os.getpid()}"  # short: Ray's socket paths must stay under 108 bytes
    token = root / "auth_token"
    token.write_text(uuid.uuid4().hex)
    env = {**os.environ, "RAY_TMPDIR": str(temp),
           "MERGAN_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "sweep-evaluator-cache"),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           # Token authentication, as Ray 2.5x+ does by default; the token file is this cluster's own.
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    env.pop("RAY_ADDRESS", None)
    server = start_mlflow_server(root / "mlflow")
    port, dashboard = free_port(), free_port()
    try:
        ray_start(["--head", "--port", str(port), "--temp-dir", str(temp / "head"), "--include-dashboard=true",
                   "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
                   "--ray-client-server-port", str(free_port())], env)
        ray_start(["--address", f"127.0.0.1:{port}", "--temp-dir", str(temp / "worker")], env)
        yield {"env": env, "address": f"127.0.0.1:{port}", "dashboard": f"http://127.0.0.1:{dashboard}",
               "root": root, "mlflow": server.uri}
    finally:
        kill_ray_of(temp)
        shutil.rmtree(temp, ignore_errors=True)
        server.stop()


def sweep_args(cluster, name: str) -> list[str]:
    sets = [arg for item in SETS for arg in ("--set", item)]
    return ["sweep.py", "--space", "ra-lambda", "--tasks", "0|1", "--num-samples", "2", *sets,
            "--storage-path", str(cluster["root"] / "shared"), "--tracking-uri", cluster["mlflow"],
            "--experiment", "cluster", "--name", name, "--verbose", "0"]


def trial_results(cluster, name: str) -> list[dict]:
    folder = cluster["root"] / "shared" / name
    return [json.loads(path.read_text().splitlines()[-1]) for path in sorted(folder.glob("train_trial_*/result.json"))]


def mlflow_trials(cluster, name: str) -> dict[str, str]:
    plan = SweepPlan.load(str(cluster["root"] / "shared"), name)
    client = MlflowClient(cluster["mlflow"])
    runs = trial_runs(client, plan.parent_run_id)
    return {run.data.tags["trial_id"]: run.info.status for run in runs}


@pytest.mark.slow
def test_sweep_joins_a_two_node_cluster_and_runs_a_trial_on_each_node(cluster):
    done = subprocess.run([sys.executable, *sweep_args(cluster, "nodes"), "--address", cluster["address"],
                           "--max-concurrent", "2"], cwd=REPO, env=cluster["env"], capture_output=True,
                          text=True, timeout=400, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"Starting on the Ray cluster at {cluster['address']}" in done.stdout
    assert f"every trial's forgetting curves: {cluster['mlflow']}/#/experiments/" in done.stdout
    results = trial_results(cluster, "nodes")
    assert len(results) == 2 and all(r["tasks_done"] == 2 for r in results)
    assert len({r["node_id"] for r in results}) == 2  # one CPU per node: the two trials ran on different nodes
    assert mlflow_trials(cluster, "nodes") == {r["trial_id"]: "FINISHED" for r in results}


@pytest.mark.slow
def test_a_sweep_submitted_as_a_ray_job_uploads_the_project_and_runs(cluster):
    started = time.monotonic()
    done = subprocess.run([RAY, "job", "submit", "--address", cluster["dashboard"], "--working-dir", str(REPO), "--",
                           sys.executable, *sweep_args(cluster, "job"), "--max-concurrent", "1"],
                          cwd=REPO, env=cluster["env"], capture_output=True, text=True, timeout=400, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "succeeded" in done.stdout and "Starting on the Ray cluster at" in done.stdout  # RAY_ADDRESS from the job
    results = trial_results(cluster, "job")
    assert len(results) == 2 and all(r["tasks_done"] == 2 for r in results)
    assert mlflow_trials(cluster, "job") == {r["trial_id"]: "FINISHED" for r in results}
    assert time.monotonic() - started < 400


@pytest.mark.slow
def test_a_trial_no_node_can_hold_is_refused_before_any_trial_starts(cluster):
    # Two CPUs in the cluster, but one per node: a two-CPU trial fits nowhere.
    done = subprocess.run([sys.executable, *sweep_args(cluster, "too-big"), "--address", cluster["address"],
                           "--cpus-per-trial", "2"], cwd=REPO, env=cluster["env"], capture_output=True, text=True,
                          timeout=200, check=False)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert (f"--cpus-per-trial 2: the Ray cluster at {cluster['address']} has no node with that many CPUs (the most "
            f"on one node: 1)") in done.stderr
    assert not (cluster["root"] / "shared" / "too-big").exists()
