"""Named search spaces: each answers one question about continual learning of GANs.

Optuna spaces are define-by-run functions: a parameter that only matters for some methods is
suggested inside an ``if`` (``lambda_ra`` only when the method uses RA), so the sampler never
wastes trials on knobs that do nothing. Constants a space needs (its method) are returned.
The ``ablation`` space is a grid: every method x seed, no search (the paper's Table 1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mergan.config import PAPER_METHODS
from search_spaces.space import DefineByRun, SearchSpace, SpaceError, docstring_question

# Ranges wide enough for both the small CPU nets and the paper's nets (see mergan/presets.py PRESETS:
# small uses lambda_RA 1e-2, the paper 1e-3; both lambda_EWC 1e9, the penalty a mean over the weights).
LAMBDA_RA = (1e-4, 1.0)
LAMBDA_EWC = (1e6, 1e12)
LAMBDA_L2 = (1e3, 1e9)  # the L2 penalty is a mean over the weights, like EWC's (mergan/methods/weight_anchoring.py)
REPLAY_SIZE_PER_CLASS = (16, 2048)
REFERENCE_METHODS = ["er", "l2"]  # this platform's reference baselines, not in the paper
ABLATION_SEEDS = [0, 1, 2]
REPLAY_SIZES = [16, 64, 256, 1024]  # per earlier class: the replay-size comparison's memory sizes
ORDER_SEEDS = [0, 1, 2, 3]  # the random class orders of the orders space
ORDER_RUN_SEEDS = [0, 1]

_OPTUNA: dict[str, tuple[DefineByRun, list[dict[str, Any]]]] = {}
_GRIDS: dict[str, Callable[[], dict[str, list[Any]]]] = {}


def optuna_preset(name: str, points_to_evaluate: list[dict[str, Any]] | None = None):
    """Register a define-by-run function as the named space ``name``."""
    def register(function: DefineByRun) -> DefineByRun:
        _OPTUNA[name] = (function, list(points_to_evaluate or []))
        return function
    return register


def grid_preset(name: str):
    """Register a function returning ``{parameter: [values]}`` as the named grid space ``name``."""
    def register(function: Callable[[], dict[str, list[Any]]]) -> Callable[[], dict[str, list[Any]]]:
        _GRIDS[name] = function
        return function
    return register


def _replay_knobs(trial: Any) -> None:
    """JTR's knobs: fresh replay every batch, or a fixed replay set drawn once (its size per class)."""
    if trial.suggest_categorical("replay_mode", ["fresh", "fixed"]) == "fixed":
        trial.suggest_int("replay_size_per_class", *REPLAY_SIZE_PER_CLASS, log=True)


@optuna_preset("ra-lambda")
def ra_lambda(trial: Any) -> dict[str, Any]:
    """How strongly must replay alignment pull the generator toward its previous self to keep earlier
    classes, before it stops learning the new one? (MeRGAN-RA, lambda_RA on a log scale)"""
    trial.suggest_float("lambda_ra", *LAMBDA_RA, log=True)
    return {"method": "ra"}


@optuna_preset("ewc-lambda")
def ewc_lambda(trial: Any) -> dict[str, Any]:
    """How large must the EWC penalty be to protect earlier classes in a GAN generator, and where does
    it freeze learning? (EWC, lambda_EWC on a log scale)"""
    trial.suggest_float("lambda_ewc", *LAMBDA_EWC, log=True)
    return {"method": "ewc"}


@optuna_preset("ra-schedule")
def ra_schedule(trial: Any) -> dict[str, Any]:
    """Should lambda_RA change as tasks accumulate, e.g. grow with the number of classes to protect? (MeRGAN-RA;
    for --scheduler pbt, which perturbs lambda_RA at every task boundary: log scale, x0.8/x1.25 or resampled)"""
    trial.suggest_float("lambda_ra", *LAMBDA_RA, log=True)
    return {"method": "ra"}


@optuna_preset("ewc-schedule")
def ewc_schedule(trial: Any) -> dict[str, Any]:
    """Should lambda_EWC change as tasks accumulate, as the Fisher penalty sums over more earlier tasks? (EWC;
    for --scheduler pbt, which perturbs lambda_EWC at every task boundary: log scale, x0.8/x1.25 or resampled)"""
    trial.suggest_float("lambda_ewc", *LAMBDA_EWC, log=True)
    return {"method": "ewc"}


@grid_preset("replay-size")
def replay_size() -> dict[str, list[Any]]:
    """Does generated replay keep earlier classes as well as the same number of real images kept in memory?
    (MeRGAN-JTR with a fixed replay set against ER, each at replay_size_per_class 16, 64, 256, 1024; a grid)"""
    return {"method": ["jtr", "er"], "replay_size_per_class": list(REPLAY_SIZES), "replay_mode": ["fixed"]}


@optuna_preset("jtr-replay-size")
def jtr_replay_size(trial: Any) -> dict[str, Any]:
    """How many replayed images per earlier class does joint retraining need when the replay set is
    drawn once and kept fixed? (MeRGAN-JTR, replay_size_per_class on a log scale)"""
    trial.suggest_int("replay_size_per_class", *REPLAY_SIZE_PER_CLASS, log=True)
    return {"method": "jtr", "replay_mode": "fixed"}


@optuna_preset("mergan")
def mergan(trial: Any) -> None:
    """Which memory replay remembers best: joint retraining, replay alignment, or both, each with its
    own knobs? (method in JTR, RA, JTR+RA; lambda_RA when RA; replay mode and size when JTR)"""
    method = trial.suggest_categorical("method", ["jtr", "ra", "jtr+ra"])
    if "ra" in method.split("+"):
        trial.suggest_float("lambda_ra", *LAMBDA_RA, log=True)
    if "jtr" in method.split("+"):
        _replay_knobs(trial)


_BASELINES = [{"method": "sft"}, {"method": "jtr", "replay_mode": "fresh"}, {"method": "ra", "lambda_ra": 1e-2},
              {"method": "jtr+ra", "replay_mode": "fresh", "lambda_ra": 1e-2}]


@optuna_preset("methods", points_to_evaluate=_BASELINES)
def methods(trial: Any) -> None:
    """Does memory replay beat plain sequential fine-tuning on this stream, and by how much once its
    knobs are searched? (SFT, JTR, RA, JTR+RA at the small preset's values first, then searched with the
    reference baselines ER and L2)"""
    method = trial.suggest_categorical("method", ["sft", "jtr", "ra", "jtr+ra", *REFERENCE_METHODS])
    if "ra" in method.split("+"):
        trial.suggest_float("lambda_ra", *LAMBDA_RA, log=True)
    if "jtr" in method.split("+"):
        _replay_knobs(trial)
    if method == "er":
        trial.suggest_int("replay_size_per_class", *REPLAY_SIZE_PER_CLASS, log=True)
    if method == "l2":
        trial.suggest_float("lambda_l2", *LAMBDA_L2, log=True)


@grid_preset("ablation")
def ablation() -> dict[str, list[Any]]:
    """How does every method compare on the same stream, over seeds? (the paper's Table 1 as a sweep:
    JT, SFT, EWC, DGR, MeRGAN-JTR, MeRGAN-RA and the reference baselines ER and L2 x seeds 0, 1, 2; a grid)"""
    return {"method": [*PAPER_METHODS, *REFERENCE_METHODS], "seed": list(ABLATION_SEEDS)}


@grid_preset("orders")
def orders() -> dict[str, list[Any]]:
    """How much does forgetting depend on the order the classes come in, against the spread over seeds?
    (the method of --set method=NAME over random class orders 0..3 x seeds 0, 1; a grid; the report shows
    both spreads)"""
    return {"task_order": ["random"], "order_seed": list(ORDER_SEEDS), "seed": list(ORDER_RUN_SEEDS)}


def preset_names() -> list[str]:
    return sorted([*_OPTUNA, *_GRIDS])


def get_preset(name: str) -> SearchSpace:
    """The named space; ``SpaceError`` naming the known ones otherwise."""
    if name in _OPTUNA:
        function, points = _OPTUNA[name]
        return SearchSpace(name=name, question=docstring_question(function, f"space {name!r}"), define=function,
                           points_to_evaluate=[dict(p) for p in points])
    if name in _GRIDS:
        function = _GRIDS[name]
        return SearchSpace(name=name, question=docstring_question(function, f"space {name!r}"), grid=function())
    raise SpaceError(f"unknown search space {name!r}; named spaces: {', '.join(preset_names())}; or give a "
                     f"path to your own .py file (a function space(trial)) or .yaml file")
