"""Short sweeps for the sweep tests: their config values, Ray isolated per test, Ray's processes found."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
# Tasks of two steps: a sweep that only has to run.
TINY_SETS = ["iterations_per_task=2", "critic_steps=1", "batch_size=8", "g_width=8", "d_width=8", "z_dim=8",
             "eval_samples_per_class=10", "evaluator_epochs=1", "log_every=1", "grid_per_class=2"]
# Tasks long enough (60 steps) that the driver dies with trials unfinished.
SETS = ["iterations_per_task=60", "critic_steps=1", "batch_size=8", "g_width=8", "d_width=8", "z_dim=8",
        "eval_samples_per_class=10", "evaluator_epochs=1", "grid_per_class=2"]


def ray_processes_of(temp_dir: Path) -> list[psutil.Process]:
    """Processes started with ``RAY_TMPDIR=temp_dir``: the Ray of one test alone (read from /proc, since Ray's
    process titles overwrite what psutil parses)."""
    marker = f"RAY_TMPDIR={temp_dir}".encode()
    found = []
    for process in psutil.process_iter():
        try:
            environ = Path(f"/proc/{process.pid}/environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            found.append(process)
    return found


def kill_ray_of(temp_dir: Path) -> None:
    """End the Ray processes of one test, by process id (never ``ray stop``: it ends every Ray on the machine)."""
    ours = ray_processes_of(temp_dir)
    for process in ours:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(ours, timeout=3)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture
def sweep_env(tmp_path, tmp_path_factory):
    temp_dir = Path("/tmp") / f"rs{os.getpid()}"  # short: Ray's socket paths must stay under 108 bytes
    temp_dir.mkdir(exist_ok=True)
    env = {**os.environ, "RAY_TMPDIR": str(temp_dir),
           "MERGAN_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "sweep-evaluator-cache")}
    env.pop("RAY_ADDRESS", None)
    yield env
    kill_ray_of(temp_dir)
    shutil.rmtree(temp_dir, ignore_errors=True)


def first_checkpoint_is_in_the_saved_state(storage: Path) -> bool:
    """Tune's experiment state in storage (what --resume reads) holds a trial's first checkpoint in its
    checkpoint manager (saved there as a hex-encoded pickle, so the path appears as hex)."""
    registered = b"checkpoint_000000".hex()
    for path in glob.glob(str(storage / "experiment_state-*.json")):
        try:
            if registered in Path(path).read_text():
                return True
        except OSError:
            continue
    return False




def kill_after_first_checkpoint(command: list[str], storage: Path, env: dict[str, str], log: Path) -> None:
    """Start the sweep driver ``command``, SIGKILL it once Tune's saved state holds a first checkpoint."""
    with log.open("w") as out:
        driver = subprocess.Popen(command, cwd=log.parent, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240
        while not first_checkpoint_is_in_the_saved_state(storage):
            assert driver.poll() is None, f"the sweep ended before it could be killed:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no trial result after 240 s:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        driver.send_signal(signal.SIGKILL)
        driver.wait(30)


def resume_sweep(storage: Path, env: dict[str, str], cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    """``sweep.py --resume`` of the sweeps in ``storage``; fails the test with its output if it fails."""
    resumed = subprocess.run([sys.executable, str(REPO / "sweep.py"), "--resume", "--storage-path", str(storage),
                              "--verbose", "0"], cwd=cwd, env=env, capture_output=True, text=True,
                             timeout=timeout, check=False)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + "\n--- stderr ---\n" + resumed.stderr[-8000:]
    return resumed
