"""A run folder's record (``record.jsonl``): what a run writes, in order; what a kill leaves; what a resume keeps.

The kill is a real SIGKILL of a training process mid-task, its record mirrored into an SQLite MLflow store
at every step; the resume is ``mergan train --resume``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mergan.record import RECORD_FILE, RunRecord, read_record, run_folders
from mergan.trainer import Trainer
from mergan_cli.main import main
from tests.support.fake_runs import empty_folders, fake_run
from tests.support.mlflow_stores import empty_store
from tracking.mirror import run_id_of

KILL_AT = (2, 2)  # task, step of that task


def kinds(folder: Path) -> list[str]:
    return [line["kind"] for line in read_record(folder).lines]


def recorded(folder: Path, kind: str) -> list[int]:
    """The steps (or tasks) of every line of that kind, repeats included."""
    return [line["step" if kind == "step" else "task"] for line in read_record(folder).lines if line["kind"] == kind]


def test_a_run_records_its_start_steps_tasks_and_end_in_order_and_each_checkpoint_keeps_a_copy(tiny_config, mnist5k):
    config = tiny_config(method="sft", tasks="0|1", log_every=1)
    Trainer(config, dataset=mnist5k).fit()
    out = Path(config.run.out_dir)
    record = read_record(out)
    assert kinds(out) == ["start", "step", "step", "step", "task", "step", "step", "step", "task", "end"]
    (start,) = record.starts
    assert start["config"] == config.flat() and start["name"] == "sft seed=0"
    assert (start["task"], start["step"]) == (0, 0)
    assert [line["step"] for line in record.steps] == [1, 2, 3, 4, 5, 6]
    assert {"loss_d", "loss_g", "wasserstein", "gp", "steps_per_second"} <= set(record.steps[0]["values"])
    assert [(line["task"], line["step"], line["checkpoint_path"]) for line in record.tasks] == \
        [(1, 3, "task_1"), (2, 6, "task_2")]
    assert record.path(record.tasks[-1]["samples_path"]).is_file()  # named relative to the run folder
    times = [line["time"] for line in record.lines]
    assert times == sorted(times) and record.status == "FINISHED"
    copy = [json.loads(line) for line in (out / "task_1" / RECORD_FILE).read_text().splitlines()]
    assert [line["kind"] for line in copy] == ["start", "step", "step", "step", "task"]  # the record up to it


def test_a_resumed_run_cuts_its_record_back_to_the_checkpoint_and_records_each_step_once(tiny_config, mnist5k):
    config = tiny_config(method="sft", tasks="0|1|2", log_every=1)
    Trainer(config, dataset=mnist5k).fit()
    out = Path(config.run.out_dir)
    key = read_record(out).run_key
    Trainer.from_checkpoint(out / "task_1", dataset=mnist5k).fit()  # tasks 2 and 3 again
    record = read_record(out)
    assert record.run_key == key and len(record.starts) == 2 and record.status == "FINISHED"
    assert recorded(out, "step") == list(range(1, 3 * 3 + 1))
    assert recorded(out, "task") == [1, 2, 3]
    assert kinds(out)[:6] == ["start", "step", "step", "step", "task", "start"]  # the lost tasks 2, 3 and end: gone


def test_a_run_continued_in_another_folder_keeps_its_history_under_a_key_of_its_own(tiny_config, mnist5k, tmp_path):
    config = tiny_config(method="sft", tasks="0|1", log_every=1)
    Trainer(config, dataset=mnist5k).fit()
    out = Path(config.run.out_dir)
    Trainer.from_checkpoint(out / "task_1", dataset=mnist5k, overrides={"out_dir": str(tmp_path / "other")}).fit()
    original, other = read_record(out), read_record(tmp_path / "other")
    assert other.run_key != original.run_key  # another folder: another run, which began as this one did
    assert recorded(tmp_path / "other", "step") == [1, 2, 3, 4, 5, 6]
    assert other.steps[:3] == original.steps[:3] and other.tasks[0] == original.tasks[0]


def test_an_unfinished_last_line_is_not_read_and_a_resume_drops_it(tiny_config, mnist5k):
    config = tiny_config(method="sft", tasks="0|1", log_every=1)
    Trainer(config, dataset=mnist5k).fit()
    out = Path(config.run.out_dir)
    with open(out / RECORD_FILE, "a") as handle:
        handle.write('{"kind": "step", "task": 3, "st')  # what a disk-full or power cut may leave
    assert kinds(out)[-1] == "end"
    Trainer.from_checkpoint(out / "task_2", dataset=mnist5k).fit()
    assert (out / RECORD_FILE).read_text().endswith("}\n")
    assert kinds(out)[-2:] == ["start", "end"]


def test_an_error_or_ctrl_c_ends_the_record_failed_or_killed(tmp_path):
    from mergan.presets import build_config

    for error, status in ((RuntimeError("boom"), "FAILED"), (KeyboardInterrupt(), "KILLED")):
        config = build_config("small", {"out_dir": str(tmp_path / status), "tasks": "0|1"})
        record = RunRecord()
        with pytest.raises(type(error)), record.ending():
            fake_run([record], config, num_tasks=2, upto=1, end=False)
            raise error
        assert read_record(tmp_path / status).status == status
        assert read_record(tmp_path / status).lines[-1].get("reason") == ("RuntimeError: boom" if status == "FAILED"
                                                                          else "stopped by Ctrl-C")


def test_a_folder_from_before_records_is_read_from_its_results(tmp_path):
    from mergan.presets import build_config

    config = build_config("small", {"out_dir": str(tmp_path / "old" / "run"), "tasks": "0|1"})
    fake_run([], config, num_tasks=2)
    results = [{"task": t, "num_tasks": 2, "classes": [t - 1], "seen_classes": list(range(t)),
                "metrics": {"acc_task_1": 0.9}, "accuracy_matrix": [], "class_accuracy": {}, "samples_path": None,
                "checkpoint_path": None, "train_seconds": 1.0, "eval_seconds": 0.5, "extra": {}} for t in (1, 2)]
    (tmp_path / "old" / "run" / "results.json").write_text(json.dumps({"results": results}))
    (folder,) = run_folders([tmp_path])  # task_<t> folders hold checkpoints: not runs
    record = read_record(folder)
    assert [line["task"] for line in record.tasks] == [1, 2] and record.status == "FINISHED"
    assert record.config["method.method"] == "sft" and record.params()["data.tasks"] == "0|1"


CHILD = textwrap.dedent("""
    import os, signal, sys
    import torch
    from mergan.callbacks import Callback
    from mergan.presets import build_config
    from mergan.trainer import Trainer
    from tracking.mirror import MLflowMirror, Target

    torch.set_num_threads(1)

    class KillAt(Callback):
        def on_step(self, trainer, info):
            if (info.task, info.step) == {kill_at}:
                os.kill(os.getpid(), signal.SIGKILL)

    config = build_config(overrides={config})
    Trainer(config, callbacks=[MLflowMirror(Target({uri!r}), interval_s=0), KillAt()]).fit()
""")


@pytest.mark.slow
def test_sigkill_mid_task_and_resume_record_every_step_once_in_the_folder_and_in_mlflow(tiny_config, tmp_path):
    uri = empty_store(tmp_path / "mlflow.db")
    config = tiny_config(method="ra", tasks="0|1", log_every=1, iterations_per_task=4)
    out = Path(config.run.out_dir)
    values = {k.rsplit(".", 1)[-1]: v for k, v in config.flat().items()}
    child = CHILD.format(kill_at=KILL_AT, config=values, uri=uri)
    done = subprocess.run([sys.executable, "-c", child], env={**os.environ}, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    assert recorded(out, "step") == [1, 2, 3, 4, 5, 6] and read_record(out).status == "RUNNING"  # killed at task 2
    client = MlflowClient(uri)
    run_id = run_id_of(out, uri)
    assert [m.step for m in client.get_metric_history(run_id, "loss_d")] == [1, 2, 3, 4, 5, 6]  # sent before the kill

    assert main(["train", "--resume", str(out), "--tracking-uri", uri]) == 0
    record = read_record(out)
    assert recorded(out, "step") == list(range(1, 9))
    assert recorded(out, "task") == [1, 2] and record.status == "FINISHED"
    assert run_id_of(out, uri) == run_id and client.get_run(run_id).info.status == "FINISHED"
    for key in ("loss_d", "loss_g", "steps_per_second"):
        assert [m.step for m in client.get_metric_history(run_id, key)] == list(range(1, 9)), key
    # On a CPU the resumed steps repeat the killed ones exactly: MLflow's values are the record's.
    logged = {m.step: m.value for m in client.get_metric_history(run_id, "loss_d")}
    assert logged == {line["step"]: pytest.approx(line["values"]["loss_d"]) for line in record.steps}
    assert [m.step for m in client.get_metric_history(run_id, "train_seconds")] == [1, 2]
    assert not empty_folders(out)  # nothing staged and left behind by the kill
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "mirrors", RECORD_FILE, "results.json",
                                                     "samples", "task_1", "task_2"]
