"""A single-machine sweep's Ray answers on this machine only: every port its processes listen on is loopback."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import time

import psutil
import pytest

from tests.support.sweeps import REPO, TINY_SETS


def is_loopback(ip: str) -> bool:
    """127.x.x.x, ::1, or an IPv4 loopback address written as IPv6 (::ffff:127.0.0.1)."""
    parsed = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(parsed, "ipv4_mapped", None)
    return (mapped or parsed).is_loopback


def listening_sockets(root: psutil.Process) -> set[tuple[str, str, int]]:
    """(process name, address, port) of every listening TCP socket of ``root`` and its descendants."""
    try:
        family = {root.pid: root, **{p.pid: p for p in root.children(recursive=True)}}
    except psutil.NoSuchProcess:
        return set()
    found = set()
    for connection in psutil.net_connections(kind="tcp"):
        if connection.status == psutil.CONN_LISTEN and connection.pid in family:
            try:
                name = family[connection.pid].name()
            except psutil.NoSuchProcess:
                name = "?"
            found.add((name, connection.laddr.ip, connection.laddr.port))
    return found


def test_address_kinds_are_told_apart():
    assert all(map(is_loopback, ("127.0.0.1", "::1", "::ffff:127.0.0.1", "127.0.1.1")))
    assert not any(map(is_loopback, ("0.0.0.0", "::", "192.0.2.2", "::ffff:10.0.0.1")))


@pytest.mark.slow
def test_a_local_sweeps_ray_listens_on_the_loopback_interface_only(tmp_path, sweep_env):
    sets = [arg for item in TINY_SETS for arg in ("--set", item)]
    command = [sys.executable, str(REPO / "sweep.py"), "--space", "ra-lambda", "--num-samples", "2", "--tasks", "0|1",
               *sets, "--storage-path", str(tmp_path / "sweeps"), "--tracking-uri",
               f"sqlite:///{tmp_path / 'mlflow.db'}"]
    env = {key: value for key, value in sweep_env.items() if key != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    driver = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    root = psutil.Process(driver.pid)
    seen: set[tuple[str, str, int]] = set()
    deadline = time.monotonic() + 400
    while driver.poll() is None and time.monotonic() < deadline:  # sample while its Ray runs the trials
        seen |= listening_sockets(root)
        time.sleep(0.5)
    out = driver.communicate(timeout=120)[0] if driver.poll() is not None else ""
    if driver.returncode is None:
        driver.kill()
    assert driver.returncode == 0, out[-3000:]
    names = {name for name, _, _ in seen}
    assert len(seen) >= 5 and any("gcs_server" in n for n in names) and any("raylet" in n for n in names), seen
    open_to_others = sorted(entry for entry in seen if not is_loopback(entry[1]))
    assert not open_to_others, f"listening beyond the loopback: {open_to_others}"
