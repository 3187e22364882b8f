"""One typed experiment config, built from presets, YAML, CLI flags or a Tune trial, validated up front.

Every field name is unique across sections, so a field can be addressed either by its
dotted name (``optim.lr_g``) or by its bare name (``lr_g``); flattened dotted names are what
MLflow records as params and what a Tune trial config may carry.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, field, fields
from typing import Any

import yaml

DATASETS = ("mnist5k", "mnist", "svhn", "lsun", "folder")
ARCHITECTURES = ("small", "dcgan", "resnet")
BASE_METHODS = ("jt", "sft", "ewc", "dgr", "jtr", "ra", "jt-stream")
REPLAY_MODES = ("fresh", "fixed")
JTR_LOSSES = ("per-class", "concatenated")
EWC_REDUCTIONS = ("mean", "sum")
EVAL_WHEN = ("every", "final", "none")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")


class ConfigError(ValueError):
    """A config value that is not allowed; the message names the field and what is allowed."""


@dataclass
class DataConfig:
    dataset: str = "mnist5k"
    data_root: str | None = None  # folder holding the dataset's standard files (not needed for mnist5k)
    tasks: str | None = None  # "0|1|2" or "0,1|2,3"; None: one class per task in label order
    num_tasks: int | None = None  # keep only the first N tasks of the stream
    test_per_class: int = 100  # mnist5k: real images per class held out for evaluation
    lsun_max_per_class: int | None = None  # cap on LSUN images read per category (None: all)


@dataclass
class ModelConfig:
    arch: str = "small"
    image_size: int = 32
    z_dim: int = 64
    g_width: int = 64  # base channel width of the generator
    d_width: int = 32  # base channel width of the critic


@dataclass
class OptimConfig:
    iterations_per_task: int = 400  # generator iterations per task
    batch_size: int = 64
    critic_steps: int = 2
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.0
    beta2: float = 0.9
    lambda_gp: float = 10.0
    lambda_cls: float = 1.0
    precision: str = "fp32"  # bf16 autocast on CUDA (never fp16: gradient penalties overflow)


@dataclass
class MethodConfig:
    method: str = "sft"  # one of BASE_METHODS or a combination such as "jtr+ra", "ra+ewc"
    lambda_ra: float = 1e-3
    ra_batch_size: int | None = None  # replayed samples per RA step; None: the batch size
    replay_mode: str = "fresh"
    replay_size_per_class: int = 1000  # fixed mode: images drawn once per earlier class
    replay_share: float | None = None  # share of each step replayed; None: the authors' batch // class_count
    reduce_batch: bool | None = None  # authors' REDUCE_BATCH: split a batch over earlier classes; None: all but LSUN
    jtr_loss: str = "per-class"  # per-class: the authors' per-class terms; concatenated: replay joins the real batch
    lambda_ewc: float = 1e9
    ewc_reduction: str = "mean"  # mean: the penalty averages F (theta - theta*)^2 over the weights; sum: sums it
    ewc_fisher_samples: int = 1024
    dgr_solver_iterations: int = 500
    dgr_solver_lr: float = 1e-3


@dataclass
class EvalConfig:
    eval_when: str = "every"
    eval_samples_per_class: int = 500  # paper: 6400
    reverse_accuracy: bool = False
    fid: bool = True
    inception_weights: str | None = None  # path to pt_inception weights; MERGAN_INCEPTION_WEIGHTS also read
    evaluator_epochs: int = 6
    evaluator_weights: str | None = None  # bring-your-own evaluator state_dict (skips training and cache)
    jt_results: str | None = None  # a JT run's results.json: its matrix gives intransigence
    cache_dir: str | None = None  # evaluator cache; None: ~/.cache/mergan (MERGAN_CACHE_DIR)
    grid_per_class: int = 8  # sample-grid columns per class


@dataclass
class RunConfig:
    seed: int = 0
    device: str = "auto"
    out_dir: str = "runs/latest"
    log_every: int = 50  # steps between progress callbacks (the only host syncs of the loop)
    save_checkpoints: bool = True
    deterministic: bool = True  # CUDA: deterministic cuDNN and algorithms (a seeded run repeats exactly)


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
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """Dotted name -> value for every field (``optim.lr_g`` ...), plus ``preset``."""
        out: dict[str, Any] = {"preset": self.preset}
        for name, section in self.sections().items():
            for f in fields(section):
                out[f"{name}.{f.name}"] = getattr(section, f.name)
        return out

    def set(self, key: str, value: Any) -> None:
        """Set one field by dotted or bare name, converting strings to the field's type."""
        section_name, field_name = resolve_key(key)
        if section_name is None:
            self.preset = str(value)
            return
        section = getattr(self, section_name)
        setattr(section, field_name, _coerce(section_name, field_name, value))

    def copy(self) -> ExperimentConfig:
        return copy.deepcopy(self)

    @property
    def methods(self) -> tuple[str, ...]:
        return parse_method(self.method.method)


def _field_index() -> dict[str, tuple[str, type]]:
    index: dict[str, tuple[str, type]] = {}
    for section in fields(ExperimentConfig):
        if section.name == "preset":
            continue
        for f in fields(section.default_factory()):  # type: ignore[misc]
            assert f.name not in index, f"field name {f.name} is not unique"
            index[f.name] = (section.name, f.type)
    return index


FIELDS = _field_index()


def resolve_key(key: str) -> tuple[str | None, str]:
    """``optim.lr_g`` / ``lr_g`` / ``lr-g`` -> ("optim", "lr_g"); ``preset`` -> (None, "preset")."""
    name = key.replace("-", "_")
    if name == "preset":
        return None, "preset"
    if "." in name:
        section, _, bare = name.partition(".")
        if FIELDS.get(bare, (None,))[0] == section:
            return section, bare
    elif name in FIELDS:
        return FIELDS[name][0], name
    raise ConfigError(f"unknown config field {key!r}; known fields: {', '.join(sorted(FIELDS))}")


def _coerce(section: str, name: str, value: Any) -> Any:
    type_text = str(FIELDS[name][1])
    empty_text = isinstance(value, str) and value.lower() in ("none", "null", "")
    if value is None or (empty_text and "None" in type_text):
        if "None" in type_text:
            return None
        raise ConfigError(f"{section}.{name} may not be empty")
    try:
        if type_text.startswith("bool"):
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if type_text.startswith("int"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(float(value)) if isinstance(value, str) else int(value)
        if type_text.startswith("float"):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{section}.{name}: {value!r} is not a valid {type_text}") from None


# -- presets -----------------------------------------------------------------------------
# Model presets (issue: trainer) and paper presets (issue: methods). Each maps bare field
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
PRESETS["paper-mnist"] = dict(PRESETS["dcgan32"], dataset="mnist", iterations_per_task=4000,
                              lambda_ra=1e-3, lambda_ewc=1e9, eval_samples_per_class=6400)
PRESETS["paper-svhn"] = dict(PRESETS["dcgan32"], dataset="svhn", iterations_per_task=8000,
                             lambda_ra=1e-2, lambda_ewc=1e9, eval_samples_per_class=6400)
PRESETS["paper-lsun"] = dict(PRESETS["resnet64"], dataset="lsun", iterations_per_task=20000,
                             lambda_ra=1e-3, lambda_ewc=1e9, eval_samples_per_class=6400,
                             tasks="0|1|2|3")
# The paper's stated iterations per task, by dataset (``--paper-iterations``).
PAPER_ITERATIONS = {"mnist": 4000, "mnist5k": 4000, "svhn": 8000, "lsun": 20000, "folder": 4000}


def build_config(preset: str = "small", overrides: dict[str, Any] | None = None,
                 yaml_path: str | os.PathLike | None = None, validate: bool = True) -> ExperimentConfig:
    """Defaults <- preset <- YAML file <- overrides (dotted or bare names); then validated.

    A YAML file may itself name a ``preset``; an explicit ``preset`` in ``overrides`` wins.
    """
    file_values: dict[str, Any] = load_yaml(yaml_path) if yaml_path else {}
    overrides = dict(overrides or {})
    preset = overrides.pop("preset", None) or file_values.pop("preset", None) or preset
    if preset not in PRESETS:
        raise ConfigError(f"preset: unknown preset {preset!r}; allowed: {', '.join(PRESETS)}")
    file_values.pop("preset", None)
    config = ExperimentConfig(preset=preset)
    for key, value in PRESETS[preset].items():
        config.set(key, value)
    for key, value in {**file_values, **overrides}.items():
        config.set(key, value)
    if validate:
        validate_config(config)
    return config


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML config: flat (``lr_g: 1e-4``), dotted, or nested by section."""
    try:
        with open(path) as handle:
            raw = yaml.safe_load(handle) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
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
    """Inverse of ``ExperimentConfig.to_dict`` (nested) or ``flat`` (dotted), e.g. from a checkpoint."""
    config = ExperimentConfig(preset=values.get("preset", "small"))
    for key, value in values.items():
        if key == "preset":
            continue
        if isinstance(value, dict):
            for sub_key, sub_value in value.items():
                config.set(f"{key}.{sub_key}", sub_value)
        else:
            config.set(key, value)
    return config


# -- methods -----------------------------------------------------------------------------
# Which parts of training each method changes; methods that change the same part, or that
# contradict each other, cannot be combined.
_METHOD_ROLES = {
    "jt": "data",  # real data of every class of the stream, from the start
    "jt-stream": "data",  # real data of every task so far
    "sft": "base",
    "ewc": "generator-penalty",
    "ra": "generator-alignment",
    "jtr": "replay",
    "dgr": "unconditional",
}
_COMBINABLE = {"ewc", "ra", "jtr"}
# The method.* fields each method reads, its main knob first. Every other method field does nothing
# in that method's runs, so a run's name leaves it out. A field that acts only under a setting of
# another field names it in KNOB_CONDITIONS.
METHOD_KNOBS: dict[str, tuple[str, ...]] = {
    "jt": (),
    "sft": (),
    "ewc": ("lambda_ewc", "ewc_fisher_samples", "ewc_reduction"),
    "dgr": ("dgr_solver_iterations", "dgr_solver_lr", "replay_share", "reduce_batch"),
    "jtr": ("replay_mode", "replay_size_per_class", "replay_share", "reduce_batch", "jtr_loss"),
    "ra": ("lambda_ra", "ra_batch_size", "replay_share", "reduce_batch"),
    "jt-stream": (),
}
KNOB_CONDITIONS: dict[str, tuple[str, Any]] = {"replay_size_per_class": ("replay_mode", "fixed")}


def acting_knobs(config: ExperimentConfig) -> list[str]:
    """The method fields (bare names) that change training in ``config``'s run, in METHOD_KNOBS order."""
    knobs = dict.fromkeys(knob for method in config.methods for knob in METHOD_KNOBS[method])
    return [knob for knob in knobs if knob not in KNOB_CONDITIONS
            or getattr(config.method, KNOB_CONDITIONS[knob][0]) == KNOB_CONDITIONS[knob][1]]


def parse_method(text: str) -> tuple[str, ...]:
    """``"jtr+ra"`` -> ("jtr", "ra"), refusing unknown or contradictory combinations."""
    parts = tuple(p.strip().lower() for p in str(text).split("+") if p.strip())
    if not parts:
        raise ConfigError(f"method.method: empty; allowed: {', '.join(BASE_METHODS)} or combinations of "
                          f"{'+'.join(sorted(_COMBINABLE))}")
    for part in parts:
        if part not in BASE_METHODS:
            raise ConfigError(f"method.method: unknown method {part!r}; allowed: {', '.join(BASE_METHODS)} "
                              f"or a '+'-combination of {', '.join(sorted(_COMBINABLE))}")
    if len(set(parts)) != len(parts):
        raise ConfigError(f"method.method: {text!r} names a method twice")
    if len(parts) > 1:
        odd = [p for p in parts if p not in _COMBINABLE]
        if odd:
            reasons = {
                "sft": "sft is the plain baseline that the others extend; write the other method alone",
                "jt": "jt trains on all real data jointly, so there is nothing to protect or replay",
                "jt-stream": "jt-stream trains on the real data of every task so far, so there is nothing to "
                             "protect or replay",
                "dgr": "dgr trains an unconditional generator with its own solver; the conditional "
                       "methods (ra, jtr, ewc) act on a class-conditional generator",
            }
            raise ConfigError(f"method.method: {text!r} cannot be combined: {reasons[odd[0]]}. "
                              f"Combinable: {', '.join(sorted(_COMBINABLE))}")
    return tuple(sorted(parts, key=BASE_METHODS.index))


# -- validation --------------------------------------------------------------------------
def _allowed(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}: {value!r} is not allowed; allowed: {', '.join(allowed)}")


def _positive(name: str, value: Any, zero_ok: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not zero_ok):
        raise ConfigError(f"{name}: {value!r} must be {'>= 0' if zero_ok else '> 0'}")


def validate_config(config: ExperimentConfig) -> ExperimentConfig:
    """Refuse any value that cannot run; data-dependent checks (classes) live in the data layer."""
    data, model, optim, method, ev, run = (config.data, config.model, config.optim, config.method,
                                           config.eval, config.run)
    _allowed("data.dataset", data.dataset, DATASETS)
    _allowed("model.arch", model.arch, ARCHITECTURES)
    _allowed("method.replay_mode", method.replay_mode, REPLAY_MODES)
    _allowed("method.jtr_loss", method.jtr_loss, JTR_LOSSES)
    _allowed("method.ewc_reduction", method.ewc_reduction, EWC_REDUCTIONS)
    _allowed("eval.eval_when", ev.eval_when, EVAL_WHEN)
    _allowed("run.device", run.device, DEVICES)
    _allowed("optim.precision", optim.precision, PRECISIONS)
    parse_method(method.method)
    if data.dataset in ("mnist", "svhn", "lsun", "folder") and not data.data_root:
        raise ConfigError(f"data.data_root: dataset {data.dataset!r} reads its standard files from a folder; "
                          f"give it with --data-root (only mnist5k is embedded)")
    sizes = {"small": (32,), "dcgan": (32,), "resnet": (64,)}[model.arch]
    if model.image_size not in sizes:
        raise ConfigError(f"model.image_size: the {model.arch} architecture makes "
                          f"{' or '.join(map(str, sizes))}x{sizes[0]} images, not {model.image_size}; "
                          f"allowed: {', '.join(map(str, sizes))}")
    for name in ("z_dim", "g_width", "d_width"):
        _positive(f"model.{name}", getattr(model, name))
    for name in ("iterations_per_task", "batch_size", "critic_steps"):
        _positive(f"optim.{name}", getattr(optim, name))
    for name in ("lr_g", "lr_d"):
        _positive(f"optim.{name}", getattr(optim, name))
    for name in ("lambda_gp", "lambda_cls"):
        _positive(f"optim.{name}", getattr(optim, name), zero_ok=True)
    for name in ("beta1", "beta2"):
        value = getattr(optim, name)
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"optim.{name}: {value!r} must be in [0, 1)")
    for name in ("lambda_ra", "lambda_ewc"):
        _positive(f"method.{name}", getattr(method, name), zero_ok=True)
    for name in ("ewc_fisher_samples", "dgr_solver_iterations", "dgr_solver_lr", "ra_batch_size"):
        _positive(f"method.{name}", getattr(method, name))
    if method.replay_mode == "fixed" and method.replay_size_per_class <= 0:
        raise ConfigError(f"method.replay_size_per_class: {method.replay_size_per_class} must be > 0 "
                          f"when method.replay_mode is 'fixed'")
    if method.replay_share is not None and not 0.0 < method.replay_share < 1.0:
        raise ConfigError(f"method.replay_share: {method.replay_share!r} must be in (0, 1), or empty for "
                          f"the authors' batch // class_count rule")
    _positive("data.num_tasks", data.num_tasks)
    _positive("data.test_per_class", data.test_per_class)
    _positive("data.lsun_max_per_class", data.lsun_max_per_class)
    _positive("eval.eval_samples_per_class", ev.eval_samples_per_class)
    _positive("eval.evaluator_epochs", ev.evaluator_epochs)
    _positive("eval.grid_per_class", ev.grid_per_class)
    _positive("run.log_every", run.log_every)
    if data.tasks is not None:
        parse_tasks(data.tasks)
    for name in ("inception_weights", "evaluator_weights", "jt_results"):
        path = getattr(ev, name)
        if path and not os.path.isfile(path):
            raise ConfigError(f"eval.{name}: {path} is not a file")
    return config


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
