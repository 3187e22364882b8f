"""Folders a command cannot write, for tests of how it refuses them, as root too.

The folders are made read-only (mode 0555) and the command runs in a child process. Root writes through
mode bits by its capabilities CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, so as root the child drops them
from its bounding set before it starts (``prctl(PR_CAPBSET_DROP)``): it is still root, owner of root's
files, but its writes are checked against the mode bits like anyone's, and a refusal is a real EACCES from
the kernel::

    def test_x(read_only):
        shared = read_only.folder("shared")    # fill it now; the command cannot write in it
        read_only.lock()
        done = read_only.mergan("train", "--out-dir", str(shared / "exp"))
"""

from __future__ import annotations

import ctypes
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

PR_CAPBSET_DROP = 24  # linux/prctl.h
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2  # linux/capability.h


def drop_file_capabilities() -> None:
    """In a child before exec: lose the capabilities that let root write through mode bits."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) refused")


class ReadOnly:
    """A workspace of ``folder()``s that the command of ``mergan()`` cannot write once ``lock()``ed."""

    def __init__(self, base: Path):
        self.base = base
        self._locked: list[Path] = []
        self.home = self.writable("home")

    def folder(self, name: str) -> Path:
        """A folder to fill now (by this process); ``lock()`` makes it and all in it read-only."""
        path = self.base / name
        path.mkdir()
        self._locked.append(path)
        return path

    def writable(self, name: str) -> Path:
        """A folder the command may write."""
        path = self.base / name
        path.mkdir()
        return path

    def lock(self) -> None:
        for top in self._locked:
            for path in [top, *top.rglob("*")]:
                if path.is_dir() and not path.is_symlink():
                    path.chmod(0o555)

    def unlock(self) -> None:
        for top in self._locked:
            for path in [top, *top.rglob("*")]:
                if path.is_dir() and not path.is_symlink():
                    path.chmod(path.stat().st_mode | stat.S_IWUSR)

    def run(self, *command: str, timeout: float = 300) -> subprocess.CompletedProcess:
        env = {**os.environ, "HOME": str(self.home), "MERGAN_CACHE_DIR": str(self.home / "cache"),
               "PYTHONDONTWRITEBYTECODE": "1"}
        return subprocess.run(list(command), cwd=self.home, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False,
                              preexec_fn=drop_file_capabilities if os.geteuid() == 0 else None)

    def mergan(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """``mergan ARGS`` in a child that cannot write the locked folders, from the writable ``home``."""
        return self.run(sys.executable, "-m", "mergan_cli.main", *args, timeout=timeout)


@pytest.fixture
def read_only():
    """A :class:`ReadOnly` workspace; skips where its folders could still be written (root that keeps its
    capabilities)."""
    base = Path(tempfile.mkdtemp(prefix="mergan-read-only-"))
    workspace = ReadOnly(base)
    probe = workspace.folder("probe")
    workspace.lock()
    try:
        written = workspace.run(sys.executable, "-c", f"open({str(probe / 'x')!r}, 'w')", timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):  # prctl refused in the child
        written = True
    workspace.unlock()
    subprocess.run(["rm", "-rf", str(probe)], check=False)
    workspace._locked.clear()
    if written:
        subprocess.run(["rm", "-rf", str(base)], check=False)
        pytest.skip("a read-only folder is still writable here (root that cannot drop CAP_DAC_OVERRIDE)")
    yield workspace
    workspace.unlock()
    subprocess.run(["rm", "-rf", str(base)], check=False)
