"""Running a planned sweep with Ray Tune to its end (or to Ctrl-C), and resuming one.

``run_sweep(plan)`` starts (or continues) the sweep's MLflow run, fits the Tuner (``trainables/tuner.py``)
under the sweep's Ctrl-C handling (:class:`StopOnCtrlC`: the first stops the trials with Tune's state saved
to resume from, a second at once), and returns one :class:`TrialRow` per trial with the best.
``resume=True`` restores the Tuner, searcher state included, from the sweep's storage.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any, Self

import optuna

from tracking.sweep_run import retire_orphan_runs
from trainables.plan import SweepPlan, is_uri
from trainables.progress import quiet_tune
from trainables.results import TrialRow, best_rows, summarize
from trainables.sweep_mlflow import (
    ReportBuilder,
    mark_runs_killed,
    record_best,
    record_summary,
    start_tracking,
)
from trainables.tuner import new_tuner, restored_tuner

logger = logging.getLogger("trainables.sweeping")
TUNE_SIGINT_ENV = "TUNE_DISABLE_SIGINT_HANDLER"  # Ray's switch: 1 leaves SIGINT to us (see StopOnCtrlC)


@dataclass
class SweepOutcome:
    rows: list[TrialRow]
    best: list[TrialRow]
    experiment_path: str
    parent_run_id: str | None
    interrupted: bool = False  # stopped by Ctrl-C: Tune saved its state, ``--resume`` continues


def run_sweep(plan: SweepPlan, resume: bool = False, verbose: int = 0,
              build_report: ReportBuilder | None = None) -> SweepOutcome:
    """Run (or resume) the planned sweep to the end; every trial's row, the best, where it all is.

    Ctrl-C stops it with its state saved (``SweepOutcome.interrupted``); a second Ctrl-C raises
    KeyboardInterrupt. Either way the sweep's MLflow runs end KILLED, and ``--resume`` continues them.
    ``build_report``: see :func:`record_summary`. ``verbose``: Tune's own output (see :func:`quiet_tune`).
    """
    with quiet_tune(verbose):
        return _run_sweep(plan, resume, verbose, build_report)


def _run_sweep(plan: SweepPlan, resume: bool, verbose: int, build_report: ReportBuilder | None) -> SweepOutcome:
    plan.parent_run_id = start_tracking(plan)  # on resume: the same parent run, continued
    if not resume:
        plan.save()  # before any trial starts: --resume needs it even if this driver dies at once
    if not is_uri(plan.storage_path):
        # Save Tune's experiment state every 2 s (default: at most every 10 s): a driver killed
        # between a trial's start and the next save would otherwise lose that trial's record.
        os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    # Snapshots after checkpoints are what makes a resume exact; Tune's warning about them is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    tuner = restored_tuner(plan) if resume else new_tuner(plan, verbose)
    try:
        with StopOnCtrlC() as ctrl_c:
            results = tuner.fit()
    except KeyboardInterrupt:
        mark_runs_killed(plan)
        raise
    rows = summarize(results)
    if ctrl_c.pressed:
        mark_runs_killed(plan, {row.trial_id for row in rows if not row.complete})
        return SweepOutcome(rows, [], plan.experiment_path, plan.parent_run_id, interrupted=True)
    reconcile(plan, {r.trial_id for r in rows})
    best = best_rows(rows, plan)
    record_summary(plan, rows, build_report)
    record_best(plan, best)
    return SweepOutcome(rows, best, plan.experiment_path, plan.parent_run_id)


def reconcile(plan: SweepPlan, trial_ids: set[str]) -> None:
    """After a resumed sweep: records of trials Tune never saved (a driver killed in between) are retired.

    Their MLflow runs are deleted (MLflow keeps them restorable) and their Optuna trials marked
    FAILED, so every trial in Tune's results appears exactly once in MLflow and in the study.
    """
    if plan.parent_run_id:
        retire_orphan_runs(plan.tracking_uri, plan.parent_run_id, trial_ids)
    if plan.space_kind == "optuna" and plan.optuna_storage:
        study = optuna.load_study(study_name=plan.name, storage=plan.optuna_storage)
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            logger.warning("marked Optuna trial %d FAILED: no Tune trial finished it", trial.number)


class StopOnCtrlC:
    """Ctrl-C while Tune runs: the first asks Tune for the stop its own SIGINT handler makes (running
    trials stop, the experiment state is saved, so the sweep can resume); a second stops at once.

    Tune's handler is switched off (``TUNE_DISABLE_SIGINT_HANDLER``) so that the sweep knows it was
    interrupted: a stopped ``Tuner.fit()`` returns like a finished one. Tune's stop is asked for with
    SIGUSR1, which Tune always handles that way.
    """

    def __init__(self) -> None:
        self.pressed = False
        self._previous: Any = None
        self._previous_env: str | None = None

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
            self._previous_env = os.environ.get(TUNE_SIGINT_ENV)
            os.environ[TUNE_SIGINT_ENV] = "1"
        return self

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True
        print("\nCtrl-C: stopping the trials and saving the sweep's state to resume from (Ctrl-C again to stop "
              "at once)", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGUSR1)

    def __exit__(self, *exc_info: object) -> None:
        if self._previous is None:
            return
        signal.signal(signal.SIGINT, self._previous)
        if self._previous_env is None:
            os.environ.pop(TUNE_SIGINT_ENV, None)
        else:
            os.environ[TUNE_SIGINT_ENV] = self._previous_env
