"""What a search space is: an Optuna define-by-run function or an exhaustive grid, with its question.

A space never trains and never imports Ray: the sweep turns an Optuna space into an
``OptunaSearch`` and a grid into ``tune.grid_search`` values. Parameter names are config field
names (``mergan.config.resolve_key``: the config's fields and the methods' knobs), bare (``lambda_ra``)
or dotted (``method.lambda_ra``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

# optuna.Trial in, constants out: {name: value} merged into the trial's config (or None).
DefineByRun = Callable[[Any], "dict[str, Any] | None"]


class SpaceError(ValueError):
    """A search space that cannot be used; the message names the space, the parameter and what is allowed."""


@dataclass(frozen=True)
class SearchSpace:
    """A named space: exactly one of ``define`` (Optuna, searched) or ``grid`` (every combination).

    ``question`` says what the sweep answers; ``points_to_evaluate`` are configurations an Optuna
    search runs first (known baselines); ``source`` says where the space came from (``preset`` or a
    file path) and ``text`` holds a user file's content, so a resumed sweep loads the same space.
    """

    name: str
    question: str
    define: DefineByRun | None = None
    grid: dict[str, list[Any]] | None = None
    points_to_evaluate: list[dict[str, Any]] = field(default_factory=list)
    source: str = "preset"
    text: str | None = None

    def __post_init__(self) -> None:
        if (self.define is None) == (self.grid is None):
            raise SpaceError(f"space {self.name!r}: give either a define-by-run function or a grid, not "
                             f"{'both' if self.define else 'neither'}")
        for name, values in (self.grid or {}).items():
            if not isinstance(values, list) or not values:
                raise SpaceError(f"space {self.name!r}: grid parameter {name!r} needs a non-empty list of "
                                 f"values, got {values!r}")

    @property
    def kind(self) -> str:
        """``optuna`` (searched by a sampler) or ``grid`` (every combination, no searcher)."""
        return "optuna" if self.define is not None else "grid"

    def grid_points(self) -> Iterator[dict[str, Any]]:
        """Every combination of a grid space, in order (the last parameter varies fastest)."""
        names = list(self.grid or {})
        for values in itertools.product(*(self.grid[n] for n in names)):
            yield dict(zip(names, values))

    def grid_size(self) -> int:
        size = 1
        for values in (self.grid or {}).values():
            size *= len(values)
        return size


def docstring_question(function: Callable[..., Any], where: str) -> str:
    """The first paragraph of a function's docstring: the question its space answers."""
    text = (function.__doc__ or "").strip()
    if not text:
        raise SpaceError(f"{where}: the space function needs a docstring saying what question the sweep "
                         f"answers (its first line is shown in the plan and logged to MLflow)")
    return " ".join(text.split("\n\n")[0].split())
