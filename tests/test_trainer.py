"""The sequential trainer: tasks, checkpoints, resume equality, divergence, config validation, CLI."""

import json

import pytest
import torch

from mergan.callbacks import Callback, DivergenceError
from mergan.checkpoint import CheckpointError, load_checkpoint
from mergan.losses import critic_loss
from mergan.presets import build_config
from mergan.settings import ConfigError
from mergan.trainer import Trainer
from mergan_cli.main import main


class Recorder(Callback):
    def __init__(self):
        self.steps, self.tasks, self.started, self.ended = [], [], 0, 0

    def on_run_start(self, trainer):
        self.started += 1

    def on_step(self, trainer, info):
        self.steps.append(info)

    def on_task_end(self, trainer, result):
        self.tasks.append(result)

    def on_run_end(self, trainer, results):
        self.ended += 1


def test_one_task_trains_only_on_its_classes_and_reports(tiny_config, mnist5k):
    config = tiny_config(tasks="3")
    recorder = Recorder()
    trainer = Trainer(config, callbacks=[recorder], dataset=mnist5k)
    batches = trainer.real_batches(trainer.method.real_classes(trainer, trainer.task_context(0)))
    for _ in range(5):
        _, labels = batches.next()
        assert set(labels.tolist()) == {3}
    results = trainer.fit()
    assert len(results) == 1 and results[0].task == 1 and results[0].classes == [3]
    assert recorder.started == recorder.ended == 1
    assert [s.step for s in recorder.steps] == [1, 2, 3]
    assert {"loss_d", "loss_g", "wasserstein", "gp", "cls_real", "cls_fake"} <= set(recorder.steps[0].losses)


def test_multi_task_stream_each_task_sees_its_own_classes(tiny_config, mnist5k):
    config = tiny_config(tasks="0,1|2|3,4", method="sft")
    trainer = Trainer(config, dataset=mnist5k)
    assert trainer.tasks == [[0, 1], [2], [3, 4]]
    for t, classes in enumerate(trainer.tasks):
        _, labels = trainer.real_batches(trainer.method.real_classes(trainer, trainer.task_context(t))).next()
        assert set(labels.tolist()) <= set(classes)
    results = trainer.fit()
    assert [r.task for r in results] == [1, 2, 3]
    assert results[-1].seen_classes == [0, 1, 2, 3, 4]


def test_joint_training_sees_every_class_so_far(tiny_config, mnist5k):
    trainer = Trainer(tiny_config(method="jt", tasks="0|1|2"), dataset=mnist5k)
    assert trainer.method.real_classes(trainer, trainer.task_context(2)) == [0, 1, 2]
    _, labels = trainer.real_batches(trainer.method.real_classes(trainer, trainer.task_context(2))).next()
    assert set(labels.tolist()) <= {0, 1, 2} and len(set(labels.tolist())) > 1


def test_checkpoint_after_each_task_loads_weights_only(tiny_config, mnist5k):
    trainer = Trainer(tiny_config(method="jtr"), dataset=mnist5k)
    results = trainer.fit()
    for t, result in enumerate(results, start=1):
        state = torch.load(f"{result.checkpoint_path}/checkpoint.pt", weights_only=True)
        assert state["task"] == t and state["tasks"] == [[0], [1]]
        assert state["config"]["method"]["method"] == "jtr"
        assert "torch" in state["rng"]
    assert state["method"]["previous_generator"] is not None  # the frozen previous generator
    assert json.loads((trainer.out_dir / "results.json").read_text())["tasks"] == [[0], [1]]


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run.deterministic)")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("method", ["sft", "ra", "jtr", "ewc", "dgr", "jtr+ra", "jt", "er", "l2"])
def test_resume_gives_the_same_result_as_an_uninterrupted_run(tiny_config, mnist5k, tmp_path, method, device):
    """On CUDA this holds because run.deterministic (default on) makes cuDNN and every algorithm deterministic."""
    full = Trainer(tiny_config(method=method, tasks="0|1|2", out_dir=str(tmp_path / "full"), device=device),
                   dataset=mnist5k)
    full.fit()
    first = Trainer(tiny_config(method=method, tasks="0|1|2", out_dir=str(tmp_path / "part"), device=device),
                    dataset=mnist5k)
    first.finish_task(0, train_seconds=first.run_task(0))
    del first  # the process "dies" after task 1
    resumed = Trainer.from_checkpoint(tmp_path / "part", dataset=mnist5k)
    assert resumed.tasks_done == 1 and resumed.device.type == device
    resumed.fit()
    for name, value in full.generator.state_dict().items():
        assert torch.equal(value, resumed.generator.state_dict()[name]), name
    for name, value in full.critic.state_dict().items():
        assert torch.equal(value, resumed.critic.state_dict()[name]), name
    assert resumed.global_step == full.global_step
    assert [r.task for r in resumed.results] == [1, 2, 3]


def test_run_seed_decides_the_weights_and_the_same_seed_repeats_them(tiny_config, mnist5k, tmp_path):
    def trained_generator(seed: int, name: str) -> dict[str, torch.Tensor]:
        trainer = Trainer(tiny_config(tasks="0", seed=seed, iterations_per_task=2, save_checkpoints=False,
                                      out_dir=str(tmp_path / name)), dataset=mnist5k)
        trainer.fit()
        return trainer.generator.state_dict()

    first, again, other = trained_generator(7, "a"), trained_generator(7, "b"), trained_generator(8, "c")
    assert all(torch.equal(value, again[name]) for name, value in first.items())
    assert not all(torch.equal(value, other[name]) for name, value in first.items())


def test_the_critic_penalises_gradients_at_real_and_fake_images_only_never_at_replayed_ones(
        tiny_config, mnist5k, monkeypatch):
    """WGAN-GP's penalty interpolates the task's real images with fakes; replay is scored as real but not
    penalised (the authors' code: the penalty's real batch is the task's own data)."""
    import mergan.iteration

    calls = []

    def spy(critic, real, real_labels, fake, *args, penalty_real=None, **kwargs):
        calls.append((real.detach().clone(), real_labels.tolist(), penalty_real))
        return critic_loss(critic, real, real_labels, fake, *args, penalty_real=penalty_real, **kwargs)

    monkeypatch.setattr(mergan.iteration, "critic_loss", spy)  # the critic step lives there
    # Concatenated JTR: the replay of class 0 joins each real batch of class 1, scored and classified as real.
    trainer = Trainer(tiny_config(method="jtr", jtr_loss="concatenated", tasks="0|1", iterations_per_task=1),
                      dataset=mnist5k)
    trainer.finish_task(0, train_seconds=trainer.run_task(0))
    calls.clear()
    trainer.run_task(1)
    scored, labels, penalised = calls[0]
    assert penalised is not None
    count = penalised.shape[0]
    assert set(labels[:count]) == {1} and set(labels[count:]) == {0}  # the real images, then the replay
    assert torch.equal(penalised, scored[:count])


@CUDA
def test_two_seeded_cuda_runs_are_identical(tiny_config, mnist5k, tmp_path):
    runs = [Trainer(tiny_config(method="jtr+ra", device="cuda", tasks="0|1", out_dir=str(tmp_path / name)),
                    dataset=mnist5k) for name in ("a", "b")]
    for run in runs:
        run.fit()
    assert torch.backends.cudnn.deterministic and torch.are_deterministic_algorithms_enabled()
    for name, value in runs[0].generator.state_dict().items():
        assert torch.equal(value, runs[1].generator.state_dict()[name]), name


def test_bad_checkpoints_are_refused_with_the_file_named(tmp_path):
    missing = tmp_path / "nothing"
    with pytest.raises(CheckpointError, match="nothing"):
        Trainer.from_checkpoint(missing)
    corrupt = tmp_path / "checkpoint.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="checkpoint.pt"):
        load_checkpoint(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(foreign)


def test_a_diverging_run_stops_with_the_reason(tiny_config, mnist5k):
    config = tiny_config(lr_g=1e30, lr_d=1e30, iterations_per_task=20, log_every=5)
    with pytest.raises(DivergenceError, match="diverged"):
        Trainer(config, dataset=mnist5k).fit()


@pytest.mark.parametrize("overrides,field", [
    ({"method": "magic"}, "method.method"),
    ({"dataset": "cifar"}, "data.dataset"),
    ({"preset": "huge"}, "preset"),
    ({"preset": ""}, "unknown preset ''"),  # not the default preset
    ({"lambda_ra": -1.0}, "method.lambda_ra"),
    ({"lambda_gp": -10}, "optim.lambda_gp"),
    ({"lr_g": 0}, "optim.lr_g"),
    ({"image_size": 48}, "model.image_size"),
    ({"arch": "resnet", "image_size": 32}, "model.image_size"),
    ({"tasks": "0,1|1"}, "data.tasks"),
    ({"tasks": "a|b"}, "data.tasks"),
    ({"replay_mode": "fixed", "replay_size_per_class": 0}, "method.replay_size_per_class"),
    ({"replay_share": 1.5}, "method.replay_share"),
    ({"dataset": "svhn"}, "data.data_root"),
    ({"batch_size": "many"}, "optim.batch_size"),
    ({"lambda_ra": "nan"}, "method.lambda_ra: nan is not a finite number"),
    ({"lambda_ewc": "inf"}, "method.lambda_ewc: inf is not a finite number"),
    ({"lr_g": "nan"}, "optim.lr_g: nan is not a finite number"),
    ({"beta2": float("-inf")}, "optim.beta2: -inf is not a finite number"),
    ({"iterations_per_task": "inf"}, "optim.iterations_per_task: 'inf' is not a valid int"),
    ({"iterations_per_task": "1.5"}, "optim.iterations_per_task: '1.5' is not a valid int"),
    ({"no_such_field": 1}, "no_such_field"),
])
def test_bad_config_values_are_refused_naming_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        build_config(overrides=overrides)


def test_a_class_the_dataset_lacks_is_refused_before_training(tiny_config, mnist5k):
    with pytest.raises(ConfigError, match="data.tasks"):
        Trainer(tiny_config(tasks="0|12"), dataset=mnist5k)


def test_a_method_that_needs_a_previous_task_refuses_a_single_task(tiny_config, mnist5k):
    for method in ("ra", "jtr", "ewc", "dgr"):
        with pytest.raises(ConfigError, match="at least two tasks"):
            Trainer(tiny_config(method=method, tasks="0"), dataset=mnist5k)


def test_yaml_file_and_flags_set_fields(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("preset: dcgan32\noptim:\n  lr_g: 3.0e-4\nlambda_ra: 0.01\nmethod.method: ra\n")
    config = build_config(yaml_path=path, overrides={"lr_g": "5e-4"})
    assert config.preset == "dcgan32" and config.model.arch == "dcgan"
    assert config.optim.lr_g == 5e-4 and config.method.lambda_ra == 0.01 and config.method.method == "ra"


def test_cli_train_writes_samples_checkpoints_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MERGAN_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "cli"
    args = ["train", "--dataset", "mnist5k", "--method", "sft", "--preset", "small", "--tasks", "0|1",
            "--iterations", "2", "--batch-size", "8", "--critic-steps", "1", "--g-width", "8", "--d-width", "8",
            "--z-dim", "8", "--device", "cpu", "--eval-when", "none", "--out-dir", str(out), "--no-mlflow"]
    assert main(args) == 0
    assert (out / "task_2" / "checkpoint.pt").is_file() and (out / "config.yaml").is_file()
    assert (out / "samples" / "samples_task_1.png").stat().st_size > 0  # a grid of every seen class
    assert (out / "samples" / "samples_task_2.png").stat().st_size > 0
    err = capsys.readouterr().err
    assert "task 2/2 classes [1]" in err
    assert main(["train", "--resume", str(out / "task_1"), "--no-mlflow"]) == 0
    assert "resuming after task 1/2" in capsys.readouterr().err


def test_cli_refuses_bad_input_with_a_message(capsys):
    assert main(["train", "--method", "magic", "--no-mlflow"]) == 2
    assert "method.method" in capsys.readouterr().err
    assert main(["train", "--set", "optim.lr_g", "--no-mlflow"]) == 2


def test_evaluation_after_each_task_fills_the_matrix_and_intransigence_against_jt(tiny_config, mnist5k, tmp_path):
    from mergan.evaluation.classifier import build_net, net_shape

    weights = tmp_path / "evaluator.pt"  # an untrained bring-your-own evaluator: no training cost here
    torch.save(build_net(net_shape(mnist5k), seed=0).state_dict(), weights)
    jt = tmp_path / "jt_results.json"
    jt.write_text(json.dumps({"accuracy_matrix": [[1.0], [1.0, 1.0]]}))
    config = tiny_config(eval_when="every", evaluator_weights=str(weights), jt_results=str(jt))
    results = Trainer(config, dataset=mnist5k).fit()
    assert [len(row) for row in results[-1].accuracy_matrix] == [1, 2]
    metrics = results[-1].metrics
    row = results[-1].accuracy_matrix[-1]
    assert metrics["acc_task_1"] == row[0] and metrics["acc_task_2"] == row[1]
    diagonal = [results[0].accuracy_matrix[0][0], row[1]]
    assert metrics["intransigence"] == pytest.approx(sum(1.0 - v for v in diagonal) / 2)
    assert results[-1].samples_path.endswith("samples_task_2.png")
    restored = Trainer.from_checkpoint(config.run.out_dir, dataset=mnist5k).results
    assert restored[-1].class_accuracy == results[-1].class_accuracy  # class ids stay ints through JSON
    assert all(isinstance(c, int) for c in restored[-1].class_accuracy)


def test_progress_bar_shows_only_the_trainers_measured_rate():
    import io

    from mergan.callbacks import StepInfo
    from mergan_cli.train import ProgressPrinter

    stream = io.StringIO()
    printer = ProgressPrinter(stream)
    trainer = type("T", (), {"tasks": [[0], [1]]})()
    for step in (50, 100):  # the trainer reports every log_every = 50 steps
        printer.on_step(trainer, StepInfo(task=1, step=step, steps_in_task=400, global_step=step,
                                          losses={"loss_d": 1.0, "loss_g": 2.0}, steps_per_second=7.25))
    printer.bar.refresh()
    text = stream.getvalue()
    assert "it/s=7.2" in text
    assert text.count("it/s") == text.count("it/s=7.2")  # tqdm's own (jumpy) rate is not shown
