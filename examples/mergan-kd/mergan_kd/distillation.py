"""KD: knowledge distillation from the previous generator at the critic's features (after Lifelong GAN).

Lifelong GAN (Zhai et al., ICCV 2019) keeps a generator from forgetting by distillation: on the same
inputs, the new generator's outputs are pulled toward the previous generator's. Here the inputs are the
earlier classes with shared noise z, as MeRGAN-RA draws them, and the comparison is made in a feature
space rather than in pixels: the features a frozen copy of the critic (as it was at the end of the
previous task) computes just before its class head. Every generator step of task t > 1 adds

    lambda_KD * mean over replayed samples and features of (phi(G_t(z, c)) - phi(G_{t-1}(z, c)))^2

with phi the previous critic's features, c every earlier class (the authors' per-class count, from the
task context), and the same z fed to both generators. RA asks for the same pixels; KD asks only that the
previous critic sees the same thing, which leaves the generator freer where the critic does not look.

The whole method is this class: its name, summary, what it combines with and its one knob, declared
here, are all the platform needs (mergan/methods/base.py says what each hook may do).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mergan.methods.base import PreviousGeneratorMethod, frozen_copy
from mergan.methods.context import TaskContext, Training
from mergan.settings import NON_NEGATIVE, Knob

LAMBDA_KD = Knob("lambda_kd", 1.0, "weight of the distillation loss at the previous critic's features",
                 NON_NEGATIVE)


def class_head_features(critic: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """What ``critic`` computes from ``images`` just before its class head (``critic.classify``), whatever
    the architecture: the input the head receives, caught by a forward pre-hook."""
    caught: list[torch.Tensor] = []
    handle = critic.classify.register_forward_pre_hook(lambda module, inputs: caught.append(inputs[0]))
    try:
        critic(images)
    finally:
        handle.remove()
    return caught[0]


class FeatureDistillation(PreviousGeneratorMethod):
    name = "kd"
    summary = ("knowledge distillation (Lifelong GAN): G(z, c) matches G_{t-1}(z, c) in the previous critic's "
               "features, earlier classes c")
    changes = "the generator's distillation from its previous copy"
    knobs = (LAMBDA_KD,)
    name_knobs = ("lambda_kd",)

    def __init__(self, config=None):
        super().__init__(config)
        self.previous_critic: nn.Module | None = None

    def before_task(self, training: Training, task: TaskContext) -> None:
        super().before_task(training, task)  # the frozen G_{t-1}
        self.previous_critic = None if task.first else frozen_copy(training.critic)

    def generator_terms(self, training: Training, task: TaskContext) -> dict[str, torch.Tensor]:
        if self.previous_generator is None:
            return {}
        labels = task.replay_labels
        z = torch.randn(labels.shape[0], training.config.model.z_dim, device=training.device)
        with torch.no_grad():
            target = class_head_features(self.previous_critic, self.previous_generator(z, labels))
        current = class_head_features(self.previous_critic, training.generator(z, labels))
        return {"loss_kd": self.config.lambda_kd * F.mse_loss(current, target)}

    def state_dict(self) -> dict:
        return {**super().state_dict(),
                "previous_critic": self.previous_critic.state_dict() if self.previous_critic else None}

    def load_state_dict(self, state: dict, training: Training) -> None:
        super().load_state_dict(state, training)
        if state.get("previous_critic") is not None:
            self.previous_critic = frozen_copy(training.critic)
            self.previous_critic.load_state_dict(state["previous_critic"])
