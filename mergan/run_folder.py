"""Where a new ``mergan train`` run writes: its own folder, never one that holds another run.

A run that names no ``run.out_dir`` gets ``runs/<method>-<YYYYmmdd-HHMMSS>`` (made unique when two
start in the same second) and ``runs/latest`` becomes a link to it. A folder the user names is
refused while it holds a run's files, unless ``--overwrite`` asks for them to be removed first:
a new run written over an old one would leave a mixed folder (new results, old checkpoints),
and ``--resume`` would then continue the old run with the new results.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from mergan.config import ConfigError
from mergan.record import CONFIG_FILE, RECORD_FILE
from mergan.results import RESULTS_FILE

LATEST = "latest"  # runs/latest: a link to the newest run that got a default folder
MIRRORS = "mirrors"  # where trackers that mirror the run's record (MLflow: tracking.mirror) keep their own state
# What a run writes in its folder; task_<t>/ folders besides.
RUN_FILES = (CONFIG_FILE, RESULTS_FILE, RESULTS_FILE + ".tmp", RECORD_FILE, RECORD_FILE + ".tmp", "samples", MIRRORS)
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


def claim_new_folder(path: str | os.PathLike) -> Path:
    """Create ``path``, or ``path-2``, ``path-3`` ... when it exists: a folder no other run writes to."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        candidate = path if attempt == 1 else path.with_name(f"{path.name}-{attempt}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
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


def prepare_out_dir(out_dir: str | os.PathLike, *, named: bool, overwrite: bool = False) -> Path:
    """Make the folder a new run writes to ready, and return it.

    ``named``: the user chose ``out_dir`` (it is refused while it holds a run's files, which
    ``overwrite`` removes first); otherwise ``out_dir`` is a default name, claimed fresh.
    """
    if not named:
        return claim_new_folder(out_dir)
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"run.out_dir: {folder} is a file, not a folder; name a folder for the run")
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
    folder.mkdir(parents=True, exist_ok=True)
    return folder
