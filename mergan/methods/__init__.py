"""The six methods, each a small class on the trainer's hooks, selected by ``method.method``."""

from __future__ import annotations

from mergan.config import ExperimentConfig, MethodConfig, parse_method
from mergan.methods.base import CompositeMethod, Method
from mergan.methods.dgr import DeepGenerativeReplay
from mergan.methods.ewc import ElasticWeightConsolidation
from mergan.methods.joint import JointTraining, SequentialFineTuning, StreamedJointTraining
from mergan.methods.joint_retraining import JointRetraining
from mergan.methods.replay_alignment import ReplayAlignment

METHODS: dict[str, type[Method]] = {
    "jt": JointTraining,
    "sft": SequentialFineTuning,
    "ewc": ElasticWeightConsolidation,
    "dgr": DeepGenerativeReplay,
    "jtr": JointRetraining,
    "ra": ReplayAlignment,
    "jt-stream": StreamedJointTraining,
}


def build_method(text: str, config: MethodConfig | None = None) -> Method:
    """``"ra"`` -> ReplayAlignment(config); ``"jtr+ra"`` -> a CompositeMethod of both (validated by parse_method).

    ``config``: the run's method section, which the methods read their knobs from (default: the defaults).
    """
    methods = [METHODS[name](config) for name in parse_method(text)]
    return methods[0] if len(methods) == 1 else CompositeMethod(methods)


def acting_knobs(config: ExperimentConfig) -> list[str]:
    """The method fields (bare names) that change training in ``config``'s run, in the methods' knob order."""
    knobs: dict[str, tuple[str, object] | None] = {}
    for name in config.methods:
        for knob in METHODS[name].knobs:
            knobs.setdefault(knob, METHODS[name].knob_conditions.get(knob))
    return [knob for knob, condition in knobs.items()
            if condition is None or getattr(config.method, condition[0]) == condition[1]]


def name_knobs(methods: tuple[str, ...]) -> list[str]:
    """The knobs that name a run of ``methods`` outside a sweep, in order (the seed is added by the namer)."""
    return list(dict.fromkeys(knob for name in methods for knob in METHODS[name].name_knobs))


def knob_condition(knob: str) -> dict[str, object]:
    """``{"method.replay_mode": "fixed"}`` for a knob that acts only under another field's value, else {}."""
    for method in METHODS.values():
        if knob in method.knob_conditions:
            field, value = method.knob_conditions[knob]
            return {f"method.{field}": value}
    return {}


__all__ = ["METHODS", "Method", "acting_knobs", "build_method", "knob_condition", "name_knobs"]
