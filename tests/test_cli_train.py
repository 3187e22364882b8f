"""What a user of ``mergan train`` relies on: a --help that says it all, bad numbers refused up front."""

from __future__ import annotations

from dataclasses import fields

import pytest

from mergan.cli import build_parser, main
from mergan.config import BASE_METHODS, PRESETS, ExperimentConfig

# A run of two 2-step tasks on tiny nets: seconds on a CPU.
TINY_RUN = ["--dataset", "mnist5k", "--method", "sft", "--tasks", "0|1", "--iterations", "2", "--batch-size", "8",
            "--critic-steps", "1", "--g-width", "8", "--d-width", "8", "--z-dim", "8", "--device", "cpu",
            "--eval-when", "none"]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run from an empty folder (``runs/`` lands there), with a private evaluator cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MERGAN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_non_finite_numbers_are_refused_before_any_training(in_tmp, capsys):
    for flag, value in (("--lambda-ra", "nan"), ("--lambda-ra", "inf"), ("--lambda-ewc", "inf"), ("--lr-g", "nan")):
        assert main(["train", *TINY_RUN, flag, value, "--no-mlflow"]) == 2
        field = flag[2:].replace("-", "_")
        assert f"{field}: {float(value)!r} is not a finite number; allowed: " in capsys.readouterr().err
    assert not (in_tmp / "runs").exists()  # refused before a folder was made


def test_help_lists_methods_presets_and_each_flags_meaning_and_allowed_values(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for method in BASE_METHODS:
        assert f" {method} " in text.split("methods (--method")[1]
    for preset in PRESETS:
        assert f" {preset} " in text.split("presets (--preset")[1]
    assert "iterations_per_task=20000" in text and "lambda_ewc=1e+09" in text  # the presets' contents
    assert "--dataset DATASET the images: mnist5k is embedded" in text
    assert "allowed: mnist5k, mnist, svhn, lsun, folder" in text
    assert "--lr-g LR_G Adam learning rate of the generator; allowed: > 0 (default: 0.0002;" in text
    assert "--beta1 BETA1 Adam beta1 of both optimizers; allowed: in [0, 1) (default: 0)" in text
    assert "--lambda-ra LAMBDA_RA ra: weight of the replay-alignment loss; allowed: >= 0 (default: 0.01;" in text


def test_every_config_field_says_what_it_means():
    """The help is generated from the fields: a field added without a meaning would show none."""
    for section in ExperimentConfig().sections().values():
        for f in fields(section):
            assert f.metadata.get("meaning"), f"{type(section).__name__}.{f.name} has no meaning for --help"
