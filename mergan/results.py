"""A run's ``results.json``: written after every task, read back for its accuracy matrix (e.g. a JT
run's, for intransigence)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

RESULTS_FILE = "results.json"


def write_results(out_dir: Path, tasks: list[list[int]], accuracy_matrix: list[list[float | None]],
                  results: list[Any], quality_matrices: dict[str, list[list[float | None]]] | None = None) -> Path:
    """Write ``<out_dir>/results.json`` atomically: the tasks, the accuracy matrix, the quality matrices (by
    name, rows as the accuracy matrix's) and each task's result."""
    path = out_dir / RESULTS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"tasks": tasks, "accuracy_matrix": accuracy_matrix,
                               "quality_matrices": quality_matrices or {},
                               "results": [asdict(r) for r in results]}, indent=1))
    os.replace(tmp, path)
    return path


def read_matrix(path: str | os.PathLike) -> list[list[float | None]]:
    """The accuracy matrix of a run's results.json (or of a JSON list of rows)."""
    payload = json.loads(Path(path).read_text())
    matrix = payload.get("accuracy_matrix") if isinstance(payload, dict) else payload
    if isinstance(matrix, list):
        return matrix
    raise ValueError(f"{path}: no accuracy_matrix (a list of rows) in it")
