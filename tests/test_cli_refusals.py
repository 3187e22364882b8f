"""Bad input and faults of the machine meet ``mergan train`` / ``mergan eval`` with one line naming the field or
file and what to do, before compute is spent where possible, and nothing already saved is lost."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mergan.checkpoint import load_checkpoint
from mergan.config_io import load_yaml
from mergan.trainer import Trainer
from mergan_cli.main import main
from tests.support.runs import TINY_RUN


def one_line_error(err: str) -> str:
    """The error a command printed: its last line, after checking nothing else went wrong."""
    assert "Traceback" not in err, err[-3000:]
    return err.strip().splitlines()[-1]


@pytest.fixture
def finished_run(in_tmp, capsys) -> Path:
    """A finished two-task SFT run (no MLflow) in ``exp/``."""
    out = in_tmp / "exp"
    assert main(["train", *TINY_RUN, "--out-dir", str(out), "--no-mlflow"]) == 0
    capsys.readouterr()
    return out


# -- --resume: what a checkpoint fixes ------------------------------------------------------------------
@pytest.mark.parametrize("flags, field, saved, asked", [
    (["--method", "ra"], "method.method", "sft", "ra"),
    (["--g-width", "16"], "model.g_width", "8", "16"),
    (["--arch", "dcgan"], "model.arch", "small", "dcgan"),
    (["--z-dim", "4"], "model.z_dim", "8", "4"),
    (["--lr-g", "1e-3"], "optim.lr_g", "2e-4", "1e-3"),
    (["--seed", "3"], "run.seed", "0", "3"),
    (["--dataset", "mnist", "--data-root", "."], "data.dataset", "mnist5k", "mnist"),
])
def test_resume_refuses_a_change_of_what_the_run_trains_naming_the_field_and_both_values(
        finished_run, capsys, flags, field, saved, asked):
    config_before = (finished_run / "config.yaml").read_text()
    assert main(["train", "--resume", str(finished_run / "task_1"), *flags, "--no-mlflow"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert line.startswith(f"mergan train: error: {field}: the run in {finished_run / 'task_1' / 'checkpoint.pt'} "
                           f"was trained with {saved}; a resumed run cannot change it to {asked} ")
    assert (finished_run / "config.yaml").read_text() == config_before  # nothing rewritten


def test_resume_may_change_where_and_how_long_it_goes_on_and_how_it_is_measured(finished_run):
    assert main(["train", "--resume", str(finished_run / "task_1"), "--device", "cpu", "--iterations", "3",
                 "--log-every", "2", "--eval-when", "final", "--eval-samples-per-class", "6", "--no-mlflow"]) == 0
    config = load_yaml(finished_run / "config.yaml")
    assert config["optim.iterations_per_task"] == 3 and config["eval.eval_when"] == "final"
    results = load_checkpoint(finished_run / "task_2" / "checkpoint.pt")["results_json"]
    assert '"iterations": 2' in results and '"iterations": 3' in results  # each task's count is kept


# -- hand-edited checkpoints ---------------------------------------------------------------------------
@pytest.mark.parametrize("edit, says", [
    (lambda state: state.update(config=["not", "a", "mapping"]), "its config is not a mapping of sections"),
    (lambda state: state["config"].update(method="ra"), "its config is not a mapping of sections"),
    (lambda state: state["rng"].pop("torch"), "its saved state does not fit the config it holds (KeyError"),
    (lambda state: state["generator"].pop(next(iter(state["generator"]))),
     "its saved state does not fit the config it holds (RuntimeError: Error(s) in loading state_dict"),
])
def test_a_hand_edited_checkpoint_is_refused_naming_the_file(finished_run, capsys, edit, says):
    path = finished_run / "task_1" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    edit(state)
    torch.save(state, path)
    assert main(["train", "--resume", str(path), "--no-mlflow"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert line.startswith(f"mergan train: error: {path}: ") and says in line


# -- bad input -----------------------------------------------------------------------------------------
def test_config_naming_a_folder_is_refused(in_tmp, capsys):
    assert main(["train", *TINY_RUN, "--config", str(in_tmp), "--no-mlflow"]) == 2
    assert one_line_error(capsys.readouterr().err) == (f"mergan train: error: config file {in_tmp} is a folder; "
                                                       f"name a YAML file of config fields")


def test_a_batch_that_cannot_be_allocated_is_refused_before_training_and_leaves_no_folder(in_tmp, capsys):
    out = in_tmp / "exp"
    assert main(["train", *TINY_RUN, "--batch-size", "1e12", "--out-dir", str(out), "--no-mlflow"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert line.startswith("mergan train: error: optim.batch_size: 1000000000000 images of 1x32x32 need at least ")
    assert "GiB free on cpu; lower optim.batch_size" in line
    assert not out.exists()
    assert main(["train", *TINY_RUN, "--batch-size", "1e12", "--no-mlflow"]) == 2  # a default folder: none left
    assert not any((in_tmp / "runs").iterdir())


def test_eval_names_a_jt_results_file_that_is_not_json_and_refuses_zero_samples(finished_run, capsys):
    junk = finished_run.parent / "jt.json"
    junk.write_text("this is not JSON")
    assert main(["eval", str(finished_run), "--jt-results", str(junk)]) == 2
    assert one_line_error(capsys.readouterr().err).startswith(
        f"mergan eval: error: {junk}: cannot be read as a run's results.json (not JSON: ")
    assert main(["eval", str(finished_run), "--samples-per-class", "0"]) == 2
    assert one_line_error(capsys.readouterr().err) == (
        "mergan eval: error: --samples-per-class 0: allowed: >= 1 (or leave it out for the run's "
        "eval_samples_per_class)")


# -- faults of the machine -----------------------------------------------------------------------------
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux) to fill a disk on purpose")
def test_a_full_disk_while_saving_a_checkpoint_says_so_removes_the_partial_file_and_the_run_resumes(
        in_tmp, capsys, monkeypatch):
    out = in_tmp / "exp"
    save = Trainer.save_checkpoint

    def save_onto_a_full_disk(trainer):  # task 2's checkpoint goes first to its .tmp file: a device always full
        if trainer.tasks_done == 2:
            (out / "task_2").mkdir()
            (out / "task_2" / "checkpoint.pt.tmp").symlink_to("/dev/full")
        return save(trainer)

    monkeypatch.setattr(Trainer, "save_checkpoint", save_onto_a_full_disk)
    assert main(["train", *TINY_RUN, "--out-dir", str(out), "--no-mlflow"]) == 1
    line = one_line_error(capsys.readouterr().err)
    assert line == (f"mergan train: could not write {out / 'task_2' / 'checkpoint.pt.tmp'} (No space left on device) "
                    f"in task 2/2, step 2/2; task 1 is saved in {out}; continue with: mergan train --resume {out} "
                    f"--no-mlflow")
    assert not os.path.lexists(out / "task_2" / "checkpoint.pt.tmp")  # not left to keep the disk full
    assert load_checkpoint(out / "task_1" / "checkpoint.pt")["task"] == 1
    monkeypatch.undo()  # space freed
    assert main(["train", "--resume", str(out), "--no-mlflow"]) == 0
    assert load_checkpoint(out / "task_2" / "checkpoint.pt")["task"] == 2


def test_out_dir_under_a_folder_that_cannot_be_written_is_refused(read_only):
    shared = read_only.folder("shared")
    read_only.lock()
    done = read_only.mergan("train", *TINY_RUN, "--out-dir", str(shared / "exp"), "--no-mlflow")
    assert done.returncode == 2
    assert one_line_error(done.stderr) == (f"mergan train: error: run.out_dir: cannot create {shared / 'exp'} "
                                           f"(Permission denied); name a folder you can write with --out-dir")


def test_resume_of_a_run_that_cannot_be_written_is_refused_and_continues_in_a_copy(read_only):
    runs = read_only.folder("runs")
    assert main(["train", *TINY_RUN, "--tasks", "0|1|2", "--out-dir", str(runs / "exp"), "--no-mlflow"]) == 0
    (runs / "exp" / "task_3").rename(runs / "task_3_aside")  # as if it had stopped after task 2
    read_only.lock()
    done = read_only.mergan("train", "--resume", str(runs / "exp"), "--no-mlflow")
    assert done.returncode == 2
    assert one_line_error(done.stderr) == (
        f"mergan train: error: run.out_dir: {runs / 'exp'} cannot be written (Permission denied); continue it in a "
        f"folder you can write: mergan train --resume {runs / 'exp'} --out-dir NEW_FOLDER")
    copy = read_only.writable("mine") / "exp"
    done = read_only.mergan("train", "--resume", str(runs / "exp"), "--out-dir", str(copy), "--no-mlflow")
    assert done.returncode == 0, done.stderr[-2000:]
    assert load_checkpoint(copy / "task_3" / "checkpoint.pt")["task"] == 3
