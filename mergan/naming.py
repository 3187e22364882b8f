"""What a run is called: its method, the knobs that act in it and its seed, e.g. ``ra lambda_ra=3e-3 seed=0``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mergan.config import FIELDS, ExperimentConfig
from mergan.settings import value_text


def run_name(method: str, values: Mapping[str, Any]) -> str:
    """``run_name("ra", {"lambda_ra": 3e-3, "seed": 0})`` -> ``"ra lambda_ra=3e-3 seed=0"``."""
    parts = [method] + [f"{key.rsplit('.', 1)[-1]}={value_text(value)}" for key, value in values.items()]
    return " ".join(parts)


def name_values(config: ExperimentConfig, keys: Sequence[str] | None = None) -> dict[str, Any]:
    """The values that name ``config``'s run: ``keys`` (default: its methods' ``name_knobs``), less
    the method fields that do not act in this run (an SFT trial of a sweep over lambda_ra), and the seed."""
    from mergan.methods import acting_knobs, name_knobs  # the methods import torch: only when a run is named

    bare = {name.rsplit(".", 1)[-1]: value for name, value in config.flat().items()}
    if keys is None:
        keys = name_knobs(config.methods, config.method.modules)
    acting = set(acting_knobs(config))
    method_fields = {*config.method.knobs(), *(name for name, (section, _) in FIELDS.items() if section == "method")}
    chosen = {}
    for key in keys:
        name = key.rsplit(".", 1)[-1]
        if name in bare and name not in ("method", "seed") and (name in acting or name not in method_fields):
            chosen[name] = bare[name]
    return {**chosen, "seed": config.run.seed}


def config_run_name(config: ExperimentConfig, keys: Sequence[str] | None = None) -> str:
    """The name of ``config``'s run (see :func:`name_values` for ``keys``)."""
    return run_name(config.method.method, name_values(config, keys))
