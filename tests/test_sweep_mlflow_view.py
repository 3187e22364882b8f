"""What a user sees of a sweep in MLflow: trial names."""

from __future__ import annotations

import pytest

from mergan.config import BASE_METHODS, METHOD_KNOBS, acting_knobs, build_config
from trainables.tracking import _name_values, trial_run_name


# -- run names ------------------------------------------------------------------------------
def test_a_run_is_named_by_the_knobs_that_act_in_its_method_only():
    searched = ["lambda_ra", "replay_mode", "replay_size_per_class"]  # a sweep over several methods' knobs

    def name(**values) -> str:
        config = build_config("small", {"seed": 0, **values})
        return trial_run_name(config.method.method, _name_values(config, searched))

    assert name(method="sft") == "sft seed=0"
    assert name(method="ra", lambda_ra=3e-3) == "ra lambda_ra=3e-3 seed=0"
    assert name(method="jtr", replay_mode="fresh") == "jtr replay_mode=fresh seed=0"
    assert name(method="jtr", replay_mode="fixed", replay_size_per_class=131) == \
        "jtr replay_mode=fixed replay_size_per_class=131 seed=0"
    assert name(method="jtr+ra", lambda_ra=0.01) == "jtr+ra lambda_ra=0.01 replay_mode=fresh seed=0"
    config = build_config("small", {"method": "sft", "lr_g": 1e-4})
    assert trial_run_name("sft", _name_values(config, ["lr_g", "lambda_ra"])) == "sft lr_g=1e-4 seed=0", \
        "a searched field outside the method section acts in every method"
    # Outside a sweep: each method's main knob, where it acts.
    fixed = build_config("small", {"method": "jtr", "replay_mode": "fixed", "replay_size_per_class": 200})
    assert trial_run_name("jtr", _name_values(fixed, None)) == "jtr replay_mode=fixed replay_size_per_class=200 seed=0"


@pytest.mark.slow
@pytest.mark.parametrize("method", BASE_METHODS)
def test_the_method_fields_a_method_does_not_list_as_its_knobs_change_nothing_in_training(method, tiny_config, mnist5k):
    """acting_knobs is what names runs: a method field it leaves out must not change the run's training
    (for JTR with fresh replay, replay_size_per_class too)."""
    from mergan.trainer import Trainer

    others = {"lambda_ra": 0.5, "ra_batch_size": 5, "replay_mode": "fixed", "replay_size_per_class": 7,
              "replay_share": 0.3, "lambda_ewc": 77.0, "ewc_fisher_samples": 8, "dgr_solver_iterations": 2,
              "dgr_solver_lr": 0.05}
    assert set(others) == {k for knobs in METHOD_KNOBS.values() for k in knobs}
    config = tiny_config(method=method, tasks="0|1", save_checkpoints=False)
    changed = {k: v for k, v in others.items() if k not in acting_knobs(config)}
    weights = []
    for overrides in ({}, changed):
        trainer = Trainer(tiny_config(method=method, tasks="0|1", save_checkpoints=False, **overrides), dataset=mnist5k)
        trainer.fit()
        weights.append({k: v.clone() for k, v in trainer.generator.state_dict().items()})
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert (weights[0][key] == weights[1][key]).all(), f"{method}: {key} changed with {changed}"
