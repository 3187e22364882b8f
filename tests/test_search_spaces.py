"""Search spaces: named presets with their questions, conditional parameters, user .py/.yaml spaces."""

from __future__ import annotations

import inspect
import pickle
import tempfile
from pathlib import Path

import optuna
import pytest

from mergan.config import resolve_key
from search_spaces import SpaceError, load_space, preset_names, sample_points

EXAMPLES = Path(__file__).resolve().parents[1] / "search_spaces" / "examples"


def distributions(space, draws: int = 40) -> dict[str, optuna.distributions.BaseDistribution]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    found = {}
    for _ in range(draws):
        trial = study.ask()
        space.define(trial)
        found.update(trial.distributions)
    return found


def test_every_named_space_says_what_it_answers_and_uses_config_field_names():
    assert {"ra-lambda", "ewc-lambda", "replay-size", "jtr-replay-size", "mergan", "ablation", "methods",
            "orders"} <= set(preset_names())
    for name in preset_names():
        space = load_space(name)
        assert space.question.endswith(")") and "?" in space.question, name
        for point in sample_points(space, 16):
            for key in point:
                resolve_key(key)  # raises ConfigError for a name the trainer does not have


@pytest.mark.parametrize("name,parameter,low,high,constants", [
    ("ra-lambda", "lambda_ra", 1e-4, 1.0, {"method": "ra"}),
    ("ewc-lambda", "lambda_ewc", 1e6, 1e12, {"method": "ewc"}),
])
def test_lambda_spaces_search_a_log_scale_for_their_method(name, parameter, low, high, constants):
    space = load_space(name)
    found = distributions(space)
    assert found[parameter] == optuna.distributions.FloatDistribution(low, high, log=True)
    assert all(point.items() >= constants.items() for point in sample_points(space, 8))


def test_jtr_replay_size_searches_jtr_with_a_fixed_replay_set():
    space = load_space("jtr-replay-size")
    assert distributions(space)["replay_size_per_class"] == optuna.distributions.IntDistribution(16, 2048, log=True)
    assert all(p["method"] == "jtr" and p["replay_mode"] == "fixed" for p in sample_points(space, 8))


def test_replay_size_compares_generated_and_real_replay_at_the_same_sizes():
    space = load_space("replay-size")
    points = list(space.grid_points())
    assert space.kind == "grid" and len(points) == 8
    sizes = {m: sorted(p["replay_size_per_class"] for p in points if p["method"] == m) for m in ("jtr", "er")}
    assert sizes["jtr"] == sizes["er"] == [16, 64, 256, 1024]
    assert all(p["replay_mode"] == "fixed" for p in points)  # JTR's set drawn once, as ER's buffer is kept


def test_orders_space_runs_random_class_orders_beside_seeds():
    points = list(load_space("orders").grid_points())
    assert {(p["order_seed"], p["seed"]) for p in points} == {(o, s) for o in range(4) for s in (0, 1)}
    assert {p["task_order"] for p in points} == {"random"} and "method" not in points[0]


def test_conditional_parameters_appear_only_when_their_method_uses_them():
    points = sample_points(load_space("mergan"), 64)
    assert {p["method"] for p in points} == {"jtr", "ra", "jtr+ra"}
    for point in points:
        methods = point["method"].split("+")
        assert ("lambda_ra" in point) == ("ra" in methods)
        assert ("replay_mode" in point) == ("jtr" in methods)
        assert ("replay_size_per_class" in point) == (point.get("replay_mode") == "fixed")


def test_methods_space_runs_each_baseline_first_then_searches_the_reference_baselines_too():
    points = sample_points(load_space("methods"), 0)
    assert [p["method"] for p in points] == ["sft", "jtr", "ra", "jtr+ra"]
    searched = sample_points(load_space("methods"), 60)[4:]
    assert {"er", "l2"} <= {p["method"] for p in searched}
    assert all(("lambda_l2" in p) == (p["method"] == "l2") for p in searched)
    assert all(("replay_size_per_class" in p) == (p["method"] == "er" or p.get("replay_mode") == "fixed")
               for p in searched)


def test_ablation_is_the_papers_table_as_a_grid_of_every_method_and_seed():
    space = load_space("ablation")
    assert space.kind == "grid" and space.define is None
    points = list(space.grid_points())
    assert len(points) == space.grid_size() == 24
    assert {p["method"] for p in points} == {"jt", "sft", "ewc", "dgr", "jtr", "ra", "er", "l2"}
    assert {p["seed"] for p in points} == {0, 1, 2}


def test_unknown_space_names_the_known_ones():
    with pytest.raises(SpaceError, match="unknown search space 'ra-lamda'.*ra-lambda"):
        load_space("ra-lamda")


# -- a user's own space -------------------------------------------------------------------
def test_example_python_space_loads_with_its_question_points_and_a_conditional_parameter():
    space = load_space(str(EXAMPLES / "my_space.py"))
    assert space.kind == "optuna" and "critic learning rate" in space.question
    points = sample_points(space, 40)
    assert points[0] == {"lambda_ra": 1e-2, "lr_d": 2e-4, "critic_steps": 2, "method": "ra"}
    assert all(("lambda_gp" in p) == (p["critic_steps"] > 2) for p in points)
    # Tune pickles the searcher (and so the function) by reference; a resumed sweep must find it again.
    assert pickle.loads(pickle.dumps(space.define)) is space.define


def test_a_resumed_sweep_uses_the_space_text_it_saved_not_the_edited_file(tmp_path):
    path = tmp_path / "space.py"
    path.write_text('def space(trial):\n    """Old?"""\n    trial.suggest_float("lr_g", 1e-5, 1e-3, log=True)\n')
    saved = load_space(str(path)).text
    path.write_text('def space(trial):\n    """New?"""\n    trial.suggest_float("lr_d", 1e-5, 1e-3, log=True)\n')
    again = load_space(str(path), text=saved)
    assert again.question == "Old?" and set(sample_points(again, 2)[0]) == {"lr_g"}


def test_a_python_space_runs_from_its_own_text_with_nothing_written_where_other_users_could_plant_links(
        tmp_path, monkeypatch):
    # Another local user can create folders and links in the shared temporary folder before the sweep runs.
    shared, theirs = tmp_path / "shared_tmp", tmp_path / "their_folder"
    shared.mkdir()
    theirs.mkdir(mode=0o777)
    (shared / "mergan_spaces").symlink_to(theirs, target_is_directory=True)
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    path = tmp_path / "mine" / "space.py"
    path.parent.mkdir()
    path.write_text('import inspect\n\ndef space(trial):\n    """Which lr_g?"""\n'
                    '    trial.suggest_float("lr_g", 1e-5, 1e-3, log=True)\n'
                    '    assert trial is not None, inspect.getsourcefile(space)\n')
    space = load_space(str(path))
    assert set(sample_points(space, 2)[0]) == {"lr_g"}
    assert list(theirs.iterdir()) == [] and sorted(p.name for p in shared.iterdir()) == ["mergan_spaces"]
    assert list(path.parent.iterdir()) == [path]  # no copy beside the user's file either
    assert inspect.getsource(space.define) == path.read_text().split("\n\n", 1)[1]  # what the sweep records
    assert pickle.loads(pickle.dumps(space.define)) is space.define


@pytest.mark.parametrize("text,message", [
    ('def space(trial):\n    trial.suggest_float("lr_g", 1e-5, 1e-3)\n', "needs a docstring"),
    ('def searchspace(trial):\n    """Q?"""\n', r"must define a function space\(trial\)"),
    ('def space(trial):\n    """Q?"""\n    return 3\n', "must return None or a dict"),
    ('import nonexistent_module_xyz\n', "failed to load: ModuleNotFoundError"),
])
def test_python_space_errors_say_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "bad.py"
    path.write_text(text)
    with pytest.raises(SpaceError, match=message):
        sample_points(load_space(str(path)), 1)


def test_example_yaml_space_has_conditions_constants_and_points():
    space = load_space(str(EXAMPLES / "my_space.yaml"))
    assert space.question.startswith("Which memory replay")
    points = sample_points(space, 64)
    assert points[0] == {"method": "ra", "lambda_ra": 0.01}
    for point in points:
        assert ("lambda_ra" in point) == (point["method"] in ("ra", "jtr+ra"))
        assert ("replay_mode" in point) == (point["method"] in ("jtr", "jtr+ra"))
        assert ("replay_size_per_class" in point) == (point.get("replay_mode") == "fixed")
    found = distributions(space, 64)
    assert found["lambda_ra"] == optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)  # "1e-4" read as text
    assert found["replay_size_per_class"] == optuna.distributions.IntDistribution(16, 2048, log=True)
    fixed = optuna.trial.FixedTrial({"method": "jtr", "replay_mode": "fresh"})
    assert pickle.loads(pickle.dumps(space.define))(fixed) == {}
    assert fixed.params == {"method": "jtr", "replay_mode": "fresh"}


def test_yaml_constants_go_into_every_configuration(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("lr_g: {type: float, low: 1e-5, high: 1e-3, log: true}\niterations_per_task: 300\n")
    points = sample_points(load_space(str(path)), 5)
    assert all(p["iterations_per_task"] == 300 and 1e-5 <= p["lr_g"] <= 1e-3 for p in points)


def test_yaml_grid_is_every_combination():
    space = load_space(str(EXAMPLES / "ablation_grid.yaml"))
    assert space.kind == "grid" and space.grid == {"method": ["sft", "ra"], "seed": [0, 1, 2]}
    assert len(sample_points(space)) == 6


@pytest.mark.parametrize("text,message", [
    ("lr_g: {type: uniform, low: 0.1, high: 1}", "type 'uniform'; allowed: float, int, categorical, grid"),
    ("lr_g: {type: float, high: 1}", "needs low"),
    ("lr_g: {type: float, low: 1, high: 0.1}", r"low \(1.0\) must be below high"),
    ("lr_g: {type: float, low: 0, high: 1, log: true}", "log scale needs low > 0"),
    ("lr_g: {type: float, low: 0.1, high: 1, choices: [1]}", r"unknown keys \['choices'\]"),
    ("method: {type: categorical, choices: []}", "non-empty list of choices"),
    ("lambda_ra: {type: float, low: 0.1, high: 1, condition: {method: ra}}\nmethod: ra",
     r"condition names \['method'\], which must be parameters defined above it"),
    ("method: {type: grid, values: [sft]}\nlr_g: {type: float, low: 0.1, high: 1}", "mixes grid parameters"),
    ("batch_size: {type: int, low: 8, high: 64, step: 0}", "step 0 must be > 0"),
    ("points_to_evaluate: 0\nlr_g: {type: float, low: 0.1, high: 1}", "points_to_evaluate must be a list"),
    ("lr_g: [oops", "not valid YAML"),
    ("- a\n- b", "must hold a mapping"),
])
def test_yaml_space_errors_name_the_parameter_and_what_is_allowed(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError, match=message):
        load_space(str(path))


def test_a_space_file_of_another_kind_is_refused(tmp_path):
    path = tmp_path / "space.json"
    path.write_text("{}")
    with pytest.raises(SpaceError, match=r"unknown kind '.json'; allowed: .py"):
        load_space(str(path))
