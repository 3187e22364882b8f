"""Continual-learning summaries on hand-made accuracy matrices (rows: after task i; entries: task j)."""

from __future__ import annotations

import pytest

from mergan.evaluation.metrics import (
    average_accuracy,
    average_forgetting,
    backward_transfer,
    intransigence,
    summarize,
    task_accuracy,
    task_forgetting,
)

# After task 1: 0.9 on task 1. After task 2: task 1 fell to 0.6. After task 3: task 1 recovered a little.
R = [[0.9],
     [0.6, 0.8],
     [0.7, 0.5, 1.0]]


def test_average_accuracy_is_the_mean_of_a_row():
    assert average_accuracy(R) == pytest.approx((0.7 + 0.5 + 1.0) / 3)
    assert average_accuracy(R, k=0) == pytest.approx(0.9)
    assert average_accuracy(R, k=1) == pytest.approx(0.7)


def test_backward_transfer_compares_the_last_row_with_the_diagonal():
    assert backward_transfer(R) == pytest.approx(((0.7 - 0.9) + (0.5 - 0.8)) / 2)
    assert backward_transfer(R, k=1) == pytest.approx(0.6 - 0.9)
    assert backward_transfer(R, k=0) == 0.0  # nothing earlier to transfer to


def test_forgetting_takes_the_best_earlier_row_not_the_diagonal():
    # task 1: best earlier accuracy 0.9 (row 1), now 0.7 -> 0.2 (not 0.6 - 0.7 from row 2)
    assert task_forgetting(R, j=0) == pytest.approx(0.2)
    assert task_forgetting(R, j=1) == pytest.approx(0.3)
    assert average_forgetting(R) == pytest.approx(0.25)
    assert average_forgetting(R, k=1) == pytest.approx(0.3)
    assert average_forgetting(R, k=0) == 0.0


def test_forgetting_is_negative_when_a_task_improves():
    improving = [[0.5], [0.8, 0.9]]
    assert average_forgetting(improving) == pytest.approx(-0.3)
    assert backward_transfer(improving) == pytest.approx(0.3)


def test_intransigence_against_a_joint_training_reference():
    jt = [[0.95], [0.9, 0.9], [0.9, 0.9, 0.98]]
    assert intransigence(R, jt) == pytest.approx(((0.95 - 0.9) + (0.9 - 0.8) + (0.98 - 1.0)) / 3)
    assert intransigence(R, jt, k=0) == pytest.approx(0.05)


def test_unmeasured_entries_are_skipped():
    partial = [None, [None, None], [0.7, 0.5, 1.0]]  # evaluated only after the last task
    assert average_accuracy(partial) == pytest.approx(2.2 / 3)
    assert backward_transfer(partial) is None
    assert average_forgetting(partial) is None
    holes = [[0.9], [None, 0.8], [0.7, 0.5, 1.0]]
    assert average_forgetting(holes) == pytest.approx(((0.9 - 0.7) + (0.8 - 0.5)) / 2)


def test_summarize_names_match_the_callback_metric_names():
    clog = {"aiq_acc", "afq_acc", "fr_acc"}  # CLoG's summaries of the accuracy matrix (tests/test_quality.py)
    assert set(summarize(R)) == {"avg_acc", "bwt", "forgetting", *clog}
    assert set(summarize(R, jt_matrix=R)) == {"avg_acc", "bwt", "forgetting", "intransigence", *clog}
    assert summarize(R, jt_matrix=R)["intransigence"] == 0.0
    assert set(summarize([None, [0.5, 0.5]])) == {"avg_acc", "aiq_acc", "afq_acc"}


def test_task_accuracy_is_the_mean_over_its_classes():
    assert task_accuracy({0: 1.0, 1: 0.5, 2: 0.0}, [0, 1]) == pytest.approx(0.75)


def test_the_metrics_load_without_torch():
    # analysis/ reads MLflow runs with these functions; importing torch there would cost seconds
    import subprocess
    import sys

    code = "import sys, mergan.evaluation.metrics; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
