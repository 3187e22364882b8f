"""A researcher's own method: found by name from an installed package or a file, and then usable everywhere.

The worked example, ``examples/mergan-kd`` (knowledge distillation at the previous critic's features), is
installed into a folder of its own (never into the shared environment) and put on PYTHONPATH for the
commands and the Ray workers they start; the same file is also loaded by path (``--method-module``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from mergan.config_io import config_from_dict
from mergan.methods import REGISTRY, build_method
from mergan.methods.registry import BUILT_IN, MethodRegistry
from mergan.presets import build_config
from mergan.settings import ConfigError
from mergan.trainer import Trainer
from tests.support.methods import term_before_and_after_one_step
from tests.support.sweeps import TINY_SETS
from tracking.sweep_run import trial_runs
from trainables.plan import SweepPlan, make_plan

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "mergan-kd"
KD_FILE = str(EXAMPLE / "mergan_kd" / "distillation.py")
KD_SPACE = str(EXAMPLE / "mergan_kd" / "space.py")
TINY = ["--tasks", "0|1", "--iterations", "2", "--batch-size", "8", "--critic-steps", "1", "--g-width", "8",
        "--d-width", "8", "--z-dim", "8", "--device", "cpu", "--eval-when", "none"]


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory) -> Path:
    """The example package pip-installed into a folder of its own (a copy is built, so the checkout stays clean)."""
    root = tmp_path_factory.mktemp("plugin")
    shutil.copytree(EXAMPLE, root / "source")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--target", str(root / "site"), str(root / "source")], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return root / "site"


def with_plugin(site: Path | None, **extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH", "")) if p)
    return env


def mergan(*args: str, env: dict[str, str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mergan_cli.main", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False)


# -- an installed package (entry point group mergan.methods) --------------------------------------
@pytest.mark.slow
def test_an_installed_plugin_works_in_help_train_mlflow_eval_and_resume(installed_example, tmp_path):
    env = with_plugin(installed_example, MERGAN_CACHE_DIR=str(tmp_path / "cache"))
    helped = mergan("train", "--help", env=env, cwd=tmp_path)
    text = " ".join(helped.stdout.split())
    assert helped.returncode == 0 and "kd knowledge distillation (Lifelong GAN)" in text
    assert "[the plugin mergan-kd 0.1.0 (kd = mergan_kd.distillation:FeatureDistillation)]" in text
    assert "--lambda-kd LAMBDA_KD kd: weight of the distillation loss" in text  # its knob has a flag

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    trained = mergan("train", *TINY, "--method", "kd", "--set", "method.lambda_kd=0.25", "--out-dir", "kd",
                     "--eval-when", "every", "--eval-samples-per-class", "8", "--evaluator-epochs", "1", "--fid",
                     "false", "--tracking-uri", uri, env=env, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    run = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("mergan").experiment_id])[0]
    assert run.info.run_name == "kd lambda_kd=0.25 seed=0" and run.data.params["method.lambda_kd"] == "0.25"
    assert run.data.tags["method"] == "kd" and "loss_kd" in run.data.metrics

    evaluated = mergan("eval", "kd", "--samples-per-class", "8", env=env, cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert '"method": "kd"' in evaluated.stdout
    resumed = mergan("train", "--resume", "kd", "--no-mlflow", env=env, cwd=tmp_path)
    assert resumed.returncode == 0 and "resuming after task 2/2" in resumed.stderr
    reported = mergan("report", "--experiment", "mergan", "--tracking-uri", uri, "--out", "report", env=env,
                      cwd=tmp_path)
    assert reported.returncode == 0 and "| kd* |" in reported.stdout  # a row of its own, marked: not in the paper

    # Without the package, the checkpoint says which plugin its run needs, in one line.
    missing = mergan("eval", "kd", env=with_plugin(None), cwd=tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "unknown method 'kd'" in missing.stderr and "kd: the plugin mergan-kd 0.1.0" in missing.stderr
    assert "install that plugin" in missing.stderr


@pytest.mark.slow
def test_a_two_trial_sweep_of_an_installed_plugin_runs_on_a_local_ray_whose_workers_import_it(
        installed_example, tmp_path, sweep_env):
    env = with_plugin(installed_example, **{k: v for k, v in sweep_env.items() if k not in os.environ})
    env.update(RAY_TMPDIR=sweep_env["RAY_TMPDIR"], MERGAN_CACHE_DIR=sweep_env["MERGAN_CACHE_DIR"])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run([sys.executable, str(REPO / "sweep.py"), "--space", KD_SPACE, "--num-samples", "2",
                           "--max-concurrent", "2", "--tasks", "0|1", *[a for s in TINY_SETS for a in ("--set", s)],
                           "--storage-path", str(tmp_path / "sweeps"), "--tracking-uri", uri, "--name", "kd",
                           "--verbose", "0"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    client = MlflowClient(uri)
    trials = trial_runs(client, SweepPlan.load(str(tmp_path / "sweeps"), "kd").parent_run_id)
    assert len(trials) == 2 and {run.data.tags["method"] for run in trials} == {"kd"}
    assert all(run.info.status == "FINISHED" and "acc_task_2" in run.data.metrics for run in trials)
    assert min(float(run.data.params["method.lambda_kd"]) for run in trials) >= 1e-3
    assert any(run.info.run_name.startswith("kd lambda_kd=") for run in trials)


# -- a file named by --method-module ------------------------------------------------------------
def test_a_method_file_trains_names_its_runs_and_resumes_exactly(tiny_config, mnist5k, tmp_path):
    full = Trainer(tiny_config(module=KD_FILE, method="kd", lambda_kd=0.5, tasks="0|1|2",
                               out_dir=str(tmp_path / "full")), dataset=mnist5k)
    full.fit()
    assert full.config.flat()["method.lambda_kd"] == 0.5 and full.config.method.module == KD_FILE
    part = Trainer(tiny_config(module=KD_FILE, method="kd", lambda_kd=0.5, tasks="0|1|2",
                               out_dir=str(tmp_path / "part")), dataset=mnist5k)
    part.finish_task(0, part.run_task(0))
    del part
    resumed = Trainer.from_checkpoint(tmp_path / "part", dataset=mnist5k)
    assert resumed.config.method.lambda_kd == 0.5
    resumed.fit()
    for name, value in full.generator.state_dict().items():
        assert torch.equal(value, resumed.generator.state_dict()[name]), name


def test_a_method_file_works_from_the_command_line_with_its_own_flag(tmp_path, monkeypatch):
    from mergan_cli.main import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MERGAN_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["train", *TINY, "--method-module", KD_FILE, "--method", "kd+ra", "--lambda-kd", "2",
                 "--out-dir", "run", "--no-mlflow"]) == 0
    config = build_config(yaml_path=tmp_path / "run" / "config.yaml")
    assert config.methods == ("ra", "kd") and config.method.lambda_kd == 2.0


def test_a_method_module_that_fails_stops_the_command_line_in_one_line(tmp_path, capsys):
    from mergan_cli.main import main

    broken = tmp_path / "broken.py"
    broken.write_text("import nonexistent_module_xyz\n")
    assert main(["train", "--method-module", str(broken), "--method", "sft", "--no-mlflow"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No module named 'nonexistent_module_xyz'" in err


def test_a_method_module_in_yaml_brings_its_knobs(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(f"method:\n  module: {KD_FILE}\n  method: kd\n  lambda_kd: 0.125\n")
    config = build_config(yaml_path=path)
    assert config.method.lambda_kd == 0.125
    assert config_from_dict(config.to_dict()) == config


def test_a_sweep_plan_searches_a_method_files_knob(tmp_path):
    plan = make_plan(space=KD_SPACE, sets=[f"method.module={KD_FILE}", "lambda_gp=5"],
                     storage_path=str(tmp_path), tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    assert plan.fixed["method.module"] == KD_FILE and plan.name_keys == ["lambda_kd"]


# -- what the example method does -----------------------------------------------------------------
def kd_at_task_two(tiny_config, mnist5k, **overrides):
    trainer = Trainer(tiny_config(module=KD_FILE, method="kd", tasks="0|1|2", **overrides), dataset=mnist5k)
    trainer.run_task(0)
    trainer.run_task(1)
    task = trainer.task_context(2)
    trainer.method.before_task(trainer, task)
    return trainer, task


def test_kd_is_zero_while_the_generator_equals_its_previous_copy_and_pulls_it_back(tiny_config, mnist5k):
    trainer, task = kd_at_task_two(tiny_config, mnist5k, lambda_kd=1.0)
    assert trainer.method.generator_terms(trainer, task)["loss_kd"].item() == 0.0
    before, after = term_before_and_after_one_step(trainer, task, "loss_kd", lr=1e-2)
    assert 0 < after < before


def test_kd_compares_the_previous_critics_features_of_earlier_classes(tiny_config, mnist5k):
    trainer, task = kd_at_task_two(tiny_config, mnist5k, lambda_kd=3.0)
    with torch.no_grad():
        for p in trainer.generator.parameters():
            p.add_(0.05 * torch.randn_like(p))
    torch.manual_seed(2)
    term = trainer.method.generator_terms(trainer, task)["loss_kd"]
    torch.manual_seed(2)
    labels = torch.tensor([0] * 8 + [1] * 8)  # batch 16 // 2 earlier classes, each
    z = torch.randn(16, trainer.config.model.z_dim)
    critic = trainer.method.previous_critic
    target = critic.features(trainer.method.previous_generator(z, labels))  # the small critic's head input
    expected = 3.0 * (critic.features(trainer.generator(z, labels)) - target).pow(2).mean()
    torch.testing.assert_close(term, expected)


# -- what a plugin gets wrong is refused, in one line -------------------------------------------
def fake_package(root: Path, entry_points: dict[str, str], module_text: str) -> None:
    """An installed package as importlib.metadata finds one: a module and a dist-info with entry points."""
    (root / "fake_plugin.py").write_text(textwrap.dedent(module_text))
    info = root / "fake_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-plugin\nVersion: 1.0\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[mergan.methods]\n{lines}\n")


PLUGIN_MODULE = """
    from mergan.methods.base import Method
    from mergan.settings import Knob

    class Good(Method):
        name = "good"
        summary = "a method that changes nothing"
        changes = "nothing at all"

    class NamedLikeRa(Method):
        name = "ra"
        summary = "takes a built-in name"

    class ClashingKnob(Method):
        name = "clash"
        summary = "redefines a built-in knob"
        knobs = (Knob("lambda_ra", 5.0, "something else"),)

    def not_a_class():
        pass
"""


def test_installed_plugins_that_cannot_be_used_say_why_and_the_rest_still_work(tmp_path, monkeypatch):
    fake_package(tmp_path, {"good": "fake_plugin:Good", "ra": "fake_plugin:NamedLikeRa",
                            "clash": "fake_plugin:ClashingKnob", "func": "fake_plugin:not_a_class",
                            "gone": "missing_module_xyz:Thing"}, PLUGIN_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = MethodRegistry(BUILT_IN)
    plugins = registry.installed()
    assert plugins["good"].method is not None and registry.method_class("good").summary.startswith("a method")
    assert "has the name of a built-in method" in plugins["ra"].error
    assert "knob 'lambda_ra' of method 'clash' clashes with the built-in knob" in plugins["clash"].error
    assert "is not a method class (a subclass of mergan.methods.Method) but a function" in plugins["func"].error
    assert "failed to import: ModuleNotFoundError: No module named 'missing_module_xyz'" in plugins["gone"].error
    with pytest.raises(ConfigError, match="plugin 'gone' from fake-plugin 1.0 .* failed to import"):
        registry.method_class("gone")
    with pytest.raises(ConfigError, match=r"unknown method 'nope'.*installed plugins: good; broken plugins: clash"):
        registry.method_class("nope")
    assert registry.parse("good+ra") == ("ra", "good")  # it combines, after the built-ins


def test_an_unknown_method_lists_what_is_installed():
    with pytest.raises(ConfigError, match=r"unknown method 'magic'; built-in: jt, sft, .*installed plugins: "):
        build_config(overrides={"method": "magic"})


@pytest.mark.parametrize("text,message", [
    ("import nonexistent_module_xyz\n",
     "failed to import: ModuleNotFoundError: No module named 'nonexistent_module_xyz'"),
    ("def f(:\n", "failed to import: SyntaxError"),
    ("class Helper:\n    pass\n", "defines no method class .*classes it defines: Helper"),
    (("from mergan.methods.base import Method\nfrom mergan.settings import Knob\nclass Seed(Method):\n"
      "    name = 'seedy'\n    summary = 's'\n    knobs = (Knob('lr_g', 1.0, 'a clash'),)\n"),
     "its knob 'lr_g' has the name of the config field optim.lr_g"),
    ("from mergan.methods.base import Method\nclass NoSummary(Method):\n    name = 'quiet'\n", "needs a summary"),
])
def test_a_method_module_that_cannot_be_used_is_refused_before_any_compute(tmp_path, text, message):
    path = tmp_path / f"bad_{abs(hash(text))}.py"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        build_config(overrides={"module": str(path), "method": "sft"})


def test_a_missing_method_file_or_module_is_named():
    with pytest.raises(ConfigError, match="method.module '/no/such/methods.py': no such file"):
        build_config(overrides={"module": "/no/such/methods.py"})
    with pytest.raises(ConfigError, match="method.module 'no_such_pkg.methods' failed to import"):
        build_config(overrides={"module": "no_such_pkg.methods"})


def test_a_plugin_combines_only_where_it_says_it_does():
    REGISTRY.load_module(KD_FILE)
    assert build_method("ra+kd", modules=(KD_FILE,)).name == "ra+kd"
    with pytest.raises(ConfigError, match="cannot be combined: dgr trains an unconditional generator"):
        build_method("kd+dgr", modules=(KD_FILE,))
