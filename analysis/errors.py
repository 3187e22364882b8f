"""What can go wrong when analysing runs; each message names the experiment, run or datasets involved.

All are ``ValueError`` subclasses, so ``mergan report`` prints them as one line with exit code 2.
"""

from __future__ import annotations


class AnalysisError(ValueError):
    """Base class of the analysis package's errors."""


class TrackingStoreNotFoundError(AnalysisError):
    """The tracking URI names a local store (an SQLite file) that does not exist."""


class ExperimentNotFoundError(AnalysisError):
    """No experiment (or sweep parent run) of that name/id in the tracking store."""


class NoRunsError(AnalysisError):
    """The experiment or sweep exists but holds no runs."""


class NoTaskMetricsError(AnalysisError):
    """None of the runs logged per-task metrics (``acc_task_{j}``), so there is no accuracy matrix."""


class MixedDatasetsError(AnalysisError):
    """Runs of several datasets were given where one table or figure compares one dataset."""


class NothingToPlotError(AnalysisError):
    """A figure has no data: no varied hyperparameter, no sample grids, a single-objective study ..."""
