#!/usr/bin/env python3
"""Wait until a Ray head answers at ADDRESS and NODES nodes (the head included) have joined it.

    python platform/slurm/wait_for_ray.py 10.0.0.1:20000 4 --timeout 300

Used by ``mergan-sweep.sbatch`` between starting Ray on every node of the allocation and starting the
sweep, which sizes its concurrency by the nodes present when it starts. Exit status 0 when they are all
there, 1 (with the reason on stderr) when the time runs out first. Only public Ray calls: a TCP connect
to the head's port until it accepts, then ``ray.nodes()`` every few seconds.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time

POLL_SECONDS = 2.0


def head_answers(address: str, deadline: float) -> bool:
    """True once the head's GCS port accepts a TCP connection (before ``deadline``, a monotonic time)."""
    host, _, port = address.rpartition(":")
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, int(port)), timeout=POLL_SECONDS):
                return True
        except OSError:
            time.sleep(POLL_SECONDS)
    return False


def alive_nodes(address: str, wanted: int, deadline: float) -> int:
    """The nodes alive in the cluster once ``wanted`` are, or at ``deadline``."""
    import ray

    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    try:
        while True:
            alive = sum(1 for node in ray.nodes() if node.get("Alive"))
            if alive >= wanted or time.monotonic() >= deadline:
                return alive
            time.sleep(POLL_SECONDS)
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", help="the head's HOST:PORT (its GCS port)")
    parser.add_argument("nodes", type=int, help="how many nodes must be alive, the head included")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait in all (default 300)")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.timeout
    if not head_answers(args.address, deadline):
        print(f"wait_for_ray: no Ray head answers at {args.address} after {args.timeout:g} s; see the head's "
              f"`ray start` output in the job's log", file=sys.stderr)
        return 1
    alive = alive_nodes(args.address, args.nodes, deadline)
    if alive < args.nodes:
        print(f"wait_for_ray: only {alive} of {args.nodes} nodes joined the Ray head at {args.address} in "
              f"{args.timeout:g} s; see the workers' `ray start` output in the job's log", file=sys.stderr)
        return 1
    print(f"wait_for_ray: {alive} of {args.nodes} nodes alive at {args.address}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
