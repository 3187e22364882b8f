"""Each continual-learning mechanism does what it claims, not just that it runs."""

import pytest
import torch

from mergan.methods import REGISTRY, build_method
from mergan.methods.base import CompositeMethod, frozen_copy
from mergan.methods.ewc import ElasticWeightConsolidation, ewc_penalty
from mergan.methods.replay_alignment import replay_alignment_loss
from mergan.presets import build_config
from mergan.settings import ConfigError
from mergan.trainer import Trainer
from tests.support.methods import term_before_and_after_one_step


def trainer_at_task(tiny_config, mnist5k, method, t, **overrides):
    """A trainer whose tasks 1..t are done (t 0-based for the next task), ready to start task t; and task t."""
    trainer = Trainer(tiny_config(method=method, tasks="0|1|2|3", **overrides), dataset=mnist5k)
    for done in range(t):
        trainer.run_task(done)
    task = trainer.task_context(t)
    trainer.method.before_task(trainer, task)
    return trainer, task


# -- MeRGAN-RA ------------------------------------------------------------------------------
def test_replay_alignment_loss_is_half_the_summed_square_over_earlier_classes():
    current, previous = torch.ones(4, 1, 2, 2), torch.zeros(4, 1, 2, 2)
    assert replay_alignment_loss(current, previous, num_earlier_classes=2).item() == pytest.approx(0.5 * 16 / 2)
    assert replay_alignment_loss(current, previous, 2, divide_by_classes=False).item() == pytest.approx(8.0)


def test_ra_term_is_zero_when_the_generators_are_equal(tiny_config, mnist5k):
    trainer, task = trainer_at_task(tiny_config, mnist5k, "ra", 2)
    terms = trainer.method.generator_terms(trainer, task)
    assert terms["loss_ra"].item() == pytest.approx(0.0, abs=1e-12)


def test_ra_gradient_pulls_the_new_generator_toward_the_old(tiny_config, mnist5k):
    trainer, task = trainer_at_task(tiny_config, mnist5k, "ra", 1, lambda_ra=1.0)
    before, after = term_before_and_after_one_step(trainer, task, "loss_ra", lr=1e-4)
    assert before > 0 and after < before


def test_ra_replays_only_earlier_classes_with_the_authors_batch(tiny_config, mnist5k):
    trainer, task = trainer_at_task(tiny_config, mnist5k, "ra", 2, batch_size=12)
    assert trainer.method.labels.tolist() == [0] * 6 + [1] * 6  # 12 // 2 per earlier class
    trainer.config.method.ra_batch_size = 10
    assert trainer.method.alignment_labels(task).tolist() == [0] * 5 + [1] * 5


# -- MeRGAN-JTR -----------------------------------------------------------------------------
def test_jtr_fresh_replay_holds_earlier_classes_in_the_authors_shares(tiny_config, mnist5k):
    trainer, task = trainer_at_task(tiny_config, mnist5k, "jtr", 2, batch_size=12)
    labels, z, images = trainer.method.replay_pairs(trainer, task)
    assert labels.tolist() == [0] * 6 + [1] * 6  # 12 // 2 per earlier class, none of the current
    assert images.shape == (12, 1, 32, 32) and z.shape == (12, trainer.config.model.z_dim)
    torch.manual_seed(0)
    _, real_labels = trainer.real_batches(trainer.method.real_classes(trainer, task)).next()
    assert set(real_labels.tolist()) == {2}


def test_jtr_replayed_images_are_the_frozen_generators(tiny_config, mnist5k):
    trainer, task = trainer_at_task(tiny_config, mnist5k, "jtr", 1)
    torch.manual_seed(3)
    labels, z, images = trainer.method.replay_pairs(trainer, task)
    torch.manual_seed(3)
    assert torch.equal(z, torch.randn(labels.shape[0], trainer.config.model.z_dim))
    assert torch.allclose(images, trainer.method.previous_generator(z, labels))


def test_jtr_fixed_replay_set_is_drawn_once_per_task_and_sampled_from(tiny_config, mnist5k):
    trainer, task = trainer_at_task(tiny_config, mnist5k, "jtr", 2, replay_mode="fixed", replay_size_per_class=5,
                                    replay_share=0.5, batch_size=8)
    bank_z, bank = trainer.method.replay_set
    assert bank.shape == (10, 1, 32, 32) and bank_z.shape[0] == 10  # 5 per earlier class, classes 0 and 1
    labels, z, images = trainer.method.replay_pairs(trainer, task)
    assert labels.tolist() == [0] * 4 + [1] * 4  # share 0.5 of the step: as many replayed as real
    for image, noise, label in zip(images, z, labels):
        rows = [k for k in range(5 * label, 5 * label + 5) if torch.equal(image, bank[k])]
        assert rows and torch.equal(noise, bank_z[rows[0]])  # the image comes with its own noise


def test_jtr_concatenated_generator_step_learns_replayed_classes_as_their_classes(tiny_config, mnist5k):
    trainer, task = trainer_at_task(tiny_config, mnist5k, "jtr", 1, batch_size=8, jtr_loss="concatenated")
    assert trainer.method.replay_labels(trainer, task).tolist() == [0] * 8


# -- EWC --------------------------------------------------------------------------------------
def test_ewc_fisher_is_positive_and_the_penalty_zero_at_the_anchor_growing_with_distance(tiny_config, mnist5k):
    trainer, task = trainer_at_task(tiny_config, mnist5k, "ewc", 1)
    method: ElasticWeightConsolidation = trainer.method
    fisher = torch.cat([f.flatten() for f in method.fisher.values()])
    assert (fisher >= 0).all() and fisher.sum() > 0
    assert method.generator_terms(trainer, task)["loss_ewc"].item() == pytest.approx(0.0, abs=1e-12)
    direction = {k: torch.randn_like(v) for k, v in method.anchor.items()}
    penalties = [ewc_penalty({k: method.anchor[k] + s * direction[k] for k in direction}, method.anchor,
                             method.fisher).item() for s in (0.01, 0.1, 1.0)]
    assert 0 < penalties[0] < penalties[1] < penalties[2]
    assert penalties[2] == pytest.approx(100 * penalties[1], rel=1e-4)  # quadratic


def test_ewc_fisher_accumulates_across_tasks(tiny_config, mnist5k):
    trainer, _ = trainer_at_task(tiny_config, mnist5k, "ewc", 1)
    first = {k: v.clone() for k, v in trainer.method.fisher.items()}
    trainer.run_task(1)
    for k, v in trainer.method.fisher.items():
        assert (v >= first[k] - 1e-12).all()


# -- ER: experience replay of real images -----------------------------------------------------------
def test_er_keeps_replay_size_per_class_random_real_images_of_each_learned_class(tiny_config, mnist5k):
    trainer, _ = trainer_at_task(tiny_config, mnist5k, "er", 2, replay_size_per_class=5)
    labels = trainer.train_set.labels
    assert sorted(trainer.method.buffer) == [0, 1]
    for cls, block in trainer.method.buffer.items():
        assert block.numel() == 5 == block.unique().numel() and (labels[block] == cls).all()
    kept = trainer.method.buffer[0].clone()
    trainer.run_task(2)  # a later task never goes back to an earlier class's data: its images stay those kept
    assert torch.equal(trainer.method.buffer[0], kept) and sorted(trainer.method.buffer) == [0, 1, 2]
    everything, _ = trainer_at_task(tiny_config, mnist5k, "er", 1, replay_size_per_class=10**6)
    assert everything.method.buffer[0].numel() == int((labels == 0).sum())  # a class with fewer: all of it


def test_er_replays_buffer_images_of_each_earlier_class_in_the_authors_counts(tiny_config, mnist5k):
    trainer, task = trainer_at_task(tiny_config, mnist5k, "er", 2, replay_size_per_class=3, batch_size=12)
    assert task.replay_labels.tolist() == [0] * 6 + [1] * 6  # 12 // 2 per earlier class
    torch.manual_seed(4)
    images = trainer.method.replayed_images(trainer)
    kept = {c: trainer.train_set.get(block) for c, block in trainer.method.buffer.items()}
    for image, label in zip(images, task.replay_labels.tolist()):
        assert any(torch.equal(image, other) for other in kept[label])  # a kept image of its own class
    torch.manual_seed(5)
    assert not torch.equal(trainer.method.replayed_images(trainer), images)  # drawn again every step


def test_er_terms_are_a_gan_game_per_earlier_class_with_its_real_images(tiny_config, mnist5k):
    """Per earlier class c: mean D(G(z, c)) - mean D(real c) + CE(aux(real c), c) for the critic, summed over c."""
    import torch.nn.functional as F

    trainer, task = trainer_at_task(tiny_config, mnist5k, "er", 2, replay_size_per_class=4, batch_size=8)
    torch.manual_seed(7)
    critic_term = trainer.method.critic_terms(trainer, task)["loss_er_d"]
    torch.manual_seed(7)
    real = trainer.method.replayed_images(trainer)
    z = torch.randn(8, trainer.config.model.z_dim)
    expected = 0.0
    for c in (0, 1):
        rows = slice(4 * c, 4 * c + 4)
        labels = torch.full((4,), c)
        fake_score, _ = trainer.critic(trainer.generator(z, task.replay_labels)[rows])
        real_score, real_logits = trainer.critic(real[rows])
        expected += fake_score.mean() - real_score.mean() + F.cross_entropy(real_logits, labels)
    torch.testing.assert_close(critic_term, expected, rtol=1e-4, atol=1e-5)
    assert set(trainer.method.generator_terms(trainer, task)) == {"loss_er_g"}


def test_er_changes_replay_as_jtr_does_so_they_do_not_combine():
    with pytest.raises(ConfigError, match="jtr and er both change replay"):
        REGISTRY.parse("er+jtr")
    assert REGISTRY.parse("ra+er") == ("ra", "er")


# -- L2: EWC's penalty with the Fisher replaced by 1 ------------------------------------------------
def test_l2_is_the_mean_squared_distance_to_the_last_tasks_weights(tiny_config, mnist5k):
    trainer, task = trainer_at_task(tiny_config, mnist5k, "l2", 2, lambda_l2=4.0)
    method = trainer.method
    assert method.generator_terms(trainer, task)["loss_l2"].item() == 0.0  # at the anchor
    assert all((f == 1).all() for f in method.fisher.values())  # 1, not a count of tasks
    with torch.no_grad():
        for p in trainer.generator.parameters():
            p.add_(0.01 * torch.randn_like(p))
    moved = torch.cat([(p - method.anchor[k]).flatten() for k, p in trainer.generator.named_parameters()])
    expected = 4.0 * 0.5 * moved.pow(2).mean()
    torch.testing.assert_close(method.generator_terms(trainer, task)["loss_l2"], expected)


def test_l2_and_ewc_both_penalise_the_weights_so_they_do_not_combine():
    with pytest.raises(ConfigError, match="ewc and l2 both change the generator's weight penalty"):
        REGISTRY.parse("l2+ewc")


# -- DGR --------------------------------------------------------------------------------------
def test_dgr_is_unconditional_and_its_replay_is_labelled_by_the_previous_solver(tiny_config, mnist5k):
    trainer, task = trainer_at_task(tiny_config, mnist5k, "dgr", 1)
    assert trainer.generator.num_classes == 1 and trainer.critic.classify.out_features == 1
    method = trainer.method
    assert method.previous_solver is not None
    torch.manual_seed(5)
    images = method._draw_previous(trainer, 32)
    previous_labels = method.previous_solver(images).argmax(1)
    # The solver being trained on this task has moved on: it now calls every image one other class.
    other_class = int(previous_labels[0] + 1) % mnist5k.num_classes
    with torch.no_grad():
        method.solver.net[-1].weight.zero_()
        method.solver.net[-1].bias.copy_(torch.nn.functional.one_hot(torch.tensor(other_class), mnist5k.num_classes))
    torch.manual_seed(5)
    replayed, labels = method.replay_for_solver(trainer, 32)
    assert torch.equal(replayed, images) and torch.equal(labels, previous_labels)
    # the GAN's replayed batch is unlabelled (one class)
    _, gan_labels = method.replay(trainer, task)
    assert set(gan_labels.tolist()) == {0}


def test_dgr_draws_class_c_as_samples_the_solver_labels_c(tiny_config, mnist5k):
    trainer, _ = trainer_at_task(tiny_config, mnist5k, "dgr", 1)
    sampler = trainer.sampler()
    labels = torch.tensor([0, 0, 1, 1, 1])
    z = torch.randn(5, trainer.config.model.z_dim)
    images = sampler.sample(labels, z)
    assert images.shape == (5, 1, 32, 32)
    assert torch.equal(images, sampler.sample(labels, z))  # deterministic in z


class SignGenerator(torch.nn.Module):
    """An 'unconditional generator' whose image is the sign of z[0] everywhere."""

    def forward(self, z, labels, groups=None):
        return z[:, :1, None, None].expand(-1, 1, 4, 4)


class SignSolver(torch.nn.Module):
    """Labels an image 1 when its mean is positive, else 0."""

    def forward(self, images):
        mean = images.flatten(1).mean(1)
        return torch.stack([-mean, mean], dim=1)


def test_dgr_sampler_keeps_only_samples_the_solver_labels_c():
    from mergan.methods.dgr import SolverFilteredSampler

    sampler = SolverFilteredSampler(SignGenerator(), SignSolver(), z_dim=3, group_size=4)
    labels = torch.tensor([1, 0, 1, 1, 0, 1, 1, 1])
    images = sampler.sample(labels, torch.randn(8, 3))
    means = images.flatten(1).mean(1)
    assert (means[labels == 1] > 0).all() and (means[labels == 0] < 0).all()


# -- composition and bad input ----------------------------------------------------------------
def test_methods_that_act_on_different_parts_combine():
    method = build_method("ra+jtr")
    assert isinstance(method, CompositeMethod) and method.name == "jtr+ra"
    assert REGISTRY.parse("ewc+ra") == ("ewc", "ra")


@pytest.mark.parametrize("text,reason", [("ra+dgr", "unconditional"), ("sft+ra", "baseline"),
                                         ("jt+jtr", "jointly"), ("ra+ra", "twice"), ("ra+magic", "unknown")])
def test_combinations_that_make_no_sense_are_refused(text, reason):
    with pytest.raises(ConfigError, match=reason):
        REGISTRY.parse(text)


def test_composite_adds_both_terms(tiny_config, mnist5k):
    trainer, task = trainer_at_task(tiny_config, mnist5k, "jtr+ra+ewc", 1)
    terms = trainer.method.generator_terms(trainer, task)
    assert set(terms) == {"loss_ra", "loss_ewc", "loss_jtr_g"}
    assert set(trainer.method.critic_terms(trainer, task)) == {"loss_jtr_d"}


@pytest.mark.parametrize("overrides,field", [({"lambda_ewc": -1}, "lambda_ewc"), ({"lambda_ra": -0.1}, "lambda_ra"),
                                             ({"ewc_fisher_samples": 0}, "ewc_fisher_samples"),
                                             ({"replay_mode": "fixed", "replay_size_per_class": 0},
                                              "replay_size_per_class"),
                                             ({"replay_mode": "sometimes"}, "replay_mode"),
                                             ({"dgr_solver_iterations": 0}, "dgr_solver_iterations")])
def test_bad_method_options_are_refused(overrides, field):
    with pytest.raises(ConfigError, match=field):
        build_config(overrides=overrides)


def test_frozen_copy_has_no_gradients(tiny_config, mnist5k):
    trainer = Trainer(tiny_config(), dataset=mnist5k)
    frozen = frozen_copy(trainer.generator)
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())
