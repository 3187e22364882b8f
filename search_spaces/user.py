"""A user's own search space, from a Python file (a function ``space(trial)``) or a YAML file.

Python: the file defines ``space(trial)``, an Optuna define-by-run function whose docstring says
what question the sweep answers; it may return constants; an optional ``points_to_evaluate``
list names configurations to run first. See ``search_spaces/examples/my_space.py``.

YAML: a mapping of parameter (a config field name) to its distribution, or to a constant::

    question: Which lambda_RA keeps earlier digits without slowing the new one?
    method: {type: categorical, choices: [ra, jtr+ra]}
    lambda_ra: {type: float, low: 1e-4, high: 1.0, log: true}
    replay_mode: {type: categorical, choices: [fresh, fixed], condition: {method: jtr+ra}}
    replay_size_per_class: {type: int, low: 16, high: 2048, log: true, condition: {replay_mode: fixed}}
    iterations_per_task: 300

``condition: {param: value or [values]}`` suggests the parameter only when every named earlier
parameter took one of those values. ``{type: grid, values: [...]}`` makes a grid space instead
(every combination, no search; grid and Optuna types cannot be mixed). The optional
``question`` and ``points_to_evaluate`` keys are not parameters. See ``examples/my_space.yaml``.

The file's text is kept with the sweep, so a resumed sweep uses the space it started with.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import linecache
import sys
from pathlib import Path
from typing import Any

import yaml

from search_spaces.space import SearchSpace, SpaceError, docstring_question

SPEC_KEYS = {
    "float": {"type", "low", "high", "log", "step", "condition"},
    "int": {"type", "low", "high", "log", "step", "condition"},
    "categorical": {"type", "choices", "condition"},
    "grid": {"type", "values"},
}


def load_space_file(path: str | Path, text: str | None = None) -> SearchSpace:
    """A space from ``path`` (.py, .yaml or .yml); ``text`` replaces the file's content (on resume)."""
    path = Path(path)
    if text is None:
        if not path.is_file():
            raise SpaceError(f"space file {path} does not exist")
        text = path.read_text()
    if path.suffix == ".py":
        return _python_space(path, text)
    if path.suffix in (".yaml", ".yml"):
        return _yaml_space(path, text)
    raise SpaceError(f"space file {path}: unknown kind {path.suffix!r}; allowed: .py (a function space(trial)), "
                     f".yaml or .yml (parameter: distribution)")


# -- Python --------------------------------------------------------------------------------
def _python_space(path: Path, text: str) -> SearchSpace:
    # A stable module name (from the content) lets Tune pickle the function by reference and a
    # resumed sweep find it again after loading the same text.
    digest = hashlib.sha1(text.encode()).hexdigest()[:12]
    name = f"mergan_user_space_{digest}"
    module = sys.modules.get(name)
    if module is None:
        # Run the text itself (what a resumed sweep saved, never a since-edited file), with no copy on
        # disk: a copy in a shared temporary folder could be replaced, or be a link, by another local user.
        module = importlib.util.module_from_spec(importlib.machinery.ModuleSpec(name, None, origin=str(path)))
        module.__file__ = str(path)
        # Tracebacks and inspect.getsource (the sweep's MLflow record) show the text that ran.
        linecache.cache[str(path)] = (len(text), None, text.splitlines(True), str(path))
        sys.modules[name] = module
        try:
            exec(compile(text, str(path), "exec"), module.__dict__)  # noqa: S102 - the user's own space file
        except Exception as error:
            del sys.modules[name]
            raise SpaceError(f"space file {path} failed to load: {type(error).__name__}: {error}") from error
    function = getattr(module, "space", None)
    if not callable(function):
        raise SpaceError(f"space file {path} must define a function space(trial) (an Optuna define-by-run "
                         f"function); it defines: {', '.join(n for n in vars(module) if not n.startswith('_'))}")
    points = getattr(module, "points_to_evaluate", [])
    if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
        raise SpaceError(f"space file {path}: points_to_evaluate must be a list of {{parameter: value}} dicts")
    return SearchSpace(name=path.stem, question=docstring_question(function, f"space file {path}"),
                       define=function, points_to_evaluate=points, source=str(path), text=text)


# -- YAML ----------------------------------------------------------------------------------
class YamlSpace:
    """A define-by-run function built from a YAML mapping (picklable: it holds plain data only)."""

    def __init__(self, params: dict[str, Any], where: str):
        self.params, self.where = params, where

    def __call__(self, trial: Any) -> dict[str, Any]:
        taken: dict[str, Any] = {}
        constants: dict[str, Any] = {}
        for name, spec in self.params.items():
            if not isinstance(spec, dict):
                constants[name] = taken[name] = spec
                continue
            condition = spec.get("condition") or {}
            if not all(name_ in taken and taken[name_] in _as_list(allowed) for name_, allowed in condition.items()):
                continue
            kind = spec["type"]
            if kind == "categorical":
                taken[name] = trial.suggest_categorical(name, list(spec["choices"]))
            elif kind == "float":
                taken[name] = trial.suggest_float(name, float(spec["low"]), float(spec["high"]),
                                                  log=bool(spec.get("log", False)),
                                                  step=None if spec.get("step") is None else float(spec["step"]))
            else:
                taken[name] = trial.suggest_int(name, int(spec["low"]), int(spec["high"]),
                                                log=bool(spec.get("log", False)),
                                                step=1 if spec.get("step") is None else int(spec["step"]))
        return constants


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _number(where: str, key: str, value: Any, kind: str) -> float:
    try:
        return int(value) if kind == "int" else float(value)  # YAML reads 1e-4 as a string
    except (TypeError, ValueError):
        raise SpaceError(f"{where}: {key} = {value!r} is not a number") from None


def _check_spec(where: str, name: str, spec: dict[str, Any], earlier: list[str]) -> None:
    kind = spec.get("type")
    if kind not in SPEC_KEYS:
        raise SpaceError(f"{where}: parameter {name!r} has type {kind!r}; allowed: {', '.join(SPEC_KEYS)}")
    unknown = set(spec) - SPEC_KEYS[kind]
    if unknown:
        raise SpaceError(f"{where}: parameter {name!r} ({kind}) has unknown keys {sorted(unknown)}; allowed: "
                         f"{', '.join(sorted(SPEC_KEYS[kind]))}")
    if kind in ("float", "int"):
        for key in ("low", "high"):
            if key not in spec:
                raise SpaceError(f"{where}: parameter {name!r} ({kind}) needs {key}")
        low, high = (_number(f"{where}: parameter {name!r}", k, spec[k], kind) for k in ("low", "high"))
        if not low < high:
            raise SpaceError(f"{where}: parameter {name!r}: low ({low}) must be below high ({high})")
        if spec.get("log") and low <= 0:
            raise SpaceError(f"{where}: parameter {name!r}: a log scale needs low > 0, got {low}")
        if spec.get("step") is not None and not _number(f"{where}: parameter {name!r}", "step", spec["step"], kind) > 0:
            raise SpaceError(f"{where}: parameter {name!r}: step {spec['step']!r} must be > 0 (or left out)")
    if kind == "categorical" and (not isinstance(spec.get("choices"), list) or not spec["choices"]):
        raise SpaceError(f"{where}: parameter {name!r} (categorical) needs a non-empty list of choices")
    if kind == "grid" and (not isinstance(spec.get("values"), list) or not spec["values"]):
        raise SpaceError(f"{where}: parameter {name!r} (grid) needs a non-empty list of values")
    condition = spec.get("condition")
    if condition is not None:
        if not isinstance(condition, dict) or not condition:
            raise SpaceError(f"{where}: parameter {name!r}: condition must map earlier parameters to the "
                             f"value(s) that switch it on, e.g. {{method: [ra, jtr+ra]}}")
        missing = [c for c in condition if c not in earlier]
        if missing:
            raise SpaceError(f"{where}: parameter {name!r}: its condition names {missing}, which must be "
                             f"parameters defined above it; defined above: {earlier or 'none'}")


def _yaml_space(path: Path, text: str) -> SearchSpace:
    where = f"space file {path}"
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise SpaceError(f"{where} is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise SpaceError(f"{where} must hold a mapping of parameter: distribution")
    question = str(raw.pop("question", "") or f"a user's space from {path.name}")
    points = raw.pop("points_to_evaluate", None)
    points = [] if points is None else points
    if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
        raise SpaceError(f"{where}: points_to_evaluate must be a list of {{parameter: value}} mappings")
    if not raw:
        raise SpaceError(f"{where} defines no parameters")
    earlier: list[str] = []
    for name, spec in raw.items():
        if isinstance(spec, dict):
            _check_spec(where, str(name), spec, earlier)
        earlier.append(str(name))
    kinds = {spec["type"] == "grid" for spec in raw.values() if isinstance(spec, dict)}
    if kinds == {True, False}:
        raise SpaceError(f"{where} mixes grid parameters with searched ones; a space is either a grid (every "
                         f"combination) or an Optuna search")
    if kinds == {True}:
        if points:
            raise SpaceError(f"{where}: points_to_evaluate only applies to a searched space, not a grid")
        grid = {str(n): (list(s["values"]) if isinstance(s, dict) else [s]) for n, s in raw.items()}
        return SearchSpace(name=path.stem, question=question, grid=grid, source=str(path), text=text)
    return SearchSpace(name=path.stem, question=question, define=YamlSpace({str(k): v for k, v in raw.items()}, where),
                       points_to_evaluate=points, source=str(path), text=text)
