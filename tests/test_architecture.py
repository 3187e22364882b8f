"""The import graph follows the layer diagram (docs/interfaces.md, "Layers"): no cycle, no upward arrow.

Floors, top to bottom: 4 the command line (``mergan_cli``) and ``sweep.py``; 3 ``trainables`` and
``analysis``; 2 ``tracking`` and ``search_spaces``; 1 ``mergan``. A module imports only from its own
package or from floors below it, counting imports inside functions too (they run all the same).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.support.blocked_imports import attempted, without_packages

ROOT = Path(__file__).resolve().parents[1]
FLOORS = {"mergan_cli": 4, "sweep": 4, "trainables": 3, "analysis": 3, "tracking": 2, "search_spaces": 2,
          "mergan": 1}
# What the trainer must run without: it is pure PyTorch (ARCHITECTURE: "no Ray, no MLflow imports").
FORBIDDEN_IN_MERGAN = {"ray", "optuna", "mlflow"}


def module_files() -> dict[str, Path]:
    """Every module of the layered packages (and sweep.py), by dotted name."""
    files = {"sweep": ROOT / "sweep.py"}
    for package in FLOORS:
        folder = ROOT / package
        if not folder.is_dir():
            continue
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            files[".".join(parts)] = path
    return files


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except what sits under ``if TYPE_CHECKING:`` (type hints only, never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for branch in node.orelse:
                yield branch
                yield from _runtime_nodes(branch)
            continue
        yield node
        yield from _runtime_nodes(node)


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules ``name`` imports when run (in functions too), resolved to known module names or top-level names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known and "." in target:
                target = target.rpartition(".")[0]
            if target:
                found.add(target)
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports_of(name, path, set(files)) for name, path in files.items()}


def top(name: str) -> str:
    return name.split(".")[0]


def test_no_import_runs_up_the_layers():
    upward = [f"{module} (floor {FLOORS[top(module)]}) imports {target} (floor {FLOORS[top(target)]})"
              for module, targets in import_graph().items() for target in sorted(targets)
              if top(target) in FLOORS and top(target) != top(module) and FLOORS[top(target)] >= FLOORS[top(module)]]
    assert not upward, "imports that run up or sideways across the layers:\n" + "\n".join(upward)


def test_the_trainer_imports_no_tracking_or_cluster_library():
    found = [f"{module} imports {target}" for module, targets in import_graph().items() if top(module) == "mergan"
             for target in sorted(targets) if top(target) in FORBIDDEN_IN_MERGAN]
    assert not found, "\n".join(found)


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    internal = {m: {t for t in targets if t in graph} for m, targets in graph.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(internal[module]):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(internal):
        if module not in state:
            visit(module)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_walker_sees_an_upward_import(tmp_path):
    """The check above would catch ``mergan`` importing ``tracking`` (and a lazy import counts)."""
    path = tmp_path / "trainer.py"
    path.write_text("def f():\n    from tracking.callback import MLflowCallback\n")
    assert "tracking.callback" in imports_of("mergan.trainer", path, {"tracking.callback", "mergan.trainer"})


def test_sweep_dry_run_does_not_need_ray(tmp_path):
    """Planning and validating a sweep (``sweep.py --dry-run``) imports neither Ray nor its Tune."""
    env = {**without_packages(tmp_path, {"ray"}), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    blocked = subprocess.run([sys.executable, "-c", "import ray"], check=False, env=env,
                             capture_output=True, text=True)
    assert blocked.returncode != 0 and "blocked by the test" in blocked.stderr
    (tmp_path / "blocked.txt").unlink()
    done = subprocess.run([sys.executable, str(ROOT / "sweep.py"), "--dry-run", "--space", "methods",
                           "--storage-path", str(tmp_path / "sweeps")],
                          check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert attempted(tmp_path) == []


def file_names(package: str) -> set[str]:
    """The file and folder names a package's modules spell out as constants (``STATE_FILE = "mlflow.json"``)."""
    names = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)):
                continue
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            if isinstance(node.value.value, str) and any(t.endswith(("_FILE", "_FOLDER", "_DIR")) for t in targets):
                names.add(node.value.value)
    return names


def test_the_trainer_names_no_file_of_the_trackers():
    """``mergan`` owns the run folder; the files trackers keep there are theirs to name (``tracking.mirror``
    keeps its state under ``mergan.run_folder.MIRRORS``), so no string in ``mergan`` spells one, nor says mlflow."""
    theirs = file_names("tracking")
    assert "mlflow.json" in theirs  # the check sees tracking's names
    found = []
    for path in (ROOT / "mergan").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body
                      and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        found += [f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                  and (node.value in theirs or "mlflow" in node.value.lower())]
    assert not found, "mergan spells out files of the trackers:\n" + "\n".join(found)


def test_tests_share_helpers_through_tests_support_only():
    """No test module imports another test module, and none edits sys.path (helpers live in tests/support)."""
    found = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.name} imports {n}" for n in names if n.split(".")[-1].startswith("test_")]
            if isinstance(node, ast.Attribute) and ast.unparse(node) == "sys.path":
                found.append(f"{path.name} touches sys.path")
    assert not found, "\n".join(found)


def test_methods_never_import_the_trainer_not_even_for_type_hints():
    """A method depends on what a hook may use (mergan.methods.context), not on the Trainer class."""
    found = []
    for path in sorted((ROOT / "mergan" / "methods").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):  # every import, TYPE_CHECKING ones too
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.name} imports {n}" for n in names
                      if n == "mergan.trainer" or n.startswith("mergan.trainer.")]
    assert not found, "\n".join(found)


def test_reading_configs_and_the_commands_besides_train_do_not_import_torch():
    """The methods' registry (torch, every plugin) loads when a config needs its knobs, not before: naming
    fields, reports and syncs stay quick."""
    code = ("import sys, mergan.config, mergan_cli.main as m; m.build_parser(['report', '--help']); "
            "assert 'torch' not in sys.modules, 'torch imported'; mergan.config.resolve_key('lr_g'); "
            "assert 'torch' not in sys.modules; mergan.config.resolve_key('lambda_ra'); "
            "assert 'torch' in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
