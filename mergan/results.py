"""A run's ``results.json``: written after every task, read back for its accuracy matrix (e.g. a JT
run's, for intransigence); and :func:`atomic_path`, how mergan replaces a file whole."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

RESULTS_FILE = "results.json"


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write, renamed onto it when the block ends: a crash never leaves half a
    file, a failure (a full disk) removes the temporary file, and an OSError names the file it failed on.
    Writers of one file in several processes at once must hold a lock (they share the temporary file)."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    except OSError as error:
        raise OSError(error.errno, error.strerror, str(error.filename or temporary)) from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


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
