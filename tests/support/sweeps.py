"""Short sweeps for the sweep tests: their config values, Ray isolated per test, Ray's processes found."""

from __future__ import annotations

import glob
import os
import shutil
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
    env = {**os.environ, "RAY_TMPDIR": str(temp_dir), "MERGAN_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "sweep-evaluator-cache")}
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


