"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``, refused clearly when bad."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

FORMAT = 2  # 2: generators normalise per class group (no running statistics); optional optimizer state
REQUIRED_KEYS = ("format", "config", "task", "tasks", "global_step", "generator", "critic", "method", "rng",
                 "accuracy_matrix", "results_json")


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or not one of ours; the message names the file."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """torch.save to a temporary file beside ``path``, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def find_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file, a ``task_<t>`` folder, or a run folder (its latest ``task_<t>``)."""
    path = Path(path)
    if path.is_file():
        return path
    if (path / "checkpoint.pt").is_file():
        return path / "checkpoint.pt"
    tasks = sorted(path.glob("task_*/checkpoint.pt"), key=lambda p: int(p.parent.name.split("_")[1]))
    if tasks:
        return tasks[-1]
    raise CheckpointError(f"{path}: no checkpoint there; expected a checkpoint.pt file, a task_<t> folder "
                          f"holding one, or a run folder with task_<t>/checkpoint.pt (written after each task)")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError) as error:
        raise CheckpointError(f"{path}: not a readable MeRGAN checkpoint ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''}); it may be truncated or "
                              f"from another program") from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"{path}: not a MeRGAN checkpoint; missing {', '.join(missing)}")
    if state["format"] != FORMAT:
        reason = (" (format 1 came before the class-grouped batch norm: its generator's running statistics "
                  "and per-task replay counts no longer apply; train again)" if state["format"] == 1 else "")
        raise CheckpointError(f"{path}: checkpoint format {state['format']} is not supported (this version reads "
                              f"{FORMAT}){reason}")
    return state
