"""platform/mps.py against a stand-in for NVIDIA's control program (the real one needs a GPU driver).

The stand-in behaves as ``nvidia-cuda-mps-control`` does where the script relies on it: ``-d`` starts a
daemon that listens on ``$CUDA_MPS_PIPE_DIRECTORY/control``; a client run reads commands on stdin and
sends them to that socket (``quit`` ends the daemon, ``get_server_list`` answers the server pids).
bench/gpu_check.sh runs the real one on a GPU machine.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "platform" / "mps.py"
FAKE_CONTROL = r'''#!PYTHON
import os, socket, sys
pipe = os.environ["CUDA_MPS_PIPE_DIRECTORY"]
path = os.path.join(pipe, "control")
with open(os.path.join(os.environ["CUDA_MPS_LOG_DIRECTORY"], "calls.log"), "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\n")
if sys.argv[1:] == ["-d"]:
    if os.fork():
        sys.exit(0)
    os.setsid()
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()
    while True:
        connection, _ = server.accept()
        command = connection.recv(100).decode().strip()
        if command == "quit":
            os.unlink(path)
            sys.exit(0)
        connection.sendall(b"4242\n" if command == "get_server_list" else b"")
        connection.close()
client = socket.socket(socket.AF_UNIX)
try:
    client.connect(path)
except OSError:
    sys.exit("Cannot find MPS control daemon process")
client.sendall(sys.stdin.read().encode())
client.settimeout(2)
try:
    sys.stdout.write(client.recv(100).decode())
except OSError:
    pass
'''


@pytest.fixture
def fake_driver(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    control = bin_dir / "nvidia-cuda-mps-control"
    control.write_text(FAKE_CONTROL.replace("PYTHON", sys.executable))
    control.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "MERGAN_MPS_DIR": str(tmp_path / "mps")}
    env.pop("XDG_RUNTIME_DIR", None)
    yield env
    subprocess.run([sys.executable, str(SCRIPT), "stop"], env=env, capture_output=True, check=False)


def mps(env, *args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_start_status_and_stop_run_the_daemon_in_private_folders(fake_driver, tmp_path):
    root = tmp_path / "mps"
    assert mps(fake_driver, "status").returncode == 3
    started = mps(fake_driver, "start")
    assert started.returncode == 0, started.stderr
    assert f"CUDA_MPS_PIPE_DIRECTORY={root / 'pipe'}" in started.stdout
    for folder in ("pipe", "log"):
        assert stat.S_IMODE((root / folder).stat().st_mode) == 0o700
    assert (root / "pipe" / "control").is_socket()  # the daemon got the folders through its environment
    status = mps(fake_driver, "status")
    assert status.returncode == 0 and "1 server process" in status.stdout
    again = mps(fake_driver, "start")  # idempotent: no second daemon
    assert again.returncode == 0 and "already running" in again.stdout
    assert (root / "log" / "calls.log").read_text().splitlines().count("-d") == 1
    assert mps(fake_driver, "stop").returncode == 0
    assert not (root / "pipe" / "control").exists()
    assert mps(fake_driver, "status").returncode == 3


def test_env_prints_what_a_trial_exports(fake_driver, tmp_path):
    lines = mps(fake_driver, "env", "--dir", str(tmp_path / "elsewhere")).stdout.splitlines()
    assert lines == [f"export CUDA_MPS_PIPE_DIRECTORY={tmp_path / 'elsewhere' / 'pipe'}",
                     f"export CUDA_MPS_LOG_DIRECTORY={tmp_path / 'elsewhere' / 'log'}"]


def test_start_without_the_driver_says_what_is_missing(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path), "MERGAN_MPS_DIR": str(tmp_path / "mps")}
    done = mps(env, "start")
    assert done.returncode != 0 and "nvidia-cuda-mps-control is not on PATH" in done.stderr
    assert "Traceback" not in done.stderr
