"""Each preset's shapes, and the WGAN-GP and auxiliary losses on inputs whose answer is known."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mergan.losses import critic_loss, generator_loss, gradient_penalty
from mergan.models import build_models, count_parameters
from mergan.presets import PRESETS, build_config


@pytest.mark.parametrize("preset,channels,size", [("small", 1, 32), ("dcgan32", 1, 32), ("dcgan32", 3, 32),
                                                  ("resnet64", 3, 64)])
def test_each_preset_makes_images_of_its_size_and_scores_them(preset, channels, size):
    config = build_config(preset)
    generator, critic = build_models(config.model, num_classes=10, channels=channels)
    z = torch.randn(4, config.model.z_dim)
    images = generator(z, torch.tensor([0, 3, 7, 9]))
    assert images.shape == (4, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1
    score, logits = critic(images)
    assert score.shape == (4,) and logits.shape == (4, 10)


def test_paper_digit_nets_have_the_papers_widths_and_size():
    config = build_config("dcgan32")
    generator, critic = build_models(config.model, num_classes=10, channels=1)
    assert generator.project.out_features == 4 * 4 * 128  # Linear(128 -> 4x4x128)
    assert [generator.up1.out_channels, generator.up2.out_channels, generator.up3.out_channels] == [64, 32, 1]
    assert generator.up1.kernel_size == (5, 5)
    assert [m.out_channels for m in critic.features if isinstance(m, nn.Conv2d)] == [32, 64, 128]
    assert 0.4e6 < count_parameters(generator) < 0.7e6 and 0.15e6 < count_parameters(critic) < 0.35e6
    # the paper's optimisation settings
    assert (config.optim.lambda_gp, config.optim.critic_steps, config.optim.lambda_cls) == (10.0, 5, 1.0)
    assert (config.optim.lr_g, config.optim.beta1, config.optim.beta2, config.optim.batch_size) == (1e-4, 0.0, 0.9, 64)
    assert config.model.z_dim == 128


def test_conditional_batch_norm_makes_the_class_matter():
    config = build_config("dcgan32")
    generator, _ = build_models(config.model, num_classes=10, channels=1)
    with torch.no_grad():
        generator.norm0.scale[3] *= 3.0
    z = torch.randn(8, 128)
    assert not torch.allclose(generator(z, torch.full((8,), 3)), generator(z, torch.full((8,), 4)))


class LinearCritic(nn.Module):
    """D(x) = sum(w * x): its input gradient is w everywhere, so the penalty is (||w|| - 1)^2."""

    def __init__(self, weight, logits):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.logits = logits

    def forward(self, x):
        return (x * self.weight).flatten(1).sum(1), self.logits.expand(x.shape[0], -1)


def test_gradient_penalty_of_a_linear_critic_is_known():
    weight = torch.full((1, 2, 2), 0.25)  # ||w|| = 0.5
    critic = LinearCritic(weight, torch.zeros(1, 3))
    penalty = gradient_penalty(critic, torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2))
    assert penalty.item() == pytest.approx((0.5 - 1) ** 2)
    penalty.backward()  # the penalty's gradient reaches the critic's weights
    assert critic.weight.grad is not None and critic.weight.grad.abs().sum() > 0


def test_critic_and_generator_losses_on_known_inputs():
    weight = torch.ones(1, 1, 1)  # ||w|| = 1: no penalty
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    critic = LinearCritic(weight, logits)
    real = torch.full((2, 1, 1, 1), 0.5)
    fake = torch.full((2, 1, 1, 1), -0.5)
    labels = torch.tensor([0, 1])
    loss, parts = critic_loss(critic, real, labels, fake, lambda_gp=10.0, lambda_cls=1.0)
    ce = F.cross_entropy(logits.expand(2, -1), labels).item()
    assert parts["wasserstein"].item() == pytest.approx(1.0)  # D(real) - D(fake)
    assert parts["gp"].item() == pytest.approx(0.0, abs=1e-10)
    assert loss.item() == pytest.approx(-1.0 + ce)
    g_loss, g_parts = generator_loss(critic, fake, labels, lambda_cls=2.0)
    assert g_loss.item() == pytest.approx(0.5 + 2 * ce)
    assert g_parts["cls_fake"].item() == pytest.approx(ce)
    expected = (-math.log(math.exp(2) / (math.exp(2) + 2)) - math.log(1 / (math.exp(2) + 2))) / 2
    assert math.isclose(ce, expected, rel_tol=1e-6)


def test_presets_are_all_buildable():
    for name in PRESETS:
        overrides = {"data_root": "/nonexistent"} if PRESETS[name].get("dataset", "mnist5k") != "mnist5k" else {}
        config = build_config(name, overrides)
        assert config.preset == name
