"""Where a ``mergan train`` run writes: its own folder, never one that holds another run, held while it runs.

A run that names no ``run.out_dir`` gets ``runs/<method>-<YYYYmmdd-HHMMSS>`` (made unique when two
start in the same second) and ``runs/latest`` becomes a link to it. A folder the user names is
refused while it holds a run's files, unless ``--overwrite`` asks for them to be removed first:
a new run written over an old one would leave a mixed folder (new results, old checkpoints),
and ``--resume`` would then continue the old run with the new results.

A run holds its folder (:class:`RunFolderLock`, an ``flock`` on ``<folder>/.mergan.lock``) from
before that check to its end, so a second run or a ``--resume`` of the same folder started
meanwhile is refused instead of writing beside it. The kernel drops the lock when its process
ends, however it ends: a killed run leaves at most the file, which blocks nobody.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Self

from mergan.files import temporary_name
from mergan.record import CONFIG_FILE, RECORD_FILE
from mergan.results import RESULTS_FILE
from mergan.settings import ConfigError

LATEST = "latest"  # runs/latest: a link to the newest run that got a default folder
LOCK_FILE = ".mergan.lock"  # in the run folder while a run holds it
MIRRORS = "mirrors"  # where trackers that mirror the run's record (MLflow: tracking.mirror) keep their own state
# What a run writes in its folder; task_<t>/ folders besides.
RUN_FILES = (CONFIG_FILE, RESULTS_FILE, temporary_name(RESULTS_FILE), RECORD_FILE, temporary_name(RECORD_FILE),
             "samples", MIRRORS)
_TASK_FOLDER = re.compile(r"task_\d+")


def run_entries(folder: str | os.PathLike) -> list[str]:
    """Names of the entries of ``folder`` that a run wrote (empty when it holds no run)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name in RUN_FILES or _TASK_FOLDER.fullmatch(p.name))


def run_folder_of(checkpoint: str | os.PathLike) -> Path | None:
    """The run folder a ``<run>/task_<t>/checkpoint.pt`` belongs to (None for a checkpoint kept elsewhere)."""
    task_folder = Path(checkpoint).resolve().parent
    if _TASK_FOLDER.fullmatch(task_folder.name) and (task_folder.parent / "config.yaml").is_file():
        return task_folder.parent
    return None


class RunFolderBusy(ConfigError):
    """The run folder is held by another running ``mergan train``; the message names its process."""


class RunFolderLock:
    """This process's hold on a run folder, from :meth:`acquire` to :meth:`release` (or the ``with`` block's end).

    ``created``: the folder did not exist before (so a run that fails before writing anything can remove it).
    """

    def __init__(self, folder: str | os.PathLike, created: bool = False):
        self.folder, self.created = Path(folder), created
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, advice: str = "") -> Self:
        """Take the folder, or raise :class:`RunFolderBusy` naming the process that has it (``ConfigError``
        with ``advice`` when the folder cannot be written)."""
        while self._fd is None:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            except OSError as error:
                advice = advice or "name a folder you can write with --out-dir"
                raise ConfigError(f"run.out_dir: {self.folder} cannot be written ({error.strerror}); {advice}") \
                    from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise RunFolderBusy(f"run.out_dir: {self.folder} is in use by another mergan train ({holder}); "
                                    f"wait for it to end, or give this run another --out-dir") from None
            # The last holder removes the file as it releases it: if that happened between our open and
            # our lock, we hold a file nobody else will open; take the one now in place instead.
            try:
                current = os.stat(self.path, follow_symlinks=False).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                self._fd = fd
            else:
                os.close(fd)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "command": " ".join(sys.argv)[:500]}
        os.ftruncate(self._fd, 0)
        os.write(self._fd, json.dumps(holder).encode())
        return self

    def release(self) -> None:
        """Let the folder go (the lock file is removed first, while still held)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> Self:
        return self if self._fd is not None else self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    """Who holds a lock file, as the holder wrote it: 'pid N on HOST since TIME'."""
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {holder['pid']} on {holder['host']} since {holder['since']}"
    except (OSError, ValueError, KeyError, TypeError):  # written a moment from now
        return "a process that is just starting"


def make_folder(folder: Path) -> bool:
    """Create ``folder`` and its parents; False if something of that name exists already. A ConfigError
    names a folder that cannot be created (a read-only parent)."""
    try:
        folder.mkdir(parents=True)
    except FileExistsError:
        return False
    except OSError as error:
        raise ConfigError(f"run.out_dir: cannot create {folder} ({error.strerror}); name a folder you can write "
                          f"with --out-dir") from None
    return True


def claim_new_folder(path: str | os.PathLike) -> RunFolderLock:
    """Create ``path``, or ``path-2``, ``path-3`` ... when it exists: a folder no other run writes to, held."""
    path = Path(path)
    make_folder(path.parent)
    for attempt in range(1, 1000):
        candidate = path if attempt == 1 else path.with_name(f"{path.name}-{attempt}")
        if make_folder(candidate):
            return RunFolderLock(candidate, created=True).acquire()
    raise ConfigError(f"run.out_dir: {path} and 998 numbered variants exist already; name a folder with --out-dir")


def link_latest(folder: Path) -> Path | None:
    """Point ``<folder's parent>/latest`` at ``folder`` (atomically); None when it cannot be a link.

    A ``latest`` that is a real folder (an earlier version's default ``runs/latest``) is left as it is.
    """
    link = folder.parent / LATEST
    if link.exists() and not link.is_symlink():
        return None
    staged = folder.parent / f".{LATEST}-{os.getpid()}"
    try:
        staged.unlink(missing_ok=True)
        staged.symlink_to(folder.name, target_is_directory=True)  # relative: runs/ may move as a whole
        os.replace(staged, link)
    except OSError:  # a file system without links
        staged.unlink(missing_ok=True)
        return None
    return link


def prepare_out_dir(out_dir: str | os.PathLike, *, named: bool, overwrite: bool = False) -> RunFolderLock:
    """Make the folder a new run writes to ready, and hold it (release the returned lock when the run ends).

    ``named``: the user chose ``out_dir`` (it is refused while it holds a run's files, which
    ``overwrite`` removes first); otherwise ``out_dir`` is a default name, claimed fresh.
    """
    if not named:
        return claim_new_folder(out_dir)
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"run.out_dir: {folder} is a file, not a folder; name a folder for the run")
    lock = RunFolderLock(folder, created=make_folder(folder))
    try:
        lock.acquire()
        _clear_for_new_run(folder, overwrite)
    except BaseException:
        lock.release()
        if lock.created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return lock


def _clear_for_new_run(folder: Path, overwrite: bool) -> None:
    """Refuse a folder holding a run's files, or with ``overwrite`` delete them (and nothing else)."""
    entries = run_entries(folder)
    if entries and not overwrite:
        raise ConfigError(
            f"run.out_dir: {folder} holds another run ({', '.join(entries)}); continue it with "
            f"`mergan train --resume {folder}`, start over there with --overwrite (deletes that run's files), "
            f"or leave out --out-dir to give the new run its own folder")
    for name in entries:
        entry = folder / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
