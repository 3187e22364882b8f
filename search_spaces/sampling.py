"""Draw configurations from a space without training: to validate it and to show a sweep's plan."""

from __future__ import annotations

from typing import Any

import optuna

from search_spaces.space import SearchSpace, SpaceError


def sample_points(space: SearchSpace, count: int = 64, seed: int = 0) -> list[dict[str, Any]]:
    """Every grid point, or the space's ``points_to_evaluate`` then ``count`` random draws.

    Random draws reach the conditional branches of a define-by-run function, so a wrong
    parameter name behind an ``if`` is found before a sweep starts rather than in trial 17.
    """
    if space.kind == "grid":
        return list(space.grid_points())
    study = random_study(seed)
    for point in space.points_to_evaluate:
        study.enqueue_trial(point)
    points = []
    for _ in range(len(space.points_to_evaluate) + count):
        points.append(draw(space, study.ask()))
    return points


def random_study(seed: int) -> optuna.Study:
    """An in-memory study with a seeded random sampler, to draw from a space without a search."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" line for a throwaway study
    try:
        return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    finally:
        optuna.logging.set_verbosity(verbosity)


def draw(space: SearchSpace, trial: Any) -> dict[str, Any]:
    """Call the space's function on ``trial``: its suggestions plus the constants it returns."""
    try:
        constants = space.define(trial)
    except SpaceError:
        raise
    except Exception as error:
        raise SpaceError(f"space {space.name!r} ({space.source}) raised {type(error).__name__}: {error}") from error
    if constants is not None and not (isinstance(constants, dict) and all(isinstance(k, str) for k in constants)):
        raise SpaceError(f"space {space.name!r} ({space.source}) must return None or a dict of constants "
                         f"{{field name: value}}, not {constants!r}")
    return {**trial.params, **(constants or {})}
