"""A Python environment where some installed packages cannot be imported, as on a machine without them.

``env = without_packages(tmp_path, {"ray"})`` gives the environment of a subprocess whose imports of
``ray`` (and its submodules) fail; every refused import is also appended to ``tmp_path/blocked.txt``,
so a test sees an attempt even where the code under test catches the ImportError.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

BLOCKER = textwrap.dedent("""
    import sys

    BLOCKED = {blocked!r}
    LOG = {log!r}

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                with open(LOG, "a") as handle:
                    handle.write(name + "\\n")
                raise ImportError(f"No module named {{name!r}} (blocked by the test)", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
""")


def without_packages(folder: Path, packages: set[str]) -> dict[str, str]:
    """The environment of a subprocess that cannot import ``packages``; attempts land in ``folder/blocked.txt``."""
    (folder / "sitecustomize.py").write_text(BLOCKER.format(blocked=sorted(packages), log=str(folder / "blocked.txt")))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}


def attempted(folder: Path) -> list[str]:
    """The imports the blocker refused."""
    path = folder / "blocked.txt"
    return path.read_text().split() if path.is_file() else []
