"""A run's durable record: ``<run folder>/record.jsonl``, one JSON object per line, appended in order.

Trackers (MLflow, ``tracking.mirror``) and reports (``analysis.load``) read it; nothing else needs to
be up for a run to keep what it measured. Each line has a ``kind``:

- ``start``: the run starts or resumes: ``run_key`` (the same for every start of one run), ``name``,
  ``task`` and ``step`` it starts after, ``config`` (``ExperimentConfig.flat()``), ``labels``,
  ``device``, ``mergan_version``, ``git_commit``;
- ``step``: every ``log_every`` steps: ``task``, ``step`` (global), ``values`` (losses, steps_per_second);
- ``task``: after each task: the ``TaskResult``'s fields, paths relative to the run folder, and ``step``;
- ``labels``: run-level labels set while the run goes (``diverged``, a PBT trial's schedule ...);
- ``end``: ``status`` FINISHED, FAILED or KILLED, and a ``reason``.

Every line has ``time`` (ms since the epoch). A line is written with one ``write`` call (a kill never
leaves half of one, and a reader skips an unfinished last line); ``task``, ``labels`` and ``end``
lines are also synced to disk. A run resumed from task t's checkpoint first cuts its record back to
that checkpoint (steps and tasks after it belong to the attempt that was lost), so no step or task
is recorded twice. Each checkpoint folder holds a copy of the record up to it: a run continued
elsewhere from that checkpoint (another node, another ``--out-dir``) keeps its history.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mergan.callbacks import Callback, StepInfo, TaskResult
from mergan.config_io import load_yaml
from mergan.files import atomic_path
from mergan.results import RESULTS_FILE
from mergan.settings import is_number

RECORD_FILE = "record.jsonl"
CONFIG_FILE = "config.yaml"
Line = dict[str, Any]


def now_ms() -> int:
    return int(time.time() * 1000)


# -- writing ------------------------------------------------------------------------------
class RunRecord(Callback):
    """The trainer callback that writes ``record.jsonl``; ``Trainer`` installs one first unless given one.

    ``run_key`` names the run across resumes and folders (default: the key already in the folder's
    record, else a new one); ``name`` its display name (default: method, acting knobs, seed);
    ``labels`` go into the start line (e.g. a sweep's ``trial_id``). Use :meth:`ending` around
    ``fit()`` to record a run that fails (FAILED) or is stopped by Ctrl-C (KILLED).
    """

    def __init__(self, run_key: str | None = None, name: str | None = None,
                 labels: Mapping[str, Any] | None = None):
        self.run_key, self.name = run_key, name
        self.labels = {k: str(v) for k, v in (labels or {}).items()}
        self.path: Path | None = None
        self.snapshot: list[Line] | None = None  # the record a checkpoint carried (see adopt_checkpoint)
        self.ended = False

    @property
    def folder(self) -> Path | None:
        return self.path.parent if self.path else None

    def adopt_checkpoint(self, checkpoint_folder: str | os.PathLike) -> None:
        """Keep the record copy of a checkpoint being resumed (read now: the folder may be temporary)."""
        copy = Path(checkpoint_folder) / RECORD_FILE
        self.snapshot = read_lines(copy) if copy.is_file() else None

    def set_labels(self, labels: Mapping[str, Any]) -> None:
        """Run-level labels: in the start line if the run has not started, else a ``labels`` line."""
        labels = {k: str(v) for k, v in labels.items()}
        if self.path is None:
            self.labels.update(labels)
        else:
            self._append({"kind": "labels", "labels": labels}, sync=True)

    def end(self, status: str, reason: str | None = None) -> None:
        """Record how the run ended: FINISHED, FAILED or KILLED (once; a started run only)."""
        if self.path is not None and not self.ended:
            self.ended = True
            self._append({"kind": "end", "status": status, **({"reason": reason} if reason else {})}, sync=True)

    @contextlib.contextmanager
    def ending(self) -> Iterator[RunRecord]:
        """Around ``fit()``: an error ends the record FAILED (with the error), Ctrl-C KILLED."""
        try:
            yield self
        except KeyboardInterrupt:
            self.end("KILLED", "stopped by Ctrl-C")
            raise
        except Exception as error:
            self.end("FAILED", f"{type(error).__name__}: {error}")
            raise

    # -- hooks ---------------------------------------------------------------------------
    def on_run_start(self, trainer: Any) -> None:
        from mergan import __version__
        from mergan.naming import config_run_name
        from mergan.provenance import git_commit

        folder = Path(trainer.out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / RECORD_FILE
        task, step = trainer.tasks_done, trainer.global_step
        existing = read_lines(path) if path.is_file() else None
        kept = cut(existing if existing is not None else self.snapshot or [], task, step)
        recorded = {line["task"] for line in kept if line["kind"] == "task"}
        kept += [task_line(result, folder, None) for result in trainer.results
                 if result.task <= task and result.task not in recorded]  # tasks a record lacks: from the checkpoint
        if existing is None or kept != existing:
            _rewrite(path, kept)
        own_key = next((line["run_key"] for line in reversed(existing or []) if line["kind"] == "start"), None)
        self.run_key = self.run_key or own_key or uuid.uuid4().hex
        config = trainer.config
        self.path, self.ended = path, False
        self._append({"kind": "start", "run_key": self.run_key, "name": self.name or config_run_name(config),
                      "task": task, "step": step, "config": config.flat(), "labels": self.labels,
                      "device": str(trainer.device), "mergan_version": __version__, "git_commit": git_commit()},
                     sync=True)

    def on_step(self, trainer: Any, info: StepInfo) -> None:
        values = {**info.losses, "steps_per_second": info.steps_per_second}
        self._append({"kind": "step", "task": info.task, "step": info.global_step, "values": values})

    def on_task_end(self, trainer: Any, result: TaskResult) -> None:
        self._append(task_line(result, self.folder, trainer.global_step), sync=True)
        if self.path is not None and result.checkpoint_path and Path(result.checkpoint_path).is_dir():
            _rewrite(Path(result.checkpoint_path) / RECORD_FILE, read_lines(self.path))

    def on_run_end(self, trainer: Any, results: list[TaskResult]) -> None:
        self.end("FINISHED")

    def _append(self, line: Line, sync: bool = False) -> None:
        if self.path is None:  # hooks called without on_run_start (a test driving train_task): nothing to add to
            return
        data = (json.dumps({**line, "time": now_ms()}) + "\n").encode()
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, data)  # one call: another reader never sees half a line, a kill never leaves one
            if sync:  # also makes the steps before it durable; a step line alone is not worth an fsync
                os.fsync(descriptor)
        finally:
            os.close(descriptor)


def task_line(result: TaskResult, folder: Path | None, step: int | None) -> Line:
    """A task's line: the result's fields, its files named relative to the run folder where they lie in it."""
    line = {"kind": "task", **asdict(result), "step": step}
    for key in ("samples_path", "checkpoint_path"):
        if line[key] and folder is not None:
            with contextlib.suppress(ValueError):
                line[key] = str(Path(line[key]).resolve().relative_to(folder.resolve()))
    return line


def cut(lines: list[Line], task: int, step: int) -> list[Line]:
    """The lines of a record that stand when its run continues after ``task`` at global ``step``: those up to
    that task's line; what came after it (steps, tasks, labels, ends) belongs to an attempt that was lost."""
    ends = [index for index, line in enumerate(lines) if line["kind"] == "task" and line["task"] == task]
    if ends:
        lines = lines[: ends[-1] + 1]
    elif task == 0:
        lines = []
    return [line for line in lines if not (line["kind"] == "step" and line["step"] > step)
            and not (line["kind"] == "task" and line["task"] > task)]


def _rewrite(path: Path, lines: list[Line]) -> None:
    with atomic_path(path) as temporary, open(temporary, "w") as handle:
        handle.writelines(json.dumps(line) + "\n" for line in lines)
        handle.flush()
        os.fsync(handle.fileno())


# -- reading ------------------------------------------------------------------------------
def read_lines(path: str | os.PathLike) -> list[Line]:
    """The complete lines of a record file (an unfinished last line, from a kill mid-write, is left out)."""
    text = Path(path).read_bytes().decode()
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


@dataclass
class Record:
    """What one run folder holds, read back: its lines, and the views trackers and reports need."""

    folder: Path
    lines: list[Line]
    config_file: dict[str, Any] = field(default_factory=dict)  # config.yaml: the run's config as it is now

    @property
    def starts(self) -> list[Line]:
        return [line for line in self.lines if line["kind"] == "start"]

    @property
    def run_key(self) -> str:
        """The run's key: its last start's (a run continued in another folder begins with the history of the
        run it came from, under a key of its own)."""
        return self.starts[-1]["run_key"] if self.starts else f"folder:{self.folder.resolve()}"

    @property
    def name(self) -> str | None:
        return self.starts[-1].get("name") if self.starts else None

    @property
    def config(self) -> dict[str, Any]:
        """The config the run started with (flat, dotted names); later starts may move or change it."""
        return dict(self.starts[0]["config"]) if self.starts else dict(self.config_file)

    @property
    def labels(self) -> dict[str, str]:
        labels: dict[str, str] = {}
        for line in self.lines:
            labels.update(line.get("labels") or {})
        return labels

    @property
    def steps(self) -> list[Line]:
        return list({line["step"]: line for line in self.lines if line["kind"] == "step"}.values())

    @property
    def tasks(self) -> list[Line]:
        """One line per task (the last recorded), in task order."""
        by_task = {line["task"]: line for line in self.lines if line["kind"] == "task"}
        return [by_task[t] for t in sorted(by_task)]

    @property
    def status(self) -> str:
        """FINISHED, FAILED or KILLED as the last start's end says; RUNNING when it has none (or was killed hard)."""
        last = next((line for line in reversed(self.lines) if line["kind"] in ("start", "end")), None)
        if last is None and self.tasks:  # a folder from before records: finished when its last task was the last
            return "FINISHED" if self.tasks[-1]["task"] == self.tasks[-1]["num_tasks"] else "RUNNING"
        return last["status"] if last is not None and last["kind"] == "end" else "RUNNING"

    @property
    def start_time(self) -> int | None:
        return self.starts[0]["time"] if self.starts else None

    @property
    def end_time(self) -> int | None:
        ends = [line for line in self.lines if line["kind"] == "end"]
        return ends[-1]["time"] if ends and self.status != "RUNNING" else None

    def path(self, relative: str | None) -> Path | None:
        """A file the record names (relative to the run folder, or absolute), if it exists."""
        if not relative:
            return None
        path = self.folder / relative
        return path if path.exists() else None

    # -- as named values: the same for MLflow (tracking.mirror) and reports (analysis.load) ---------
    def params(self) -> dict[str, Any]:
        """The config's fields (dotted names) and each task's ``extra`` values (nested keys dotted), first seen."""
        params = self.config
        for line in self.tasks:
            for key, value in flatten(line.get("extra") or {}).items():
                params.setdefault(key, value)
        return params

    def tags(self) -> dict[str, str]:
        """What the run is and where it ran: method, dataset, preset, code version, device, folder, labels."""
        config = self.config
        first = self.starts[0] if self.starts else {}
        tags = {"method": config.get("method.method"), "dataset": config.get("data.dataset"),
                "preset": config.get("preset"), "mergan_version": first.get("mergan_version"),
                "git_commit": first.get("git_commit"), "device": first.get("device"),
                "out_dir": str(self.folder.resolve())}
        for line in self.tasks:
            tags.update({k: v for k, v in flatten(line.get("extra") or {}).items() if not isinstance(v, (list, dict))})
        alarms = self.drift_alarms
        if alarms:  # the first task where a replayed class lost its variety, and what lost it
            tags["drift_alarm_first_task"] = alarms[0]["after_task"]
            tags["drift_alarms"] = "; ".join(f"after task {a['after_task']}: class {a['class']} {a['metric']} "
                                             f"{a['first']:.3g}->{a['now']:.3g}" for a in alarms)
        tags.update(self.labels)
        return {k: str(v) for k, v in tags.items() if v is not None}

    @property
    def drift_alarms(self) -> list[dict[str, Any]]:
        """Every task's drift alarms (``TaskResult.drift_alarms``), in task order."""
        return [alarm for line in self.tasks for alarm in line.get("drift_alarms") or []]

    @staticmethod
    def task_values(line: Line) -> dict[str, float]:
        """A task's numbers at step = task: its metrics, ``acc_class_{c}``, ``train_seconds``, ``eval_seconds``."""
        values = {k: float(v) for k, v in line.get("metrics", {}).items() if is_number(v)}
        for label, accuracy in (line.get("class_accuracy") or {}).items():
            values.setdefault(f"acc_class_{label}", float(accuracy))
        values.update(train_seconds=float(line.get("train_seconds", 0.0)),
                      eval_seconds=float(line.get("eval_seconds", 0.0)))
        return values

    def metric_rows(self) -> list[tuple[str, int, float, int]]:
        """Every (key, step, value, time): training values at step = global step, task values at step = task."""
        rows = [(k, line["step"], float(v), line["time"]) for line in self.steps
                for k, v in line["values"].items() if is_number(v)]
        rows += [(k, line["task"], v, line.get("time") or 0) for line in self.tasks
                 for k, v in self.task_values(line).items()]
        return rows


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"evaluator": {"arch": "lenet"}}`` -> ``{"evaluator.arch": "lenet"}``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def is_run_folder(folder: Path) -> bool:
    """A run's folder: its config and its record or results, and no checkpoint (a task folder, a Tune copy)."""
    return ((folder / CONFIG_FILE).is_file() and not (folder / "checkpoint.pt").exists()
            and ((folder / RECORD_FILE).is_file() or (folder / RESULTS_FILE).is_file()))


def run_folders(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Every run folder at or below ``paths`` (a run folder's own subfolders are not searched)."""
    found: list[Path] = []
    pending = [Path(p) for p in paths]
    while pending:
        folder = pending.pop(0)
        if is_run_folder(folder):
            found.append(folder)
        elif folder.is_dir():
            pending[:0] = sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
    return found


def read_record(folder: str | os.PathLike) -> Record:
    """A run folder's record; a folder from before records existed is read from its results.json."""
    folder = Path(folder)
    config_file = load_yaml(folder / CONFIG_FILE) if (folder / CONFIG_FILE).is_file() else {}
    if (folder / RECORD_FILE).is_file():
        return Record(folder, read_lines(folder / RECORD_FILE), config_file)
    results = json.loads((folder / RESULTS_FILE).read_text()).get("results", [])
    return Record(folder, [{"kind": "task", **result} for result in results], config_file)
