"""The README's cluster commands end to end: `ray up`, `ray submit ... sweep.py`, `ray up` again, stopping
MLflow, `ray down`, with the shipped ``platform/cluster-local.yaml`` against a real SSH head on this
machine (``tests/ssh_head.py``: Debian's sshd, in its own PID namespace).

The YAML is used as shipped but for what this machine requires: the head is 127.0.0.1 with no
workers, reached as the test's user with the test's key through ``nc`` (Ray's local provider has no
SSH port option). Skipped, with the reason, where this machine cannot host the head (no sshd, rsync
or nc: ``apt-get install openssh-server rsync netcat-openbsd``; not root).
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from tests.support.ssh_head import HeadUnavailable, SSHHead, start_ssh_head

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "platform" / "cluster-local.yaml"
RAY = str(Path(sys.executable).with_name("ray"))
TINY_SETS = ["iterations_per_task=2", "critic_steps=1", "batch_size=8", "g_width=8", "d_width=8", "z_dim=8",
             "eval_samples_per_class=10", "evaluator_epochs=1", "grid_per_class=2"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """This checkout as a fresh clone has it (tracked and new files, nothing git ignores), to run `ray up`
    from: Ray hashes every file under a mounted folder, .venv included, whatever rsync excludes."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=False)
    if listed.returncode != 0:
        return REPO  # not a git checkout: use it as it is
    copy = tmp_path_factory.mktemp("checkout")
    for name in filter(None, listed.stdout.decode().split("\0")):
        if (REPO / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, copy / name)
    return copy


@pytest.fixture(scope="module")
def head():
    try:
        head = start_ssh_head()
    except HeadUnavailable as reason:
        pytest.skip(f"no SSH head on this machine: {reason}")
    try:
        yield head
    finally:
        head.stop()


def cluster_config_for(head: SSHHead) -> dict:
    """The shipped YAML with this machine's head, no workers, and the test's user, key and SSH port."""
    config = yaml.safe_load(SHIPPED.read_text())
    config["provider"].update(head_ip="127.0.0.1", worker_ips=[])
    config["max_workers"] = 0
    config["auth"] = {"ssh_user": head.user, "ssh_private_key": str(head.key),
                      "ssh_proxy_command": head.proxy_command}
    return config


def changed_fields(shipped: dict, copy: dict, prefix: str = "") -> set[str]:
    if not (isinstance(shipped, dict) and isinstance(copy, dict)):
        return set() if shipped == copy else {prefix.rstrip(".")}
    return {field for key in shipped.keys() | copy.keys()
            for field in changed_fields(shipped.get(key), copy.get(key), f"{prefix}{key}.")}


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(command[:3])} ... exited with {done.returncode}:\n{output[-6000:]}"
    return output


def mlflow_login(home: Path) -> dict[str, str]:
    credentials = configparser.ConfigParser()
    credentials.read(home / ".mlflow" / "credentials")
    return {"MLFLOW_TRACKING_USERNAME": credentials["mlflow"]["mlflow_tracking_username"],
            "MLFLOW_TRACKING_PASSWORD": credentials["mlflow"]["mlflow_tracking_password"]}


def head_processes(head: SSHHead) -> list[str]:
    done = head.ssh("ps -eo args=")
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if "ps -eo" not in line]


def test_ray_up_submit_a_sweep_up_again_and_down_on_an_ssh_head(head, checkout, tmp_path, monkeypatch):
    config = cluster_config_for(head)
    assert changed_fields(yaml.safe_load(SHIPPED.read_text()), config) == {
        "provider.head_ip", "provider.worker_ips", "max_workers", "auth.ssh_user", "auth.ssh_private_key",
        "auth.ssh_proxy_command"}
    config_file = tmp_path / "cluster-local.yaml"
    config_file.write_text(yaml.safe_dump(config))
    laptop = tmp_path / "home"  # the user's machine: its HOME holds the MLflow login that `ray up` sends
    laptop.mkdir()
    env = {**os.environ, "HOME": str(laptop), "RAY_TMPDIR": str(head.base / "c"), "TMPDIR": str(head.base / "c"),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "RAY_USAGE_STATS_ENABLED": "0"}
    for name in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(name, None)

    run([sys.executable, "platform/mlflow_server.py", "credentials"], checkout, env)
    run([RAY, "up", str(config_file), "-y"], checkout, env)
    assert (head.home / "mergan-platform" / "sweep.py").is_file() and not (head.home / "mergan").exists()
    mlflow_pid = (head.home / "mlflow_server" / "mlflow.pid").read_text()

    # Quoted twice, as the README says: `ray submit` hands the words to the head's shell unquoted.
    sets = [arg for item in TINY_SETS for arg in ("--set", item)]
    out = run([RAY, "submit", str(config_file), "sweep.py", "--", "--address", "auto",
               "--storage-path", str(head.home / "sweeps"), "--space", "ra-lambda", "--num-samples", "2",
               "--tasks", "'0|1'", *sets, "--name", "e2e", "--verbose", "0"], checkout, env)
    table = out[out.index("trial  "):out.index("Best:")]
    trial_ids = set(re.findall(r"^(\S+)\s+finished\s+2/2\b", table, re.MULTILINE))
    assert len(trial_ids) == 2, out[-4000:]
    uri, parent_id = re.search(r"MLflow: tracking URI (http://\S+), experiment 'mergan', sweep run (\w+)",
                               out).groups()

    # The head's MLflow holds the sweep's parent run and one finished child run per trial.
    for name, value in mlflow_login(laptop).items():
        monkeypatch.setenv(name, value)
    client = MlflowClient(uri)
    parent = client.get_run(parent_id)
    assert parent.data.tags["mergan.role"] == "sweep" and parent.info.status == "FINISHED"
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'")
    assert {run.data.tags["trial_id"]: run.info.status for run in children} == dict.fromkeys(trial_ids, "FINISHED")

    # Again: Ray restarts, the MLflow server running from the first `ray up` is kept, ~/.bashrc does not grow.
    bashrc = (head.home / ".bashrc").read_text()
    run([RAY, "up", str(config_file), "-y"], checkout, env)
    assert (head.home / "mlflow_server" / "mlflow.pid").read_text() == mlflow_pid
    assert (head.home / ".bashrc").read_text() == bashrc
    assert any("raylet" in line for line in head_processes(head))

    run([RAY, "exec", str(config_file),
         "python ~/mergan-platform/platform/mlflow_server.py stop --root ~/mlflow_server"], checkout, env)
    run([RAY, "down", str(config_file), "-y"], checkout, env)
    left = [line for line in head_processes(head) if not line.startswith(("sshd", "bash", "-bash"))]
    assert not left, f"still running on the head after `ray down`: {left}"
