"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``, refused clearly when bad;
and what a run resumed from one may change."""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from mergan.config import EvalConfig, ExperimentConfig, resolve_key
from mergan.files import atomic_path
from mergan.settings import ConfigError, value_text

FORMAT = 2  # 2: generators normalise per class group (no running statistics); optional optimizer state
REQUIRED_KEYS = ("format", "config", "task", "tasks", "global_step", "generator", "critic", "method", "rng",
                 "accuracy_matrix", "results_json")


# What a resumed run may change: where and on what it goes on, how it is measured, and how long its
# remaining tasks train (each task's count is in results.json, ``extra.iterations``). Every other field
# decides what the run trains (data, task stream, nets, method, optimisation, seed), which its checkpoint
# fixes: the weights would not fit another architecture, and another method would continue under the
# name of the first.
RESUMABLE_FIELDS = frozenset({"run.device", "run.out_dir", "run.log_every", "run.save_checkpoints",
                              "run.deterministic", "data.data_root", "optim.iterations_per_task",
                              *(f"eval.{f.name}" for f in fields(EvalConfig))})


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or not one of ours; the message names the file."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """torch.save to a temporary file beside ``path``, then rename: a crash never leaves half a file, and a
    failed write (a full disk) removes its temporary file rather than keep the disk full."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Through a Python file: a failed write is then an OSError (ENOSPC ...), not torch's opaque RuntimeError.
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        torch.save(state, handle)


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
    if not isinstance(state["config"], dict) or not all(isinstance(v, dict) for k, v in state["config"].items()
                                                        if k != "preset"):
        raise CheckpointError(f"{path}: its config is not a mapping of sections to fields (it was edited, or "
                              f"written by another program); config: {str(state['config'])[:120]}")
    if state["format"] != FORMAT:
        reason = (" (format 1 came before the class-grouped batch norm: its generator's running statistics "
                  "and per-task replay counts no longer apply; train again)" if state["format"] == 1 else "")
        raise CheckpointError(f"{path}: checkpoint format {state['format']} is not supported (this version reads "
                              f"{FORMAT}){reason}")
    return state


def check_resume_changes(saved: ExperimentConfig, resumed: ExperimentConfig, checkpoint: str | os.PathLike,
                         may_change: Iterable[str] = ()) -> None:
    """Refuse a resumed config that changes what the run trains (``RESUMABLE_FIELDS`` may change, and the
    fields named in ``may_change``), naming the field, the checkpoint's value and the one asked for."""
    allowed = RESUMABLE_FIELDS | {".".join(part for part in resolve_key(name) if part) for name in may_change}
    before = saved.flat()
    for key, value in resumed.flat().items():
        if key not in allowed and value != before[key]:
            raise ConfigError(f"{key}: the run in {checkpoint} was trained with {value_text(before[key])}; a resumed "
                              f"run cannot change it to {value_text(value)} (a checkpoint fixes what its run "
                              f"trains; only run.device, out_dir, log_every, save_checkpoints, deterministic, "
                              f"data.data_root, optim.iterations_per_task and the eval settings may change). "
                              f"Start a new run for that")
