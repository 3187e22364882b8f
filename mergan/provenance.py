"""Which code made a run: the git commit of the mergan checkout, written into every run's record; and which
mergan a sweep runs: the installed package, not a folder that shadows it, and its version."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """The commit of the git checkout holding ``path`` (default: this code), or None."""
    folder = Path(path) if path else Path(__file__).resolve().parent
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                              timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", commit) else None


def mergan_import_problem() -> str | None:
    """Why ``import mergan`` did not find the installed package, or None when it did.

    A folder named ``mergan`` without ``__init__.py`` beside the running script or in the working
    folder (say this repository synced to ``~/mergan`` while ``ray submit`` runs ``~/sweep.py``)
    is imported as a namespace package ahead of an editable install; the package's submodules are
    still found, but everything of ``mergan/__init__.py`` (``__version__``) is missing.
    """
    import mergan

    if getattr(mergan, "__file__", None) and hasattr(mergan, "__version__"):
        return None
    folders = ", ".join(map(str, getattr(mergan, "__path__", None) or [])) or "?"
    return (f"`import mergan` found the folder {folders}, not the installed mergan package: a folder named "
            f"'mergan' beside the script or in the working folder shadows it. Rename or move that folder (a "
            f"cluster syncs this repository to ~/mergan-platform), or run the script from another folder")


def mergan_version() -> str:
    """``mergan.__version__``, or an ImportError saying which folder shadows the package."""
    problem = mergan_import_problem()
    if problem:
        raise ImportError(problem)
    import mergan

    return mergan.__version__
