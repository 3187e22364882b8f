"""Methods by name: the built-in ones, installed plugins, and the file or module a run names.

A plugin is a subclass of :class:`~mergan.methods.base.Method` written outside this repository, found
- from an installed package that declares it under the entry-point group ``mergan.methods`` (as pytest
  finds its plugins): ``[project.entry-points."mergan.methods"] kd = "mergan_kd.distillation:Distillation"``;
- from a ``.py`` file or an importable module that a run names (``method.module``, ``--method-module``):
  every method class defined in it (with a ``name`` of its own) is taken.
Its name then works wherever a built-in name does. Everything a plugin gets wrong is refused here with
one line naming it: a name nothing provides (listing what is installed), a module that fails to import
(its first error line), an entry point that is not a method class, a name or knob that clashes with a
built-in one. The registry is one per process; installed plugins are imported once, on first use.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mergan.methods.base import Method
from mergan.methods.dgr import DeepGenerativeReplay
from mergan.methods.ewc import ElasticWeightConsolidation
from mergan.methods.experience_replay import ExperienceReplay
from mergan.methods.joint import JointTraining, SequentialFineTuning, StreamedJointTraining
from mergan.methods.joint_retraining import JointRetraining
from mergan.methods.replay_alignment import ReplayAlignment
from mergan.methods.weight_anchoring import WeightAnchoring
from mergan.settings import ConfigError, Knob

ENTRY_POINT_GROUP = "mergan.methods"
# In the paper's order of presentation, then the streamed reference, then the two reference baselines this
# platform adds (not in the paper). A combination's parts are written in this order, then plugins by name.
BUILT_IN: tuple[type[Method], ...] = (JointTraining, SequentialFineTuning, ElasticWeightConsolidation,
                                      DeepGenerativeReplay, JointRetraining, ReplayAlignment, StreamedJointTraining,
                                      ExperienceReplay, WeightAnchoring)
NAME = re.compile(r"[a-z][a-z0-9_-]*\Z")
MODULE_PREFIX = "mergan_method_module_"  # sys.modules name of a method file loaded by path


@dataclass
class Plugin:
    """An installed plugin (an entry point): its method class, or why it cannot be used."""

    name: str
    origin: str  # "mergan-kd 0.1.0 (kd = mergan_kd.distillation:Distillation)"
    method: type[Method] | None = None
    error: str | None = None


def first_line(error: BaseException) -> str:
    """``ModuleNotFoundError: No module named 'x'``: what a failed import says first."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def check_method_class(method: object, where: str) -> type[Method]:
    """``method`` if it is a usable method class; a ConfigError naming ``where`` and the problem otherwise."""
    if not (isinstance(method, type) and issubclass(method, Method)):
        kind = type(method).__name__ if not isinstance(method, type) else f"class {method.__name__}"
        raise ConfigError(f"{where} is not a method class (a subclass of mergan.methods.Method) but a {kind}")
    name = method.name
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"{where}: method class {method.__name__} has name {name!r}; a name is lower-case "
                          f"letters, digits, '-' and '_', starting with a letter (it is written in --method)")
    if not isinstance(method.summary, str) or not method.summary.strip():
        raise ConfigError(f"{where}: method {name!r} needs a summary (one line, shown by mergan train --help)")
    knobs = method.knobs
    if not isinstance(knobs, tuple) or not all(isinstance(k, Knob) for k in knobs):
        raise ConfigError(f"{where}: method {name!r}: knobs must be a tuple of mergan.settings.Knob")
    names = [k.name for k in knobs]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: method {name!r} declares a knob twice: {names}")
    odd = [k for k in method.name_knobs if k not in names]
    if odd:
        raise ConfigError(f"{where}: method {name!r}: name_knobs {odd} are not among its knobs {names}")
    for knob, (other, _) in method.knob_conditions.items():
        if knob not in names or other not in names:
            raise ConfigError(f"{where}: method {name!r}: knob_conditions {knob!r} -> {other!r} must name two of "
                              f"its knobs {names}")
    return method


def is_file_spec(spec: str) -> bool:
    """True when a method module is named by a file path (``my_methods.py``), not a module (``pkg.methods``)."""
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def module_spec(spec: str) -> str:
    """A method module as a run keeps it: a file as an absolute path (a resume or a trial may start elsewhere),
    an importable module as given."""
    return str(Path(spec).expanduser().resolve()) if is_file_spec(spec) else spec


class MethodRegistry:
    """Built-in methods, installed plugins (loaded on first use) and method modules (loaded when named)."""

    def __init__(self, built_in: Sequence[type[Method]], group: str = ENTRY_POINT_GROUP):
        self.group = group
        self.built_in = {check_method_class(m, f"built-in method {m.__name__}").name: m for m in built_in}
        self.built_in_knobs = self._collect_knobs(self.built_in.values(), "built-in methods")
        self._installed: dict[str, Plugin] | None = None
        self._modules: dict[str, list[type[Method]]] = {}  # module spec as given -> its method classes

    # -- installed plugins (entry points) ---------------------------------------------------
    def installed(self) -> dict[str, Plugin]:
        """Every entry point of the group, imported once: usable plugins and broken ones, by name."""
        if self._installed is None:
            found: dict[str, Plugin] = {}
            for entry in sorted(importlib.metadata.entry_points(group=self.group), key=lambda e: e.name):
                dist = getattr(entry, "dist", None)
                package = f"{dist.name} {dist.version}" if dist is not None else "an installed package"
                origin = f"{package} ({entry.name} = {entry.value})"
                if entry.name in found:
                    found[entry.name] = Plugin(entry.name, f"{found[entry.name].origin} and {origin}",
                                               error=f"plugin {entry.name!r} is installed twice: "
                                                     f"{found[entry.name].origin} and {origin}; uninstall one")
                    continue
                found[entry.name] = self._load_entry_point(entry, origin)
            self._installed = found
        return self._installed

    def _load_entry_point(self, entry: importlib.metadata.EntryPoint, origin: str) -> Plugin:
        where = f"plugin {entry.name!r} from {origin}"
        try:
            loaded = entry.load()
        except Exception as error:  # noqa: BLE001 - any failure of a plugin's import is that plugin's error
            return Plugin(entry.name, origin, error=f"{where} failed to import: {first_line(error)}")
        try:
            method = check_method_class(loaded, where)
            if method.name != entry.name:
                raise ConfigError(f"{where}: its entry point is named {entry.name!r} but the class's name is "
                                  f"{method.name!r}; make them the same")
            self._check_plugin(method, where)
        except ConfigError as error:
            return Plugin(entry.name, origin, error=str(error))
        return Plugin(entry.name, origin, method=method)

    # -- method modules (a file or an importable module a run names) ---------------------------
    def load_module(self, spec: str) -> list[type[Method]]:
        """The method classes a ``.py`` file or an importable module defines (imported once per process)."""
        if spec in self._modules:
            return self._modules[spec]
        where = f"method.module {spec!r}"
        module = self._import_module(spec, where)
        classes = [value for value in vars(module).values() if isinstance(value, type) and issubclass(value, Method)
                   and value.__module__ == module.__name__ and "name" in vars(value)]
        if not classes:
            defined = sorted(n for n, v in vars(module).items() if isinstance(v, type) and not n.startswith("_"))
            raise ConfigError(f"{where} defines no method class (a subclass of mergan.methods.Method with a name "
                              f"of its own); classes it defines: {', '.join(defined) or 'none'}")
        seen: dict[str, str] = {}
        for method in classes:
            check_method_class(method, where)
            self._check_plugin(method, where)
            if method.name in seen:
                raise ConfigError(f"{where} defines two methods named {method.name!r}: {seen[method.name]} and "
                                  f"{method.__name__}")
            seen[method.name] = method.__name__
        self._modules[spec] = classes
        return classes

    @staticmethod
    def _import_module(spec: str, where: str):
        path = Path(spec).expanduser()
        if is_file_spec(spec):
            if not path.is_file():
                raise ConfigError(f"{where}: no such file; give a .py file or an importable module such as "
                                  f"my_package.methods")
            resolved = path.resolve()
            digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:10]
            name = f"{MODULE_PREFIX}{re.sub(r'[^0-9A-Za-z_]', '_', resolved.stem)}_{digest}"
            if name in sys.modules:
                return sys.modules[name]
            loader_spec = importlib.util.spec_from_file_location(name, resolved)
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[name] = module  # so that its classes pickle by reference (Ray, checkpoints of a trial)
            try:
                loader_spec.loader.exec_module(module)
            except Exception as error:  # noqa: BLE001 - a user's file may fail in any way
                del sys.modules[name]
                raise ConfigError(f"{where} failed to import: {first_line(error)}") from None
            return module
        try:
            return importlib.import_module(spec)
        except Exception as error:  # noqa: BLE001
            raise ConfigError(f"{where} failed to import: {first_line(error)}") from None

    # -- what a plugin may not do ----------------------------------------------------------------
    def _check_plugin(self, method: type[Method], where: str) -> None:
        if method.name in self.built_in:
            raise ConfigError(f"{where}: method {method.name!r} has the name of a built-in method; choose another "
                              f"(built-in: {', '.join(self.built_in)})")
        for knob in method.knobs:
            built_in = self.built_in_knobs.get(knob.name)
            if built_in is not None and built_in != knob:
                raise ConfigError(f"{where}: knob {knob.name!r} of method {method.name!r} clashes with the built-in "
                                  f"knob of that name ({built_in.meaning}); rename it, or list the built-in Knob "
                                  f"object itself to share it")

    @staticmethod
    def _collect_knobs(methods: Iterable[type[Method]], where: str) -> dict[str, Knob]:
        knobs: dict[str, Knob] = {}
        for method in methods:
            for knob in method.knobs:
                if knob.name in knobs and knobs[knob.name] != knob:
                    raise ConfigError(f"{where}: knob {knob.name!r} of method {method.name!r} differs from another "
                                      f"method's knob of that name; give them one definition")
                knobs.setdefault(knob.name, knob)
        return knobs

    # -- lookups ---------------------------------------------------------------------------------
    def methods(self, modules: Sequence[str] = ()) -> dict[str, type[Method]]:
        """Every usable method by name, in order: built-in, installed plugins, then ``modules``' methods."""
        found = dict(self.built_in)
        found.update({name: p.method for name, p in self.installed().items() if p.method is not None})
        for spec in modules:
            for method in self.load_module(spec):
                if method.name in found:
                    raise ConfigError(f"method.module {spec!r}: method {method.name!r} is also "
                                      f"{self.origin(method.name)}; rename one")
                found[method.name] = method
        return found

    def method_class(self, name: str, modules: Sequence[str] = ()) -> type[Method]:
        """The method called ``name``; a ConfigError that lists what exists otherwise."""
        found = self.methods(modules)
        if name in found:
            return found[name]
        broken = self.installed().get(name)
        if broken is not None and broken.error:
            raise ConfigError(f"method.method: {broken.error}")
        raise ConfigError(f"method.method: unknown method {name!r}; {self.what_exists(modules)}")

    def what_exists(self, modules: Sequence[str] = ()) -> str:
        """"built-in: ...; installed plugins: ...": what ``--method`` may name, for error messages."""
        installed = self.installed()
        parts = [f"built-in: {', '.join(self.built_in)}",
                 f"installed plugins: {', '.join(n for n, p in installed.items() if p.method) or 'none'}"]
        broken = [f"{n} ({p.error})" for n, p in installed.items() if p.error]
        if broken:
            parts.append(f"broken plugins: {'; '.join(broken)}")
        for spec in modules:
            parts.append(f"from {spec}: {', '.join(m.name for m in self._modules.get(spec, []))}")
        return "; ".join(parts) + (f" (a plugin package declares its methods under the entry-point group "
                                   f"{self.group!r}; a file or module of your own is named by --method-module)")

    def knobs(self, modules: Sequence[str] = ()) -> dict[str, Knob]:
        """Every knob of every usable method, once each, in the methods' order."""
        return self._collect_knobs(self.methods(modules).values(), "methods")

    def knob_users(self, modules: Sequence[str] = ()) -> dict[str, list[str]]:
        """Knob name -> the methods that declare it."""
        users: dict[str, list[str]] = {}
        for name, method in self.methods(modules).items():
            for knob in method.knobs:
                users.setdefault(knob.name, []).append(name)
        return users

    def loaded_modules(self) -> list[str]:
        """Specs of the method modules this process has loaded."""
        return list(self._modules)

    def origin(self, name: str, modules: Sequence[str] = ()) -> str:
        """Where the method ``name`` comes from: "built in", "the plugin <package> (...)" or "from <module>"."""
        if name in self.built_in:
            return "built in"
        plugin = self.installed().get(name)
        if plugin is not None:
            return f"the plugin {plugin.origin}"
        for spec in [*modules, *self._modules]:
            if any(m.name == name for m in self._modules.get(spec, [])):
                return f"from {spec}"
        return "unknown"

    def parse(self, text: str, modules: Sequence[str] = ()) -> tuple[str, ...]:
        """``"jtr+ra"`` -> ("jtr", "ra") in the registry's order, refusing unknown or contradictory combinations."""
        parts = tuple(p.strip().lower() for p in str(text).split("+") if p.strip())
        found = self.methods(modules)
        combinable = [n for n, m in found.items() if m.changes is not None]
        if not parts:
            raise ConfigError(f"method.method: empty; allowed: {', '.join(found)}, or a '+'-combination of "
                              f"{', '.join(combinable)}")
        classes = [self.method_class(part, modules) for part in parts]
        if len(set(parts)) != len(parts):
            raise ConfigError(f"method.method: {text!r} names a method twice")
        order = list(found)
        classes.sort(key=lambda method: order.index(method.name))
        if len(parts) > 1:
            for method in classes:
                if method.changes is None:
                    reason = method.alone or f"{method.name} does not combine with other methods"
                    raise ConfigError(f"method.method: {text!r} cannot be combined: {reason}. "
                                      f"Combinable: {', '.join(combinable)}")
            changed: dict[str, str] = {}
            for method in classes:
                if method.changes in changed:
                    raise ConfigError(f"method.method: {text!r} cannot be combined: {changed[method.changes]} and "
                                      f"{method.name} both change {method.changes}; choose one")
                changed[method.changes] = method.name
        return tuple(method.name for method in classes)


REGISTRY = MethodRegistry(BUILT_IN)
