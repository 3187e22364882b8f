"""The start of runs and sweeps: processes started together on a fresh SQLite store, and a folder that
shadows the mergan package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

REPO = Path(__file__).resolve().parents[1]
MERGAN = str(Path(sys.executable).with_name("mergan"))
TINY_TRAIN = ["--preset", "small", "--tasks", "0|1", "--iterations", "1", "--batch-size", "8", "--critic-steps", "1",
              "--g-width", "8", "--d-width", "8", "--z-dim", "8", "--eval-when", "none", "--device", "cpu"]


@pytest.fixture
def env(tmp_path):
    """A user's shell: no tracking URI from outside, one thread per process."""
    values = {**os.environ, "OMP_NUM_THREADS": "1", "MERGAN_CACHE_DIR": str(tmp_path / "cache")}
    values.pop("MLFLOW_TRACKING_URI", None)
    return values


@pytest.mark.slow
def test_four_runs_started_together_on_a_fresh_sqlite_store_all_record_their_runs(tmp_path, env):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"  # a fresh clone's default store, not created yet
    runs = [subprocess.Popen([MERGAN, "train", *TINY_TRAIN, "--out-dir", str(tmp_path / f"run{i}"),
                              "--tracking-uri", store], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for i in range(4)]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0, 0], "\n\n".join(o[-2000:] for o in outputs)
    assert not any("already exists" in output for output in outputs)
    client = MlflowClient(store)
    found = client.search_runs([client.get_experiment_by_name("mergan").experiment_id])
    assert sorted(run.data.tags["out_dir"] for run in found) == [str(tmp_path / f"run{i}") for i in range(4)]
    assert {run.info.status for run in found} == {"FINISHED"}
    assert not list(tmp_path.glob("run*/mlflow_outbox"))  # every record reached the store


def test_a_mergan_folder_beside_sweep_py_is_named_instead_of_failing_later(tmp_path, env):
    # What `ray submit` made of a cluster that synced this repository to ~/mergan: ~/sweep.py beside it.
    home = tmp_path / "home"
    (home / "mergan" / "mergan").mkdir(parents=True)
    shutil.copy(REPO / "sweep.py", home / "sweep.py")
    done = subprocess.run([sys.executable, str(home / "sweep.py"), "--space", "ra-lambda", "--num-samples", "1",
                           "--storage-path", str(tmp_path / "sweeps")], cwd=home, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith(f"sweep.py: error: `import mergan` found the folder {home / 'mergan'}, not the "
                           f"installed mergan package")
    assert "~/mergan-platform" in line and not (tmp_path / "sweeps").exists()
