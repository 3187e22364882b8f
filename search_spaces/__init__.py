"""Search spaces for sweeps: named presets, a user's own .py/.yaml space, and sampling them.

``load_space("ra-lambda")`` or ``load_space("my_space.py")`` -> :class:`SearchSpace`.
"""

from __future__ import annotations

from pathlib import Path

from search_spaces.presets import get_preset, preset_names
from search_spaces.sampling import sample_points
from search_spaces.space import SearchSpace, SpaceError
from search_spaces.user import load_space_file


def load_space(spec: str, text: str | None = None) -> SearchSpace:
    """A named preset, or a path to a .py/.yaml space file (``text``: the file's saved content)."""
    if spec.endswith((".py", ".yaml", ".yml")) or "/" in spec or Path(spec).is_file():
        return load_space_file(spec, text)
    return get_preset(spec)


__all__ = ["SearchSpace", "SpaceError", "load_space", "preset_names", "sample_points"]
