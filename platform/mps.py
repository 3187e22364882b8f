#!/usr/bin/env python3
"""Start, check and stop NVIDIA's Multi-Process Service (MPS) so that several trials share one GPU well (stdlib only).

    python platform/mps.py start  [--dir DIR]   # the control daemon, its pipe and log folders under DIR
    python platform/mps.py status [--dir DIR]   # exit 0 when it runs, 3 when not
    python platform/mps.py stop   [--dir DIR]
    python platform/mps.py env    [--dir DIR]   # the export lines a trial's shell needs

Without MPS, processes on one GPU take turns (time slicing): four small trials on one card run
about as fast together as one alone (MEASURED.md: 1 / 4 / 16 trials, 27.5 / 81 / 89 it/s in
total on an H100). Under MPS their kernels run side by side (16 trials: 251 it/s). Each trial
reaches the daemon through ``CUDA_MPS_PIPE_DIRECTORY``: a process started without it (or with
another folder) runs without MPS. ``DIR`` defaults to ``$MERGAN_MPS_DIR``, else
``$XDG_RUNTIME_DIR/mergan-mps``, else ``~/.cache/mergan/mps``: folders the user owns (mode 0700),
not NVIDIA's default ``/tmp/nvidia-mps``, which needs root. The GPU's compute mode is left as it is.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

CONTROL = "nvidia-cuda-mps-control"
PIPE_ENV, LOG_ENV = "CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY"
DIR_ENV = "MERGAN_MPS_DIR"
NOT_RUNNING = 3  # status's exit code when no daemon runs (as `systemctl status`)
WAIT_SECONDS = 10.0


def default_dir() -> Path:
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "mergan-mps"
    return Path("~/.cache/mergan/mps").expanduser()


def folders(root: Path) -> dict[str, Path]:
    return {PIPE_ENV: root / "pipe", LOG_ENV: root / "log"}


def environment(root: Path) -> dict[str, str]:
    """The variables that point a process (the daemon, a trial) at the MPS of ``root``."""
    return {name: str(path) for name, path in folders(root).items()}


def running(root: Path) -> bool:
    """An MPS control daemon listens in ``root``'s pipe folder (its ``control`` socket exists)."""
    return (folders(root)[PIPE_ENV] / "control").is_socket()


def _control(root: Path, command: str | None = None, daemon: bool = False) -> subprocess.CompletedProcess:
    binary = shutil.which(CONTROL)
    if binary is None:
        raise SystemExit(f"mps: {CONTROL} is not on PATH: MPS comes with the NVIDIA driver on Linux "
                         f"(package nvidia-utils or the CUDA toolkit); without it trials share the GPU by time slicing")
    env = {**os.environ, **environment(root)}
    if daemon:  # its output goes to a file: a daemon may keep a pipe open for as long as it runs
        with open(folders(root)[LOG_ENV] / "start.log", "w+") as output:
            done = subprocess.run([binary, "-d"], stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                                  env=env, timeout=30, check=False)
            output.seek(0)
            return subprocess.CompletedProcess(done.args, done.returncode, output.read(), "")
    return subprocess.run([binary], input=command, text=True, capture_output=True, env=env, timeout=30,
                          check=False)


def _wait(root: Path, up: bool) -> bool:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if running(root) == up:
            return True
        time.sleep(0.1)
    return running(root) == up


def start(root: Path) -> int:
    if running(root):
        print(f"mps: already running in {root}")
        return 0
    for path in folders(root).values():
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o700)  # the pipe is how processes reach the GPU's shared context: the user's only
    done = _control(root, daemon=True)
    if done.returncode != 0 or not _wait(root, up=True):
        log = folders(root)[LOG_ENV] / "control.log"
        detail = (done.stderr or done.stdout).strip() or (log.read_text()[-500:] if log.is_file() else "")
        print(f"mps: the control daemon did not start in {root} ({detail or 'no message'}); see {log}",
              file=sys.stderr)
        return 1
    print(f"mps: started in {root}; trials reach it with {shell_exports(root)}")
    return 0


def stop(root: Path) -> int:
    if not running(root):
        print(f"mps: not running in {root}")
        return 0
    _control(root, "quit\n")
    if not _wait(root, up=False):
        print(f"mps: the daemon in {root} did not stop within {WAIT_SECONDS:g} s (trials still attached?)",
              file=sys.stderr)
        return 1
    print(f"mps: stopped in {root}")
    return 0


def status(root: Path) -> int:
    if not running(root):
        print(f"mps: not running in {root}")
        return NOT_RUNNING
    servers = _control(root, "get_server_list\n").stdout.split()
    print(f"mps: running in {root}, {len(servers)} server process(es) ({shell_exports(root)})")
    return 0


def shell_exports(root: Path) -> str:
    return " ".join(f"{name}={value}" for name, value in environment(root).items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="platform/mps.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("start", "stop", "status", "env"))
    parser.add_argument("--dir", type=Path, default=None, help=f"pipe and log folders (default: {default_dir()})")
    args = parser.parse_args(argv)
    root = (args.dir or default_dir()).expanduser().resolve()
    if args.command == "env":
        print("\n".join(f"export {name}={value}" for name, value in environment(root).items()))
        return 0
    return {"start": start, "stop": stop, "status": status}[args.command](root)


if __name__ == "__main__":
    sys.exit(main())
