"""The methods, each a small class on the trainer's hooks, found by name in one registry (built in or plugins).

``build_method("jtr+ra", config.method)`` makes the method a run names; ``REGISTRY`` knows every method
(``mergan.methods.registry``); ``Method`` is the class a method of your own subclasses (``base.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mergan.methods.base import CompositeMethod, Method
from mergan.methods.context import TaskContext, Training
from mergan.methods.registry import ENTRY_POINT_GROUP, REGISTRY, MethodRegistry

if TYPE_CHECKING:
    from mergan.config import ExperimentConfig


def build_method(text: str, config: Any = None, modules: Sequence[str] = ()) -> Method:
    """``"ra"`` -> ReplayAlignment(config); ``"jtr+ra"`` -> a CompositeMethod of both (validated by the registry).

    ``config``: the run's method section, which the methods read their knobs from (default: each method's
    knob defaults); ``modules``: the run's method modules (``method.module``).
    """
    methods = [REGISTRY.method_class(name, modules)(config) for name in REGISTRY.parse(text, modules)]
    return methods[0] if len(methods) == 1 else CompositeMethod(methods)


def acting_knobs(config: ExperimentConfig) -> list[str]:
    """The knobs (bare names) that change training in ``config``'s run, in the methods' knob order."""
    modules = config.method.modules
    acting: dict[str, None] = {}
    for name in config.methods:
        method = REGISTRY.method_class(name, modules)
        for knob in method.knobs:
            condition = method.knob_conditions.get(knob.name)
            if condition is None or getattr(config.method, condition[0]) == condition[1]:
                acting.setdefault(knob.name)
    return list(acting)


def name_knobs(methods: Sequence[str], modules: Sequence[str] = ()) -> list[str]:
    """The knobs that name a run of ``methods`` outside a sweep, in order (the seed is added by the namer)."""
    return list(dict.fromkeys(k for name in methods for k in REGISTRY.method_class(name, modules).name_knobs))


def knob_condition(method: str, knob: str, modules: Sequence[str] = ()) -> dict[str, object]:
    """``{"method.replay_mode": "fixed"}`` for a knob that acts in ``method`` only under another knob's value."""
    condition = REGISTRY.method_class(method, modules).knob_conditions.get(knob)
    return {} if condition is None else {f"method.{condition[0]}": condition[1]}


__all__ = ["ENTRY_POINT_GROUP", "REGISTRY", "CompositeMethod", "Method", "MethodRegistry", "TaskContext", "Training",
           "acting_knobs", "build_method", "knob_condition", "name_knobs"]
