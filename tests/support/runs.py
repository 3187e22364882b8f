"""Tiny ``mergan train`` runs for the command-line tests: their flags, and a fixture to run them from an empty folder.

    from tests.support.runs import TINY_RUN

    def test_x(in_tmp):
        assert main(["train", *TINY_RUN, "--no-mlflow"]) == 0
"""

from __future__ import annotations

import pytest

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
