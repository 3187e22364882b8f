"""``eval.evaluator: paper``: the authors' evaluator architectures, their input scaling, the LSUN label map,
and what a run records of the evaluator (results.json, MLflow params, the report's caption).

Tests build the authors' nets narrow (``evaluator_width``) except where the real size is the point.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from mergan.config import DataConfig, EvalConfig
from mergan.data import load_dataset
from mergan.evaluation.classifier import (
    PAPER_ARCHITECTURES,
    evaluator_settings,
    get_evaluator,
)
from mergan.evaluation.paper_nets import VGG_MEAN_BGR, build_paper_net
from mergan.presets import build_config
from mergan.settings import ConfigError
from tests.support import data_fixtures as fx


def parameters(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# -- the architectures -------------------------------------------------------------------------------
def test_real_size_vgg16_is_the_authors_lsun_evaluator():
    """13 3x3 convs (64 ... 512) on 64x64, then fc 2048 -> 1024 -> 512 -> 10 (pretrain/lsun_test.py)."""
    net = build_paper_net("vgg16", channels=3, image_size=64, num_classes=10)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    linears = [(m.in_features, m.out_features) for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert linears == [(2 * 2 * 512, 1024), (1024, 512), (512, 10)]
    vgg16_convs = 14_714_688  # torchvision's VGG16 feature extractor has exactly these conv weights
    assert parameters(net) == vgg16_convs + 2048 * 1024 + 1024 + 1024 * 512 + 512 + 512 * 10 + 10 == 17_342_794
    net.eval()
    with torch.no_grad():
        assert net(torch.zeros(2, 3, 64, 64)).shape == (2, 10)
        assert net.features(torch.zeros(2, 3, 64, 64)).shape == (2, 512)


def test_real_size_mnist_mlp_and_svhn_convnet_have_the_authors_shapes():
    """The shapes their released .index files list: fc1 [1024, 1024] ... fc5 [128, 10]; svhn_fc5 [2048, 512] ..."""
    mlp = build_paper_net("mlp", channels=1, image_size=32, num_classes=10)
    assert [(m.in_features, m.out_features) for m in mlp.modules() if isinstance(m, torch.nn.Linear)] == [
        (1024, 1024), (1024, 512), (512, 256), (256, 128), (128, 10)]
    convnet = build_paper_net("convnet", channels=3, image_size=32, num_classes=10)
    assert [m.out_channels for m in convnet.modules() if isinstance(m, torch.nn.Conv2d)] == [32, 32, 64, 64, 128, 128,
                                                                                            128]
    assert [(m.in_features, m.out_features) for m in convnet.modules() if isinstance(m, torch.nn.Linear)] == [
        (2048, 512), (512, 128), (128, 10)]
    assert (parameters(mlp), parameters(convnet)) == (1_739_914, 1_550_634)


def test_narrow_nets_keep_the_shape_of_the_published_ones():
    net = build_paper_net("vgg16", channels=3, image_size=64, num_classes=10, width=4)
    assert [m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d)] == [
        4, 4, 8, 8, 16, 16, 16, 32, 32, 32, 32, 32, 32]
    assert net.shape["feature_dim"] == 32


def test_mlp_reads_0_255_pixel_values():
    """Their MNIST MLP is fed ``samples * 128 + 128`` as integers: pixel values, not [-1, 1]."""
    net = build_paper_net("mlp", channels=1, image_size=4, num_classes=3, width=8)
    images = torch.rand(5, 1, 4, 4) * 2 - 1
    first = net.body[1]
    with torch.no_grad():
        torch.testing.assert_close(net.body[:3](images)[:, :0].shape, (5, 0))  # body[0] flattens
        expected = torch.relu(first(((images + 1) * 127.5).flatten(1)))
        torch.testing.assert_close(net.body[2](net.body[1](net.body[0]((images + 1) * 127.5))), expected)
        assert not torch.allclose(torch.relu(first(images.flatten(1))), expected)
        torch.testing.assert_close(net.features(images), net.body((images + 1) * 127.5))


@pytest.mark.parametrize("arch", ["convnet", "vgg16"])
def test_conv_nets_read_bgr_pixels_minus_the_vgg_means(arch):
    """Their SVHN and LSUN nets split RGB, subtract 103.939 / 116.779 / 123.68 and concatenate as BGR."""
    size = 32 if arch == "convnet" else 64
    net = build_paper_net(arch, channels=3, image_size=size, num_classes=10, width=2)
    red = torch.full((1, 3, size, size), -1.0)
    red[:, 0] = 1.0  # pure red in [-1, 1]: pixels (255, 0, 0)
    bgr = torch.tensor([0.0, 0.0, 255.0]) - torch.tensor(VGG_MEAN_BGR)
    with torch.no_grad():
        expected = net.body(bgr[None, :, None, None].expand(1, 3, size, size))
        torch.testing.assert_close(net.features(red), expected)


# -- the config: paper presets judge with paper, small keeps cnn ---------------------------------------
@pytest.mark.parametrize("preset", ["paper-mnist", "paper-svhn", "paper-lsun"])
def test_paper_presets_judge_with_the_authors_evaluators(preset):
    assert build_config(preset, overrides={"data_root": "/data"}, validate=False).eval.evaluator == "paper"


def test_small_and_model_presets_keep_the_small_cnn():
    for preset in ("small", "dcgan32", "resnet64"):
        assert build_config(preset, validate=False).eval.evaluator == "cnn"


def test_paper_evaluator_exists_only_where_the_authors_trained_one(tmp_path):
    with pytest.raises(ConfigError, match=r"eval.evaluator: .*folder.*use 'cnn'"):
        build_config(overrides={"dataset": "folder", "data_root": str(tmp_path), "evaluator": "paper"})
    with pytest.raises(ConfigError, match="eval.evaluator: 'vgg' is not allowed; allowed: cnn, paper"):
        build_config(overrides={"evaluator": "vgg"})
    assert PAPER_ARCHITECTURES == {"mnist5k": "mlp", "mnist": "mlp", "svhn": "convnet", "lsun": "vgg16"}
    assert evaluator_settings(EvalConfig(evaluator="paper"), "svhn").arch == "convnet"
    assert evaluator_settings(EvalConfig(evaluator="paper", evaluator_width=8), "mnist").width == 8
    assert evaluator_settings(EvalConfig(), "mnist").arch == "cnn"


# -- LSUN: 10-way over the ten categories, read through the label map [0, 1, 8, 6] ----------------------
LSUN_PAPER = dict(evaluator="paper", evaluator_width=2, evaluator_epochs=1)


@pytest.fixture(scope="module")
def lsun_ten(tmp_path_factory):
    root = tmp_path_factory.mktemp("lsun-ten")
    fx.write_lsun(root, train_per_category=4, val_per_category=2, categories=fx.LSUN_TEN)
    return root


def lsun_evaluator(root, cache, caplog=None):
    data = DataConfig(dataset="lsun", data_root=str(root), lsun_resize="squash")
    ds = load_dataset(data, image_size=64)
    return ds, get_evaluator(ds, EvalConfig(cache_dir=str(cache), **LSUN_PAPER), "cpu", data_config=data)


class ColourOracle(torch.nn.Module):
    """Labels an image by the nearest of the ten LSUN fixture colours, in the authors' label order."""

    def __init__(self):
        super().__init__()
        colours = torch.tensor([fx.LSUN_COLORS[c] for c in fx.LSUN_TEN], dtype=torch.float32) / 127.5 - 1
        self.register_buffer("colours", colours)
        self.shape = {"num_classes": 10, "feature_dim": 3}

    def features(self, images):
        return images.mean(dim=(2, 3))

    def head(self, features):
        return -torch.cdist(features, self.colours)

    def description(self):
        return "nearest colour"


def test_lsun_paper_evaluator_is_10_way_and_judges_through_the_authors_label_map(lsun_ten, tmp_path):
    from mergan.evaluation.accuracy import generated_class_accuracy
    from mergan.evaluation.classifier import Evaluator

    ds, evaluator = lsun_evaluator(lsun_ten, tmp_path)
    assert ds.num_classes == 4 and evaluator.num_classes == 10 and evaluator.arch == "vgg16"
    assert evaluator.label_map == [0, 1, 8, 6]  # bedroom, kitchen, church_outdoor, tower (mergan.py)
    assert evaluator.chance_accuracy == pytest.approx(0.1)
    assert evaluator.info["train_images"] == 40 and evaluator.info["test_images"] == 20  # all ten categories
    assert evaluator.info["class_names"] == list(fx.LSUN_TEN)

    class RealColours:  # draws class c as the colour of its category
        z_dim = 2

        def sample(self, labels, z):
            return ds.train.get(torch.stack([(ds.train.labels == int(c)).nonzero()[0, 0] for c in labels]))

    # A 10-way judge that is always right, read through the run evaluator's label map.
    oracle = Evaluator(ColourOracle(), "cpu", 1.0, "oracle", label_map=evaluator.label_map)
    accuracy = generated_class_accuracy(RealColours(), oracle, [0, 1, 2, 3], 8, seed=0, device="cpu")
    assert accuracy == dict.fromkeys(range(4), 1.0)
    oracle.label_map = None  # read as outputs 0..3, church_outdoor and tower would be judged wrong
    assert generated_class_accuracy(RealColours(), oracle, [2, 3], 8, seed=0, device="cpu") == {2: 0.0, 3: 0.0}


def test_lsun_with_only_the_four_categories_says_so_and_judges_4_way(tmp_path, caplog):
    fx.write_lsun(tmp_path / "data", train_per_category=4, val_per_category=2)
    with caplog.at_level(logging.WARNING):
        _, evaluator = lsun_evaluator(tmp_path / "data", tmp_path / "cache")
    notes = [r.getMessage() for r in caplog.records if "ten LSUN categories" in r.getMessage()]
    assert len(notes) == 1 and "4 of the ten" in notes[0] and "chance 25.0%" in notes[0]
    assert "dining_room" in notes[0] and "\n" not in notes[0]
    assert evaluator.num_classes == 4 and evaluator.label_map is None
    assert evaluator.chance_accuracy == 0.25 and evaluator.info["note"] == notes[0]


# -- what a run records: results.json, MLflow params, the report's caption -----------------------------
def test_a_run_records_its_evaluator_in_results_mlflow_and_the_table_caption(tiny_config, mnist5k, tmp_path,
                                                                           monkeypatch):
    from analysis.load import load_experiment, load_run_folders
    from analysis.tables import results_table
    from mergan.trainer import Trainer
    from tracking.mirror import MLflowMirror, Target

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = tiny_config(method="sft", tasks="0|1", eval_when="every", evaluator="paper", evaluator_width=32,
                         evaluator_epochs=2)
    callback = MLflowMirror(Target(uri, "judged"), interval_s=0)
    results = Trainer(config, callbacks=[callback], dataset=mnist5k).fit()

    recorded = json.loads((tmp_path / "run" / "results.json").read_text())["results"][-1]["extra"]
    assert recorded["evaluator_architecture"] == "the authors' MNIST MLP 32-16-8-4-10 on 0-255 pixels"
    assert recorded["evaluator_classes"] == 10 and recorded["evaluator_chance_accuracy"] == 0.1
    assert 0.1 < recorded["evaluator_test_accuracy"] <= 1.0
    assert recorded == results[-1].extra

    from mlflow import MlflowClient

    params = MlflowClient(uri).get_run(callback.run_id).data.params
    assert params["eval.evaluator"] == "paper"
    assert params["evaluator_architecture"] == recorded["evaluator_architecture"]
    assert float(params["evaluator_chance_accuracy"]) == 0.1
    assert float(params["evaluator_test_accuracy"]) == recorded["evaluator_test_accuracy"]

    accuracy = f"{recorded['evaluator_test_accuracy'] * 100:.1f}%"
    for data in (load_experiment("judged", uri), load_run_folders([tmp_path / "run"])):  # MLflow, or the folder
        assert (f"Accuracy judged by the authors' MNIST MLP 32-16-8-4-10 on 0-255 pixels (real test accuracy "
                f"{accuracy}, 10 classes, chance 10.0%)") in results_table(data).caption


def test_features_work_for_every_evaluator_kind(mnist5k, lsun_ten, tmp_path):
    """The quality matrices (FID, KID ...) read ``Evaluator.features``: the penultimate layer of each net."""
    fx.write_svhn(tmp_path / "svhn", train_per_class=2, test_per_class=1)
    svhn = load_dataset(DataConfig(dataset="svhn", data_root=str(tmp_path / "svhn")), image_size=32)
    lsun_data = DataConfig(dataset="lsun", data_root=str(lsun_ten), lsun_resize="squash")
    lsun = load_dataset(lsun_data, image_size=64)
    cases = [(mnist5k, "cnn", 4, "cnn", 128), (mnist5k, "paper", 16, "mlp", 2), (svhn, "paper", 2, "convnet", 8),
             (lsun, "paper", 2, "vgg16", 16)]
    for ds, kind, width, arch, feature_dim in cases:
        config = EvalConfig(evaluator=kind, evaluator_width=width, evaluator_epochs=1, cache_dir=str(tmp_path / "c"))
        evaluator = get_evaluator(ds, config, "cpu", data_config=lsun_data if ds is lsun else None)
        images = ds.test.get(torch.arange(3))
        logits, features = evaluator.logits_and_features(images)
        assert evaluator.arch == arch and evaluator.feature_dim == feature_dim
        assert logits.shape == (3, evaluator.num_classes) and features.shape == (3, feature_dim)
        torch.testing.assert_close(evaluator.features(images), features)
        with torch.inference_mode():
            torch.testing.assert_close(evaluator.net.head(features), logits)


# -- the same trained run judged by both evaluators: `mergan eval --evaluator`, bench/table1_rescore.py --------
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """Two one-digit tasks of tiny SFT, judged by the small CNN; every evaluator narrow and one epoch."""
    from mergan.trainer import Trainer

    root = tmp_path_factory.mktemp("judged-run")
    config = build_config(overrides={
        "device": "cpu", "tasks": "0|1", "out_dir": str(root / "run"), "iterations_per_task": 2, "batch_size": 16,
        "critic_steps": 1, "z_dim": 16, "g_width": 16, "d_width": 8, "log_every": 1, "eval_samples_per_class": 16,
        "grid_per_class": 2, "cache_dir": str(root / "cache"), "evaluator_width": 16, "evaluator_epochs": 1})
    Trainer(config).fit()
    return root


def test_eval_command_judges_a_checkpoint_with_the_other_evaluator(trained_run, capsys):
    from mergan_cli.main import main

    stored = json.loads((trained_run / "run" / "results.json").read_text())
    capsys.readouterr()
    assert main(["eval", str(trained_run / "run"), "--device", "cpu"]) == 0
    as_trained = json.loads(capsys.readouterr().out)
    assert main(["eval", str(trained_run / "run"), "--device", "cpu", "--evaluator", "paper"]) == 0
    by_paper = json.loads(capsys.readouterr().out)
    assert as_trained["row"] == stored["accuracy_matrix"][-1]  # the run's own evaluator repeats its numbers
    assert as_trained["evaluator"]["architecture"].startswith("a small CNN")
    assert by_paper["evaluator"]["architecture"] == "the authors' MNIST MLP 16-8-4-2-10 on 0-255 pixels"
    assert by_paper["evaluator"]["chance_accuracy"] == 0.1 and by_paper["task"] == 2


def test_rescore_script_scores_every_trial_of_a_sweep_with_each_evaluator(trained_run, tmp_path):
    root = Path(__file__).resolve().parents[1]
    trial = tmp_path / "sweep" / "train_trial_0_method=sft,seed=0"
    for task in (1, 2):  # Tune keeps each reported task's checkpoint folder; the newest is the final one
        shutil.copytree(trained_run / "run" / f"task_{task}", trial / f"checkpoint_00000{task - 1}")
    env = {**os.environ, "MERGAN_CACHE_DIR": str(trained_run / "cache")}
    done = subprocess.run([sys.executable, str(root / "bench" / "table1_rescore.py"), str(tmp_path / "sweep"),
                           "--evaluator", "cnn", "--evaluator", "paper", "--out", str(tmp_path / "t.md"),
                           "--runs-out", str(tmp_path / "runs.csv")], check=False, cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert list(runs["evaluator"]) == ["cnn", "paper"] and set(runs["tasks"]) == {2}
    stored = json.loads((trained_run / "run" / "results.json").read_text())
    assert runs.loc[0, "avg_acc"] == pytest.approx(stored["results"][-1]["metrics"]["avg_acc"])
    table = (tmp_path / "t.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| SFT | 2 | 0 |"))
    assert f"{runs.loc[0, 'avg_acc'] * 100:.2f}" in row and f"{runs.loc[1, 'avg_acc'] * 100:.2f}" in row
    assert "- paper: the authors' MNIST MLP 16-8-4-2-10 on 0-255 pixels" in table
    # quality and variety after the final task, from the run's own evaluator's features: its stored final row
    final = {name: matrix[-1] for name, matrix in stored["quality_matrices"].items()}
    assert runs.loc[0, "fid_mean"] == pytest.approx(sum(final["fid_classifier"]) / 2)
    assert runs.loc[0, "recall_earlier"] == pytest.approx(final["recall_classifier"][0])
    assert runs.loc[0, "coverage_earlier"] == pytest.approx(final["coverage_classifier"][0])
    assert runs.loc[0, "coverage_newest"] == pytest.approx(final["coverage_classifier"][1])
    assert runs.loc[0, "recall_min"] == pytest.approx(min(final["recall_classifier"]))
    quality_row = table.split("Image quality and variety")[1].splitlines()
    assert any(line.startswith(f"| SFT | 2 | 0 | {runs.loc[0, 'avg_acc'] * 100:.1f} | {runs.loc[0, 'fid_mean']:.1f} |")
               for line in quality_row)
