"""Whether trials that share a GPU will run side by side: CUDA MPS on every GPU node of the sweep's Ray.

``--gpus-per-trial 0.25`` lets Ray put four trials on one card, but Ray only counts; without MPS the
GPU runs one process's kernels at a time, so four small trials together go about as fast as one
(../shared/MEASURED.md: 27.5 it/s alone, 81 for four, 89 for sixteen; under MPS 251 for sixteen).
A trial reaches MPS through ``CUDA_MPS_PIPE_DIRECTORY`` (default ``/tmp/nvidia-mps``), inherited from
the ``ray start`` that started its node; ``platform/mps.py`` starts the daemon and prints that variable.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_PIPE_DIRECTORY = "/tmp/nvidia-mps"  # NVIDIA's, when CUDA_MPS_PIPE_DIRECTORY is not set
PROBE_TIMEOUT_S = 60.0


def mps_reachable() -> bool:
    """This process would reach an MPS control daemon (its pipe folder holds the ``control`` socket)."""
    pipe = Path(os.environ.get("CUDA_MPS_PIPE_DIRECTORY") or DEFAULT_PIPE_DIRECTORY)
    return (pipe / "control").is_socket()


def nodes_without_mps() -> list[str]:
    """Addresses of the live GPU nodes of the connected Ray whose workers would not reach MPS.

    A zero-CPU task runs on each GPU node, in a worker started as the trials' workers are, so it sees
    the environment they will see.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0)(mps_reachable)
    pending = {node["NodeManagerAddress"]: probe.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote()
        for node in ray.nodes() if node.get("Alive") and node["Resources"].get("GPU", 0) > 0}
    answers = dict(zip(pending, ray.get(list(pending.values()), timeout=PROBE_TIMEOUT_S)))
    return sorted(address for address, reachable in answers.items() if not reachable)


def sharing_warning(gpus_per_trial: float) -> str | None:
    """One line when fractional GPUs are asked for on nodes without MPS; None when all is well."""
    if not 0 < gpus_per_trial < 1:
        return None
    missing = nodes_without_mps()
    if not missing:
        return None
    return (f"warning: --gpus-per-trial {gpus_per_trial:g} puts up to {int(1 // gpus_per_trial)} trials on one GPU, "
            f"but no CUDA MPS daemon is reachable on {', '.join(missing)}: they will take turns on the GPU, "
            f"about as fast together as one alone. Start it there before `ray start`: "
            f"python platform/mps.py start && eval \"$(python platform/mps.py env)\" (the cluster YAMLs do)")
