"""The experiment config's schema: its sections, their fields (each with its meaning and allowed values)
and how a field is addressed by name.

A config is built from a preset, YAML, CLI flags or a Tune trial by ``mergan.presets.build_config``, read
and written by ``mergan.config_io`` and refused before any compute by ``mergan.validation``.

Every field name is unique across sections, so a field can be addressed either by its
dotted name (``optim.lr_g``) or by its bare name (``lr_g``); flattened dotted names are what
MLflow records as params and what a Tune trial config may carry.

The ``method`` section holds the method's name and ``module`` (a plugin file or module), then the knobs
that the methods declare in their own classes (``Method.knobs``, ``mergan/methods/``): every built-in
method's, every installed plugin's and those of the run's ``module``, each a field like any other.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from mergan.settings import ADAM_BETA, NON_NEGATIVE, POSITIVE, Allowed, ConfigError, Knob

if TYPE_CHECKING:
    from mergan.methods.registry import MethodRegistry

DATASETS = ("mnist5k", "mnist", "svhn", "lsun", "folder")
ARCHITECTURES = ("small", "dcgan", "resnet")
EVAL_WHEN = ("every", "final", "none")
EVALUATORS = ("cnn", "paper")
QUALITY_LEVELS = ("none", "fast", "full")  # mergan.evaluation.metrics.QUALITY_METRICS names what each measures
NEAREST_K = 5  # the k of precision, recall, density and coverage (mergan.evaluation.quality)
LSUN_RESIZES = ("center-crop", "squash")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")
CUDA_GRAPH_MODES = ("off", "on", "auto")  # mergan.graphs
PAPER_EVALUATOR_DATASETS = ("mnist5k", "mnist", "svhn", "lsun")  # datasets the authors trained an evaluator for
# The paper's six methods in its order (Table 1's columns): the order of tables, spaces and `mergan reproduce`.
PAPER_METHODS = ("jt", "sft", "ewc", "dgr", "jtr", "ra")
RUNS_FOLDER = "runs"  # where a run without run.out_dir gets its own folder


def setting(default: Any, meaning: str, allowed: Allowed | None = None) -> Any:
    """A config field with its one-line meaning and allowed values, read by validation and ``--help``."""
    return field(default=default, metadata={"meaning": meaning, "allowed": allowed})


@dataclass
class DataConfig:
    dataset: str = setting("mnist5k", "the images: mnist5k is embedded, the others are read from data_root",
                           Allowed(DATASETS))
    data_root: str | None = setting(None, "folder holding the dataset's standard files (not needed for mnist5k)")
    tasks: str | None = setting(None, "the task stream: class ids, ',' within a task and '|' between tasks, "
                                      "e.g. 0,1|2,3; empty: one class per task in label order")
    task_order: str = setting("label", "the order of the stream's classes: label (as tasks gives them, else 0, 1, "
                                       "2 ...), random (shuffled by order_seed), or the classes in the order wanted, "
                                       "e.g. 3,1,4,0,2; each task keeps its number of classes")
    order_seed: int = setting(0, "seeds the shuffle of task_order random (a sweep may search or average over it)")
    num_tasks: int | None = setting(None, "keep only the first N tasks of the stream, after ordering (empty: all)",
                                    POSITIVE)
    test_per_class: int = setting(100, "mnist5k: real images per class held out for evaluation", POSITIVE)
    lsun_max_per_class: int | None = setting(None, "cap on LSUN images read per category (empty: all)", POSITIVE)
    lsun_balance: bool = setting(False, "lsun: every category keeps as many images as the smallest one (after the "
                                        "cap), as the authors' LSUN_10_100000 set")
    lsun_resize: str = setting("center-crop", "lsun: center-crop (shorter side to the image size, then the middle "
                                              "square) or squash (the whole image resized to a square, as the "
                                              "authors' loader does)", Allowed(LSUN_RESIZES))


@dataclass
class ModelConfig:
    arch: str = setting("small", "generator and critic: small (0.3M parameters, for CPU), dcgan (the paper's "
                                 "32x32 pair), resnet (the paper's 64x64 pair)", Allowed(ARCHITECTURES))
    image_size: int = setting(32, "side of the images in pixels: 32 for small and dcgan, 64 for resnet")
    z_dim: int = setting(64, "size of the generator's noise vector z", POSITIVE)
    g_width: int = setting(64, "base channel width of the generator", POSITIVE)
    d_width: int = setting(32, "base channel width of the critic", POSITIVE)


@dataclass
class OptimConfig:
    iterations_per_task: int = setting(400, "generator iterations per task", POSITIVE)
    batch_size: int = setting(64, "real images per batch", POSITIVE)
    critic_steps: int = setting(2, "critic steps per generator step", POSITIVE)
    lr_g: float = setting(2e-4, "Adam learning rate of the generator", POSITIVE)
    lr_d: float = setting(2e-4, "Adam learning rate of the critic", POSITIVE)
    beta1: float = setting(0.0, "Adam beta1 of both optimizers", ADAM_BETA)
    beta2: float = setting(0.9, "Adam beta2 of both optimizers", ADAM_BETA)
    lambda_gp: float = setting(10.0, "weight of the WGAN-GP gradient penalty", NON_NEGATIVE)
    lambda_cls: float = setting(1.0, "weight of the AC-GAN classification loss", NON_NEGATIVE)
    precision: str = setting("fp32", "bf16: autocast on CUDA (never fp16: gradient penalties overflow)",
                             Allowed(PRECISIONS))
    cuda_graph: str = setting("auto", "capture each task's training iteration in a CUDA graph and replay it: auto "
                                      "(on CUDA; eager on CPU), on (CUDA only), off", Allowed(CUDA_GRAPH_MODES))


def method_registry() -> MethodRegistry:
    """The methods' registry (``mergan.methods``), imported when a config first needs its knobs: it imports
    torch and every method, which code that only names fields (a report, a sync) does without."""
    from mergan.methods import REGISTRY

    return REGISTRY


METHOD = Knob("method", "sft", "the continual-learning method (see 'methods' below), or a '+'-combination of "
                              "methods that combine, such as jtr+ra")
MODULE = Knob("module", None, "a method plugin of your own: a .py file or an importable module (pkg.mod) whose "
                              "method classes join the built-in ones", type="str")


class MethodConfig:
    """The method section: ``method``, ``module`` and the knobs of every method the run can name.

    The knobs are those of the built-in methods, of the installed plugins and of ``module``'s methods
    (``knobs()``), each at its default until set; read and set them as attributes (``config.method.lambda_ra``).
    """

    def __init__(self, method: str = METHOD.default, module: str | None = MODULE.default, **values: Any):
        self.method = method
        self.module = module
        self.add_knob_defaults()
        for name, value in values.items():
            setattr(self, name, value)

    @property
    def modules(self) -> tuple[str, ...]:
        """The run's method modules (``module``), as the registry takes them."""
        return (self.module,) if self.module else ()

    def knobs(self) -> dict[str, Knob]:
        """Every knob this section holds, by name (built-in, installed plugins', ``module``'s)."""
        registry = method_registry()
        knobs = registry.knobs(self.modules)
        clash = [name for name in knobs if name in FIELDS]
        if clash:
            users = registry.knob_users(self.modules)[clash[0]]
            raise ConfigError(f"method {users[0]!r} ({registry.origin(users[0], self.modules)}): its knob "
                              f"{clash[0]!r} has the name of the config field {FIELDS[clash[0]][0]}.{clash[0]}; "
                              f"rename the knob")
        return knobs

    def add_knob_defaults(self) -> None:
        """Give every knob this section does not hold yet its default (after ``module`` changed)."""
        for name, knob in self.knobs().items():
            if name not in vars(self):
                setattr(self, name, knob.default)

    def values(self) -> dict[str, Any]:
        """``{"method": ..., "module": ..., knob: value, ...}``."""
        return {"method": self.method, "module": self.module, **{name: getattr(self, name) for name in self.knobs()}}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MethodConfig) and self.values() == other.values()

    def __repr__(self) -> str:
        return "MethodConfig(" + ", ".join(f"{k}={v!r}" for k, v in self.values().items()) + ")"


@dataclass
class EvalConfig:
    eval_when: str = setting("every", "evaluate after every task, after the final one, or never",
                             Allowed(EVAL_WHEN))
    eval_samples_per_class: int = setting(500, "generated images per class the evaluator judges (paper: 6400)",
                                          POSITIVE)
    reverse_accuracy: bool = setting(False, "also train a classifier on generated images and test it on real ones")
    fid: bool = setting(True, "Frechet distances of generated to real images")
    inception_weights: str | None = setting(None, "pt_inception weights for the standard FID "
                                                  "($MERGAN_INCEPTION_WEIGHTS is also read)")
    evaluator: str = setting("cnn", "the classifier that judges generated images: cnn (a small CNN for every dataset) "
                                    "or paper (the authors' evaluator of the dataset: an MLP on 0-255 pixels for "
                                    "MNIST, their conv net for SVHN, a 10-way VGG16 for LSUN)", Allowed(EVALUATORS))
    evaluator_epochs: int | None = setting(None, "epochs of the evaluator classifier trained on real images (empty: "
                                                 "its own recipe's: cnn 6; paper MNIST 47, SVHN 90, LSUN 6)", POSITIVE)
    evaluator_width: int | None = setting(None, "first-layer width of the evaluator (empty: as published: cnn 16, "
                                                "MLP 1024, SVHN conv net 32, VGG16 64; the other layers keep their "
                                                "ratio to it)", POSITIVE)
    evaluator_weights: str | None = setting(None, "your own evaluator state_dict (skips training and the cache)")
    jt_results: str | None = setting(None, "a JT run's results.json: its matrix gives intransigence")
    cache_dir: str | None = setting(None, "evaluator cache (empty: $MERGAN_CACHE_DIR, else ~/.cache/mergan)")
    grid_per_class: int = setting(8, "sample-grid columns per class", POSITIVE)
    quality: str = setting("full", "per-task quality matrices from the accuracy's generated pass: full (FID, KID, "
                                   "precision, recall, density, coverage with k=5), fast (FID and KID), none",
                           Allowed(QUALITY_LEVELS))
    drift_alarm: float = setting(0.5, "warn when a replayed class's recall or coverage falls by more than this "
                                      "share of its value right after it was learned (needs quality full; 1: never)",
                                 Allowed(above=0))


@dataclass
class RunConfig:
    seed: int = setting(0, "seeds every random draw of the run")
    device: str = setting("auto", "auto: cuda when present, else cpu", Allowed(DEVICES))
    out_dir: str | None = setting(None, f"the run's folder (empty: a new {RUNS_FOLDER}/<method>-<YYYYmmdd-HHMMSS>)")
    log_every: int = setting(50, "steps between progress reports (the training loop's only host syncs)", POSITIVE)
    save_checkpoints: bool = setting(True, "write task_<t>/checkpoint.pt after every task")
    deterministic: bool = setting(True, "cuda: deterministic cuDNN and algorithms, so a seeded run repeats exactly")


@dataclass
class ExperimentConfig:
    preset: str = "small"
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    # -- addressing -------------------------------------------------------------------
    def sections(self) -> dict[str, Any]:
        """Section name -> section (run, data, model, optim, method, eval)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "preset"}

    def to_dict(self) -> dict[str, Any]:
        """``{"preset": ..., section: {field: value}}``, the form YAML files and checkpoints keep."""
        return {"preset": self.preset, **{name: dict(section_values(section)) for name, section in
                                           self.sections().items()}}

    def flat(self) -> dict[str, Any]:
        """Dotted name -> value for every field (``optim.lr_g``, ``method.lambda_ra`` ...), plus ``preset``."""
        out: dict[str, Any] = {"preset": self.preset}
        for name, section in self.sections().items():
            out.update({f"{name}.{key}": value for key, value in section_values(section).items()})
        return out

    def set(self, key: str, value: Any) -> None:
        """Set one field by dotted or bare name, converting strings to the field's type."""
        section_name, field_name = resolve_key(key, self.method.modules)
        if section_name is None:
            self.preset = str(value)
            return
        section = getattr(self, section_name)
        knob = FIELDS[field_name][1] if field_name in FIELDS else self.method.knobs()[field_name]
        value = knob.coerce(value, f"{section_name}.{field_name}")
        if field_name == "module":  # its methods' knobs join the section (importing it refuses a bad module)
            from mergan.methods.registry import module_spec

            self.method.module = module_spec(value) if value else None
            self.method.add_knob_defaults()
            return
        setattr(section, field_name, value)

    def copy(self) -> ExperimentConfig:
        """A deep copy."""
        return copy.deepcopy(self)

    @property
    def methods(self) -> tuple[str, ...]:
        """The run's methods, ``"jtr+ra"`` -> ("jtr", "ra"); unknown or contradictory combinations are refused."""
        return method_registry().parse(self.method.method, self.method.modules)


def field_knob(f: dataclasses.Field) -> Knob:
    """A dataclass field of a config section as a :class:`Knob` (its type read from the annotation)."""
    type_text = str(f.type)
    kind = next(t for t in ("bool", "int", "float", "str") if type_text.startswith(t))
    return Knob(f.name, f.default, f.metadata.get("meaning", ""), f.metadata.get("allowed"), type=kind,
                optional="None" in type_text)


def section_knobs(section: Any) -> dict[str, Knob]:
    """Every field of one config section, by name, as knobs (the method section: method, module, its knobs)."""
    if isinstance(section, MethodConfig):
        return {"method": METHOD, "module": MODULE, **section.knobs()}
    return {f.name: field_knob(f) for f in fields(section)}


def section_values(section: Any) -> dict[str, Any]:
    """Field name -> value of one config section, in the order of :func:`section_knobs`."""
    return {name: getattr(section, name) for name in section_knobs(section)}


def _field_index() -> dict[str, tuple[str, Knob]]:
    """Bare name -> (section, knob) of every field that does not depend on the methods (the knobs do)."""
    index: dict[str, tuple[str, Knob]] = {"method": ("method", METHOD), "module": ("method", MODULE)}
    for section in fields(ExperimentConfig):
        if section.name in ("preset", "method"):
            continue
        for f in fields(section.default_factory()):  # type: ignore[misc]
            assert f.name not in index, f"field name {f.name} is not unique"
            index[f.name] = (section.name, field_knob(f))
    return index


FIELDS = _field_index()


def resolve_key(key: str, modules: tuple[str, ...] | None = None) -> tuple[str | None, str]:
    """``optim.lr_g`` / ``lr_g`` / ``lr-g`` -> ("optim", "lr_g"); ``lambda_ra`` -> ("method", "lambda_ra");
    ``preset`` -> (None, "preset").

    Method knobs are those of the built-in methods, the installed plugins and ``modules`` (default: every
    method module this process has loaded)."""
    name = key.replace("-", "_")
    if name == "preset":
        return None, "preset"
    section, dot, bare = name.rpartition(".")
    if bare in FIELDS and (not dot or section == FIELDS[bare][0]):
        return FIELDS[bare][0], bare
    registry = method_registry()
    knobs = registry.knobs(registry.loaded_modules() if modules is None else modules)
    if section in ("", "method") and bare in knobs:
        return "method", bare
    known = sorted([*FIELDS, *knobs])
    broken = [p.error for p in registry.installed().values() if p.error]
    raise ConfigError(f"unknown config field {key!r}; known fields: {', '.join(known)}"
                      + (f" (not loaded: {'; '.join(broken)})" if broken else ""))


def is_module_key(key: str) -> bool:
    """True for the keys that name the method module (``module``, ``method.module``, ``method-module``)."""
    return key.replace("-", "_") in ("module", "method.module", "method_module")
