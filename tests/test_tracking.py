"""MLflow as the mirror of run folders, against a real ``mlflow server`` (started once for this module) and SQLite.

Hand-made runs (``tests/support/fake_runs.py``) pin down exactly what a run holds; the real trainer runs
once, through a server that is stopped after task 1 and started again after task 2.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from PIL import Image

import mergan
from mergan.callbacks import Callback
from mergan.naming import run_name
from mergan.presets import build_config
from mergan.record import RunRecord, read_record
from mergan.settings import value_text
from mergan_cli.sync import add_subcommands
from tests.support.fake_runs import STEPS, accuracy, empty_folders, fake_run
from tests.support.mlflow_process import SCRIPT, free_port, start_mlflow_server
from tests.support.mlflow_stores import empty_store
from tracking.mirror import MLflowMirror, Target, TrackingWarning, mirror_folder, run_id_of, unsent
from tracking.store import HTTP_ENV_DEFAULTS, resolve_tracking_uri
from tracking.sweep_run import finish_sweep_run, start_sweep_run


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    """No tracking URI from the outside; the short HTTP retries undone after each test."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for name, value in HTTP_ENV_DEFAULTS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow_server"))
    yield server
    if server.running:
        server.stop()


def mirrored(uri: str, experiment: str = "mergan", **target: object) -> tuple[RunRecord, MLflowMirror]:
    """A record and its MLflow mirror (syncing at every step), as ``mergan train`` installs them."""
    return RunRecord(), MLflowMirror(Target(uri, experiment, **target), interval_s=0)


def config_for(tmp_path: Path, **overrides):
    values = {"method": "ra", "lambda_ra": 3e-3, "tasks": "0|1|2", "device": "cpu",
              "out_dir": str(tmp_path / "run"), **overrides}
    return build_config("small", values)


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def assert_history(client: MlflowClient, run_id: str, key: str, expected: list[tuple[int, float]]) -> None:
    actual = history(client, run_id, key)
    assert [s for s, _ in actual] == [s for s, _ in expected], key
    assert [v for _, v in actual] == pytest.approx([v for _, v in expected]), key


def artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for info in client.list_artifacts(run_id, path):
        found |= artifacts(client, run_id, info.path) if info.is_dir else {info.path}
    return found


def assert_task_metrics(client, run_id, num_tasks, first_task=1, offsets=None):
    """acc_task_j at every step i >= j, once, with R[i][j]; the same for the other per-task metrics."""
    offsets = offsets or {}
    for j in range(1, num_tasks + 1):
        expected = [(i, accuracy(i, j, offsets.get(i, 0.0))) for i in range(max(j, first_task), num_tasks + 1)]
        assert_history(client, run_id, f"acc_task_{j}", expected)
    for key in ("avg_acc", "bwt", "train_seconds", "eval_seconds"):
        assert [s for s, _ in history(client, run_id, key)] == list(range(first_task, num_tasks + 1))


def assert_step_metrics(client, run_id, last_step, offsets=None):
    offsets = offsets or {}
    expected = [(g, g + offsets.get((g - 1) // STEPS + 1, 0.0)) for g in range(1, last_step + 1)]
    assert_history(client, run_id, "loss_d", expected)
    assert [s for s, _ in history(client, run_id, "steps_per_second")] == list(range(1, last_step + 1))


# -- against the server -----------------------------------------------------------------
@pytest.mark.slow
def test_a_run_holds_config_tags_per_task_curves_and_artifacts(server, tmp_path):
    config = config_for(tmp_path)
    record, mirror = mirrored(server.uri, "handmade")
    fake_run([record, mirror], config, num_tasks=3)
    client = MlflowClient(server.uri)
    run = client.get_run(mirror.run_id)

    assert run.info.status == "FINISHED" and run.info.run_name == "ra lambda_ra=3e-3 seed=0"
    expected_params = {k: str(v) for k, v in config.flat().items()}
    expected_params.update(evaluator_cache_key="mnist5k-abc123", evaluator_test_accuracy="0.987")
    assert run.data.params == expected_params
    tags = run.data.tags
    assert (tags["method"], tags["dataset"], tags["device"]) == ("ra", "mnist5k", "cpu")
    assert tags["mergan_version"] == mergan.__version__ and tags["evaluator_cache_key"] == "mnist5k-abc123"
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(mergan.__file__).parent,
                            capture_output=True, text=True, check=True).stdout.strip()
    assert tags["git_commit"] == commit
    assert_task_metrics(client, run.info.run_id, 3)
    assert_history(client, run.info.run_id, "acc_class_2", [(3, run.data.metrics["avg_acc"])])
    assert_step_metrics(client, run.info.run_id, 3 * STEPS)

    assert artifacts(client, run.info.run_id) == {
        "config.yaml", "accuracy/accuracy_matrix.csv", "accuracy/accuracy_matrix.json",
        "accuracy/accuracy_matrix.png", "samples/task_1.png", "samples/task_2.png", "samples/task_3.png",
        "checkpoint/checkpoint.pt"}
    local = Path(download_artifacts(run_id=run.info.run_id, artifact_path="", tracking_uri=server.uri,
                                    dst_path=str(tmp_path / "download")))
    with open(local / "accuracy" / "accuracy_matrix.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["after_task", "task_1", "task_2", "task_3"]
    assert [float(v) for v in rows[3][1:]] == pytest.approx([accuracy(3, j) for j in (1, 2, 3)])
    assert rows[1][2:] == ["", ""]  # R[1][2], R[1][3]: not measured
    matrix = json.loads((local / "accuracy" / "accuracy_matrix.json").read_text())["accuracy_matrix"]
    assert matrix[1] == pytest.approx([accuracy(2, 1), accuracy(2, 2), None])
    assert Image.open(local / "accuracy" / "accuracy_matrix.png").size[0] > 100
    assert (local / "checkpoint" / "checkpoint.pt").read_bytes() == b"checkpoint 3"
    assert build_config(yaml_path=local / "config.yaml").flat() == config.flat()
    out = Path(config.run.out_dir)
    assert run_id_of(out) == run.info.run_id and not unsent(out)
    assert not empty_folders(out) and not (out / "mirrors" / "mlflow.json.tmp").exists()  # nothing staged

    # The run holds its record and nothing more: mirroring the folder again sends nothing.
    again = mirror_folder(out, Target(server.uri, "handmade"))
    assert (again.run_id, again.steps, again.tasks, again.status) == (run.info.run_id, 0, 0, "FINISHED")
    assert_step_metrics(client, run.info.run_id, 3 * STEPS)
    assert_task_metrics(client, run.info.run_id, 3)


def _trial(uri: str, parent: str, trial_id: str, lambda_ra: float, out_dir: str, upto: int, offset: float,
           end: bool) -> None:
    """One trial in its own process, as a Ray worker would run it."""
    from mergan.naming import config_run_name

    config = build_config("small", {"method": "ra", "lambda_ra": lambda_ra, "tasks": "0|1|2", "out_dir": out_dir})
    record = RunRecord(f"trial:sweep-1:{trial_id}", config_run_name(config, ["lambda_ra"]),
                       {"sweep_id": "sweep-1", "trial_id": trial_id})
    mirror = MLflowMirror(Target(uri, parent_run_id=parent), interval_s=0)
    fake_run([record, mirror], config, num_tasks=3, upto=upto, offset=offset, end=end)


@pytest.mark.slow
def test_sweep_nests_trials_from_other_processes_and_a_restarted_trial_continues_its_run(server, tmp_path):
    space = {"lambda_ra": "loguniform(1e-4, 1e-1)"}
    settings = {"metric": "avg_acc", "mode": "max", "num_samples": 2}
    parent = start_sweep_run(server.uri, "sweeps", "ra-sweep", space, settings, sweep_id="sweep-1")
    assert start_sweep_run(server.uri, "sweeps", "ra-sweep", space, settings, sweep_id="sweep-1") == parent

    spawn = multiprocessing.get_context("spawn")
    # Trial a crashes after task 2 (no run end); trial b completes.
    first = [spawn.Process(target=_trial, args=(server.uri, parent, "a", 3e-3, str(tmp_path / "a"), 2, 0.0, False)),
             spawn.Process(target=_trial, args=(server.uri, parent, "b", 1e-2, str(tmp_path / "b"), 3, 0.0, True))]
    for process in first:
        process.start()
    for process in first:
        process.join(120)
        assert process.exitcode == 0
    # Ray restarts trial a elsewhere (no record there): it trains tasks 1..3 again (other values) and must add
    # only task 3.
    again = spawn.Process(target=_trial, args=(server.uri, parent, "a", 3e-3, str(tmp_path / "a2"), 3, 0.25, True))
    again.start()
    again.join(120)
    assert again.exitcode == 0

    client = MlflowClient(server.uri)
    children = client.search_runs([client.get_run(parent).info.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{parent}'")
    by_trial = {run.data.tags["trial_id"]: run for run in children}
    assert sorted(by_trial) == ["a", "b"]
    assert by_trial["a"].info.run_name == "ra lambda_ra=3e-3 seed=0"
    assert by_trial["b"].info.run_name == "ra lambda_ra=0.01 seed=0"
    assert all(run.data.tags["sweep_id"] == "sweep-1" and run.info.status == "FINISHED" for run in children)
    a = by_trial["a"].info.run_id
    assert_task_metrics(client, a, 3, offsets={3: 0.25})
    assert_step_metrics(client, a, 3 * STEPS, offsets={3: 0.25})
    assert {"samples/task_1.png", "samples/task_3.png"} <= artifacts(client, a)
    assert_task_metrics(client, by_trial["b"].info.run_id, 3)

    best = {"trial_id": "b", "run_id": by_trial["b"].info.run_id, "metrics": {"avg_acc": 0.71},
            "config": {"lambda_ra": 1e-2}}
    finish_sweep_run(server.uri, parent, best)
    sweep = client.get_run(parent)
    assert sweep.info.status == "FINISHED" and sweep.data.tags["mergan.role"] == "sweep"
    assert sweep.data.params == {"space.lambda_ra": "loguniform(1e-4, 1e-1)", "metric": "avg_acc",
                                 "mode": "max", "num_samples": "2"}
    assert sweep.data.metrics == {"best.avg_acc": 0.71}
    assert (sweep.data.tags["best_trial_id"], sweep.data.tags["best.lambda_ra"]) == ("b", "0.01")
    assert artifacts(client, parent) == {"sweep/search_space.json", "sweep/sweep_settings.json", "sweep/best.json"}


@pytest.mark.slow
def test_records_kept_while_unreachable_are_sent_by_mergan_sync(server, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = config_for(tmp_path, tasks="0|1")
    out = Path(config.run.out_dir)
    # The first attempt dies after task 2, before its end; the second resumes from task 1's checkpoint.
    record, first = mirrored(dead, "synced")
    with pytest.warns(TrackingWarning, match="training goes on"):
        fake_run([record, first], config, num_tasks=2, end=False)
    record, again = mirrored(dead, "synced")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with again, record.ending():
            fake_run([record, again], config, num_tasks=2, offset=0.25, resume_after=1, end=False)
            record.set_labels({"diverged": "0", "trial_id": "t"})
            record.end("FINISHED")
    messages = [str(w.message) for w in caught if w.category is TrackingWarning]
    assert f"send it with `mergan sync {out}`" in messages[-1]  # at the end of the run: what to do about it
    assert again.run_id is None and unsent(out)  # no MLflow run yet: the record holds everything
    assert [line["task"] for line in read_record(out).tasks] == [1, 2]  # task 2 once: the resumed attempt's

    parser = argparse.ArgumentParser(prog="mergan")
    add_subcommands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sync", str(tmp_path), "--tracking-uri", server.uri])
    assert args.handler(args) == 0
    assert not unsent(out) and run_id_of(out, server.uri) is not None
    assert args.handler(args) == 0  # nothing left: a second sync sends nothing

    client = MlflowClient(server.uri)
    (run,) = client.search_runs([client.get_experiment_by_name("synced").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["method.lambda_ra"] == "0.003"
    assert (run.data.tags["diverged"], run.data.tags["trial_id"]) == ("0", "t")
    assert_task_metrics(client, run.info.run_id, 2, offsets={2: 0.25})
    assert_step_metrics(client, run.info.run_id, 2 * STEPS, offsets={2: 0.25})
    assert {"samples/task_1.png", "samples/task_2.png"} <= artifacts(client, run.info.run_id)
    assert not empty_folders(out)


def test_a_second_sync_sends_nothing_and_says_so(server, tmp_path, capsys):
    config = config_for(tmp_path, tasks="0|1")
    fake_run([RunRecord()], config, num_tasks=2)  # --no-mlflow: a record alone
    parser = argparse.ArgumentParser(prog="mergan")
    add_subcommands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sync", str(tmp_path), "--tracking-uri", server.uri, "--experiment", "later"])
    assert args.handler(args) == 0
    assert "sent 6 steps, 2 tasks" in capsys.readouterr().out
    assert args.handler(args) == 0
    assert "sent 0 steps, 0 tasks" in capsys.readouterr().out
    client = MlflowClient(server.uri)
    (run,) = client.search_runs([client.get_experiment_by_name("later").experiment_id])
    assert_step_metrics(client, run.info.run_id, 2 * STEPS)


def test_platform_script_reports_the_running_server(server):
    assert server.running
    done = subprocess.run([sys.executable, str(SCRIPT), "status", "--root", str(server.root)],
                          capture_output=True, text=True, check=False, timeout=30)
    assert done.returncode == 0 and "healthy" in done.stdout and "127.0.0.1" in done.stdout
    assert not (SCRIPT.parent / "__init__.py").exists()  # platform/ must never shadow the stdlib module


class StopAndRestart(Callback):
    """Takes the server away after task 1 and brings it back (same port, same store) during task 2."""

    def __init__(self, server):
        self.server = server

    def on_step(self, trainer, info):
        if info.task == 2 and info.step == 2:
            self.server.start()

    def on_task_end(self, trainer, result):
        if result.task == 1:
            self.server.stop()


@pytest.mark.slow
def test_real_trainer_through_a_server_outage_loses_and_repeats_nothing(server, tiny_config, mnist5k, tmp_path):
    import torch

    from mergan.evaluation.classifier import build_net, net_shape
    from mergan.trainer import Trainer

    # An untrained evaluator (bring-your-own weights) saves training one: this test is about the records.
    weights = tmp_path / "evaluator.pt"
    torch.save(build_net(net_shape(mnist5k), seed=0).state_dict(), weights)
    config = tiny_config(method="ra", tasks="0|1", eval_when="every", evaluator_weights=str(weights))
    mirror = MLflowMirror(Target(server.uri, "e2e"), interval_s=0)
    with pytest.warns(TrackingWarning, match="training goes on"):
        results = Trainer(config, callbacks=[mirror, StopAndRestart(server)], dataset=mnist5k).fit()
    assert server.running and mirror.online and not unsent(config.run.out_dir)

    client = MlflowClient(server.uri)
    run_id = mirror.run_id
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params["method.method"] == "ra"
    assert {"acc_task_1", "acc_task_2", "avg_acc", "bwt", "recall_classifier_task_2"} <= set(results[-1].metrics)
    for key in [*results[-1].metrics, "train_seconds", "eval_seconds"]:  # every per-task metric, once per task
        first_task = 2 if key.endswith(("_task_2", "_class_1")) else 1  # task 2 holds class 1
        assert [s for s, _ in history(client, run_id, key)] == list(range(first_task, 3)), key
    for result in results:
        for key, value in result.metrics.items():
            assert dict(history(client, run_id, key))[result.task] == pytest.approx(value, nan_ok=True), key
    total = 2 * config.optim.iterations_per_task
    for key in ("loss_d", "loss_g", "steps_per_second"):  # every step, once, including those of the outage
        assert [s for s, _ in history(client, run_id, key)] == list(range(1, total + 1)), key
    assert artifacts(client, run_id) >= {"config.yaml", "checkpoint/checkpoint.pt", "accuracy/accuracy_matrix.csv",
                                         "accuracy/accuracy_matrix.png", "samples/task_1.png", "samples/task_2.png"}
    assert run.data.params["evaluator_cache_key"] == results[0].extra["evaluator_cache_key"]


# -- without a server ---------------------------------------------------------------------
def test_default_store_is_sqlite_in_the_working_folder_and_a_resumed_run_skips_what_it_holds(
        tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert resolve_tracking_uri() == f"sqlite:///{work.resolve() / 'mlflow.db'}"
    config = config_for(work, tasks="0|1|2")
    record, first = mirrored(resolve_tracking_uri())
    fake_run([record, first], config, num_tasks=3, upto=2, end=False)  # crashes after task 2
    monkeypatch.chdir(tmp_path)  # a later process elsewhere: the URI it was given is absolute
    assert (tmp_path / "work" / "mlflow.db").is_file()
    uri = first.target.tracking_uri
    run_id = run_id_of(config.run.out_dir, uri)
    assert run_id == first.run_id
    assert (work / "mlartifacts" / "mergan" / run_id / "artifacts" / "config.yaml").is_file()

    # Another attempt trains 1..3 again from the start (other values): MLflow keeps what it holds, adds task 3.
    record, again = mirrored(uri)
    fake_run([record, again], config, num_tasks=3, offset=0.25)
    client = MlflowClient(uri)
    assert again.run_id == run_id and client.get_run(run_id).info.status == "FINISHED"
    assert_task_metrics(client, run_id, 3, offsets={3: 0.25})
    assert_step_metrics(client, run_id, 3 * STEPS, offsets={3: 0.25})
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1


def test_a_batch_sent_twice_stores_nothing_twice(tmp_path):
    """The markers aside, a repeated batch (a crash between a batch and its marker) adds no value: metrics carry
    the record's own timestamps, and an SQL store keeps one row per (key, step, value, timestamp)."""
    uri = empty_store(tmp_path / "mlflow.db")
    config = config_for(tmp_path, tasks="0|1")
    record, mirror = mirrored(uri)
    fake_run([record, mirror], config, num_tasks=2)
    client = MlflowClient(uri)
    for tag in ("mergan.last_step", "mergan.last_task", "mergan.starts"):
        client.delete_tag(mirror.run_id, tag)
    mirror_folder(config.run.out_dir, Target(uri))
    assert_step_metrics(client, mirror.run_id, 2 * STEPS)
    assert_task_metrics(client, mirror.run_id, 2)


def test_run_names_read_well():
    assert [value_text(v) for v in (3e-3, 1e-2, 0.1, 10.0, 1e9, 2.5e-4, 5, "fixed")] == \
        ["3e-3", "0.01", "0.1", "10", "1e9", "2.5e-4", "5", "fixed"]
    assert run_name("jtr+ra", {"method.lambda_ra": 1e-3, "seed": 1}) == "jtr+ra lambda_ra=1e-3 seed=1"
