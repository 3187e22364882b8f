"""Publication figures (matplotlib, no pyplot state): each function returns a ``Figure``; :func:`save_figure`
writes it as PNG and PDF.

Runs figures take one dataset's :class:`~analysis.load.ExperimentData` and show each method's
best configuration (``select="all"``: every configuration); study figures take an Optuna study.
"""

from __future__ import annotations

import functools
import math
import os
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from analysis.aggregate import (
    GROUP,
    complete_runs,
    curves,
    mean_matrices,
    metric_curves,
    select_best,
    single_dataset,
    value_at,
)
from analysis.errors import NothingToPlotError
from analysis.load import ExperimentData
from analysis.paper import method_label, method_sort_key
from mergan.settings import value_text

STYLE = {
    "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "legend.fontsize": 7, "xtick.labelsize": 7,
    "ytick.labelsize": 7, "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "grid.alpha": 0.3, "grid.linewidth": 0.5, "lines.linewidth": 1.4, "lines.markersize": 3.5,
    "pdf.fonttype": 42, "ps.fonttype": 42, "savefig.dpi": 200, "figure.dpi": 100,
}
# Okabe-Ito colours, fixed per method so that every figure agrees; bounds in black and grey.
METHOD_COLORS = {"jt": "#000000", "sft": "#999999", "ewc": "#E69F00", "dgr": "#56B4E9", "jtr": "#009E73",
                 "ra": "#D55E00"}
EXTRA_COLORS = ("#CC79A7", "#0072B2", "#F0E442", "#7F3C8D", "#11A579", "#3969AC")
LINE_STYLES = ("-", "--", ":", "-.")
AXIS_LABELS = {"method.lambda_ra": r"$\lambda_{RA}$", "method.lambda_ewc": r"$\lambda_{EWC}$",
               "method.replay_size_per_class": "replay size per class", "method.lambda_l2": r"$\lambda_{L2}$"}
F = TypeVar("F", bound=Callable[..., Figure])
CHAR_WIDTH_EM = 0.62  # a generous average glyph width of the default font, in units of its size
MOST_LOG_TICKS = 5  # labelled ticks on a log axis; more crowd a 3-inch panel


def styled(function: F) -> F:
    """Run a figure function under :data:`STYLE` (rc params are read when artists are made)."""
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Figure:
        with matplotlib.rc_context(STYLE):
            return function(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


def save_figure(figure: Figure, out_dir: str | os.PathLike, name: str) -> dict[str, Path]:
    """Write ``<out_dir>/<name>.png`` and ``.pdf``; returns {"png": path, "pdf": path}."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    with matplotlib.rc_context(STYLE):
        for kind in ("png", "pdf"):
            paths[kind] = folder / f"{name}.{kind}"
            figure.savefig(paths[kind], bbox_inches="tight", metadata={"Creator": "mergan analysis"}
                           if kind == "pdf" else None)
    return paths


def method_colors(methods: Sequence[str]) -> dict[str, str]:
    """The colour of each method: the paper's six fixed, others from a spare palette in order."""
    spare = iter(EXTRA_COLORS * 4)
    return {m: METHOD_COLORS.get(m) or next(spare) for m in sorted(set(methods), key=method_sort_key)}


def _configurations(data: ExperimentData) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(method, config, legend label, line style kwargs) in paper order."""
    pairs = sorted(set(zip(data.runs["method"], data.runs["config"])), key=lambda p: (method_sort_key(p[0]), p[1]))
    colors = method_colors([m for m, _ in pairs])
    seen: dict[str, int] = {}
    out = []
    for method, config in pairs:
        index = seen[method] = seen.get(method, -1) + 1
        label = method_label(method) + (f" ({config})" if config else "")
        out.append((method, config, label, {"color": colors[method], "linestyle": LINE_STYLES[index % 4]}))
    return out


def _prepare(data: ExperimentData, select: str, what: str) -> tuple[ExperimentData, str]:
    dataset = single_dataset(data, what)
    if data.accuracy.empty:
        raise NothingToPlotError(f"experiment {data.experiment!r}: no per-task accuracies for {what}")
    return (select_best(data) if select == "best" else data), dataset


def _seeds_note(data: ExperimentData, spread: bool = True) -> str:
    counts = data.runs.groupby(GROUP)["run_id"].count()
    low, high = int(counts.min()), int(counts.max())
    seeds = f"{low} seed{'s' if high > 1 else ''}" if low == high else f"{low}-{high} seeds"
    return (f"mean ± std over {seeds}" if spread else f"mean over {seeds}") if high > 1 else seeds


def wrap_to_width(text: str, width_inches: float, fontsize: float) -> str:
    """``text`` broken into lines no wider than ``width_inches`` at ``fontsize`` points (at spaces where it can),
    so that titles of long configuration names stay over their own panel."""
    chars = max(8, int(width_inches * 72 / (CHAR_WIDTH_EM * fontsize)))
    return textwrap.fill(text, chars, break_on_hyphens=False)


def legend_columns(labels: Sequence[str], width_inches: float, fontsize: float, most: int = 4) -> int:
    """How many legend columns of these labels fit across ``width_inches`` (a line marker is about 4 characters)."""
    longest = max((len(label) for label in labels), default=1) + 6
    return max(1, min(most, len(labels), int(width_inches * 72 / (CHAR_WIDTH_EM * fontsize * longest))))


def log_ticks(low: float, high: float, most: int = MOST_LOG_TICKS) -> list[float]:
    """Labelled ticks for a log axis from ``low`` to ``high``: 1-2-5 steps when the range is short, whole
    decades (every second, third ... when there are many) otherwise; at most ``most``."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    for steps in ((1, 2, 5), (1, 3), (1,)):
        ticks = [m * 10.0**k for k in range(first, last + 1) for m in steps if low <= m * 10.0**k <= high * (1 + 1e-9)]
        if 2 <= len(ticks) <= most:
            return ticks
    decades = [10.0**k for k in range(first, last + 1) if low <= 10.0**k <= high * (1 + 1e-9)]
    if len(decades) < 2:  # a range inside one decade: its ends
        return [low, high]
    return decades[::math.ceil(len(decades) / most)]


def log_axis(axes: Any, values: np.ndarray) -> None:
    """A log x axis over ``values`` with at most MOST_LOG_TICKS short labels ("1e-3", "0.002", "1e5") and
    unlabelled minor ticks: matplotlib's own labels (2x10^-3 on minor ticks) collide in narrow panels."""
    axes.set_xscale("log")
    low, high = float(np.min(values)), float(np.max(values))
    if low == high:
        low, high = low / 2, high * 2
    axes.xaxis.set_major_locator(FixedLocator(log_ticks(low, high)))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: value_text(float(value))))
    axes.xaxis.set_minor_formatter(NullFormatter())


def _task_axis(axes: Any, num_tasks: int) -> None:
    axes.set_xlim(0.7, num_tasks + 0.3)
    step = 1 if num_tasks <= 12 else math.ceil(num_tasks / 10)
    axes.set_xticks(range(1, num_tasks + 1, step))


def _band_curves(axes: Any, stats: pd.DataFrame, configurations: list[tuple[str, str, str, dict[str, Any]]],
                 measure: str, scale: float) -> None:
    """Each configuration's mean curve of ``measure`` (times ``scale``) and its ±std band over seeds."""
    for method, config, label, style in configurations:
        rows = stats[(stats["method"] == method) & (stats["config"] == config) & (stats["measure"] == measure)]
        if rows.empty:
            continue
        x, mean, std = rows["after_task"].to_numpy(), rows["mean"].to_numpy() * scale, rows["std"].to_numpy() * scale
        axes.plot(x, mean, marker="o", label=label, **style)
        if np.isfinite(std).any():
            axes.fill_between(x, mean - np.nan_to_num(std), mean + np.nan_to_num(std), color=style["color"],
                              alpha=0.15, linewidth=0)


# -- runs figures ---------------------------------------------------------------------------
@styled
def forgetting_curves(data: ExperimentData, select: str = "best") -> Figure:
    """Accuracy on the first task's classes, and the average accuracy, vs. tasks trained; per method,
    mean line and a ±std band over seeds."""
    data, dataset = _prepare(data, select, "a forgetting-curve figure")
    stats = curves(data)
    configurations = _configurations(data)
    width_inches, legend_size = 7.0, STYLE["legend.fontsize"]
    columns = legend_columns([label for _, _, label, _ in configurations], width_inches, legend_size)
    # The legend sits below the panels; long configuration names take one column each, so the figure
    # grows by the legend's rows instead of squeezing the panels (or running wider than the page).
    legend_inches = math.ceil(len(configurations) / columns) * legend_size * 1.6 / 72
    figure = Figure(figsize=(width_inches, 2.75 + legend_inches), layout="constrained")
    panels = figure.subplots(1, 2, sharey=True)
    titles = {"task_1": "Accuracy on task 1's classes", "avg_acc": "Average accuracy over tasks seen"}
    for axes, measure in zip(panels, titles):
        _band_curves(axes, stats, configurations, measure, scale=100)
        axes.set_title(titles[measure])
        axes.set_xlabel("tasks trained")
        _task_axis(axes, data.num_tasks)
        axes.set_ylim(0, 102)
    panels[0].set_ylabel("accuracy (%)")
    handles, labels = panels[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncol=columns, frameon=False)
    figure.suptitle(f"{data.experiment} · {dataset}: forgetting ({_seeds_note(data)})")
    return figure


@styled
def accuracy_heatmaps(data: ExperimentData, select: str = "best") -> Figure:
    """The accuracy matrix R (row: after task i, column: task j) of each method, side by side, seed-averaged."""
    data, dataset = _prepare(data, select, "an accuracy-matrix figure")
    matrices = mean_matrices(data)
    labels = {(m, c): label for m, c, label, _ in _configurations(data)}
    count = len(matrices)
    columns = min(count, 4)
    rows = math.ceil(count / columns)
    panel_inches = 1.9
    figure = Figure(figsize=(panel_inches * columns + 0.8, 2.0 * rows + 0.5), layout="constrained")
    grid = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    image = None
    for axes, (key, matrix) in zip(grid, matrices.items()):
        size = len(matrix)
        image = axes.imshow(matrix * 100, vmin=0, vmax=100, cmap="viridis")
        axes.set_title(wrap_to_width(labels.get(key, key[0]), panel_inches, 8), fontsize=8)
        ticks = range(0, size, 1 if size <= 12 else math.ceil(size / 10))
        axes.set_xticks(list(ticks), [str(t + 1) for t in ticks])
        axes.set_yticks(list(ticks), [str(t + 1) for t in ticks])
        axes.set_xlabel("accuracy on task j")
        axes.set_ylabel("after task i")
        axes.grid(False)
        if size <= 10:
            for (i, j), value in np.ndenumerate(matrix):
                if np.isfinite(value):
                    axes.text(j, i, f"{value * 100:.0f}", ha="center", va="center", fontsize=max(4, 8 - size // 2),
                              color="black" if value > 0.6 else "white")
    for axes in grid[count:]:
        axes.set_visible(False)
    if image is not None:
        figure.colorbar(image, ax=list(grid[:count]), label="accuracy (%)", shrink=0.85)
    figure.suptitle(f"{data.experiment} · {dataset}: accuracy matrices ({_seeds_note(data, spread=False)})")
    return figure


QUALITY_PANELS = {"accuracy": "accuracy (%)", "fid_classifier": "FID (evaluator space)",
                  "recall_classifier": "recall (%)"}
QUALITY_FORGETTING = {"fr_acc": "accuracy (FR, points)", "fr_fid_classifier": "FID (FR: rise)",
                      "fr_recall_classifier": "recall (FR, points)", "fr_coverage_classifier": "coverage (FR, points)"}


def _quality_data(data: ExperimentData, select: str, what: str) -> tuple[ExperimentData, str]:
    data, dataset = _prepare(data, select, what)
    if data.quality.empty:
        raise NothingToPlotError(f"experiment {data.experiment!r}: no run measured per-task quality (eval.quality "
                                 f"fast or full)")
    return data, dataset


@styled
def quality_heatmaps(data: ExperimentData, select: str = "best") -> Figure:
    """Per method (rows), its accuracy, FID and recall matrices (row: after task i, column: task j), seed-averaged."""
    data, dataset = _quality_data(data, select, "a quality-matrix figure")
    measures = [m for m in QUALITY_PANELS if m == "accuracy" or m in data.quality_measures]
    means = {measure: mean_matrices(data, measure) for measure in measures}
    labels = {(m, c): label for m, c, label, _ in _configurations(data)}
    keys = list(means["accuracy"])
    panel_inches = 1.9
    figure = Figure(figsize=(panel_inches * len(measures) + 1.2, 1.9 * len(keys) + 0.6), layout="constrained")
    grid = figure.subplots(len(keys), len(measures), squeeze=False)
    for column, measure in enumerate(measures):
        scale = 100.0 if measure != "fid_classifier" else 1.0
        finite = [m[np.isfinite(m)] for m in means[measure].values()]
        values = np.concatenate(finite) * scale if finite else np.array([0.0])
        low, high = (0.0, 100.0) if scale == 100.0 else (float(np.nanmin(values)), float(np.nanmax(values)))
        image = None
        for row, key in enumerate(keys):
            axes = grid[row][column]
            matrix = means[measure].get(key)
            axes.grid(False)
            if matrix is None:
                axes.set_visible(False)
                continue
            image = axes.imshow(matrix * scale, vmin=low, vmax=high, cmap="viridis" if scale == 100 else "magma_r")
            size = len(matrix)
            ticks = range(0, size, 1 if size <= 12 else math.ceil(size / 10))
            axes.set_xticks(list(ticks), [str(t + 1) for t in ticks])
            axes.set_yticks(list(ticks), [str(t + 1) for t in ticks])
            axes.set_title(wrap_to_width(f"{labels.get(key, key[0])}: {QUALITY_PANELS[measure]}", panel_inches, 8),
                           fontsize=7)
            if row == len(keys) - 1:
                axes.set_xlabel("task j")
            if column == 0:
                axes.set_ylabel("after task i")
            if size <= 10:
                for (i, j), value in np.ndenumerate(matrix * scale):
                    if np.isfinite(value):
                        share = (value - low) / max(high - low, 1e-12)
                        dark_cell = share < 0.6 if scale == 100.0 else share > 0.5  # viridis vs. magma_r
                        axes.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=max(4, 8 - size // 2),
                                  color="white" if dark_cell else "black")
        if image is not None:
            figure.colorbar(image, ax=[grid[r][column] for r in range(len(keys))], shrink=0.8,
                            label=QUALITY_PANELS[measure])
    figure.suptitle(f"{data.experiment} · {dataset}: accuracy, quality and variety matrices "
                    f"({_seeds_note(data, spread=False)})")
    return figure


@styled
def quality_forgetting_curves(data: ExperimentData, select: str = "best") -> Figure:
    """Forgetting of recognisability, quality and variety vs. tasks trained: CLoG's forgetting rate of the
    accuracy, FID, recall and coverage matrices after each task; mean and ±std band over seeds per method."""
    data, dataset = _quality_data(data, select, "a quality-forgetting figure")
    measures = [m for m in QUALITY_FORGETTING if m in data.task_metrics and data.task_metrics[m].notna().any()]
    stats = metric_curves(data, measures)
    configurations = _configurations(data)
    width_inches = 2.3 * len(measures)
    columns = legend_columns([label for _, _, label, _ in configurations], width_inches, STYLE["legend.fontsize"])
    legend_inches = math.ceil(len(configurations) / columns) * STYLE["legend.fontsize"] * 1.6 / 72
    figure = Figure(figsize=(width_inches, 2.6 + legend_inches), layout="constrained")
    panels = np.atleast_1d(figure.subplots(1, len(measures)))
    for axes, measure in zip(panels, measures):
        _band_curves(axes, stats, configurations, measure, scale=1.0 if measure == "fr_fid_classifier" else 100.0)
        axes.axhline(0.0, color="#bbbbbb", linewidth=0.6)
        axes.set_title(QUALITY_FORGETTING[measure])
        axes.set_xlabel("tasks trained")
        _task_axis(axes, data.num_tasks)
    panels[0].set_ylabel("forgetting (higher: more lost)")
    handles, labels = panels[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncol=columns, frameon=False)
    figure.suptitle(f"{data.experiment} · {dataset}: forgetting of recognisability, quality and variety "
                    f"({_seeds_note(data)})")
    return figure


@functools.cache
def response_params() -> dict[str, tuple[tuple[str, dict[str, Any]], ...]]:
    """Hyperparameter -> the (method, condition on other params) pairs it acts in, for the response figure:
    the numeric knobs each method names its runs by (``Method.name_knobs``, ``knob_conditions``), of the
    built-in methods and the installed plugins."""
    from mergan.methods import REGISTRY, knob_condition  # imports torch: only when the figure is drawn

    knobs, params = REGISTRY.knobs(), {}
    for name, method in REGISTRY.methods().items():
        for knob in method.name_knobs:
            if knobs[knob].type in ("int", "float"):
                params.setdefault(f"method.{knob}", []).append((name, knob_condition(name, knob)))
    return {param: tuple(uses) for param, uses in params.items()}


def response_frame(data: ExperimentData, params: Mapping[str, tuple[tuple[str, dict[str, Any]], ...]] | None = None,
                   metric: str = "avg_acc") -> pd.DataFrame:
    """Complete runs where a hyperparameter acts: columns param, value, method, config, run_id, metric (final)."""
    params = response_params() if params is None else params
    complete = complete_runs(data)
    final = value_at(complete, metric)
    parts = []
    for param, uses in params.items():
        if param not in complete.runs:
            continue
        acts = pd.Series(False, index=complete.runs.index)
        for method, condition in uses:
            here = complete.runs["method"].map(lambda m, wanted=method: wanted in m.split("+"))
            for other, wanted in condition.items():
                if other in complete.runs:
                    here &= complete.runs[other] == wanted
            acts |= here
        runs = complete.runs[acts]
        values = pd.to_numeric(runs[param], errors="coerce")
        parts.append(pd.DataFrame({"param": param, "value": values, "method": runs["method"], "config": runs["config"],
                                   "run_id": runs["run_id"], metric: runs["run_id"].map(final)}))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["param", "value", "method", "config", "run_id", metric])
    return frame.dropna(subset=["value", metric])


@styled
def hyperparameter_response(data: ExperimentData, params: Mapping[str, tuple[tuple[str, dict[str, Any]], ...]]
                            | None = None, metric: str = "avg_acc") -> Figure:
    """Final ``metric`` vs. each hyperparameter that was varied (lambda_RA, lambda_EWC, replay size),
    log x; one dot per run, a line through the means over seeds per method."""
    dataset = single_dataset(data, "a hyperparameter-response figure")
    frame = response_frame(data, params, metric)
    varied = [p for p, group in frame.groupby("param", sort=False) if group["value"].nunique() > 1]
    if not varied:
        tried = ", ".join(params or response_params())
        raise NothingToPlotError(f"experiment {data.experiment!r}: none of {tried} took two or more values "
                                 f"among complete runs of the methods they act in")
    figure = Figure(figsize=(2.9 * len(varied) + 0.4, 2.7), layout="constrained")
    panels = np.atleast_1d(figure.subplots(1, len(varied), sharey=True, squeeze=False)).ravel()
    colors = method_colors(frame["method"])
    for axes, param in zip(panels, varied):
        rows = frame[frame["param"] == param]
        for method, group in sorted(rows.groupby("method"), key=lambda item: method_sort_key(item[0])):
            _response_panel(axes, group["value"].to_numpy(float), group[metric].to_numpy(float) * 100,
                            method_label(method), colors[method])
        axes.set_xlabel(AXIS_LABELS.get(param, param.rsplit(".", 1)[-1]))
        axes.legend(frameon=False)
    panels[0].set_ylabel(f"final {metric.replace('_', ' ')} (%)")
    figure.suptitle(f"{data.experiment} · {dataset}: response to hyperparameters (complete runs)")
    return figure


def _response_panel(axes: Any, x: np.ndarray, y: np.ndarray, label: str, color: str) -> None:
    """Dots per run; where values repeat (seeds of one setting), a line through the means with ±std bars."""
    levels = np.unique(x)
    if len(x) >= 1.5 * len(levels):
        axes.scatter(x, y, s=10, alpha=0.45, color=color, linewidths=0)
        means = np.array([y[x == level].mean() for level in levels])
        spread = np.array([y[x == level].std(ddof=1) if (x == level).sum() > 1 else 0.0 for level in levels])
        axes.errorbar(levels, means, yerr=spread, color=color, marker="o", capsize=2, label=label)
    else:  # (nearly) every value once, as in a random or TPE search: a line would zigzag through noise
        axes.scatter(x, y, s=14, alpha=0.8, color=color, linewidths=0, label=label)
    if (x > 0).all():
        log_axis(axes, x)


@styled
def sample_grids(images: Mapping[str, str | os.PathLike], title: str = "") -> Figure:
    """Sample grids side by side, one panel per label (e.g. method -> ``samples/task_T.png``)."""
    from PIL import Image

    if not images:
        raise NothingToPlotError("no sample grids to show (runs logged no samples/task_<t>.png)")
    pictures = {label: np.asarray(Image.open(path).convert("RGB")) for label, path in images.items()}
    columns = min(len(pictures), 3)
    rows = math.ceil(len(pictures) / columns)
    aspect = max(p.shape[0] / p.shape[1] for p in pictures.values())
    figure = Figure(figsize=(2.6 * columns, 2.6 * aspect * rows + 0.5), layout="constrained")
    grid = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for axes, (label, picture) in zip(grid, pictures.items()):
        axes.imshow(picture, interpolation="nearest")
        axes.set_title(label, fontsize=8)
        axes.axis("off")
    for axes in grid[len(pictures):]:
        axes.set_visible(False)
    if title:
        figure.suptitle(title)
    return figure


# -- Optuna study figures ---------------------------------------------------------------------
def objective_names(study: Any, labels: Sequence[str] | None = None) -> list[str]:
    """``labels`` if given, else the study's metric names, else "objective 0", "objective 1" ..."""
    names = labels or getattr(study, "metric_names", None)
    return list(names) if names else [f"objective {i}" for i in range(len(study.directions))]


def _complete_trials(study: Any) -> list[Any]:
    import optuna

    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


@styled
def param_importances(study: Any, labels: Sequence[str] | None = None, seed: int = 0) -> Figure:
    """fANOVA importance of each searched parameter, one panel per objective (``labels``: their names)."""
    import optuna

    names = objective_names(study, labels)
    trials = _complete_trials(study)
    if len(trials) < 2:
        raise NothingToPlotError(f"study {study.study_name!r}: {len(trials)} complete trials; importances need 2+")
    figure = Figure(figsize=(3.2 * len(names) + 0.4, 0.35 * max(3, len(trials[0].params)) + 1.0),
                    layout="constrained")
    panels = np.atleast_1d(figure.subplots(1, len(names), squeeze=False)).ravel()
    for index, (axes, name) in enumerate(zip(panels, names)):
        target = (lambda trial, i=index: trial.values[i]) if len(names) > 1 else None
        try:
            importances = optuna.importance.get_param_importances(
                study, target=target, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed))
        except (ValueError, RuntimeError) as error:
            raise NothingToPlotError(f"study {study.study_name!r}: no importances ({error})") from None
        if not importances:
            raise NothingToPlotError(f"study {study.study_name!r}: no parameter varied, no importances")
        params = list(importances)[::-1]
        axes.barh(params, [importances[p] for p in params], color="#0072B2")
        axes.set_xlabel("importance (fANOVA)")
        axes.set_title(name)
        axes.set_xlim(0, 1)
    figure.suptitle(f"Optuna study {study.study_name}: parameter importances ({len(trials)} trials)")
    return figure


@styled
def pareto_front(study: Any, labels: Sequence[str] | None = None, objectives: tuple[int, int] = (0, 1)) -> Figure:
    """Every complete trial on two objectives, the Pareto-optimal ones highlighted and joined."""
    if len(study.directions) < 2:
        raise NothingToPlotError(f"study {study.study_name!r} has one objective: there is no Pareto front")
    trials = _complete_trials(study)
    if not trials:
        raise NothingToPlotError(f"study {study.study_name!r} has no complete trials")
    a, b = objectives
    names, directions = objective_names(study, labels), [d.name.lower() for d in study.directions]
    best_numbers = {t.number for t in study.best_trials}
    points = np.array([[t.values[a], t.values[b]] for t in trials])
    on_front = np.array([t.number in best_numbers for t in trials])
    figure = Figure(figsize=(3.6, 3.0), layout="constrained")
    axes = figure.subplots()
    axes.scatter(points[~on_front, 0], points[~on_front, 1], s=12, color="#999999", label="trials")
    front = points[on_front][np.argsort(points[on_front, 0])]
    axes.plot(front[:, 0], front[:, 1], marker="o", color="#D55E00", label="Pareto front",
              drawstyle="steps-post" if len(front) > 1 else "default")
    if on_front.sum() <= 15:
        for trial, point in zip(trials, points):
            if trial.number in best_numbers:
                axes.annotate(f"#{trial.number}", point, textcoords="offset points", xytext=(3, 3), fontsize=6)
    axes.set_xlabel(f"{names[a]} ({directions[a]})")
    axes.set_ylabel(f"{names[b]} ({directions[b]})")
    axes.legend(frameon=False)
    more = f", objectives {a} and {b} of {len(names)}" if len(names) > 2 else ""
    figure.suptitle(f"Optuna study {study.study_name}: {len(front)} of {len(trials)} trials on the front{more}")
    return figure


def study_response(study: Any, labels: Sequence[str] | None = None, params: Sequence[str] | None = None,
                   objective: int = 0) -> Figure:
    """An objective vs. each numeric searched parameter over the study's complete trials (log x where positive)."""
    trials = _complete_trials(study)
    names = params or sorted({k for t in trials for k, v in t.params.items() if isinstance(v, (int, float))})
    if not trials or not names:
        raise NothingToPlotError(f"study {study.study_name!r}: no complete trials with numeric parameters")
    objective_name = objective_names(study, labels)[objective]

    @styled
    def draw() -> Figure:
        figure = Figure(figsize=(2.9 * len(names) + 0.4, 2.7), layout="constrained")
        panels = np.atleast_1d(figure.subplots(1, len(names), sharey=True, squeeze=False)).ravel()
        for axes, name in zip(panels, names):
            pairs = np.array([[t.params[name], t.values[objective]] for t in trials if name in t.params], dtype=float)
            if len(pairs):
                _response_panel(axes, pairs[:, 0], pairs[:, 1], objective_name, "#0072B2")
            axes.set_xlabel(AXIS_LABELS.get(name, AXIS_LABELS.get(f"method.{name}", name)))
        panels[0].set_ylabel(objective_name)
        figure.suptitle(f"Optuna study {study.study_name}: {objective_name} vs. parameters")
        return figure

    return draw()
