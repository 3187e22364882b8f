"""``mergan report``: one self-contained HTML page (figures embedded) from an experiment or a sweep.

    mergan report --experiment NAME [--tracking-uri URI] --out DIR [--sweep-run RUN_ID]
                  [--optuna-storage URL --study NAME] [--select best|all]
    mergan report --runs FOLDER [FOLDER ...] --out DIR      (run folders' records; no tracking store)

``DIR`` receives ``report.html``, ``figures/*.png|pdf``, ``tables/*.md|tex`` and the frames as
``data/*.csv``; the results table is printed to the terminal. An experiment that mixes datasets
gets one section (table and figures) per dataset.
"""

from __future__ import annotations

import base64
import datetime
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import figures
from analysis.aggregate import CONFIDENCE, select_best, split_joint_references
from analysis.errors import NothingToPlotError
from analysis.load import (
    ExperimentData,
    download_sample_grids,
    load_experiment,
    load_optuna_study,
    load_run_folders,
)
from analysis.paper import method_label, method_sort_key
from analysis.tables import (
    ORDERS_CAPTION,
    QUALITY_CAPTION,
    ResultTable,
    drift_alarm_table,
    markdown_table,
    orders_table,
    quality_table,
    results_table,
)

# Sweep settings (params of the sweep's parent run) that may name its Optuna storage and study.
STORAGE_PARAMS = ("optuna_storage", "storage", "study_storage")
STUDY_PARAMS = ("study_name", "study")
RUN_COLUMNS = ["run_name", "method", "config", "seed", "order", "status", "tasks_done", "avg_acc", "bwt",
               "forgetting", "fid_classifier", "afq_fid_classifier", "fr_recall_classifier", "drift_alarms", "run_id"]
DRIFT_CAPTION = ("Drift alarms: after a task, a replayed class's recall or coverage fell by more than eval.drift_alarm "
                 "of its value right after the class was learned (the first task where a collapse shows).")


@dataclass
class Section:
    title: str
    table: ResultTable | None = None
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)  # (caption, text cells) beside it
    figures: dict[str, dict[str, Path]] = field(default_factory=dict)  # name -> {"png": ..., "pdf": ...}
    captions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    out_dir: Path
    html_path: Path
    data: ExperimentData
    sections: list[Section]

    @property
    def tables(self) -> list[ResultTable]:
        return [s.table for s in self.sections if s.table is not None]

    @property
    def figure_files(self) -> list[Path]:
        return [p for s in self.sections for paths in s.figures.values() for p in paths.values()]


def build_report(experiment: str | None, tracking_uri: str | None, out_dir: str | Path, *,
                 sweep_run: str | Sequence[str] | None = None, optuna_storage: str | None = None,
                 study_name: str | None = None,
                 select: str = "best", runs: list[str | Path] | None = None) -> Report:
    """Load (from MLflow, or from the run folders ``runs``), tabulate, plot and write everything into ``out_dir``."""
    out = Path(out_dir)
    data = load_run_folders(runs) if runs else load_experiment(experiment, tracking_uri, sweep_run=sweep_run)
    (out / "data").mkdir(parents=True, exist_ok=True)
    data.runs.to_csv(out / "data" / "runs.csv", index=False)
    data.accuracy.to_csv(out / "data" / "accuracy.csv", index=False)
    data.task_metrics.to_csv(out / "data" / "task_metrics.csv", index=False)

    sections = []
    for dataset in data.datasets:
        suffix = dataset if len(data.datasets) > 1 else ""
        sections.append(_dataset_section(data.for_dataset(dataset), out, suffix, select))
        quality = _quality_section(data.for_dataset(dataset), out, suffix, select)
        if quality is not None:
            sections.append(quality)
    study_section = _study_section(data, out, optuna_storage, study_name)
    if study_section is not None:
        sections.append(study_section)
    html_path = out / "report.html"
    html_path.write_text(render_html(data, sections, select), encoding="utf-8")
    return Report(out_dir=out, html_path=html_path, data=data, sections=sections)


def _figure(section: Section, out: Path, name: str, caption: str, make: Any, *args: Any) -> None:
    """Draw and save one figure; a figure without data becomes a note instead."""
    try:
        figure = make(*args)
    except NothingToPlotError as error:
        section.notes.append(f"{caption}: not drawn ({error})")
        return
    section.figures[name] = figures.save_figure(figure, out / "figures", name)
    section.captions[name] = caption


def _dataset_section(data: ExperimentData, out: Path, dataset_suffix: str, select: str) -> Section:
    dataset = data.datasets[0]
    suffix = f"_{dataset_suffix}" if dataset_suffix else ""
    section = Section(title=f"Dataset {dataset}")
    section.table = results_table(data, select)
    data, _ = split_joint_references(data)  # JT runs on a shorter stream are the table's references only
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "tables" / f"results{suffix}.md").write_text(section.table.to_markdown(), encoding="utf-8")
    (out / "tables" / f"results{suffix}.tex").write_text(section.table.to_latex(), encoding="utf-8")
    orders = orders_table(data)
    if orders is not None:
        _table(section, out, f"orders{suffix}", ORDERS_CAPTION, orders)
    _figure(section, out, f"forgetting_curves{suffix}", "Forgetting curves: accuracy on task 1 and average "
            "accuracy vs. tasks trained", figures.forgetting_curves, data, select)
    _figure(section, out, f"accuracy_matrices{suffix}", "Accuracy matrices R[i][j] (%), averaged over seeds",
            figures.accuracy_heatmaps, data, select)
    _figure(section, out, f"hyperparameter_response{suffix}", "Final average accuracy vs. hyperparameters",
            figures.hyperparameter_response, data)
    _figure(section, out, f"sample_grids{suffix}", "Samples of the final generator (one seed per method)",
            figures.sample_grids, _sample_images(data, out / "samples"), f"{data.experiment} · {dataset}: samples "
            f"after the last task")
    if section.notes:
        section.notes.sort()
    return section


def _table(section: Section, out: Path, name: str, caption: str, frame: pd.DataFrame) -> None:
    """A table of text cells beside the section's figures, also written as ``tables/<name>.md``."""
    section.tables.append((caption, frame))
    (out / "tables" / f"{name}.md").write_text(f"{caption}\n\n{markdown_table(frame)}", encoding="utf-8")


def _quality_section(data: ExperimentData, out: Path, dataset_suffix: str, select: str) -> Section | None:
    """Quality and variety beside recognisability: heatmaps, forgetting curves, CLoG's table, drift alarms;
    None when no run measured per-task quality."""
    alarms = drift_alarm_table(data)
    if data.quality.empty and alarms is None:
        return None
    suffix = f"_{dataset_suffix}" if dataset_suffix else ""
    section = Section(title=f"Quality and variety · {data.datasets[0]}")
    data, _ = split_joint_references(data)
    table = quality_table(data, select)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    for caption, frame, name in ((QUALITY_CAPTION, table, "quality"), (DRIFT_CAPTION, alarms, "drift_alarms")):
        if frame is not None:
            _table(section, out, f"{name}{suffix}", caption, frame)
    _figure(section, out, f"quality_matrices{suffix}", "Accuracy, FID and recall matrices per method (row: after "
            "task i, column: task j), averaged over seeds", figures.quality_heatmaps, data, select)
    _figure(section, out, f"quality_forgetting{suffix}", "Forgetting of recognisability, quality and variety: "
            "CLoG's forgetting rate of accuracy, FID, recall and coverage vs. tasks trained",
            figures.quality_forgetting_curves, data, select)
    return section


def _sample_images(data: ExperimentData, dest: Path) -> dict[str, Path]:
    """One run per method (best configuration, lowest seed among those that finished most tasks)."""
    best = select_best(data).runs
    best = best.sort_values(["tasks_done", "seed"], ascending=[False, True])
    chosen = best.groupby("method", sort=False).head(1)
    chosen = chosen.sort_values("method", key=lambda s: s.map(method_sort_key))
    grids = download_sample_grids(data, chosen["run_id"], dest)
    return {f"{method_label(m)} (seed {s})": grids[r] for m, s, r in zip(chosen["method"], chosen["seed"],
                                                                       chosen["run_id"]) if r in grids}


def _setting(params: dict[str, str], names: tuple[str, ...]) -> str | None:
    return next((params[k] for k in names if params.get(k) not in (None, "", "None")), None)


def _study_section(data: ExperimentData, out: Path, storage: str | None, study_name: str | None) -> Section | None:
    """The study named on the command line, else the one the sweep run's settings name (if any).

    A study found through the sweep's settings that cannot be opened (e.g. a cluster path) is a note.
    """
    sweep = data.sweep or {}
    params = sweep.get("params", {})
    explicit = storage is not None
    storage = storage or _setting(params, STORAGE_PARAMS)
    if not storage:
        return None
    study_name = study_name or _setting(params, STUDY_PARAMS)
    try:
        if study_name is None and sweep.get("name"):  # trainables/tuner.py names the study after the sweep
            import optuna

            study_name = sweep["name"] if sweep["name"] in optuna.get_all_study_names(storage) else None
        study = load_optuna_study(storage, study_name)
    except Exception as error:
        if explicit:
            raise
        section = Section(title="Optuna study")
        section.notes.append(f"the sweep's Optuna study at {storage} could not be opened "
                             f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})")
        return section
    labels = _objective_labels(params, len(study.directions))
    section = Section(title=f"Optuna study {study.study_name}")
    _figure(section, out, "study_importances", "Parameter importances (fANOVA)", figures.param_importances, study,
            labels)
    _figure(section, out, "study_pareto_front", "Pareto front", figures.pareto_front, study, labels)
    _figure(section, out, "study_response", "Objective vs. searched parameters", figures.study_response, study,
            labels)
    return section


def _objective_labels(params: dict[str, str], count: int) -> list[str] | None:
    """Objective names from the sweep's ``objective`` setting ("avg_acc:max,fid_classifier:min")."""
    text = params.get("objective") or ""
    names = [part.split(":")[0].strip() for part in text.split(",") if part.strip()]
    return names if len(names) == count else None


# -- HTML -----------------------------------------------------------------------------------
CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0 1.5em; }
th, td { padding: .25em .6em; border-bottom: 1px solid #e5e5e5; text-align: right; }
th:first-child, td:first-child, table.runs td { text-align: left; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; }
figcaption { font-size: .85em; color: #555; margin-bottom: .3em; }
.meta { color: #555; font-size: .9em; } .note { color: #8a5a00; font-size: .85em; }
"""


def _image(path: Path) -> str:
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img alt='{html.escape(path.stem)}' src='data:image/png;base64,{encoded}'>"


def _runs_table(data: ExperimentData) -> str:
    runs = data.runs.copy()
    runs["order"] = runs["method"].map(method_sort_key)
    runs = runs.sort_values(["dataset", "order", "config", "seed"])
    columns = [c for c in RUN_COLUMNS if c in runs] + (["dataset"] if len(data.datasets) > 1 else [])
    shown = runs[columns].copy()
    for name in ("avg_acc", "bwt", "forgetting"):
        if name in shown:
            shown[name] = shown[name].map(lambda v: "" if pd.isna(v) else f"{v * 100:.2f}")
    return shown.to_html(index=False, classes="runs", border=0, escape=True, na_rep="",
                         float_format=lambda v: f"{v:.4g}")


def _sweep_block(sweep: dict[str, Any] | None) -> str:
    if not sweep:
        return ""
    best = {k: v for k, v in sweep["metrics"].items() if k.startswith("best.")}
    best_tags = {k: v for k, v in sweep["tags"].items() if k.startswith("best")}
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
                   for k, v in sorted({**sweep["params"], **best_tags, **best}.items()))
    return (f"<h2>Sweep {html.escape(str(sweep['name']))}</h2><p class='meta'>parent run "
            f"{html.escape(sweep['run_id'])}, status {html.escape(sweep['status'])}</p><table>{rows}</table>")


def render_html(data: ExperimentData, sections: list[Section], select: str = "best") -> str:
    """The whole page as one string: tables as HTML, figures as base64 PNG."""
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    methods = ", ".join(method_label(m) for m in data.methods)
    chosen = "each method's best configuration (mean final average accuracy)" if select == "best" else \
        "every configuration"
    head = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>mergan report: {html.escape(data.experiment)}</title><style>{CSS}</style></head><body>")
    meta = (f"<p class='meta'>{len(data.runs)} runs ({html.escape(methods)}) on "
            f"{html.escape(', '.join(data.datasets))}, up to {data.num_tasks} tasks; "
            f"{'tracking store ' + html.escape(data.tracking_uri) if data.tracking_uri else 'read from run folders'}; "
            f"generated {html.escape(now)}. Tables and figures show {chosen}; "
            f"spreads are standard deviations over seeds, intervals the {CONFIDENCE:.0%} t-interval of the mean over "
            f"seeds.</p>")
    parts = [head, f"<h1>MeRGAN report: {html.escape(data.experiment)}</h1>", meta, _sweep_block(data.sweep)]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.table is not None:
            parts.append(section.table.to_html())
        parts += [f"<figure class='table'><figcaption>{html.escape(caption)}</figcaption>"
                  f"{frame.to_html(classes='orders', border=0, escape=True)}</figure>"
                  for caption, frame in section.tables]
        for name, paths in section.figures.items():
            parts.append(f"<figure><figcaption>{html.escape(section.captions[name])}</figcaption>"
                         f"{_image(paths['png'])}</figure>")
        parts += [f"<p class='note'>{html.escape(note)}</p>" for note in section.notes]
    parts.append(f"<h2>Runs</h2>{_runs_table(data)}</body></html>")
    return "\n".join(parts)
