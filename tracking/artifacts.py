"""Files the MLflow logger writes for a run: the accuracy and quality matrices as CSV, JSON and heatmap PNGs."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

Matrix = list[list[float | None]]


def square_matrix(matrix: Matrix, num_tasks: int) -> Matrix:
    """R padded to ``num_tasks`` x ``num_tasks`` with None (rows may be ragged or missing)."""
    size = max(num_tasks, len(matrix), *(len(row) for row in matrix)) if matrix else num_tasks
    out: Matrix = []
    for i in range(size):
        row = list(matrix[i]) if i < len(matrix) else []
        row = [None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v) for v in row]
        out.append(row + [None] * (size - len(row)))
    return out


def write_matrix_csv(matrix: Matrix, path: Path) -> Path:
    """Rows: after task i; columns: accuracy on task j's classes; empty cell: not measured."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["after_task"] + [f"task_{j + 1}" for j in range(len(matrix))])
        for i, row in enumerate(matrix):
            writer.writerow([i + 1] + ["" if v is None else f"{v:.6g}" for v in row])
    return path


def write_matrix_json(matrix: Matrix, path: Path, *, matrix_key: str = "accuracy_matrix", **extra: Any) -> Path:
    with open(path, "w") as handle:
        json.dump({matrix_key: matrix, **extra}, handle, indent=1)
    return path


def write_matrix_png(matrix: Matrix, path: Path, title: str = "", measure: str = "accuracy",
                     value_range: tuple[float, float] | None = (0.0, 1.0)) -> Path:
    """Heatmap of a matrix (rows: after task i, columns: task j) with the values written in when small;
    ``value_range`` None scales the colours to the values (FID, KID)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    values = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    size = max(len(matrix), 1)
    figure = Figure(figsize=(1.2 + 0.55 * size, 0.9 + 0.5 * size), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    low, high = value_range if value_range is not None else (np.nanmin(values), np.nanmax(values))
    image = axes.imshow(np.ma.masked_invalid(values), vmin=low, vmax=high, cmap="viridis")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    ticks = list(range(size))
    axes.set_xticks(ticks, [str(j + 1) for j in ticks])
    axes.set_yticks(ticks, [str(i + 1) for i in ticks])
    axes.set_xlabel(f"{measure} on task j")
    axes.set_ylabel("after training task i")
    if title:
        axes.set_title(title, fontsize=9)
    if size <= 12:
        for (i, j), value in np.ndenumerate(values):
            if not np.isnan(value):
                axes.text(j, i, f"{value:.3g}" if value_range is None else f"{value:.2f}", ha="center",
                          va="center", fontsize=7, color="black" if value > (low + high) / 2 else "white")
    figure.tight_layout()
    figure.savefig(path)
    return path
