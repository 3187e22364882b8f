"""Stopping a sweep: Ctrl-C in its terminal stops the trials, keeps what they did for ``--resume``, marks the
MLflow runs KILLED and leaves no process of the sweep running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from test_sweep_resume import (  # the same short sweep, isolated Ray and process lookup as the resume test
    REPO,
    SETS,
    first_checkpoint_is_in_the_saved_state,
    ray_processes_of,
    sweep_env,  # noqa: F401 - a fixture
)

from trainables.plan import SweepPlan


def start_sweep(tmp_path: Path, env: dict[str, str], name: str, iterations: int = 60) -> tuple[subprocess.Popen, Path, str]:
    """A two-trial sweep in its own process group (as a terminal runs it), started; returned once a
    checkpoint is saved (short tasks) or, for long tasks, once its trials run."""
    storage = tmp_path / "sweeps"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sets = [arg for item in [*SETS, f"iterations_per_task={iterations}"] for arg in ("--set", item)]
    command = [sys.executable, str(REPO / "sweep.py"), "--space", "ra-lambda", "--tasks", "0|1", "--num-samples", "2",
               "--max-concurrent", "2", *sets, "--storage-path", str(storage), "--tracking-uri", uri,
               "--name", name, "--verbose", "0"]
    log = tmp_path / f"{name}.log"
    driver = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                              start_new_session=True)

    def ready() -> bool:
        if iterations <= 60:
            return first_checkpoint_is_in_the_saved_state(storage / name)
        return len(list((storage / name).glob("train_trial_*"))) == 2

    deadline = time.monotonic() + 240
    while not ready():
        assert driver.poll() is None, f"the sweep ended early:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"not ready after 240 s:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)
    return driver, storage, uri


def wait_until_gone(temp_dir: Path, timeout_s: float = 20) -> list:
    """The sweep's Ray processes still alive after ``timeout_s`` (none, when it cleaned up)."""
    deadline = time.monotonic() + timeout_s
    while ray_processes_of(temp_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    return ray_processes_of(temp_dir)


def mlflow_statuses(uri: str, plan: SweepPlan) -> tuple[str, list[str]]:
    client = MlflowClient(uri)
    experiment_id = client.get_run(plan.parent_run_id).info.experiment_id
    children = client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{plan.parent_run_id}'")
    return client.get_run(plan.parent_run_id).info.status, [run.info.status for run in children]


@pytest.mark.slow
def test_ctrl_c_stops_a_sweep_that_resume_then_finishes(tmp_path, sweep_env):  # noqa: F811 - the fixture
    temp_dir = Path(sweep_env["RAY_TMPDIR"])
    driver, storage, uri = start_sweep(tmp_path, sweep_env, "interrupted")
    os.killpg(driver.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    assert driver.wait(120) == 130
    output = (tmp_path / "interrupted.log").read_text()
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    assert "sweep.py: stopped by Ctrl-C after " in output
    resume = f"python sweep.py --resume --name interrupted --storage-path {storage}"
    assert f"continue with: {resume}" in output
    assert wait_until_gone(temp_dir) == []  # Ray and the trials' workers ended with the driver

    plan = SweepPlan.load(str(storage), "interrupted")
    parent, children = mlflow_statuses(uri, plan)
    assert parent == "KILLED" and "RUNNING" not in children and "KILLED" in children

    resumed = subprocess.run([sys.executable, str(REPO / "sweep.py"), *resume.split()[2:], "--verbose", "0"],
                             cwd=tmp_path, env=sweep_env, capture_output=True, text=True, timeout=400, check=False)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-5000:]
    table = resumed.stdout[resumed.stdout.index("trial  "):]
    assert table.count("finished  2/2") == 2
    assert mlflow_statuses(uri, plan) == ("FINISHED", ["FINISHED", "FINISHED"])
