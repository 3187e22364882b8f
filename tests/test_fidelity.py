"""The methods train as the authors' code (WuChenshen/MeRGAN: mergan.py, joint.py, cond_batchnorm.py) does.

Each test pins one place where an earlier version trained differently (docs/fidelity.md).
"""

import pytest
import torch
import torch.nn.functional as F

from mergan.methods.context import task_context
from mergan.presets import build_config
from mergan.trainer import Trainer
from mergan.validation import parse_tasks

TEN_TASKS = "0|1|2|3|4|5|6|7|8|9"
# The paper's nets, narrowed so that a CPU test runs in a second; the normalisation is what matters.
NETS = {
    "small": dict(preset="small", g_width=16, d_width=8),
    "dcgan32": dict(preset="dcgan32", g_width=8, d_width=8, z_dim=16),
    "resnet64": dict(preset="resnet64", g_width=4, d_width=4, z_dim=16, image_size=64),
}


@pytest.fixture(scope="module")
def mnist64():
    from mergan.config import DataConfig
    from mergan.data import load_dataset

    return load_dataset(DataConfig(dataset="mnist5k"), image_size=64)


def trainer_for(tiny_config, mnist5k, mnist64, net, **overrides):
    values = {**NETS[net], "critic_steps": 1, "iterations_per_task": 3, **overrides}
    dataset = mnist64 if net == "resnet64" else mnist5k
    return Trainer(tiny_config(**values), dataset=dataset)


# -- 1. batch norm statistics: per class, from the call's own batch, never running statistics --------
@pytest.mark.parametrize("net", list(NETS))
def test_ra_term_is_exactly_zero_when_the_new_generator_equals_the_old(tiny_config, mnist5k, mnist64, net):
    """Nine earlier classes in one forward: the class-grouped statistics make it equal to nine calls."""
    trainer = trainer_for(tiny_config, mnist5k, mnist64, net, method="ra", tasks=TEN_TASKS, batch_size=64)
    trainer.run_task(0)  # weights (and, formerly, running statistics) that are not the initial ones
    task = trainer.task_context(9)
    trainer.method.before_task(trainer, task)  # G_{t-1} := G_t
    trainer.generator.train()
    assert trainer.method.generator_terms(trainer, task)["loss_ra"].item() == 0.0


@pytest.mark.parametrize("net", ["dcgan32", "resnet64"])
def test_a_class_samples_do_not_depend_on_the_other_classes_in_the_batch(tiny_config, mnist5k, mnist64, net):
    trainer = trainer_for(tiny_config, mnist5k, mnist64, net)
    trainer.run_task(0)
    generator = trainer.generator.train()
    z = torch.randn(24, trainer.config.model.z_dim)
    alone = generator(z[:8], torch.zeros(8, dtype=torch.long))
    mixed = generator(z, torch.tensor([0] * 8 + [3] * 8 + [7] * 8))
    torch.testing.assert_close(mixed[:8], alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("net", ["dcgan32", "resnet64"])
def test_evaluation_samples_use_single_class_batch_statistics_like_training(tiny_config, mnist5k, mnist64, net):
    """The sampler normalises each class in batch-sized groups, as the authors' 64-image evaluation calls."""
    trainer = trainer_for(tiny_config, mnist5k, mnist64, net, batch_size=16)
    trainer.run_task(0)
    z = torch.randn(40, trainer.config.model.z_dim)
    labels = torch.tensor([0] * 20 + [1] * 20)
    sampled = trainer.sampler().sample(labels, z)
    trainer.generator.train()
    with torch.no_grad():  # what one training-mode call of one class and 16 samples gives
        for rows in (slice(0, 16), slice(16, 20), slice(20, 36), slice(36, 40)):
            torch.testing.assert_close(sampled[rows], trainer.generator(z[rows], labels[rows]),
                                       rtol=1e-5, atol=1e-5)


def test_sample_grids_show_images_with_the_evaluations_statistics(tiny_config, mnist5k, mnist64):
    from mergan.evaluation.grids import class_grid
    from mergan.evaluation.seeding import derive_seed, fixed_normal

    trainer = trainer_for(tiny_config, mnist5k, mnist64, "dcgan32", batch_size=16)
    trainer.run_task(0)
    sampler = trainer.sampler()
    grid = class_grid(sampler, [0, 1], per_class=3, seed=0, device="cpu")
    z = fixed_normal(16, trainer.config.model.z_dim, derive_seed(0, "grid-z"))
    for row, cls in enumerate((0, 1)):
        full_group = sampler.sample(torch.full((16,), cls), z)  # one batch-sized group, as evaluated
        torch.testing.assert_close(grid[3 * row: 3 * row + 3], full_group[:3].clamp(-1, 1), rtol=1e-5, atol=1e-5)


def test_generators_keep_no_running_statistics(tiny_config, mnist5k, mnist64):
    for net in ("dcgan32", "resnet64"):
        generator = trainer_for(tiny_config, mnist5k, mnist64, net).generator
        assert not [name for name, _ in generator.named_buffers() if "running" in name]


# -- 2. replayed samples per earlier class: 64 // class_count (digits), 64 (LSUN) --------------------
def replay_per_class(dataset, tasks, index, **overrides):
    """What the task context of task ``index`` (0-based) says each earlier class gets per step."""
    config = build_config(overrides={"dataset": dataset, "tasks": tasks, "batch_size": 64, **overrides},
                          validate=False)
    return task_context(parse_tasks(tasks), index, config, "cpu").replay_per_class


@pytest.mark.parametrize("task,expected", [(1, 64), (2, 32), (3, 21), (4, 16), (9, 7)])
def test_digits_replay_64_over_the_number_of_earlier_classes(task, expected):
    assert replay_per_class("mnist", TEN_TASKS, task) == expected


def test_digits_with_two_classes_per_task_divide_by_earlier_classes_not_tasks():
    assert [replay_per_class("mnist", "0,1|2,3|4,5", t) for t in (1, 2)] == [32, 16]


@pytest.mark.parametrize("task", [1, 2, 3])
def test_lsun_replays_a_whole_batch_per_earlier_class(task):
    assert replay_per_class("lsun", "0|1|2|3", task) == 64


@pytest.mark.parametrize("method,replay_mode", [("ra", "fresh"), ("jtr", "fresh"), ("jtr", "fixed")])
@pytest.mark.parametrize("task,expected", [(1, 64), (2, 32), (4, 16)])
def test_each_method_draws_the_authors_count_per_earlier_class(tiny_config, mnist5k, mnist64, method, replay_mode,
                                                               task, expected):
    trainer = trainer_for(tiny_config, mnist5k, mnist64, "small", method=method, replay_mode=replay_mode,
                          replay_size_per_class=8, tasks="0|1|2|3|4", batch_size=64)
    context = trainer.task_context(task)
    trainer.method.before_task(trainer, context)
    if method == "ra":
        labels = trainer.method.labels
    else:
        labels, _, images = trainer.method.replay_pairs(trainer, context)
        assert images.shape[0] == labels.shape[0]
    assert labels.tolist() == [c for c in range(task) for _ in range(expected)]


def test_ra_scale_follows_the_authors_reduction():
    """Digits: summed over earlier classes and divided by their number; LSUN (no reduced batch): not divided."""
    from mergan.methods.replay_alignment import replay_alignment_loss

    current, previous = torch.ones(6, 1, 2, 2), torch.zeros(6, 1, 2, 2)
    assert replay_alignment_loss(current, previous, 3).item() == pytest.approx(0.5 * 24 / 3)
    assert replay_alignment_loss(current, previous, 3, divide_by_classes=False).item() == pytest.approx(12.0)


# -- 3. JTR: one Wasserstein + class term per earlier class, each weighing as much as the current one --
def _jtr_at_task_three(tiny_config, mnist5k, mnist64, **overrides):
    trainer = trainer_for(tiny_config, mnist5k, mnist64, "dcgan32", method="jtr", tasks="0|1|2", batch_size=16,
                          **overrides)
    trainer.run_task(0)
    trainer.run_task(1)  # G_t now differs from G_{t-1}
    task = trainer.task_context(2)
    trainer.method.before_task(trainer, task)
    with torch.no_grad():
        for p in trainer.generator.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return trainer, task


def _authors_jtr_terms(trainer, z, per_class):
    """mergan.py's JTR_loss_fn, one separate call per earlier class, summed."""
    critic_total, generator_total = 0.0, 0.0
    for c in (0, 1):
        labels = torch.full((per_class,), c)
        zc = z[c * per_class:(c + 1) * per_class]
        old = trainer.method.previous_generator(zc, labels)
        new = trainer.generator(zc, labels)
        old_score, old_logits = trainer.critic(old)
        new_score, new_logits = trainer.critic(new)
        critic_total += new_score.mean() - old_score.mean() + F.cross_entropy(old_logits, labels)
        generator_total += -new_score.mean() + F.cross_entropy(new_logits, labels)
    return critic_total, generator_total


def test_jtr_critic_and_generator_terms_are_the_authors_per_class_sums(tiny_config, mnist5k, mnist64):
    trainer, task = _jtr_at_task_three(tiny_config, mnist5k, mnist64)
    per_class = 16 // 2
    torch.manual_seed(11)
    critic_term = trainer.method.critic_terms(trainer, task)["loss_jtr_d"]
    torch.manual_seed(11)
    generator_term = trainer.method.generator_terms(trainer, task)["loss_jtr_g"]
    torch.manual_seed(11)
    z = torch.randn(2 * per_class, trainer.config.model.z_dim)
    expected_critic, expected_generator = _authors_jtr_terms(trainer, z, per_class)
    torch.testing.assert_close(critic_term, expected_critic, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(generator_term, expected_generator, rtol=1e-4, atol=1e-5)


def test_jtr_per_class_terms_weigh_every_earlier_class_like_the_current_one():
    """A known input: class means 1 and 5 (4 and 12 samples) sum to 6, whatever the counts' ratio."""
    from mergan.methods.joint_retraining import per_class_sum

    assert per_class_sum(torch.tensor([1.0] * 4 + [5.0] * 4), 2).item() == 6.0
    assert per_class_sum(torch.arange(6.0), 3).item() == pytest.approx(0.5 + 2.5 + 4.5)


def test_jtr_real_batches_hold_only_the_current_task_and_replay_nothing_into_them(tiny_config, mnist5k, mnist64):
    trainer, task = _jtr_at_task_three(tiny_config, mnist5k, mnist64)
    assert trainer.method.replay(trainer, task) is None and trainer.method.replay_labels(trainer, task) is None
    _, labels = trainer.real_batches(trainer.method.real_classes(trainer, task)).next()
    assert set(labels.tolist()) == {2}


def test_jtr_concatenated_form_stays_available_as_an_option(tiny_config, mnist5k, mnist64):
    trainer, task = _jtr_at_task_three(tiny_config, mnist5k, mnist64, jtr_loss="concatenated")
    images, labels = trainer.method.replay(trainer, task)
    assert labels.tolist() == [0] * 8 + [1] * 8 and images.shape[0] == 16
    assert trainer.method.critic_terms(trainer, task) == {}


# -- 4. JT: one model on every class from the start, one optimizer for the whole run ----------------
def test_jt_trains_every_class_of_the_stream_from_the_first_task(tiny_config, mnist5k):
    trainer = Trainer(tiny_config(method="jt", tasks="0|1|2"), dataset=mnist5k)
    first = trainer.task_context(0)
    assert trainer.method.real_classes(trainer, first) == [0, 1, 2]
    _, labels = trainer.real_batches(trainer.method.real_classes(trainer, first)).next()
    assert len(set(labels.tolist())) > 1


def test_jt_keeps_its_optimizer_state_across_tasks_and_resumes_it(tiny_config, mnist5k, tmp_path):
    trainer = Trainer(tiny_config(method="jt", tasks="0|1|2", out_dir=str(tmp_path / "jt")), dataset=mnist5k)
    trainer.fit()
    optimizer_g, _ = trainer.optimizers
    steps = {float(state["step"]) for state in optimizer_g.state.values()}
    assert steps == {3.0 * 3}  # three tasks of three iterations, never reset
    resumed = Trainer.from_checkpoint(tmp_path / "jt" / "task_2", dataset=mnist5k)
    assert {float(s["step"]) for s in resumed.optimizers[0].state.values()} == {6.0}


def test_jt_stream_keeps_the_streamed_reference_for_intransigence(tiny_config, mnist5k):
    trainer = Trainer(tiny_config(method="jt-stream", tasks="0|1|2"), dataset=mnist5k)
    assert [trainer.method.real_classes(trainer, trainer.task_context(t)) for t in range(3)] == [[0], [0, 1], [0, 1, 2]]
    assert trainer.method.resets_optimizers


# -- 6. DGR is also judged without its solver: class coverage of its unconditional samples ----------
def test_dgr_reports_class_coverage_by_the_evaluators_labels(tiny_config, mnist5k, tmp_path):
    trainer = Trainer(tiny_config(method="dgr", eval_when="final", evaluator_epochs=1, eval_samples_per_class=16,
                                  out_dir=str(tmp_path / "dgr")), dataset=mnist5k)
    result = trainer.fit()[-1]
    shares = [result.metrics[f"coverage_class_{c}"] for c in (0, 1)]
    assert all(0.0 <= s <= 1.0 for s in shares)
    assert sum(shares) + result.metrics["coverage_unseen"] == pytest.approx(1.0)
    expected = sum(min(1.0, 2 * s) for s in shares) / 2
    assert result.metrics["coverage_acc"] == pytest.approx(expected)


# -- 5. EWC at the paper's lambda_EWC = 1e9 still learns the next task -------------------------------
@pytest.mark.slow
def test_paper_preset_ewc_still_learns_task_two(tmp_path, monkeypatch):
    """The paper's nets and lambda: EWC's generator moves at least half as far on task 2 as without EWC."""
    monkeypatch.setenv("MERGAN_CACHE_DIR", str(tmp_path / "cache"))
    config = build_config(overrides=dict(preset="paper-mnist", dataset="mnist5k", tasks="0|1", method="ewc",
                                         device="cpu", iterations_per_task=20, critic_steps=1,
                                         ewc_fisher_samples=128, eval_when="none", out_dir=str(tmp_path / "ewc")))
    assert config.method.lambda_ewc == 1e9
    trainer = Trainer(config)
    trainer.run_task(0)
    start = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    critic, rng = {k: v.clone() for k, v in trainer.critic.state_dict().items()}, torch.get_rng_state()
    fisher, anchor = trainer.method.fisher, trainer.method.anchor  # what task 1 left (task 2's after_task adds)

    def distance_moved_on_task_two(penalty: bool) -> float:
        trainer.generator.load_state_dict(start)
        trainer.critic.load_state_dict(critic)
        torch.set_rng_state(rng)
        trainer.method.fisher, trainer.method.anchor = (fisher if penalty else None), anchor  # None: SFT
        trainer.run_task(1)
        moved = [(p.detach() - start[k]).flatten() for k, p in trainer.generator.named_parameters()]
        return torch.cat(moved).norm().item()

    with_ewc = distance_moved_on_task_two(penalty=True)
    without = distance_moved_on_task_two(penalty=False)
    assert without > 0 and with_ewc > 0.5 * without
    trainer.method.fisher, trainer.method.anchor = fisher, anchor
    assert trainer.method.generator_terms(trainer, trainer.task_context(1))["loss_ewc"].item() > 0  # still holds


# -- 7. evaluation groups of exactly the training batch size; JT's mixed-batch statistics ----------------
class GroupSpy(torch.nn.Module):
    """A generator that records the size of every batch-norm group it is called with (and the classes in it)."""

    z_dim = 4

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.num_classes = num_classes
        self.groups: list[list[int]] = []  # the labels of each group, call by call

    def forward(self, z, labels, groups):
        for g in range(groups.count):
            members = labels[groups.index == g].tolist()
            if members:
                self.groups.append(members)
        return torch.zeros(len(labels), 1, 2, 2)


class ChanceEvaluator:
    device = torch.device("cpu")
    num_classes = 10

    def logits_and_features(self, images):
        return torch.zeros(len(images), self.num_classes), torch.zeros(len(images), 3)


@pytest.mark.parametrize("per_class", [6400, 100])
def test_every_evaluation_group_holds_exactly_the_training_batch_size(per_class):
    """As the authors' 100 calls of 64 images per class: no group of 52 or 16 from 500-image forwards."""
    from mergan.evaluation.accuracy import generated_class_accuracy
    from mergan.methods.base import GeneratorSampler

    spy = GroupSpy()
    scored = []
    generated_class_accuracy(GeneratorSampler(spy, 4, 64), ChanceEvaluator(), [0, 3], per_class, seed=0,
                             device="cpu", on_batch=lambda cls, images, _: scored.append((cls, len(images))))
    assert {len(group) for group in spy.groups} == {64}
    assert all(len(set(group)) == 1 for group in spy.groups)  # one class per group
    assert {cls: sum(n for c, n in scored if c == cls) for cls in (0, 3)} == {0: per_class, 3: per_class}


def test_dgr_coverage_draws_whole_groups_of_the_training_batch_size():
    from mergan.evaluation.accuracy import class_coverage
    from mergan.models.norm import groups_of_size

    spy = GroupSpy(num_classes=1)

    def unconditional(z):
        labels = torch.zeros(len(z), dtype=torch.long)
        return spy(z, labels, groups_of_size(labels, 1, 64))

    class Counting(ChanceEvaluator):
        seen = 0

        def logits_and_features(self, images):
            Counting.seen += len(images)
            return super().logits_and_features(images)

    class_coverage(unconditional, 4, Counting(), [0, 1, 2], 500, seed=0, device="cpu", group_size=64)
    assert {len(group) for group in spy.groups} == {64}
    assert Counting.seen == 1500


def test_jt_evaluation_draws_mixed_groups_with_the_classes_in_turns():
    """``joint.py`` evaluates on batches whose labels are [0, ..., 9] * 10: every class in every batch."""
    from mergan.evaluation.accuracy import generated_class_accuracy
    from mergan.methods.base import MixedClassSampler

    spy = GroupSpy()
    counts: dict[int, int] = {}
    sampler = MixedClassSampler(spy, 4, 64)

    def count(cls, images, _):
        counts[cls] = counts.get(cls, 0) + len(images)

    generated_class_accuracy(sampler, ChanceEvaluator(), list(range(10)), 100, seed=0, device="cpu", on_batch=count)
    assert {len(group) for group in spy.groups} == {64}
    for group in spy.groups:  # ten classes in turns: 7 or 6 of each in 64
        assert sorted(set(group)) == list(range(10))
        assert max(group.count(c) for c in range(10)) - min(group.count(c) for c in range(10)) <= 1
    assert counts == dict.fromkeys(range(10), 100)


def test_jt_draws_each_class_from_its_own_fixed_z_like_the_other_methods():
    from mergan.evaluation.accuracy import generated_batches, mixed_class_batches

    class Echo:  # an "image" is its z, so the z each class got can be read back
        z_dim, group_size, mixes_classes = 4, 8, True

        def sample(self, labels, z):
            return z.view(-1, 1, 2, 2).clamp(-1, 1)

    mixed = {c: torch.cat([im for cls, im in mixed_class_batches(Echo(), [2, 5], 20, 7, "cpu") if cls == c])
             for c in (2, 5)}
    for cls in (2, 5):
        alone = torch.cat(list(generated_batches(Echo(), cls, 20, 7, "cpu")))
        torch.testing.assert_close(mixed[cls], alone)


@pytest.mark.parametrize("method", ["jt", "jt-stream"])
def test_jt_normalises_each_mixed_training_batch_as_one(tiny_config, mnist5k, mnist64, method, monkeypatch):
    """``joint.py``'s generator calls hold 64 samples of random classes, normalised together."""
    from mergan.models import norm

    seen = []
    plain = norm.group_batch_norm

    def spy(x, groups, eps=norm.EPS):
        seen.append(torch.bincount(groups.index, minlength=groups.count).tolist())
        return plain(x, groups, eps)

    monkeypatch.setattr(norm, "group_batch_norm", spy)
    trainer = trainer_for(tiny_config, mnist5k, mnist64, "dcgan32", method=method, tasks="0,1,2|3", batch_size=16)
    trainer.run_task(1 if method == "jt-stream" else 0)  # batches of several classes
    assert seen and all(sorted(counts, reverse=True)[:1] == [16] and sum(counts) == 16 for counts in seen)


def test_sequential_methods_keep_one_class_per_batch_norm_group(tiny_config, mnist5k, mnist64, monkeypatch):
    from mergan.models import norm

    seen = []
    plain = norm.group_batch_norm

    def spy(x, groups, eps=norm.EPS):
        seen.append(int((torch.bincount(groups.index, minlength=groups.count) > 0).sum()))
        return plain(x, groups, eps)

    monkeypatch.setattr(norm, "group_batch_norm", spy)
    trainer = trainer_for(tiny_config, mnist5k, mnist64, "dcgan32", method="sft", tasks="0,1,2|3", batch_size=16)
    trainer.run_task(0)
    assert max(seen) > 1  # three classes in a batch: three groups


def test_jt_samples_are_normalised_over_mixed_groups_of_the_batch_size(tiny_config, mnist5k, mnist64):
    trainer = trainer_for(tiny_config, mnist5k, mnist64, "dcgan32", method="jt", tasks="0|1|2", batch_size=8)
    trainer.run_task(0)
    sampler = trainer.sampler()
    labels = torch.tensor([0, 1, 2] * 8)
    z = torch.randn(24, trainer.config.model.z_dim)
    sampled = sampler.sample(labels, z)
    trainer.generator.train()
    with torch.no_grad():  # a training-mode call on 8 samples of mixed classes, as one JT batch
        for rows in (slice(0, 8), slice(8, 16), slice(16, 24)):
            whole = trainer.method.norm_groups(trainer, labels[rows])
            torch.testing.assert_close(sampled[rows], trainer.generator(z[rows], labels[rows], whole),
                                       rtol=1e-5, atol=1e-5)
    per_class = trainer.generator(z[:8], labels[:8])  # the per-class statistics would differ
    assert not torch.allclose(sampled[:8], per_class, atol=1e-4)
