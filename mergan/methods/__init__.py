"""The six methods, each a small class on the trainer's hooks, selected by ``method.method``."""

from __future__ import annotations

from mergan.config import parse_method
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


def build_method(text: str) -> Method:
    """``"ra"`` -> ReplayAlignment(); ``"jtr+ra"`` -> a CompositeMethod of both (validated by parse_method)."""
    methods = [METHODS[name]() for name in parse_method(text)]
    return methods[0] if len(methods) == 1 else CompositeMethod(methods)


__all__ = ["METHODS", "Method", "build_method"]
