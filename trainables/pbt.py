"""Population Based Training at task boundaries: which knobs PBT perturbs, its scheduler, each trial's lineage.

``sweep.py --scheduler pbt`` runs Ray Tune's ``PopulationBasedTraining`` with one perturbation per
task boundary (``time_attr="tasks_done"``, ``perturbation_interval=1``, synchronous, so the whole
population is compared after the same task). After task t the worst ``quantile_fraction`` of the
population copies a better trial's checkpoint (the trainer's checkpoint as it is: generator, critic,
frozen previous generator and method state, RNG, results, task counter) and perturbs the knobs:
a float or int knob is resampled from its range (log scale where the space says so) with
probability ``RESAMPLE_PROBABILITY``, else multiplied by 0.8 or 1.25, and clipped to its range; a
categorical knob is resampled. Then it trains task t+1 with the new values.

The knobs are the named space's parameters: the space must suggest every one of them on every
draw (no conditional parameters), and each must be a training setting a copied checkpoint can take
(``optim`` and ``method`` fields, the method itself aside). The initial population is drawn by Tune
from the same distributions, seeded with the sweep's seed: PBT refuses a searcher such as Optuna.

On the trial's side, :class:`ScheduleRecorder` records for every task the knob values in force
(metrics ``knob/<name>`` at step = task), and writes ``pbt.json`` into each task's checkpoint folder:
the schedule that produced those weights (per task: the trial that trained it and its knob values)
and the copies on the way. A trial that starts from another trial's checkpoint records the copy in
MLflow (tags ``pbt.copied_after_task_<t>``, ``pbt.copied_from``, ``pbt.lineage``) and the metric
``pbt/copied`` = 1 on the task it trains next; ``pbt.schedule`` holds the schedule of its weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from mergan.callbacks import Callback
from mergan.config import resolve_key
from mergan.settings import ConfigError, is_number, value_text
from search_spaces import SearchSpace
from search_spaces.sampling import draw, random_study
from tracking.sweep_run import trial_tags

SCHEDULER = "pbt"
PBT_FILE = "pbt.json"  # beside checkpoint.pt in every task folder a PBT trial reports
RESAMPLE_PROBABILITY = 0.25
PERTURBATION_FACTORS = (1.25, 0.8)
POPULATION = 4  # --num-samples when it is left out
QUANTILE_FRACTION = 0.25  # of a population of 4: the worst trial copies the best one
CHECKPOINTS_KEPT = 4  # per trial: PBT copies the latest; Ray warns that 2 or fewer can be deleted too early
PERTURBABLE_SECTIONS = ("optim", "method")
FIXED_DURING_A_RUN = ("method",)  # a method's state in the checkpoint belongs to that method
DRAWS_CHECKED = 64
# A run's config may differ from the checkpoint it continues only in these fields (and the knobs).
WHERE_A_RUN_GOES_ON = ("run.out_dir", "run.device")


class PBTError(ValueError):
    """A ``--scheduler pbt`` setting that cannot run; the message names the flag and what is allowed."""


@dataclass(frozen=True)
class Knob:
    """One perturbed config field and the distribution its initial values and resamples come from."""

    name: str  # the bare config field name, as the space writes it
    kind: str  # float | int | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def tune_domain(self) -> Any:
        """The Tune distribution of the initial population and of a resample."""
        from ray import tune

        if self.kind == "categorical":
            return tune.choice(list(self.choices))
        if self.kind == "int":
            return (tune.lograndint if self.log else tune.randint)(int(self.low), int(self.high) + 1)
        return (tune.loguniform if self.log else tune.uniform)(self.low, self.high)

    def clip(self, value: Any) -> Any:
        """A perturbed value kept inside the space's range (the range says what the knob may be)."""
        if self.kind == "categorical":
            return value
        clipped = min(max(value, self.low), self.high)
        return round(clipped) if self.kind == "int" else float(clipped)

    def sample(self, rng: random.Random) -> Any:
        if self.kind == "categorical":
            return rng.choice(list(self.choices))
        if self.log:
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            value = rng.uniform(self.low, self.high)
        return self.clip(value)


def _knob(name: str, distribution: Any) -> Knob:
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return Knob(name, "categorical", choices=tuple(distribution.choices))
    kind = "int" if isinstance(distribution, optuna.distributions.IntDistribution) else "float"
    return Knob(name, kind, low=distribution.low, high=distribution.high, log=bool(distribution.log))


def space_knobs(space: SearchSpace, seed: int = 0) -> tuple[list[Knob], dict[str, Any]]:
    """The space's knobs and its constants, from ``DRAWS_CHECKED`` draws; refuses what PBT cannot perturb."""
    where = f"--scheduler pbt: space {space.name!r} ({space.source})"
    if space.kind == "grid":
        raise PBTError(f"{where} is a grid (every combination, nothing to perturb); PBT needs a searched space "
                       f"of training knobs, e.g. --space ra-schedule or --space ewc-schedule")
    study = random_study(seed)
    draws = []
    for _ in range(DRAWS_CHECKED):
        trial = study.ask()
        point = draw(space, trial)
        draws.append((dict(trial.distributions), {k: v for k, v in point.items() if k not in trial.params}))
    names = sorted({name for distributions, _ in draws for name in distributions})
    if not names:
        raise PBTError(f"{where} suggests no parameter, so there is no knob to perturb; use a space that searches "
                       f"a training knob, e.g. --space ra-schedule")
    conditional = [n for n in names if any(n not in distributions for distributions, _ in draws)]
    if conditional:
        raise PBTError(f"{where} suggests {', '.join(conditional)} only on some draws (behind an if); PBT perturbs "
                       f"one fixed set of knobs, so every parameter must be suggested on every draw; e.g. "
                       f"--space ra-schedule")
    first_constants = draws[0][1]
    if any(constants != first_constants for _, constants in draws):
        raise PBTError(f"{where} returns constants that change between draws; PBT needs the same constants for "
                       f"the whole population")
    for name in names:
        try:
            section, bare = resolve_key(name)
        except ConfigError as error:
            raise PBTError(f"{where}: {error}") from None
        if section not in PERTURBABLE_SECTIONS or bare in FIXED_DURING_A_RUN:
            raise PBTError(f"{where} searches {name!r} ({section}.{bare}), which a copied checkpoint cannot change "
                           f"between tasks; PBT perturbs training knobs only: fields of "
                           f"{' and '.join(PERTURBABLE_SECTIONS)}, the method itself aside "
                           f"(e.g. lambda_ra, lambda_ewc, replay_share, lr_g)")
    return [_knob(name, draws[0][0][name]) for name in names], dict(first_constants)


def check_plan(space: SearchSpace, *, num_tasks: int | None, num_samples: int | None, objective: list[tuple[str, str]],
               seed: int) -> list[Knob]:
    """Everything ``--scheduler pbt`` needs, checked before Ray starts; returns the knobs."""
    knobs, _ = space_knobs(space, seed)
    if num_tasks is not None and num_tasks < 2:
        raise PBTError(f"--scheduler pbt: the task stream has {num_tasks} task; PBT perturbs the knobs at task "
                       f"boundaries, so give at least two tasks, e.g. --tasks '0|1|2|3|4'")
    if num_samples is not None and num_samples < 2:
        raise PBTError(f"--num-samples {num_samples}: with --scheduler pbt it is the population, and a trial can "
                       f"only copy another; allowed: >= 2 (e.g. 4)")
    if len(objective) != 1:
        raise PBTError(f"--objective: --scheduler pbt ranks the population by one metric, not "
                       f"{len(objective)}; give one, e.g. --objective avg_acc:max or --objective forgetting:min")
    return knobs


def objective(pairs: list[tuple[str, str]], text: str) -> list[tuple[str, str]]:
    """PBT's default metric: ``avg_acc``, the accuracy over the tasks seen so far (``acc`` ranks by it)."""
    return [("avg_acc", "max")] if text == "acc" else pairs


# -- the driver's side ----------------------------------------------------------------------
class Explore:
    """PBT's explore step after Tune's own: perturbed numbers clipped to their range, categoricals resampled.

    Tune resamples (``RESAMPLE_PROBABILITY``) or multiplies by a factor, but neither clips a product
    to the range nor resamples a categorical (it shifts to a neighbouring choice); this does both.
    """

    def __init__(self, knobs: list[Knob], seed: int):
        self.knobs = list(knobs)
        self.rng = random.Random(seed)

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        for knob in self.knobs:
            config[knob.name] = knob.sample(self.rng) if knob.kind == "categorical" else knob.clip(config[knob.name])
        return config


def param_space(space: SearchSpace, seed: int) -> dict[str, Any]:
    """The initial population's distributions (the space's, as Tune domains) and the space's constants."""
    knobs, constants = space_knobs(space, seed)
    return {**{knob.name: knob.tune_domain() for knob in knobs}, **constants}


def initial_population(space: SearchSpace, seed: int) -> Any:
    """Tune's own sampler, seeded: the space's ``points_to_evaluate`` first, then draws from its distributions."""
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(points_to_evaluate=[dict(p) for p in space.points_to_evaluate] or None,
                                 random_state=seed)


def _task_boundary_pbt() -> type:
    """Ray Tune's PBT that resumes: a sweep restored after its driver died gets a fresh scheduler (Tune
    saves trials, not the scheduler's state), whose synchronous mode would wait for the first boundary
    forever. Each restored trial's tasks done and score are read back from its last result instead, and
    the next boundary is the one after the fewest tasks any unfinished trial has done."""
    from ray.tune.schedulers import PopulationBasedTraining

    class TaskBoundaryPBT(PopulationBasedTraining):
        def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
            super().on_trial_add(tune_controller, trial)
            result = trial.last_result or {}
            if self._time_attr in result:  # restored: it trained tasks in the killed driver's sweep
                state = self._trial_state[trial]
                state.last_train_time = state.last_perturbation_time = result[self._time_attr]
                if self._metric in result:
                    state.last_score, state.last_result = self._metric_op * result[self._metric], result
                state.last_checkpoint = trial.checkpoint
                self._restored = True
            if getattr(self, "_restored", False):
                times = [s.last_train_time for t, s in self._trial_state.items() if not t.is_finished()]
                self._next_perturbation_sync = min(times, default=0) + self._perturbation_interval

    return TaskBoundaryPBT


def build_scheduler(space: SearchSpace, metric: str, mode: str, seed: int) -> Any:
    """Ray Tune's PBT with one synchronous perturbation per task boundary."""
    knobs, _ = space_knobs(space, seed)
    random.seed(seed)  # Tune's own choices (whom to copy, resample or which factor) use the driver's `random`
    return _task_boundary_pbt()(
        time_attr="tasks_done", metric=metric, mode=mode, perturbation_interval=1, burn_in_period=0,
        hyperparam_mutations={knob.name: (list(knob.choices) if knob.kind == "categorical" else knob.tune_domain())
                              for knob in knobs},
        quantile_fraction=QUANTILE_FRACTION, resample_probability=RESAMPLE_PROBABILITY,
        perturbation_factors=PERTURBATION_FACTORS, custom_explore_fn=Explore(knobs, seed), synch=True)


def stop_after_last_task(num_tasks: int | None) -> dict[str, int] | None:
    """Tune's stop criterion: a trial that reported its last task is done, never copied into again."""
    return {"tasks_done": num_tasks} if num_tasks else None


# -- the trial's side ----------------------------------------------------------------------
def weights_digest(state: dict[str, Any]) -> str:
    """SHA-256 of a state dict (names and values in order): the same weights give the same digest."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def knob_overrides(config: Any, knobs: tuple[str, ...]) -> dict[str, Any]:
    """The knob values Tune handed this trial: they, not the copied checkpoint's, are in force from now on."""
    values = {}
    for name in knobs:
        section, bare = resolve_key(name)
        values[name] = getattr(getattr(config, section), bare)
    return values


def check_same_run(restored: Any, wanted: Any, knobs: tuple[str, ...]) -> None:
    """A copied checkpoint continues the same run: only the knobs (and where it runs) may differ."""
    bare_knobs = {k.rsplit(".", 1)[-1] for k in knobs}
    ours, theirs = wanted.flat(), restored.flat()
    differ = [k for k in ours if ours[k] != theirs.get(k) and k not in WHERE_A_RUN_GOES_ON
              and k.rsplit(".", 1)[-1] not in bare_knobs]
    if differ:
        raise RuntimeError(f"PBT: the checkpoint to continue differs from this trial beyond its knobs "
                           f"({', '.join(f'{k}: {theirs.get(k)!r} vs {ours[k]!r}' for k in differ)}); PBT may "
                           f"only change {', '.join(sorted(bare_knobs))}")


class ScheduleRecorder(Callback):
    """A trainer callback of a PBT trial: knob values per task, the schedule and copies of its weights.

    Placed before the MLflow and Tune callbacks: the ``knob/<name>`` and ``pbt/copied`` values it adds
    to each task's metrics reach both, and ``pbt.json`` is in the checkpoint folder before Tune copies it.
    """

    def __init__(self, trial_id: str, knobs: tuple[str, ...], set_tags: Any = None):
        self.trial_id, self.knobs = trial_id, tuple(knobs)
        self.set_tags = set_tags or (lambda tags: None)
        self.schedule: list[dict[str, Any]] = []  # per task of the weights: task, trial_id, knobs
        self.lineage: list[dict[str, Any]] = []  # the copies the weights went through
        self.copied_after_task: int | None = None

    def on_restore(self, trainer: Any, folder: str | Path) -> dict[str, str]:
        """Read the checkpoint's ``pbt.json``; when it is another trial's, record the copy. Returns MLflow tags."""
        path = Path(folder) / PBT_FILE
        if not path.is_file():
            return {}
        info = json.loads(path.read_text())
        self.schedule = [entry for entry in info.get("schedule", []) if entry["task"] <= trainer.tasks_done]
        self.lineage = list(info.get("lineage", []))
        if info.get("trial_id") == self.trial_id:
            return {}  # our own checkpoint: a retry or a pause, not a copy
        task = trainer.tasks_done
        copy = {"after_task": task, "from_trial": info.get("trial_id"), "into_trial": self.trial_id,
                "knobs_before": (self.schedule[-1]["knobs"] if self.schedule else {}),
                "knobs_after": self.knob_values(trainer),
                "generator_sha256": weights_digest(trainer.generator.state_dict())}
        self.lineage.append(copy)
        self.copied_after_task = task
        return {f"pbt.copied_after_task_{task}": str(copy["from_trial"]), "pbt.copied_from": str(copy["from_trial"]),
                "pbt.lineage": json.dumps(self.lineage)}

    def knob_values(self, trainer: Any) -> dict[str, Any]:
        return knob_overrides(trainer.config, self.knobs)

    def on_task_end(self, trainer: Any, result: Any) -> None:
        values = self.knob_values(trainer)
        self.schedule = [e for e in self.schedule if e["task"] < result.task]
        self.schedule.append({"task": result.task, "trial_id": self.trial_id, "knobs": values})
        for name, value in values.items():
            if is_number(value):
                result.metrics[f"knob/{name}"] = float(value)
        result.metrics["pbt/copied"] = 1.0 if self.copied_after_task == result.task - 1 else 0.0
        if result.checkpoint_path:
            record = {"trial_id": self.trial_id, "task": result.task, "schedule": self.schedule,
                      "lineage": self.lineage, "generator_sha256": weights_digest(trainer.generator.state_dict())}
            (Path(result.checkpoint_path) / PBT_FILE).write_text(json.dumps(record, indent=1))
        self.set_tags({"pbt.schedule": json.dumps(self.schedule)})


@dataclass
class ScheduleEntry:
    """One task of a winning schedule, as the sweep prints it."""

    task: int
    trial_id: str
    knobs: dict[str, Any]


def schedule_from_tags(tags: dict[str, str]) -> list[ScheduleEntry]:
    """A run's ``pbt.schedule`` tag as entries (empty when the run has none)."""
    text = tags.get("pbt.schedule")
    return [ScheduleEntry(**entry) for entry in json.loads(text)] if text else []


def format_schedule(entries: list[ScheduleEntry]) -> str:
    """``task 1: lambda_ra=0.01 (trial a), task 2: ...`` in one line per task."""
    return "\n".join(f"  task {e.task}: " + ", ".join(f"{k}={value_text(v)}" for k, v in e.knobs.items())
                     + f"  (trained by {e.trial_id})" for e in entries)


def winning_schedule(tracking_uri: str, parent_run_id: str | None, trial_id: str) -> list[ScheduleEntry]:
    """The schedule of a trial's final weights, from its MLflow run (empty when it cannot be read)."""
    if not parent_run_id:
        return []
    try:
        return schedule_from_tags(trial_tags(tracking_uri, parent_run_id, trial_id))
    except Exception:  # noqa: BLE001 - a summary line; the runs hold the record
        return []
