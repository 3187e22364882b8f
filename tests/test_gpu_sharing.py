"""sweep.py warns when trials would share a GPU without CUDA MPS (a local Ray that declares one GPU)."""

from __future__ import annotations

import socket

import pytest

from trainables.plan import make_plan
from trainables.ray_connection import connect_ray


@pytest.fixture(scope="module")
def ray_with_a_gpu(tmp_path_factory):
    import ray

    pipe = tmp_path_factory.mktemp("mps") / "pipe"
    pipe.mkdir()
    monkey = pytest.MonkeyPatch()
    monkey.setenv("CUDA_MPS_PIPE_DIRECTORY", str(pipe))  # the raylet's workers inherit it, as on a node
    ray.init(address="local", num_cpus=1, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield pipe
    ray.shutdown()
    monkey.undo()


def test_fractional_gpus_without_mps_are_warned_about_once_mps_answers_not(ray_with_a_gpu, tmp_path, capsys):
    plan = make_plan(space="ra-lambda", storage_path=str(tmp_path / "sweeps"), gpus_per_trial=0.25,
                     tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    connect_ray(None, plan)
    warning = capsys.readouterr().err
    assert "--gpus-per-trial 0.25 puts up to 4 trials on one GPU" in warning and "platform/mps.py start" in warning

    control = socket.socket(socket.AF_UNIX)  # what the MPS control daemon listens on
    control.bind(str(ray_with_a_gpu / "control"))
    try:
        connect_ray(None, plan)
        assert "MPS" not in capsys.readouterr().err
        whole = make_plan(space="ra-lambda", storage_path=str(tmp_path / "sweeps"), name="whole", gpus_per_trial=1,
                          tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
        (ray_with_a_gpu / "control").unlink()
        connect_ray(None, whole)  # a whole GPU per trial shares nothing
        assert "MPS" not in capsys.readouterr().err
    finally:
        control.close()
