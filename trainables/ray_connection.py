"""Starting or joining Ray for a sweep: a cluster address checked before Ray waits on it, the plan's
resources checked against the nodes, and how many trials run at once.

A sweep's own Ray serves this machine only: its processes listen on the loopback interface. Ray chooses
its node's address when it is first imported: on Linux the machine's external address (so that other
machines could join the cluster), on macOS and Windows the loopback. Its servers (GCS, raylet, workers,
agents, the metrics port) then listen on all interfaces, or on that address, unless the node's address
is the loopback. A sweep that starts its own Ray needs no other machine, so before Ray is imported it
asks for the loopback with Ray's own switch (the macOS default on Linux too), which every process Ray
starts inherits. A sweep that joins a cluster (``--address``, ``RAY_ADDRESS``) is left as the cluster runs.
"""

from __future__ import annotations

import logging
import os
import socket
import sys

from trainables.gpu_sharing import sharing_warning
from trainables.plan import PlanError, SweepPlan, check_resources, concurrent_trials

LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray's node address is 127.0.0.1
RAY_CONNECT_TIMEOUT_S = 5.0  # ray.init retries an address where nothing answers for minutes
RAY_DEFAULT_PORT = 6379


def keep_local_ray_on_loopback(address: str | None) -> None:
    """Call before Ray is imported: a Ray this process starts for itself listens on 127.0.0.1 only.

    A user's own setting of the switch is kept; once Ray is imported it is too late (Ray read it then).
    """
    starts_its_own_ray = not address and not os.environ.get("RAY_ADDRESS")
    if starts_its_own_ray and "ray" not in sys.modules:
        os.environ.setdefault(LOOPBACK_SWITCH, "0")


def check_ray_answers(address: str, flag: str, timeout_s: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """Refuse, within ``timeout_s``, a Ray address (``host:port``, ``ray://host:port``) where nothing answers."""
    host, _, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    if not host:  # no port given: Ray's default
        host, port = port, str(RAY_DEFAULT_PORT)
    advice = ("start one with `ray start --head` (and give the address it prints), or "
              + ("leave out --address" if flag == "--address" else "unset RAY_ADDRESS") + " for a local Ray")
    if not port.isdigit():
        raise PlanError(f"{flag} {address}: not a Ray address; write host:port (e.g. 10.0.0.5:6379), ray://host:port "
                        f"or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as error:
        reason = "no answer" if isinstance(error, TimeoutError) else (error.strerror or str(error))
        raise PlanError(f"{flag} {address}: no Ray cluster answers at {host}:{port} ({reason} within "
                        f"{timeout_s:g} s); {advice}") from None


def connect_ray(address: str | None, plan: SweepPlan, verbose: int = 0) -> str:
    """Start or join Ray after checking the plan's resources fit; returns a description of where.

    ``verbose`` 0: Ray's INFO logs and the workers' output stay out of the terminal (Tune keeps every
    trial's error, and the sweep prints it)."""
    import ray

    logs = {"log_to_driver": verbose > 0, "logging_level": logging.INFO if verbose else logging.ERROR}

    if ray.is_initialized():
        where = "the running Ray"
    elif address or os.environ.get("RAY_ADDRESS"):
        target, flag = (address, "--address") if address else (os.environ["RAY_ADDRESS"], "RAY_ADDRESS")
        if target != "auto":
            check_ray_answers(target, flag)
        try:
            ray.init(address=target, **logs)
        except ConnectionError as error:  # 'auto' with no cluster on this machine, or a cluster that went away
            raise PlanError(f"{flag} {target}: no Ray cluster answers ({error}); start one with `ray start --head`, "
                            f"or leave out {'--address' if address else 'RAY_ADDRESS'} for a local Ray") from None
        where = f"the Ray cluster at {target}"
    else:
        import torch

        local = {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}
        check_resources(plan, [local], "this machine")  # refused before Ray starts
        ray.init(address="local", num_cpus=int(local["CPU"]), include_dashboard=False, **logs)
        where = "a local Ray"
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    check_resources(plan, nodes, where)
    if len(nodes) > 1 and "://" not in plan.storage_path:
        print(f"note: {len(nodes)} nodes share --storage-path {plan.storage_path}: every node must see "
              f"that folder at the same path (an NFS/EFS mount), or give s3://bucket/path", file=sys.stderr)
    if plan.max_concurrent is None:
        plan.max_concurrent = concurrent_trials(plan, nodes)
    warning = sharing_warning(plan.gpus_per_trial)
    if warning:
        print(warning, file=sys.stderr)
    return where
