"""A finished sweep's trials as rows: each one's status, parameters, metrics and error; the best trial (or
the Pareto front of several objectives); the table the sweep prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import tune

from mergan.settings import is_number
from trainables.plan import SweepPlan
from trainables.progress import TrialLabeller
from trainables.progress import format_table as progress_table
from trainables.trainable import CONFIGURATION_ERROR


@dataclass
class TrialRow:
    """One trial as the sweep's table shows it."""

    trial_id: str
    status: str  # finished | stopped early | diverged | error
    params: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def complete(self) -> bool:
        """Nothing left to run: every task reported, or the trial diverged or could not run."""
        if self.metrics.get("diverged") or self.metrics.get(CONFIGURATION_ERROR):
            return True
        return 0 < self.metrics.get("num_tasks", 0) <= self.metrics.get("tasks_done", 0)

    def value(self, metric: str) -> float | None:
        value = self.metrics.get(metric)
        return float(value) if is_number(value) else None


def summarize(results: tune.ResultGrid) -> list[TrialRow]:
    rows = []
    for result in results:
        metrics = dict(result.metrics or {})
        trial_id = str(metrics.get("trial_id") or Path(result.path).name)
        if result.error is not None or metrics.get(CONFIGURATION_ERROR):
            status = "error"
        elif metrics.get("diverged"):
            status = "diverged"
        elif metrics.get("tasks_done", 0) < metrics.get("num_tasks", 0):
            status = "stopped early"
        else:
            status = "finished"
        error = (str(result.error).strip().splitlines()[-1] if result.error is not None
                 else metrics.get(CONFIGURATION_ERROR) or metrics.get("divergence"))
        rows.append(TrialRow(trial_id, status, dict(result.config or {}), metrics, error))
    return sorted(rows, key=lambda r: r.trial_id)


def best_rows(rows: list[TrialRow], plan: SweepPlan) -> list[TrialRow]:
    """The best finished trial by the first objective, or the Pareto front for several objectives."""
    candidates = [r for r in rows if r.status in ("finished", "stopped early")
                  and all(r.value(m) is not None for m in plan.metrics)]
    if not candidates:
        return []
    signs = [1.0 if mode == "max" else -1.0 for mode in plan.modes]
    scores = {r.trial_id: [s * r.value(m) for s, m in zip(signs, plan.metrics)] for r in candidates}
    if len(plan.objective) == 1:
        return [max(candidates, key=lambda r: scores[r.trial_id][0])]

    def dominated(a: TrialRow) -> bool:
        return any(all(x >= y for x, y in zip(scores[b.trial_id], scores[a.trial_id]))
                   and scores[b.trial_id] != scores[a.trial_id] for b in candidates)

    return [r for r in candidates if not dominated(r)]


def trial_labeller(plan: SweepPlan) -> TrialLabeller:
    """How the plan's trials are named and shown (as MLflow names their runs)."""
    return TrialLabeller(plan.preset, dict(plan.defaults), dict(plan.fixed), tuple(plan.name_keys))


def format_table(rows: list[TrialRow], plan: SweepPlan) -> str:
    """The sweep's outcome, one row per trial (see :func:`trainables.progress.format_table`)."""
    return progress_table(rows, trial_labeller(plan), plan.metrics)
