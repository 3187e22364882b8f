"""A sweep's own Ray serves this machine only: its processes listen on the loopback interface.

Ray chooses its node's address when it is first imported: on Linux the machine's external address (so
that other machines could join the cluster), on macOS and Windows the loopback. Its servers (GCS, raylet,
workers, agents, the metrics port) then listen on all interfaces, or on that address, unless the node's
address is the loopback. A sweep that starts its own Ray needs no other machine, so before Ray is
imported it asks for the loopback with Ray's own switch (the macOS default on Linux too), which every
process Ray starts inherits. A sweep that joins a cluster (``--address``, ``RAY_ADDRESS``) is left as
the cluster runs.
"""

from __future__ import annotations

import ipaddress
import os
import sys

LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray's node address is 127.0.0.1


def starts_its_own_ray(address: str | None) -> bool:
    """Whether a sweep given ``--address`` (or none) starts a Ray of its own on this machine."""
    return not address and not os.environ.get("RAY_ADDRESS")


def keep_local_ray_on_loopback(address: str | None) -> None:
    """Call before Ray is imported: a Ray this process starts for itself listens on 127.0.0.1 only.

    A user's own setting of the switch is kept; once Ray is imported it is too late (Ray read it then).
    """
    if starts_its_own_ray(address) and "ray" not in sys.modules:
        os.environ.setdefault(LOOPBACK_SWITCH, "0")


def is_loopback(ip: str) -> bool:
    """127.x.x.x, ::1, or an IPv4 loopback address written as IPv6 (::ffff:127.0.0.1)."""
    parsed = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(parsed, "ipv4_mapped", None)
    return (mapped or parsed).is_loopback
