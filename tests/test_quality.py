"""Quality and diversity per task: KID, precision/recall/density/coverage, per-task FID, CLoG's summaries,
the drift alarm, and how they reach results.json, the record and MLflow.

The metrics are checked against the papers' definitions written out plainly (loops over samples) on fixed
random features, and against the ``prdc`` package (the authors' reference code of Naeem et al. 2020) when it
is installed: it is a test reference only, not a dependency.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mergan.callbacks import TaskResult
from mergan.config import EvalConfig
from mergan.evaluation.evaluate import RealReference, evaluate_after_task, quality_rows
from mergan.evaluation.frechet import FeatureStats, frechet_distance
from mergan.evaluation.metrics import (
    TASK_METRICS,
    average_final_quality,
    average_incremental_quality,
    drift_alarm_message,
    drift_alarms,
    forgetting_rate,
    quality_summaries,
)
from mergan.evaluation.quality import (
    kernel_inception_distance,
    kernel_within,
    precision_recall_density_coverage,
)
from mergan.presets import build_config
from mergan.record import RunRecord, read_record
from mergan.settings import ConfigError
from tests.support.evaluation_fixtures import LinearGenerator, toy_config, toy_dataset


def features(rows: int, dim: int = 6, seed: int = 0, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed)) + shift


# -- the metrics against their definitions ------------------------------------------------------------
def kid_written_out(x: np.ndarray, y: np.ndarray) -> float:
    """Binkowski et al. 2018, eq. for the unbiased MMD^2 estimate, with k(a, b) = (a.b / d + 1)^3."""
    d = x.shape[1]

    def k(a, b):
        return (float(np.dot(a, b)) / d + 1.0) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def prdc_written_out(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """Kynkaanniemi et al. 2019 (precision, recall) and Naeem et al. 2020 (density, coverage), sample by sample."""
    def dist(a, b):
        return math.sqrt(float(((a - b) ** 2).sum()))

    def radius(points, i):  # distance to the k-th nearest other point
        return sorted(dist(points[i], points[j]) for j in range(len(points)) if j != i)[k - 1]

    real_r = [radius(real, i) for i in range(len(real))]
    fake_r = [radius(fake, i) for i in range(len(fake))]
    precision = np.mean([any(dist(f, r) < real_r[i] for i, r in enumerate(real)) for f in fake])
    recall = np.mean([any(dist(r, f) < fake_r[j] for j, f in enumerate(fake)) for r in real])
    density = np.mean([sum(dist(f, r) < real_r[i] for i, r in enumerate(real)) for f in fake]) / k
    coverage = np.mean([min(dist(r, f) for f in fake) < real_r[i] for i, r in enumerate(real)])
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


def test_kid_equals_the_unbiased_estimate_written_out():
    real, fake = features(9, seed=1), features(7, seed=2, shift=0.4)
    assert kernel_inception_distance(real, fake) == pytest.approx(kid_written_out(real.double().numpy(),
                                                                                  fake.double().numpy()),
                                                                  rel=1e-9, abs=1e-12)


def test_kid_is_unbiased_where_the_plain_estimate_is_not():
    """Two sets from one distribution: KID averages to 0 over many draws; keeping the diagonal (the biased
    V-statistic) would average well above it."""
    values = [kernel_inception_distance(features(12, 4, seed=2 * s), features(12, 4, seed=2 * s + 1))
              for s in range(300)]
    spread = np.std(values) / math.sqrt(len(values))
    assert abs(np.mean(values)) < 3 * spread
    biased = []
    for s in range(50):
        x, y = features(12, 4, seed=2 * s).double(), features(12, 4, seed=2 * s + 1).double()
        kernel = lambda a, b: ((a @ b.T) / 4 + 1) ** 3
        biased.append(float(kernel(x, x).mean() + kernel(y, y).mean() - 2 * kernel(x, y).mean()))
    assert np.mean(biased) > np.mean(values) + 10 * spread


@pytest.mark.parametrize("k", [1, 5])
def test_precision_recall_density_coverage_equal_the_definitions_written_out(k):
    real, fake = features(30, seed=3), features(25, seed=4, shift=0.5)
    got = precision_recall_density_coverage(real, fake, k)
    expected = prdc_written_out(real.numpy(), fake.numpy(), k)
    assert got == pytest.approx(expected, abs=1e-6)
    assert 0 < got["precision"] < 1 and 0 < got["recall"] < 1 and 0 < got["coverage"] < 1  # not a trivial case


def test_precision_recall_density_coverage_equal_the_prdc_package():
    prdc = pytest.importorskip("prdc")
    real, fake = features(200, 16, seed=5), features(150, 16, seed=6, shift=0.3)
    got = precision_recall_density_coverage(real, fake, 5)
    expected = prdc.compute_prdc(real.numpy(), fake.numpy(), nearest_k=5)
    assert got == pytest.approx({k: float(v) for k, v in expected.items()}, abs=1e-6)


def test_precision_recall_density_coverage_in_chunks_equal_one_piece(monkeypatch):
    from mergan.evaluation import quality

    real, fake = features(50, seed=7), features(40, seed=8, shift=0.2)
    whole = precision_recall_density_coverage(real, fake)
    monkeypatch.setattr(quality, "CHUNK", 7)
    assert precision_recall_density_coverage(real, fake) == pytest.approx(whole, abs=1e-7)


def test_a_collapsed_generator_keeps_precision_and_loses_recall_and_coverage():
    """One perfect sample drawn again and again: "recognisable", no variety."""
    real = features(200, seed=9)
    collapsed = real[:1].repeat(200, 1) + 1e-3 * features(200, seed=10)
    values = precision_recall_density_coverage(real, collapsed)
    varied = precision_recall_density_coverage(real, features(200, seed=11))
    assert values["precision"] == 1.0
    assert values["recall"] < 0.05 and values["coverage"] < 0.05
    assert varied["recall"] > 0.5 and varied["coverage"] > 0.5


def test_fid_per_task_is_the_pooled_formula_on_that_tasks_features():
    tasks = [[0], [1, 2]]
    real = {c: features(40, seed=20 + c, shift=c) for c in range(3)}
    fake = {c: [features(20, seed=30 + c, shift=c + 0.3), features(15, seed=40 + c)] for c in range(3)}

    def reference(classes):
        pooled = torch.cat([real[c] for c in classes])
        stats = FeatureStats(pooled.shape[1])
        stats.add(pooled)
        return RealReference(pooled, stats, kernel_within(pooled), None)

    rows, metrics = quality_rows(reference, fake, tasks, ("fid", "kid"), "classifier")

    def fid(r, f):
        r, f = r.double().numpy(), f.double().numpy()
        return frechet_distance(r.mean(0), np.cov(r, rowvar=False), f.mean(0), np.cov(f, rowvar=False))

    task_2_real = torch.cat([real[1], real[2]])
    task_2_fake = torch.cat(fake[1] + fake[2])
    assert metrics["fid_classifier_task_2"] == pytest.approx(fid(task_2_real, task_2_fake), rel=1e-9)
    assert metrics["fid_classifier_task_1"] == pytest.approx(fid(real[0], torch.cat(fake[0])), rel=1e-9)
    assert metrics["fid_classifier_class_2"] == pytest.approx(fid(real[2], torch.cat(fake[2])), rel=1e-9)
    assert metrics["kid_classifier_task_2"] == pytest.approx(
        kid_written_out(task_2_real.numpy().astype(float), task_2_fake.numpy().astype(float)), rel=1e-6)
    assert rows["fid_classifier"] == [metrics["fid_classifier_task_1"], metrics["fid_classifier_task_2"]]
    assert set(rows) == {"fid_classifier", "kid_classifier"}


# -- CLoG's summaries ------------------------------------------------------------------------------------
FID = [[10.0], [14.0, 8.0], [20.0, 9.0, 6.0]]


def test_clog_summaries_on_a_hand_made_fid_matrix():
    assert average_final_quality(FID) == pytest.approx((20 + 9 + 6) / 3)
    assert average_incremental_quality(FID) == pytest.approx((10 + (14 + 8) / 2 + (20 + 9 + 6) / 3) / 3)
    # FID: lower is better, so the rise from right after learning is the forgetting
    assert forgetting_rate(FID, higher_is_better=False) == pytest.approx(((20 - 10) + (9 - 8)) / 2)
    accuracy = [[0.9], [0.5, 0.8], [0.3, 0.6, 0.7]]
    assert forgetting_rate(accuracy) == pytest.approx(((0.9 - 0.3) + (0.8 - 0.6)) / 2)
    assert forgetting_rate([[0.9]]) == 0.0
    assert average_incremental_quality([[0.9], None, [0.3, None, 0.7]]) == pytest.approx((0.9 + 0.5) / 2)


def test_quality_summaries_cover_fid_recall_and_coverage_and_are_sweep_objectives():
    recall = [[0.8], [0.2, 0.7]]
    values = quality_summaries({"fid_classifier": FID, "recall_classifier": recall, "coverage_classifier": recall,
                                "kid_classifier": FID})
    assert values == pytest.approx({"aiq_fid_classifier": average_incremental_quality(FID),
                                    "afq_fid_classifier": average_final_quality(FID),
                                    "fr_fid_classifier": 5.5, "fr_recall_classifier": 0.6,
                                    "fr_coverage_classifier": 0.6})
    from trainables.plan import parse_objective

    for name in (*values, "aiq_acc", "afq_acc", "fr_acc", "fr_fid_inception"):
        assert name in TASK_METRICS
        assert parse_objective(f"{name}:min") == [(name, "min")]
    assert parse_objective("quality") == [("stream_avg_acc", "max"), ("afq_fid_classifier", "min")]


# -- the drift alarm ---------------------------------------------------------------------------------
def test_drift_alarm_names_the_replayed_class_that_lost_its_variety():
    tasks = [[0], [1], [2]]
    history = [{"recall_classifier_class_0": 0.8, "coverage_classifier_class_0": 0.9},
               {"recall_classifier_class_0": 0.7, "recall_classifier_class_1": 0.6,
                "coverage_classifier_class_0": 0.85, "coverage_classifier_class_1": 0.5},
               {"recall_classifier_class_0": 0.39, "recall_classifier_class_1": 0.31, "recall_classifier_class_2": 0.9,
                "coverage_classifier_class_0": 0.46, "coverage_classifier_class_1": 0.1}]
    alarms = drift_alarms(history, tasks, 0.5)
    assert [(a["class"], a["metric"], a["learned_in_task"], a["after_task"]) for a in alarms] == [
        (0, "recall_classifier", 1, 3), (1, "coverage_classifier", 2, 3)]
    assert drift_alarms(history[:2], tasks, 0.5) == []
    assert drift_alarms(history, tasks, 1.0) == []
    assert drift_alarms([None, *history[1:]], tasks, 0.5) == [alarms[1]]  # task 1 not evaluated: no first value
    message = drift_alarm_message(alarms[0], 0.5)
    assert "\n" not in message and "class 0" in message and "after task 3" in message and "task 1" in message


def test_the_trainer_warns_in_one_line_and_records_the_alarm(tiny_config, caplog):
    from mergan.trainer import Trainer

    trainer = Trainer(tiny_config(tasks="0|1|2", drift_alarm=0.3))
    trainer.results = [TaskResult(task=1, num_tasks=3, classes=[0], seen_classes=[0],
                                  metrics={"recall_classifier_class_0": 0.9}),
                       TaskResult(task=2, num_tasks=3, classes=[1], seen_classes=[0, 1],
                                  metrics={"recall_classifier_class_0": 0.8, "recall_classifier_class_1": 0.5})]
    with caplog.at_level(logging.WARNING, logger="mergan.drift"):
        alarms = trainer.drift_alarms({"recall_classifier_class_0": 0.5, "recall_classifier_class_1": 0.45})
    assert [(a["class"], a["after_task"]) for a in alarms] == [(0, 3)]
    assert [r.getMessage() for r in caplog.records] == [drift_alarm_message(alarms[0], 0.3)]


# -- the config ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("values, field", [
    ({"quality": "fastest"}, "eval.quality"),
    ({"drift_alarm": 1.5}, "eval.drift_alarm"),
    ({"drift_alarm": 0}, "eval.drift_alarm"),
    ({"quality": "full", "eval_samples_per_class": 5}, "eval.eval_samples_per_class"),
    ({"quality": "fast", "eval_samples_per_class": 1}, "eval.eval_samples_per_class"),
])
def test_bad_quality_settings_are_refused_naming_the_field(values, field):
    with pytest.raises(ConfigError, match=field):
        build_config("small", {"eval_when": "every", **values})


def test_quality_defaults_to_full_and_fast_runs_with_few_samples():
    assert EvalConfig().drift_alarm == 0.5
    assert build_config("small").eval.quality == "full" and build_config("paper-mnist", {"data_root": "."},
                                                                           validate=False).eval.quality == "full"
    assert build_config("small", {"quality": "fast", "eval_samples_per_class": 2}).eval.quality == "fast"
    assert build_config("small", {"quality": "none", "eval_samples_per_class": 1}).eval.quality == "none"


# -- from the generated pass to results.json, the record and MLflow --------------------------------------
class CountingGenerator(LinearGenerator):
    def __init__(self, *args):
        super().__init__(*args)
        self.images_drawn = 0

    def sample(self, labels, z):
        self.images_drawn += len(labels)
        return super().sample(labels, z)


def evaluate(tmp_path, quality: str, task_index0: int = 1, previous_quality=None):
    ds = toy_dataset()
    generator = CountingGenerator(3, 8)
    result = evaluate_after_task(generator, ds, [[0], [1, 2]], task_index0,
                                 toy_config(tmp_path, quality=quality, eval_samples_per_class=12), None, "cpu",
                                 previous_matrix=[[0.5]], previous_quality=previous_quality)
    return result, generator.images_drawn


def test_quality_comes_from_the_accuracys_own_generated_pass(tmp_path):
    plain, drawn_plain = evaluate(tmp_path, "none")
    full, drawn_full = evaluate(tmp_path, "full", previous_quality={"fid_classifier": [[7.0]]})
    assert drawn_full == drawn_plain == 3 * 12  # no second pass of the generator
    assert full.row == plain.row and full.metrics["fid_classifier"] == pytest.approx(plain.metrics["fid_classifier"])
    assert not plain.quality_matrices and not any(k.startswith("kid_") for k in plain.metrics)
    assert set(full.quality_matrices) == {f"{m}_classifier" for m in
                                          ("fid", "kid", "precision", "recall", "density", "coverage")}
    fid = full.quality_matrices["fid_classifier"]
    assert fid[0] == [7.0] and fid[1] == [full.metrics["fid_classifier_task_1"], full.metrics["fid_classifier_task_2"]]
    assert full.quality_matrices["recall_classifier"][0] == [None]
    for cls in (0, 1, 2):
        assert 0.0 <= full.metrics[f"coverage_classifier_class_{cls}"] <= 1.0
    assert full.metrics["fr_fid_classifier"] == pytest.approx(full.metrics["fid_classifier_task_1"] - 7.0)
    assert "quality_classifier" in full.timings
    fast, _ = evaluate(tmp_path, "fast")
    assert set(fast.quality_matrices) == {"fid_classifier", "kid_classifier"}


def test_a_run_keeps_its_quality_matrices_in_results_json_the_record_and_mlflow(tiny_config, tmp_path):
    from mlflow import MlflowClient

    from mergan.trainer import Trainer
    from tests.support.mlflow_stores import empty_store
    from tracking.mirror import Target, mirror_folder

    config = tiny_config(tasks="0|1", eval_when="every", eval_samples_per_class=8, quality="full")
    trainer = Trainer(config, callbacks=[RunRecord()])
    trainer.fit()
    saved = json.loads((Path(config.run.out_dir) / "results.json").read_text())
    recall = saved["quality_matrices"]["recall_classifier"]
    assert len(recall) == 2 and len(recall[0]) == 1 and len(recall[1]) == 2
    assert saved["results"][1]["metrics"]["recall_classifier_task_1"] == recall[1][0]

    uri = empty_store(tmp_path / "mlflow.db")
    run_id = mirror_folder(config.run.out_dir, Target(uri)).run_id
    client = MlflowClient(uri)
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "fid_classifier_task_1")] == [
        (1, pytest.approx(saved["quality_matrices"]["fid_classifier"][0][0])),
        (2, pytest.approx(saved["quality_matrices"]["fid_classifier"][1][0]))]
    stored = {info.path for info in client.list_artifacts(run_id, "quality")}
    assert {f"quality/{m}_classifier_matrix.{ext}" for m in ("fid", "kid", "precision", "recall", "density",
                                                              "coverage") for ext in ("csv", "json", "png")} == stored
    assert client.get_run(run_id).data.metrics["drift_alarms"] == len(saved["results"][1]["drift_alarms"])


def test_drift_alarms_are_tagged_on_the_mlflow_run(tmp_path):
    from mlflow import MlflowClient

    from tests.support.fake_runs import fake_run
    from tests.support.mlflow_stores import empty_store
    from tracking.mirror import Target, mirror_folder

    class Alarming(RunRecord):
        def on_task_end(self, trainer, result):
            if result.task == 2:
                result.drift_alarms = [{"class": 0, "learned_in_task": 1, "after_task": 2,
                                        "metric": "recall_classifier", "first": 0.8, "now": 0.1}]
            super().on_task_end(trainer, result)

    config = build_config("small", {"method": "ra", "tasks": "0|1|2", "out_dir": str(tmp_path / "run")})
    fake_run([Alarming()], config, num_tasks=3)
    record = read_record(config.run.out_dir)
    assert record.tags()["drift_alarm_first_task"] == "2"
    uri = empty_store(tmp_path / "mlflow.db")
    run_id = mirror_folder(config.run.out_dir, Target(uri)).run_id
    tags = MlflowClient(uri).get_run(run_id).data.tags
    assert tags["drift_alarm_first_task"] == "2"
    assert tags["drift_alarms"] == "after task 2: class 0 recall_classifier 0.8->0.1"


# -- the report --------------------------------------------------------------------------------------
def recall(method: str, seed: int, i: int, j: int) -> float:
    """The hand-made recall matrix: SFT loses each earlier task's variety, RA keeps most of it."""
    kept = {"sft": 0.1, "ra": 0.8}[method]
    return round((0.9 if i == j else 0.9 * kept) - 0.01 * seed, 4)


class WithQuality(RunRecord):
    """Adds hand-made quality matrices (as the evaluation reports them) to each task before recording it."""

    def __init__(self, method: str, seed: int):
        super().__init__()
        self.method, self.seed = method, seed

    def on_task_end(self, trainer, result):
        t = result.task
        matrices = {"recall_classifier": [[recall(self.method, self.seed, i, j) for j in range(1, i + 1)]
                                          for i in range(1, t + 1)],
                    "fid_classifier": [[10.0 * (i - j + 1) + self.seed for j in range(1, i + 1)]
                                       for i in range(1, t + 1)]}
        result.quality_matrices = matrices
        for name, matrix in matrices.items():
            result.metrics.update({f"{name}_task_{j + 1}": v for j, v in enumerate(matrix[-1])})
        result.metrics.update(quality_summaries(matrices))
        history = [{f"recall_classifier_class_{j - 1}": recall(self.method, self.seed, i, j) for j in range(1, i + 1)}
                   for i in range(1, t + 1)]
        result.drift_alarms = drift_alarms(history, [[c] for c in range(result.num_tasks)], 0.5)
        result.metrics["drift_alarms"] = float(len(result.drift_alarms))
        super().on_task_end(trainer, result)


@pytest.fixture
def quality_runs(tmp_path):
    from tests.support.fake_runs import fake_run

    for method in ("sft", "ra"):
        for seed in (0, 1):
            config = build_config("small", {"method": method, "seed": seed, "tasks": "0|1|2",
                                            "out_dir": str(tmp_path / "runs" / f"{method}-{seed}")})
            fake_run([WithQuality(method, seed)], config, num_tasks=3)
    return tmp_path / "runs"


def test_run_folders_load_quality_matrices_and_summaries(quality_runs):
    from analysis.load import load_run_folders

    data = load_run_folders([quality_runs])
    assert data.quality_measures == ["fid_classifier", "recall_classifier"]
    run = data.runs.loc[(data.runs["method"] == "ra") & (data.runs["seed"] == 1), "run_id"].item()
    expected = np.full((3, 3), np.nan)
    for i in range(1, 4):
        for j in range(1, i + 1):
            expected[i - 1, j - 1] = recall("ra", 1, i, j)
    np.testing.assert_allclose(data.matrix(run, "recall_classifier"), expected)
    final = data.task_metrics[(data.task_metrics["run_id"] == run) & (data.task_metrics["after_task"] == 3)]
    assert final["fr_recall_classifier"].item() == pytest.approx(forgetting_rate(expected.tolist()))


def test_report_has_a_quality_section_with_heatmaps_curves_table_and_drift_alarms(quality_runs, tmp_path):
    from analysis.report import build_report

    report = build_report(None, None, tmp_path / "report", runs=[quality_runs])
    section = next(s for s in report.sections if s.title.startswith("Quality and variety"))
    assert set(section.figures) == {"quality_matrices", "quality_forgetting"}
    assert not section.notes
    captions = dict(section.tables)
    table = next(frame for caption, frame in section.tables if caption.startswith("CLoG"))
    assert list(table.index) == ["SFT", "MeRGAN-RA"]
    # FR of recall after task 3, in points, mean ± std over the two seeds: SFT lost 90% of it, RA 20%
    sft = [100 * forgetting_rate([[recall("sft", s, i, j) for j in range(1, i + 1)] for i in range(1, 4)])
           for s in (0, 1)]
    assert table.loc["SFT", "FR recall (%)"] == f"{np.mean(sft):.2f} ± {np.std(sft, ddof=1):.2f}"
    alarms = next(frame for caption, frame in captions.items() if caption.startswith("Drift alarms"))
    assert sorted(alarms["first alarm after task"]) == ["2", "2"]  # only SFT's runs, from task 2 on
    assert all(name.startswith("sft") for name in alarms.index)
    page = report.html_path.read_text()
    assert "Quality and variety" in page and "FR recall (%)" in page and "class 0 recall_classifier" in page
    assert (tmp_path / "report" / "tables" / "quality.md").is_file()


@pytest.mark.slow
def test_walkthrough_notebook_shows_quality_and_drift_alarms(quality_runs, tmp_path):
    """The sweep walkthrough's quality section, on an MLflow store holding the hand-made runs."""
    import nbformat
    from nbclient import NotebookClient

    from tests.support.mlflow_stores import empty_store
    from tracking.mirror import Target, mirror_folder

    uri = empty_store(tmp_path / "mlflow.db")
    for folder in sorted(quality_runs.iterdir()):
        mirror_folder(folder, Target(uri, "quality"))
    notebook = nbformat.read(Path(__file__).parents[1] / "analysis" / "notebooks" / "sweep_walkthrough.ipynb", 4)
    parameters = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    parameters.source = "\n".join(f"{k} = {v!r}" for k, v in {"TRACKING_URI": uri, "EXPERIMENT": "quality",
                                                               "SWEEP_RUN": None, "DATASET": None,
                                                               "OUT_DIR": str(tmp_path / "walk")}.items())
    NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
                   ).execute()
    shown = "\n".join(str(o.get("data", {}).get("text/plain", "")) + o.get("text", "")
                      for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert "FR recall (%)" in shown and "first alarm after task" in shown
    for name in ("quality_matrices_mnist5k", "quality_forgetting_mnist5k"):
        assert (tmp_path / "walk" / f"{name}.png").is_file() and (tmp_path / "walk" / f"{name}.pdf").is_file()


def test_a_sweep_objective_that_the_trials_would_never_measure_is_refused(tmp_path, monkeypatch):
    from trainables.plan import PlanError, make_plan

    monkeypatch.delenv("MERGAN_INCEPTION_WEIGHTS", raising=False)
    common = {"space": "ra-lambda", "storage_path": str(tmp_path / "sweeps"),
              "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    with pytest.raises(PlanError, match="fr_recall_classifier is measured with eval.quality full"):
        make_plan(objective="fr_recall_classifier:min", sets=["quality=fast"], **common)
    with pytest.raises(PlanError, match="afq_fid_classifier"):
        make_plan(objective="quality", sets=["quality=none"], **common)
    with pytest.raises(PlanError, match="Inception weights"):
        make_plan(objective="aiq_fid_inception:min", **common)
    plan = make_plan(objective="quality", **common)
    assert plan.objective == [("stream_avg_acc", "max"), ("afq_fid_classifier", "min")]


def test_classes_with_too_few_real_images_for_neighbours_go_without_them(tmp_path):
    """Four real images per class: FID and KID are measured, precision ... coverage (k = 5) stay unmeasured for
    a class alone; task 2's two classes pool eight, enough."""
    ds = toy_dataset(per_class=4)
    result = evaluate_after_task(LinearGenerator(3, 8), ds, [[0], [1, 2]], 1, toy_config(tmp_path), None, "cpu",
                                 previous_matrix=None)
    recall = result.quality_matrices["recall_classifier"]
    assert recall[0] == [None] and recall[1][0] is None and recall[1][1] == result.metrics["recall_classifier_task_2"]
    assert all(v is not None for v in result.quality_matrices["fid_classifier"][1])
    assert "kid_classifier_class_2" in result.metrics and "recall_classifier_class_2" not in result.metrics
    assert "fr_recall_classifier" not in result.metrics
