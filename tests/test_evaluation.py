"""Evaluation: the cached evaluator classifier, evaluate_after_task, honesty checks, grids, CLI.

The mnist5k evaluator is trained once per module (about 10 s on two free cores); everything
else uses a tiny synthetic dataset or few samples per class.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image

from mergan.config import EvalConfig
from mergan.evaluation import classifier as classifier_module
from mergan.evaluation import frechet
from mergan.evaluation.classifier import (
    ClassifierSettings,
    EvaluatorError,
    get_evaluator,
    train_classifier,
)
from mergan.evaluation.evaluate import evaluate_after_task
from mergan.evaluation.grids import class_grid
from mergan.evaluation.metrics import quality_summary_names
from tests.support.evaluation_fixtures import LinearGenerator, toy_config, toy_dataset

DIGIT_TASKS = [[c] for c in range(10)]


# -- stand-in generators ---------------------------------------------------------------------
class RealImages:
    """A "generator" that returns real images: of the class asked for, or of ``draw(class)``."""

    z_dim = 4

    def __init__(self, images, draw=None):
        self.images, self.draw = images, draw or (lambda cls: cls)

    def sample(self, labels: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        out = torch.empty(len(labels), *self.images.get([0]).shape[1:])
        for cls in labels.unique().tolist():
            rows = (labels == cls).nonzero().flatten()
            pool = self.images.indices_of([self.draw(cls)])
            out[rows] = self.images.get(pool[torch.arange(len(rows)) % len(pool)])
        return out


class Noise:
    """Uniform noise images, a function of z (so the same z gives the same images)."""

    z_dim = 4

    def __init__(self, shape):
        self.shape = shape

    def sample(self, labels: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator().manual_seed(int(z.abs().sum() * 1000))
        return torch.rand(len(labels), *self.shape, generator=generator) * 2 - 1


@pytest.fixture(scope="module")
def evaluator_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("evaluator-cache")


@pytest.fixture(scope="module")
def mnist_evaluator(mnist5k, evaluator_cache):
    return get_evaluator(mnist5k, EvalConfig(cache_dir=str(evaluator_cache)), "cpu")


def digits_config(evaluator_cache, **values) -> EvalConfig:
    return EvalConfig(cache_dir=str(evaluator_cache), **{"eval_samples_per_class": 100, **values})


# -- the evaluator classifier ----------------------------------------------------------------
def test_mnist5k_evaluator_is_accurate_and_stored_with_its_accuracy(mnist_evaluator, mnist5k, evaluator_cache):
    assert mnist_evaluator.test_accuracy >= 0.95
    assert mnist_evaluator.path.startswith(str(evaluator_cache))
    assert mnist_evaluator.cache_key in mnist_evaluator.path
    beside = json.loads(Path(mnist_evaluator.path).with_suffix(".json").read_text())
    assert beside["test_accuracy"] == mnist_evaluator.test_accuracy
    assert beside["fingerprint"] == mnist5k.fingerprint
    predictions = mnist_evaluator.predict(mnist5k.test.get(torch.arange(len(mnist5k.test))))
    assert (predictions == mnist5k.test.labels).float().mean().item() == pytest.approx(mnist_evaluator.test_accuracy)
    assert mnist_evaluator.features(mnist5k.test.get([0, 1])).shape == (2, mnist_evaluator.feature_dim)


def test_cached_evaluator_is_reused_without_training(mnist_evaluator, mnist5k, evaluator_cache, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("the cached evaluator was trained again")

    monkeypatch.setattr(classifier_module, "train_classifier", no_training)
    again = get_evaluator(mnist5k, EvalConfig(cache_dir=str(evaluator_cache)), "cpu")
    assert again.cache_key == mnist_evaluator.cache_key and again.info["cached"]
    assert again.test_accuracy == mnist_evaluator.test_accuracy
    for name, tensor in mnist_evaluator.net.state_dict().items():
        assert torch.equal(tensor, again.net.state_dict()[name])


def test_cache_key_follows_the_data_content_and_the_settings(tmp_path):
    ds = toy_dataset()
    first = get_evaluator(ds, toy_config(tmp_path), "cpu")
    assert get_evaluator(ds, toy_config(tmp_path), "cpu").cache_key == first.cache_key
    changed_data = get_evaluator(replace(ds, fingerprint="toy-other-content"), toy_config(tmp_path), "cpu")
    changed_settings = get_evaluator(ds, replace(toy_config(tmp_path), evaluator_epochs=2), "cpu")
    assert len({first.cache_key, changed_data.cache_key, changed_settings.cache_key}) == 3
    assert not changed_data.info["cached"] and not changed_settings.info["cached"]


def test_cache_dir_defaults_to_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MERGAN_CACHE_DIR", str(tmp_path / "from-env"))
    evaluator = get_evaluator(toy_dataset(), EvalConfig(evaluator_epochs=1), "cpu")
    assert evaluator.path.startswith(str(tmp_path / "from-env"))


def count_trainings(monkeypatch) -> list[int]:
    calls: list[int] = []

    def counted(*args, **kwargs):
        calls.append(1)
        return train_classifier(*args, **kwargs)

    monkeypatch.setattr(classifier_module, "train_classifier", counted)
    return calls


def test_retrain_flag_and_a_damaged_cache_file_train_again(tmp_path, monkeypatch):
    ds, config = toy_dataset(), toy_config(tmp_path)
    calls = count_trainings(monkeypatch)
    first = get_evaluator(ds, config, "cpu")
    get_evaluator(ds, config, "cpu")
    assert len(calls) == 1
    get_evaluator(ds, config, "cpu", retrain=True)
    assert len(calls) == 2
    Path(first.path).write_bytes(b"half a file")
    repaired = get_evaluator(ds, config, "cpu")
    assert len(calls) == 3 and repaired.cache_key == first.cache_key
    assert get_evaluator(ds, config, "cpu").info["cached"]


def test_processes_asking_at_once_train_once(tmp_path, monkeypatch):
    ds, config = toy_dataset(), toy_config(tmp_path)
    calls = count_trainings(monkeypatch)
    barrier, keys = threading.Barrier(3), []

    def ask():
        barrier.wait()
        keys.append(get_evaluator(ds, config, "cpu").cache_key)

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(keys) == 3 and len(set(keys)) == 1
    assert not list((tmp_path / "cache" / "evaluators").glob("*.tmp"))


def test_training_is_seeded_and_leaves_the_global_rng_alone():
    ds = toy_dataset()
    shape = {"channels": 1, "image_size": 8, "num_classes": 3}
    before = torch.get_rng_state()
    first = train_classifier(ds.train.get, ds.train.labels, shape, ClassifierSettings(epochs=1), "cpu")
    second = train_classifier(ds.train.get, ds.train.labels, shape, ClassifierSettings(epochs=1), "cpu")
    assert torch.equal(before, torch.get_rng_state())
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[name]), name


def test_bring_your_own_weights(tmp_path):
    ds = toy_dataset()
    trained = get_evaluator(ds, toy_config(tmp_path), "cpu")
    bare = tmp_path / "my_evaluator.pt"
    torch.save(trained.net.state_dict(), bare)
    for path in (trained.path, str(bare)):  # a cache file or a bare state_dict
        own = get_evaluator(ds, toy_config(tmp_path, evaluator_weights=path), "cpu")
        assert own.cache_key.startswith("file:") and own.path == path
        assert own.test_accuracy == pytest.approx(trained.test_accuracy)
    with pytest.raises(EvaluatorError, match="no such file"):
        get_evaluator(ds, toy_config(tmp_path, evaluator_weights=str(tmp_path / "absent.pt")), "cpu")
    wrong = tmp_path / "wrong.pt"
    torch.save({"head.weight": torch.zeros(5, 128)}, wrong)
    with pytest.raises(EvaluatorError, match="do not fit"):
        get_evaluator(ds, toy_config(tmp_path, evaluator_weights=str(wrong)), "cpu")


# -- honesty checks on real digits -------------------------------------------------------------
@pytest.fixture(scope="module")
def real_images_result(mnist5k, mnist_evaluator, evaluator_cache):
    return evaluate_after_task(RealImages(mnist5k.test), mnist5k, DIGIT_TASKS, 9, digits_config(evaluator_cache),
                               mnist_evaluator, "cpu", previous_matrix=None)


def test_real_test_images_score_the_evaluators_real_accuracy(real_images_result, mnist_evaluator):
    # 100 test images per class, each drawn once: the mean of per-class accuracies is the test accuracy
    assert real_images_result.metrics["avg_acc"] == pytest.approx(mnist_evaluator.test_accuracy, abs=1e-9)
    assert min(real_images_result.class_accuracy.values()) > 0.85


def test_noise_scores_near_chance_with_a_large_fid(real_images_result, mnist5k, mnist_evaluator, evaluator_cache):
    noise = evaluate_after_task(Noise((1, 32, 32)), mnist5k, DIGIT_TASKS, 9, digits_config(evaluator_cache),
                                mnist_evaluator, "cpu", previous_matrix=None)
    assert noise.metrics["avg_acc"] <= 0.2
    real_fid = real_images_result.metrics["fid_classifier"]
    assert real_fid < 5.0  # real test images against a different real (train) subset
    assert noise.metrics["fid_classifier"] > 100 * real_fid


def test_a_generator_that_draws_only_its_last_class_shows_forgetting(mnist5k, mnist_evaluator, evaluator_cache):
    tasks, matrix, results = [[0], [1], [2], [3]], [], []
    for i in range(len(tasks)):
        last_class = tasks[i][-1]
        sampler = RealImages(mnist5k.test, draw=lambda cls, last=last_class: last)
        result = evaluate_after_task(sampler, mnist5k, tasks, i, digits_config(evaluator_cache, fid=False),
                                     mnist_evaluator, "cpu", previous_matrix=matrix)
        matrix = result.matrix
        results.append(result)
    for i, row in enumerate(matrix):
        assert row[i] > 0.9
        assert all(value < 0.05 for value in row[:i])
    last = results[-1].metrics
    diagonal_mean = sum(matrix[j][j] for j in range(3)) / 3
    assert last["forgetting"] == pytest.approx(diagonal_mean - sum(matrix[3][:3]) / 3)
    assert last["bwt"] == pytest.approx(-last["forgetting"])
    assert last["avg_acc"] < 0.3 and "fid_classifier" not in last


def test_reverse_accuracy_is_high_for_real_images_and_chance_for_noise(mnist5k, evaluator_cache, mnist_evaluator,
                                                                      monkeypatch):
    from mergan.evaluation import reverse

    monkeypatch.setattr(reverse, "MIN_STEPS", 60)
    tasks = [[0, 1], [2]]
    config = digits_config(evaluator_cache, reverse_accuracy=True, evaluator_epochs=1, fid=False)
    real = evaluate_after_task(RealImages(mnist5k.test), mnist5k, tasks, 1, config, mnist_evaluator, "cpu", None)
    noise = evaluate_after_task(Noise((1, 32, 32)), mnist5k, tasks, 1, config, mnist_evaluator, "cpu", None)
    assert real.metrics["reverse_acc"] > 0.9
    assert noise.metrics["reverse_acc"] < 0.6  # chance is 1/3


# -- evaluate_after_task's contract ------------------------------------------------------------
def test_evaluate_after_task_reports_the_callback_metric_names(tmp_path):
    ds = toy_dataset()
    config = toy_config(tmp_path, reverse_accuracy=True)
    evaluator = get_evaluator(ds, config, "cpu")
    sampler = RealImages(ds.test)
    tasks = [[0], [1, 2]]
    first = evaluate_after_task(sampler, ds, tasks, 0, config, evaluator, "cpu", [], samples_dir=tmp_path / "s")
    quality = {f"{m}_classifier_{where}" for m in ("fid", "kid", "precision", "recall", "density", "coverage")
               for where in ("task_1", "class_0")}  # eval.quality full (tests/test_quality.py)
    assert set(first.metrics) == {"acc_task_1", "acc_class_0", "avg_acc", "bwt", "forgetting", "reverse_acc",
                                  "fid_classifier", "aiq_acc", "afq_acc", "fr_acc", *quality,
                                  *quality_summary_names("classifier")}
    before = torch.get_rng_state()
    second = evaluate_after_task(sampler, ds, tasks, 1, config, evaluator, "cpu", first.matrix,
                                 jt_matrix=[[1.0], [1.0, 1.0]], seed=3, samples_dir=tmp_path / "s")
    assert torch.equal(before, torch.get_rng_state())  # evaluation never consumes the training RNG
    assert {"acc_task_1", "acc_task_2", "acc_class_1", "acc_class_2", "intransigence"} <= set(second.metrics)
    assert second.row == [second.metrics["acc_task_1"], second.metrics["acc_task_2"]]
    assert second.metrics["acc_task_2"] == pytest.approx((second.class_accuracy[1] + second.class_accuracy[2]) / 2)
    assert second.matrix == [first.row, second.row]
    assert all(isinstance(v, float) for v in second.metrics.values())
    assert second.seconds > 0
    with Image.open(second.samples_path) as grid:  # 3 rows (seen classes) of grid_per_class = 3 images
        assert grid.size == (3 * (8 + 2) + 2, 3 * (8 + 2) + 2)


def test_same_seed_same_result_and_fixed_z_per_class(tmp_path):
    ds = toy_dataset()
    config = toy_config(tmp_path)
    evaluator = get_evaluator(ds, config, "cpu")
    noise = Noise((1, 8, 8))
    runs = [evaluate_after_task(noise, ds, [[0], [1, 2]], 1, config, evaluator, "cpu", None, seed=s).metrics
            for s in (5, 5, 6)]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    # a class's images do not depend on which other classes are evaluated with it
    one = evaluate_after_task(noise, ds, [[1, 2]], 0, config, evaluator, "cpu", None, seed=5)
    assert one.class_accuracy == {c: runs[0][f"acc_class_{c}"] for c in (1, 2)}


def test_grid_rows_share_z_and_stay_fixed_across_tasks():
    generator = LinearGenerator(num_classes=3, size=8)
    after_task_1 = class_grid(generator, [0], per_class=4, seed=7, device="cpu")
    after_task_3 = class_grid(generator, [0, 1, 2], per_class=4, seed=7, device="cpu")
    assert torch.equal(after_task_1, after_task_3[:4])
    assert not torch.equal(after_task_3[:4], after_task_3[4:8])
    assert not torch.equal(after_task_1, class_grid(generator, [0], per_class=4, seed=8, device="cpu"))


def test_inception_fid_comes_with_weights_from_the_environment(tmp_path, monkeypatch):
    from torchvision.models import inception_v3

    weights = tmp_path / "inception.pth"
    with torch.random.fork_rng(devices=[]):
        torch.save(inception_v3(weights=None, aux_logits=False, init_weights=False).state_dict(), weights)
    monkeypatch.setenv(frechet.INCEPTION_ENV, str(weights))
    monkeypatch.setattr(frechet, "INCEPTION_SIZE", 75)  # the smallest input Inception takes: fast on CPU
    ds = toy_dataset()
    config = toy_config(tmp_path, eval_samples_per_class=6)  # the fewest that k=5 nearest neighbours take
    result = evaluate_after_task(RealImages(ds.test), ds, [[0, 1]], 0, config, None, "cpu", None)
    assert torch.isfinite(torch.tensor(result.metrics["fid_inception"]))
    assert "fid_classifier" in result.metrics
    # the quality matrices in Inception's space too, from the same pass
    measures = ("fid", "kid", "precision", "recall", "density", "coverage")
    assert set(result.quality_matrices) == {f"{m}_{space}" for m in measures for space in ("classifier", "inception")}
    assert {"recall_inception_task_1", "fid_inception_class_1", "afq_fid_inception"} <= set(result.metrics)
    monkeypatch.setenv(frechet.INCEPTION_ENV, str(tmp_path / "absent.pth"))
    with pytest.raises(frechet.InceptionWeightsError, match="no such file"):
        evaluate_after_task(RealImages(ds.test), ds, [[0, 1]], 0, config, None, "cpu", None)


# -- the command line ----------------------------------------------------------------------------
def test_classifier_command_shows_the_cached_evaluator(mnist_evaluator, evaluator_cache, capsys):
    from mergan_cli.main import main

    assert main(["classifier", "--dataset", "mnist5k", "--cache-dir", str(evaluator_cache), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "loaded from the cache" in out and mnist_evaluator.cache_key in out and mnist_evaluator.path in out
    assert f"{mnist_evaluator.test_accuracy:.4f}" in out


def test_eval_command_evaluates_a_checkpoint(mnist_evaluator, evaluator_cache, tmp_path, capsys):
    from mergan.presets import build_config
    from mergan.trainer import Trainer
    from mergan_cli.main import main

    config = build_config(overrides={
        "device": "cpu", "tasks": "0|1", "out_dir": str(tmp_path / "run"), "iterations_per_task": 2,
        "batch_size": 16, "critic_steps": 1, "z_dim": 16, "g_width": 16, "d_width": 8, "log_every": 1,
        "eval_samples_per_class": 10, "grid_per_class": 2, "cache_dir": str(evaluator_cache)})
    Trainer(config).fit()
    capsys.readouterr()
    out_file = tmp_path / "eval.json"
    assert main(["eval", str(tmp_path / "run"), "--samples-per-class", "20", "--out", str(out_file),
                 "--device", "cpu", "--samples-dir", str(tmp_path / "grids")]) == 0
    printed = json.loads(capsys.readouterr().out)
    written = json.loads(out_file.read_text())
    assert printed == written
    assert written["task"] == 2 and written["samples_per_class"] == 20
    assert len(written["accuracy_matrix"]) == 2 and written["row"] == written["accuracy_matrix"][1]
    assert {"acc_task_1", "acc_task_2", "avg_acc", "bwt", "forgetting", "fid_classifier"} <= set(written["metrics"])
    assert written["evaluator"]["cache_key"] == mnist_evaluator.cache_key
    assert written["samples_path"].endswith("samples_task_2.png")
    # the run's quality matrices go on: row 1 as the run measured it, row 2 measured now
    run_recall = json.loads((tmp_path / "run" / "results.json").read_text())["quality_matrices"]["recall_classifier"]
    assert written["quality_matrices"]["recall_classifier"][0] == run_recall[0]
    assert written["quality_matrices"]["recall_classifier"][1] == [written["metrics"]["recall_classifier_task_1"],
                                                                   written["metrics"]["recall_classifier_task_2"]]
    assert main(["eval", str(tmp_path / "run"), "--quality", "none", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["quality_matrices"] == {}
