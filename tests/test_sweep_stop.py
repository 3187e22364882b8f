"""Stopping a sweep: Ctrl-C in its terminal or ``sweep.py --stop`` from another one stops the trials, keeps
what they did for ``--resume``, marks the MLflow runs KILLED and leaves no process of the sweep running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.support.sweeps import (  # the same short sweep, isolated Ray and process lookup as the resume test
    REPO,
    SETS,
    first_checkpoint_is_in_the_saved_state,
    ray_processes_of,
)
from tracking.sweep_run import trial_runs
from trainables.plan import SweepPlan


def start_sweep(tmp_path: Path, env: dict[str, str], name: str,
                iterations: int = 60) -> tuple[subprocess.Popen, Path, str]:
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
    children = trial_runs(client, plan.parent_run_id)
    return client.get_run(plan.parent_run_id).info.status, [run.info.status for run in children]


@pytest.mark.slow
def test_ctrl_c_stops_a_sweep_that_resume_then_finishes(tmp_path, sweep_env):
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


@pytest.mark.slow
def test_stop_from_another_terminal_stops_the_driver_and_ends_what_it_left(tmp_path, sweep_env):
    from trainables.sweep_driver import DRIVER_FILE, TOKEN_ENV, end_leftovers

    temp_dir = Path(sweep_env["RAY_TMPDIR"])
    driver, storage, uri = start_sweep(tmp_path, sweep_env, "stopped", iterations=5000)  # still running at --stop
    record = json.loads((storage / "stopped" / DRIVER_FILE).read_text())
    assert record["pid"] == driver.pid
    # A stand-in for a process Ray can leave behind (an agent whose parent died without taking it along):
    # it carries the driver's token, as every process the driver starts does.
    stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                             env={**sweep_env, TOKEN_ENV: record["token"]})
    common = ["--name", "stopped", "--storage-path", str(storage)]

    refused = subprocess.run([sys.executable, str(REPO / "sweep.py"), "--resume", *common], cwd=tmp_path,
                             env=sweep_env, capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode == 2
    assert f"is still running (driver process {driver.pid}); stop it first with: python sweep.py --stop" in \
        refused.stderr

    stop = subprocess.run([sys.executable, str(REPO / "sweep.py"), "--stop", *common], cwd=tmp_path, env=sweep_env,
                          capture_output=True, text=True, timeout=200, check=False)
    assert stop.returncode == 0, stop.stderr[-3000:]
    assert driver.wait(5) == 130  # it stopped as on Ctrl-C: Tune saved its state
    assert "stopped the driver of sweep stopped; its state is saved for --resume" in stop.stdout
    assert f"ended process {stray.pid}" in stop.stdout and stray.wait(5) is not None
    assert f"continue with: python sweep.py --resume --name stopped --storage-path {storage}" in stop.stdout
    assert wait_until_gone(temp_dir) == []
    plan = SweepPlan.load(str(storage), "stopped")
    parent, children = mlflow_statuses(uri, plan)
    assert parent == "KILLED" and "RUNNING" not in children

    # What a driver killed outright leaves running, --resume ends before it starts its own Ray.
    stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                             env={**sweep_env, TOKEN_ENV: record["token"]})
    assert [line.split()[0] for line in end_leftovers(plan)] == [str(stray.pid)]
    assert stray.wait(5) is not None
