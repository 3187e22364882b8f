"""Shared fixtures: tiny CPU configs and the embedded dataset, loaded once per session."""

from __future__ import annotations

import pytest
import torch

# sweeps: sweep_env, a sweep with a Ray of its own; read_only: folders a command cannot write (as root too);
# runs: in_tmp, a command run from an empty folder
pytest_plugins = ("tests.support.sweeps", "tests.support.read_only", "tests.support.runs")
# One thread: the tests' tensors are tiny, and Ray workers and servers run beside the tests;
# oversubscribed threads were measured several times slower than one here.
torch.set_num_threads(1)
try:  # and one BLAS thread for numpy/scipy (FID's matrix square roots)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
except ImportError:
    pass

# Tiny everything: a few steps of narrow nets on CPU, no evaluation unless a test asks.
TINY = dict(preset="small", device="cpu", iterations_per_task=3, batch_size=16, critic_steps=1, z_dim=16,
            g_width=16, d_width=8, log_every=1, eval_when="none", ewc_fisher_samples=16,
            dgr_solver_iterations=3, eval_samples_per_class=20, evaluator_epochs=1, grid_per_class=2)


@pytest.fixture(scope="session")
def mnist5k():
    from mergan.config import DataConfig
    from mergan.data import load_dataset

    return load_dataset(DataConfig(dataset="mnist5k"), image_size=32)


@pytest.fixture
def tiny_config(tmp_path, monkeypatch):
    """``tiny_config(method="ra", tasks="0|1")`` -> a validated tiny ExperimentConfig writing under tmp_path."""
    from mergan.presets import build_config

    monkeypatch.setenv("MERGAN_CACHE_DIR", str(tmp_path / "cache"))

    def make(**overrides):
        values = {**TINY, "out_dir": str(tmp_path / "run"), "tasks": "0|1", **overrides}
        return build_config(overrides=values)

    return make


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A local Ray for one test module (its sweep storage root), sharing one evaluator cache per session."""
    import ray

    root = tmp_path_factory.mktemp("ray")
    monkey = pytest.MonkeyPatch()
    # Workers inherit it from the raylet; one evaluator cache for every sweep test of the session.
    monkey.setenv("MERGAN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "sweep-evaluator-cache"))
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield root
    ray.shutdown()
    monkey.undo()
