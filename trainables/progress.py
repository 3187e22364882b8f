"""What a sweep prints: its trials named as MLflow names them, with the method and the knobs that act in each.

While the sweep runs, :class:`TaskBoundaryReport` prints one row per trial each time it finishes a task
(and a line when a trial is retried, fails or stops early); at the end :func:`format_table` prints every
trial's outcome. Both show the columns a reader compares: the method, then each knob the sweep varies,
with its value where it acts in that trial and "-" where it does not (lambda_ra in an SFT trial, the
replay set's size under fresh replay), then the metrics, then the trial's name, which is its MLflow run
name. Tune's own output (a status table every 30 seconds, a line per checkpoint from every worker, a
TensorBoard hint) is what ``--verbose`` adds; see :func:`quiet_tune`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from ray import tune

from mergan.config import ExperimentConfig, resolve_key
from mergan.methods import acting_knobs
from mergan.naming import config_run_name
from mergan.presets import build_config
from mergan.settings import ConfigError, value_text

NOT_ACTING = "-"  # a knob the trial's method does not read
NEW_OUTPUT_ENV = "RAY_AIR_NEW_OUTPUT"  # "0": Tune's older output, silent at verbose=0 (no start banner)


@dataclass(frozen=True)
class TrialLabel:
    """How a trial is shown: its MLflow run name, its method, and the value of each varied knob."""

    name: str
    method: str
    knobs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TrialLabeller:
    """Labels a trial from its parameters as its run will be configured: the sweep's preset, implicit values
    (``defaults``), ``--set`` values (``fixed``), then the trial's; ``name_keys``: the knobs the sweep varies.

    Also Tune's ``trial_name_creator``: Tune then shows (and ``--verbose`` prints) the MLflow name.
    """

    preset: str
    defaults: Mapping[str, Any]
    fixed: Mapping[str, Any]
    name_keys: tuple[str, ...]

    @property
    def knob_columns(self) -> list[str]:
        return [key.rsplit(".", 1)[-1] for key in self.name_keys]

    def config(self, params: Mapping[str, Any]) -> ExperimentConfig:
        return build_config(self.preset, {**self.defaults, **self.fixed, **params}, validate=False)

    def label(self, params: Mapping[str, Any]) -> TrialLabel:
        try:
            config = self.config(params)
            acting = set(acting_knobs(config))
        except (ConfigError, ValueError) as error:  # a configuration its trial will refuse, saying why
            return TrialLabel(name=f"(refused: {str(error)[:60]})", method=str(params.get("method", "?")))
        knobs = {}
        for key in self.name_keys:
            section, name = resolve_key(key)
            value = getattr(getattr(config, section), name)
            knobs[name] = value_text(value) if section != "method" or name in acting else NOT_ACTING
        return TrialLabel(name=config_run_name(config, list(self.name_keys) or None),
                          method=config.method.method, knobs=knobs)

    def __call__(self, trial: Any) -> str:
        return self.label(trial.config).name


def trial_dirname(trial: Any) -> str:
    """Tune's trial folder, as Tune names it without a custom trial name (the name holds spaces)."""
    return f"{trial.trainable_name}_{trial.trial_id}_{trial.experiment_tag}"[:130] + time.strftime("_%Y-%m-%d_%H-%M-%S")


def cell(value: Any) -> str:
    """A metric or value as the tables show it: 3 significant digits, '-' for nothing."""
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.3f}".rstrip("0").rstrip(".")
    return str(value)


def column_widths(lines: Sequence[Sequence[str]]) -> list[int]:
    return [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]


def aligned(lines: Sequence[Sequence[str]], widths: Sequence[int] | None = None) -> list[str]:
    """Rows of cells, each column padded to its width (the widest cell unless ``widths``)."""
    widths = widths or column_widths(lines)
    return ["  ".join(cell_.ljust(width) for cell_, width in zip(line, widths)).rstrip() for line in lines]


def shown_metrics(objective: Sequence[str]) -> list[str]:
    """avg_acc and forgetting, then the objective's other metrics (training time has its own column)."""
    shown = ("avg_acc", "forgetting")
    return [*shown, *[m for m in objective if m not in (*shown, "train_seconds_total")]]


def format_table(rows: Sequence[Any], labeller: TrialLabeller, objective: Sequence[str]) -> str:
    """The sweep's outcome: per trial (``TrialRow``) its id, status, tasks, method and knobs, final metrics,
    times, and name; then one line per trial that failed or diverged, saying why."""
    metrics = shown_metrics(objective)
    header = ["trial", "status", "tasks", "method", *labeller.knob_columns, *metrics, "train_s", "total_s", "name"]
    lines = [header]
    for row in rows:
        label = labeller.label(row.params)
        tasks = f"{row.metrics.get('tasks_done', 0)}/{row.metrics.get('num_tasks', '?')}"
        lines.append([row.trial_id, row.status, tasks, label.method, *label.knobs.values(),
                      *[cell(row.value(m)) for m in metrics], cell(row.value("train_seconds_total")),
                      cell(row.value("time_total_s")), label.name])
    widths = column_widths(lines)
    text = aligned(lines, widths)
    text.insert(1, "  ".join("-" * width for width in widths))
    text += [f"{row.trial_id}: {row.status}: {row.error}" for row in rows if row.error]
    return "\n".join(text)


class TaskBoundaryReport(tune.Callback):
    """One row per trial and finished task while the sweep runs, in fixed columns under one header; a line
    when a trial is retried, fails, or stops before its last task."""

    def __init__(self, labeller: TrialLabeller, objective: Sequence[str], stream: TextIO | None = None):
        self.labeller, self.metrics = labeller, shown_metrics(objective)
        self._stream = stream
        self._header = ["time", "task", "method", *labeller.knob_columns, *self.metrics, "name"]
        self.setup()

    def setup(self, **info: Any) -> None:
        """At the start of the sweep, and again when it resumes (the clock counts this driver's time)."""
        self._started = time.monotonic()
        self._widths = [max(len(h), 7) for h in self._header]
        self._header_printed = False

    def _print(self, text: str) -> None:
        print(text, file=self._stream or sys.stdout, flush=True)

    def _elapsed(self) -> str:
        seconds = int(time.monotonic() - self._started)
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

    def _row(self, cells: list[str]) -> None:
        if not self._header_printed:
            self._print(aligned([self._header], self._widths)[0])
            self._header_printed = True
        self._widths = [max(width, len(value)) for width, value in zip(self._widths, cells)]
        self._print(aligned([cells], self._widths)[0])

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "tasks_done" not in result or result.get("configuration_error"):
            return
        label = self.labeller.label(trial.config)
        self._row([self._elapsed(), f"{result['tasks_done']}/{result.get('num_tasks', '?')}", label.method,
                   *label.knobs.values(), *[cell(result.get(m)) for m in self.metrics], label.name])

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._print(f"{self._elapsed()}  {self.labeller.label(trial.config).name}: failed after task "
                    f"{(trial.last_result or {}).get('tasks_done', 0)} ({last_error_line(trial)}); retried from its "
                    f"last checkpoint")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._print(f"{self._elapsed()}  {self.labeller.label(trial.config).name}: failed for good "
                    f"({last_error_line(trial)})")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        why = result.get("configuration_error") or result.get("divergence")
        done, total = result.get("tasks_done", 0), result.get("num_tasks", 0)
        if why or done < total:
            self._print(f"{self._elapsed()}  {self.labeller.label(trial.config).name}: "
                        f"{why or f'stopped early after task {done}/{total}'}")


def last_error_line(trial: Any) -> str:
    """The last line of the error a trial raised (Tune keeps it), or 'an error'."""
    with contextlib.suppress(Exception):
        error = trial.get_pickled_error()
        if error is not None:
            return str(error).strip().splitlines()[-1][:200]
    return "an error"


# The libraries whose INFO logs a sweep's terminal does without unless --verbose (Ray's notices too).
QUIET_LOGGERS = {"ray": logging.ERROR, "mlflow": logging.WARNING, "optuna": logging.WARNING}


@contextlib.contextmanager
def quiet_tune(verbose: int) -> Iterator[None]:
    """Around a sweep's run: with ``verbose`` 0, Tune prints nothing of its own (its older output flow, which
    at verbosity 0 has no start banner or TensorBoard hint) and Ray's, MLflow's and Optuna's notices are
    held back; their errors still show."""
    if verbose:
        yield
        return
    previous_env = os.environ.get(NEW_OUTPUT_ENV)
    os.environ[NEW_OUTPUT_ENV] = "0"
    levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if previous_env is None:
            os.environ.pop(NEW_OUTPUT_ENV, None)
        else:
            os.environ[NEW_OUTPUT_ENV] = previous_env
