"""A run's ``results.json``: written after every task, read back for its accuracy matrix (e.g. a JT
run's, for intransigence)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mergan.files import atomic_path

RESULTS_FILE = "results.json"


def write_results(out_dir: Path, tasks: list[list[int]], accuracy_matrix: list[list[float | None]],
                  results: list[Any], quality_matrices: dict[str, list[list[float | None]]] | None = None) -> Path:
    """Write ``<out_dir>/results.json`` atomically: the tasks, the accuracy matrix, the quality matrices (by
    name, rows as the accuracy matrix's) and each task's result."""
    path = out_dir / RESULTS_FILE
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps({"tasks": tasks, "accuracy_matrix": accuracy_matrix,
                                         "quality_matrices": quality_matrices or {},
                                         "results": [asdict(r) for r in results]}, indent=1))
    return path


def read_matrix(path: str | os.PathLike) -> list[list[float | None]]:
    """The accuracy matrix of a run's results.json (or of a JSON list of rows); a ValueError names the file."""
    try:
        payload = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else f"not JSON: {str(error).splitlines()[0]}"
        raise ValueError(f"{path}: cannot be read as a run's results.json ({reason})") from None
    matrix = payload.get("accuracy_matrix") if isinstance(payload, dict) else payload
    if isinstance(matrix, list) and all(isinstance(row, list) for row in matrix):
        return matrix
    raise ValueError(f"{path}: no accuracy_matrix (a list of rows) in it")
