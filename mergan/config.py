"""One typed experiment config, built from presets, YAML, CLI flags or a Tune trial, validated up front.

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
import os
import time
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import yaml

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
RUNS_FOLDER = "runs"  # where a run without run.out_dir gets its own folder
TASK_ORDERS = ("label", "random")  # or an explicit order of the stream's classes


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
        return copy.deepcopy(self)

    @property
    def methods(self) -> tuple[str, ...]:
        return parse_method(self.method.method, self.method.modules)


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


def parse_assignment(item: str, example: str) -> tuple[str, str]:
    """A ``--set`` item ``"FIELD=VALUE"`` -> (FIELD, VALUE as written); a ConfigError showing ``example`` otherwise."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: write FIELD=VALUE, e.g. --set {example}")
    return key.strip(), value


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


# -- presets -----------------------------------------------------------------------------
# Model presets and paper presets. Each maps bare field
# names to values applied over the dataclass defaults; a user's overrides come after.
PAPER_OPTIM = dict(batch_size=64, critic_steps=5, lr_g=1e-4, lr_d=1e-4, beta1=0.0, beta2=0.9,
                   lambda_gp=10.0, lambda_cls=1.0)
PRESETS: dict[str, dict[str, Any]] = {
    # Fast CPU preset: 0.3M-parameter nets, 2 critic steps, lr 2e-4. At 400 iterations per task the
    # paper's lambda_RA = 1e-3 is too weak (README, "A first look"), so 1e-2. lambda_EWC is the paper's
    # 1e9: the EWC penalty is a mean over the weights (mergan/methods/ewc.py), which makes one lambda
    # act alike on these nets and on the paper's.
    "small": dict(arch="small", image_size=32, z_dim=64, g_width=64, d_width=32,
                  iterations_per_task=400, critic_steps=2, lr_g=2e-4, lr_d=2e-4,
                  lambda_ra=1e-2, lambda_ewc=1e9, eval_samples_per_class=500),
    # The paper's 32x32 DCGAN pair with conditional batch norm (digits).
    "dcgan32": dict(arch="dcgan", image_size=32, z_dim=128, g_width=32, d_width=32,
                    iterations_per_task=4000, **PAPER_OPTIM),
    # The paper's 64x64 ResNet pair (LSUN-sized images).
    "resnet64": dict(arch="resnet", image_size=64, z_dim=128, g_width=64, d_width=64,
                     iterations_per_task=20000, **PAPER_OPTIM),
}
# The paper presets judge with the authors' evaluators (eval.evaluator: paper); LSUN is read as their
# loader reads it: at most 100,000 images per category, balanced, each whole image squashed to 64x64.
PRESETS["paper-mnist"] = dict(PRESETS["dcgan32"], dataset="mnist", iterations_per_task=4000,
                              lambda_ra=1e-3, lambda_ewc=1e9, eval_samples_per_class=6400, evaluator="paper")
PRESETS["paper-svhn"] = dict(PRESETS["dcgan32"], dataset="svhn", iterations_per_task=8000,
                             lambda_ra=1e-2, lambda_ewc=1e9, eval_samples_per_class=6400, evaluator="paper")
PRESETS["paper-lsun"] = dict(PRESETS["resnet64"], dataset="lsun", iterations_per_task=20000,
                             lambda_ra=1e-3, lambda_ewc=1e9, eval_samples_per_class=6400,
                             tasks="0|1|2|3", evaluator="paper", lsun_max_per_class=100000, lsun_balance=True,
                             lsun_resize="squash")
# The paper's stated iterations per task, by dataset (``--paper-iterations``).
PAPER_ITERATIONS = {"mnist": 4000, "mnist5k": 4000, "svhn": 8000, "lsun": 20000, "folder": 4000}


def build_config(preset: str = "small", overrides: dict[str, Any] | None = None,
                 yaml_path: str | os.PathLike | None = None, validate: bool = True) -> ExperimentConfig:
    """Defaults <- preset <- YAML file <- overrides (dotted or bare names); then validated.

    A YAML file may itself name a ``preset``; an explicit ``preset`` in ``overrides`` wins.
    """
    file_values: dict[str, Any] = load_yaml(yaml_path) if yaml_path is not None else {}
    overrides = dict(overrides or {})
    for given in (file_values.pop("preset", None), overrides.pop("preset", None)):  # the later one wins
        preset = preset if given is None else given
    if preset not in PRESETS:
        raise ConfigError(f"preset: unknown preset {preset!r}; allowed: {', '.join(PRESETS)}")
    config = ExperimentConfig(preset=preset)
    for key, value in PRESETS[preset].items():
        config.set(key, value)
    given = {**file_values, **overrides}
    for key in sorted(given, key=lambda k: not is_module_key(k)):  # the module first: its knobs may follow
        config.set(key, given[key])
    if config.run.out_dir is None:
        config.run.out_dir = default_out_dir(config.method.method)
    if validate:
        validate_config(config)
    return config


def is_module_key(key: str) -> bool:
    """True for the keys that name the method module (``module``, ``method.module``, ``method-module``)."""
    return key.replace("-", "_") in ("module", "method.module", "method_module")


def default_out_dir(method: str) -> str:
    """``runs/<method>-<YYYYmmdd-HHMMSS>``: the folder of a run that names none (``mergan train`` makes
    it unique and points ``runs/latest`` at it)."""
    return f"{RUNS_FOLDER}/{method}-{time.strftime('%Y%m%d-%H%M%S')}"


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML config: flat (``lr_g: 1e-4``), dotted, or nested by section."""
    try:
        with open(path) as handle:
            raw = yaml.safe_load(handle) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder; name a YAML file of config fields") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not text"
        raise ConfigError(f"config file {path} cannot be read ({reason}); name a YAML file of config fields") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of field: value")
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict) and key in ExperimentConfig().sections():
            for sub_key, sub_value in value.items():
                flat[f"{key}.{sub_key}"] = sub_value
        else:
            flat[key] = value
    return flat


def save_yaml(config: ExperimentConfig, path: str | os.PathLike) -> None:
    with open(path, "w") as handle:
        yaml.safe_dump(config.to_dict(), handle, sort_keys=False)


def config_from_dict(values: dict[str, Any]) -> ExperimentConfig:
    """Inverse of ``ExperimentConfig.to_dict`` (nested) or ``flat`` (dotted), e.g. from a checkpoint.

    The method module is loaded first. A knob that no method here declares is left out when none of the
    run's own methods declares it (a knob of an installed plugin the run did not use, uninstalled since)."""
    config = ExperimentConfig(preset=values.get("preset", "small"))
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{sub_key}": sub_value for sub_key, sub_value in value.items()})
        elif key != "preset":
            flat[key] = value
    for key in sorted(flat, key=lambda k: not is_module_key(k)):
        try:
            config.set(key, flat[key])
        except ConfigError:
            if not _foreign_knob(config, key):
                raise
    return config


def _foreign_knob(config: ExperimentConfig, key: str) -> bool:
    """True for ``method.<knob>`` that neither this process's methods nor the config's own methods know."""
    section, _, name = key.replace("-", "_").rpartition(".")
    if section != "method" or name in FIELDS or name in config.method.knobs():
        return False
    own = config.methods  # raises for a method that is not available here: that is the error to show
    registry = method_registry()
    return all(name not in {k.name for k in registry.method_class(m, config.method.modules).knobs} for m in own)


# -- methods ---------------------------------------------------------------------------
def parse_method(text: str, modules: tuple[str, ...] = ()) -> tuple[str, ...]:
    """``"jtr+ra"`` -> ("jtr", "ra"), refusing unknown or contradictory combinations (``mergan.methods.registry``)."""
    return method_registry().parse(text, modules)


# -- validation --------------------------------------------------------------------------
def check_fields(config: ExperimentConfig) -> None:
    """Each field against its own definition: a finite number where a number is meant, and its ``Allowed``."""
    for section_name, section in config.sections().items():
        for name, knob in section_knobs(section).items():
            knob.check(getattr(section, name), f"{section_name}.{name}")


def validate_config(config: ExperimentConfig) -> ExperimentConfig:
    """Refuse any value that cannot run; data-dependent checks (classes) live in the data layer."""
    data, model, method, ev = config.data, config.model, config.method, config.eval
    check_fields(config)
    parse_method(method.method, method.modules)
    if data.dataset in ("mnist", "svhn", "lsun", "folder") and not data.data_root:
        raise ConfigError(f"data.data_root: dataset {data.dataset!r} reads its standard files from a folder; "
                          f"give it with --data-root (only mnist5k is embedded)")
    sizes = {"small": (32,), "dcgan": (32,), "resnet": (64,)}[model.arch]
    if model.image_size not in sizes:
        raise ConfigError(f"model.image_size: the {model.arch} architecture makes "
                          f"{' or '.join(map(str, sizes))}x{sizes[0]} images, not {model.image_size}; "
                          f"allowed: {', '.join(map(str, sizes))}")
    if data.tasks is not None:
        parse_tasks(data.tasks)
    parse_task_order(data.task_order)
    if ev.evaluator == "paper" and data.dataset not in PAPER_EVALUATOR_DATASETS:
        raise ConfigError(f"eval.evaluator: 'paper' means the authors' evaluator of the dataset, and they published "
                          f"one for {', '.join(PAPER_EVALUATOR_DATASETS)} only, not {data.dataset!r}; use 'cnn'")
    if ev.drift_alarm > 1:
        raise ConfigError(f"eval.drift_alarm: {ev.drift_alarm} is not allowed; allowed: in (0, 1], the share of a "
                          f"class's first recall or coverage it may lose before the alarm (1: never)")
    wanted = {"fast": 2, "full": NEAREST_K + 1}.get(ev.quality, 0)
    if ev.eval_when != "none" and ev.eval_samples_per_class < wanted:
        raise ConfigError(f"eval.eval_samples_per_class: eval.quality {ev.quality} needs at least {wanted} generated "
                          f"images per class (a covariance{', and k=5 nearest neighbours' if ev.quality == 'full' else ''})"
                          f", not {ev.eval_samples_per_class}; raise it or set eval.quality to "
                          f"{'fast or ' if ev.quality == 'full' else ''}none")
    for name in ("inception_weights", "evaluator_weights", "jt_results"):
        path = getattr(ev, name)
        if path and not os.path.isfile(path):
            raise ConfigError(f"eval.{name}: {path} is not a file")
    return config


def parse_task_order(text: str) -> list[int] | None:
    """``"label"`` / ``"random"`` -> None; ``"3,1,4"`` -> [3, 1, 4] (which classes it must hold is the data's check)."""
    if text in TASK_ORDERS:
        return None
    try:
        order = [int(c) for c in str(text).split(",") if c.strip()]
    except ValueError:
        order = []
    if not order or len(set(order)) != len(order):
        raise ConfigError(f"data.task_order: {text!r} is not allowed; allowed: {', '.join(TASK_ORDERS)}, or every "
                          f"class of the stream once, in the order wanted, e.g. 3,1,4,0,2")
    return order


def parse_tasks(text: str) -> list[list[int]]:
    """``"0,1|2,3|4"`` -> [[0, 1], [2, 3], [4]]; a class may appear in one task only."""
    tasks: list[list[int]] = []
    for chunk in str(text).split("|"):
        try:
            classes = [int(c) for c in chunk.split(",") if c.strip()]
        except ValueError:
            raise ConfigError(f"data.tasks: {text!r} is not a task split; write class indices, "
                              f"',' within a task and '|' between tasks, e.g. '0,1|2,3|4'") from None
        if not classes:
            raise ConfigError(f"data.tasks: {text!r} has an empty task")
        tasks.append(classes)
    seen = [c for task in tasks for c in task]
    if len(seen) != len(set(seen)):
        raise ConfigError(f"data.tasks: {text!r} puts a class in more than one task")
    if min(seen) < 0:
        raise ConfigError(f"data.tasks: {text!r} names a negative class")
    return tasks
