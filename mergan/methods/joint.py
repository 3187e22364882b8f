"""JT, joint training: the upper bound. Task t trains on the real images of every task so far.

Not sequential in spirit: nothing is forgotten because nothing is taken away. Running it as a
stream (classes of tasks 1..t at task t) gives an upper-bound point after every task, which is
what the forgetting curves and intransigence compare against.
"""

from __future__ import annotations

from mergan.methods.base import Method


class JointTraining(Method):
    name = "jt"

    def real_classes(self, trainer, t: int) -> list[int]:
        return [c for task in trainer.tasks[: t + 1] for c in task]


class SequentialFineTuning(Method):
    """SFT, the lower bound: each task starts from the previous weights and sees only its own classes."""

    name = "sft"
