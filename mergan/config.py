"""One typed experiment config, built from presets, YAML, CLI flags or a Tune trial, validated up front.

Every field name is unique across sections, so a field can be addressed either by its
dotted name (``optim.lr_g``) or by its bare name (``lr_g``); flattened dotted names are what
MLflow records as params and what a Tune trial config may carry.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import numbers
import os
import time
from dataclasses import dataclass, field, fields
from typing import Any

import yaml


def value_text(value: Any) -> str:
    """A value as short text, the same in ``--help``, run names and report labels: None (or NaN, a param a
    run lacks) -> 'empty', True -> 'true', 0.003 -> '3e-3', 0.01 -> '0.01', 10.0 -> '10', 1e9 -> '1e9'."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return str(value).lower()
    if not isinstance(value, numbers.Real) or isinstance(value, numbers.Integral):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return "empty"
    if value.is_integer() and abs(value) < 1e4:
        return str(int(value))
    plain = f"{value:.3g}"
    mantissa, _, exponent = f"{value:.2e}".partition("e")
    short = f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return short if len(short) < len(plain) else plain

DATASETS = ("mnist5k", "mnist", "svhn", "lsun", "folder")
ARCHITECTURES = ("small", "dcgan", "resnet")
# The methods, in the paper's order of presentation, with what each does (``mergan train --help``).
METHOD_SUMMARIES = {
    "jt": "joint training, the upper bound: one model on every class of the stream from the first step",
    "sft": "sequential fine-tuning, the lower bound: each task starts from the last weights, no protection",
    "ewc": "elastic weight consolidation: a Fisher-weighted penalty keeps G near its weights after each task",
    "dgr": "deep generative replay: an unconditional G replays earlier tasks, a solver labels the replay",
    "jtr": "MeRGAN joint retraining: G_{t-1}'s images of each earlier class are 'real' in a per-class term",
    "ra": "MeRGAN replay alignment: G(z, c) is pulled toward G_{t-1}(z, c) for earlier classes c",
    "jt-stream": "streamed joint training: task t trains on the real images of tasks 1..t (intransigence's reference)",
}
BASE_METHODS = tuple(METHOD_SUMMARIES)
COMBINABLE_METHODS = ("ewc", "jtr", "ra")  # they change different parts of training (see parse_method)
REPLAY_MODES = ("fresh", "fixed")
JTR_LOSSES = ("per-class", "concatenated")
EWC_REDUCTIONS = ("mean", "sum")
EVAL_WHEN = ("every", "final", "none")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")
RUNS_FOLDER = "runs"  # where a run without run.out_dir gets its own folder


class ConfigError(ValueError):
    """A config value that is not allowed; the message names the field and what is allowed."""


@dataclass(frozen=True)
class Allowed:
    """The values a config field accepts: ``validate_config`` refuses others, ``mergan train --help`` shows it.

    An empty field (None) is accepted here; whether a field may be empty is its type's business.
    """

    choices: tuple[str, ...] = ()
    above: float | None = None  # the value must be > above
    at_least: float | None = None  # the value must be >= at_least
    below: float | None = None  # the value must be < below

    def describe(self) -> str:
        if self.choices:
            return ", ".join(self.choices)
        if self.below is None:
            return f"> {self.above:g}" if self.above is not None else f">= {self.at_least:g}"
        opening, low = ("(", self.above) if self.above is not None else ("[", self.at_least)
        return f"in {opening}{low:g}, {self.below:g})"

    def accepts(self, value: Any) -> bool:
        if value is None:
            return True
        if self.choices:
            return value in self.choices
        return ((self.above is None or value > self.above) and (self.at_least is None or value >= self.at_least)
                and (self.below is None or value < self.below))


POSITIVE = Allowed(above=0)
NON_NEGATIVE = Allowed(at_least=0)
ADAM_BETA = Allowed(at_least=0, below=1)


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
    num_tasks: int | None = setting(None, "keep only the first N tasks of the stream (empty: all)", POSITIVE)
    test_per_class: int = setting(100, "mnist5k: real images per class held out for evaluation", POSITIVE)
    lsun_max_per_class: int | None = setting(None, "cap on LSUN images read per category (empty: all)", POSITIVE)


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


@dataclass
class MethodConfig:
    method: str = setting("sft", f"the continual-learning method: {', '.join(BASE_METHODS)}, or a '+'-combination "
                                 f"of {', '.join(COMBINABLE_METHODS)} such as jtr+ra (see 'methods' below)")
    lambda_ra: float = setting(1e-3, "ra: weight of the replay-alignment loss", NON_NEGATIVE)
    ra_batch_size: int | None = setting(None, "ra: replayed samples per step (empty: the authors' batch // "
                                              "number of earlier classes, per earlier class)", POSITIVE)
    replay_mode: str = setting("fresh", "jtr: fresh replay every step (the authors' code), or a fixed set drawn "
                                        "once per task (the paper's)", Allowed(REPLAY_MODES))
    replay_size_per_class: int = setting(1000, "jtr with replay_mode fixed: images drawn per earlier class, > 0")
    replay_share: float | None = setting(None, "jtr, dgr, ra: share of each step replayed (empty: the authors' "
                                               "batch // number of earlier classes, per earlier class)",
                                         Allowed(above=0, below=1))
    reduce_batch: bool | None = setting(None, "jtr, ra, dgr: the authors' REDUCE_BATCH: split one batch over the "
                                              "earlier classes and sum their terms (empty: yes, except for lsun, "
                                              "which replays a batch per earlier class and divides)")
    jtr_loss: str = setting("per-class", "jtr: per-class (the authors' code: a WGAN + class term per earlier class, "
                                         "G_{t-1}'s images as real) or concatenated (replay joins the real batch)",
                            Allowed(JTR_LOSSES))
    lambda_ewc: float = setting(1e9, "ewc: weight of the Fisher penalty", NON_NEGATIVE)
    ewc_reduction: str = setting("mean", "ewc: the penalty F (theta - theta*)^2 averaged over the generator's "
                                         "weights (mean, so the paper's 1e9 learns) or summed (sum)",
                                 Allowed(EWC_REDUCTIONS))
    ewc_fisher_samples: int = setting(1024, "ewc: generated samples the Fisher is estimated from", POSITIVE)
    dgr_solver_iterations: int = setting(500, "dgr: training steps of the solver per task", POSITIVE)
    dgr_solver_lr: float = setting(1e-3, "dgr: learning rate of the solver", POSITIVE)


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
    evaluator_epochs: int = setting(6, "epochs of the evaluator classifier trained on real images", POSITIVE)
    evaluator_weights: str | None = setting(None, "your own evaluator state_dict (skips training and the cache)")
    jt_results: str | None = setting(None, "a JT run's results.json: its matrix gives intransigence")
    cache_dir: str | None = setting(None, "evaluator cache (empty: $MERGAN_CACHE_DIR, else ~/.cache/mergan)")
    grid_per_class: int = setting(8, "sample-grid columns per class", POSITIVE)


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


def parse_assignment(item: str, example: str) -> tuple[str, str]:
    """A ``--set`` item ``"FIELD=VALUE"`` -> (FIELD, VALUE as written); a ConfigError showing ``example`` otherwise."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: write FIELD=VALUE, e.g. --set {example}")
    return key.strip(), value


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
            number = float(value) if isinstance(value, str) else value  # "1e3" is 1000
            if isinstance(number, float) and not number.is_integer():  # 1.5, inf and nan are not counts
                raise ValueError(value)
            return int(number)
        if type_text.startswith("float"):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{section}.{name}: {value!r} is not a valid {type_text}") from None


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
    file_values: dict[str, Any] = load_yaml(yaml_path) if yaml_path is not None else {}
    overrides = dict(overrides or {})
    for given in (file_values.pop("preset", None), overrides.pop("preset", None)):  # the later one wins
        preset = preset if given is None else given
    if preset not in PRESETS:
        raise ConfigError(f"preset: unknown preset {preset!r}; allowed: {', '.join(PRESETS)}")
    config = ExperimentConfig(preset=preset)
    for key, value in PRESETS[preset].items():
        config.set(key, value)
    for key, value in {**file_values, **overrides}.items():
        config.set(key, value)
    if config.run.out_dir is None:
        config.run.out_dir = default_out_dir(config.method.method)
    if validate:
        validate_config(config)
    return config


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


def parse_method(text: str) -> tuple[str, ...]:
    """``"jtr+ra"`` -> ("jtr", "ra"), refusing unknown or contradictory combinations."""
    parts = tuple(p.strip().lower() for p in str(text).split("+") if p.strip())
    if not parts:
        raise ConfigError(f"method.method: empty; allowed: {', '.join(BASE_METHODS)} or combinations of "
                          f"{'+'.join(COMBINABLE_METHODS)}")
    for part in parts:
        if part not in BASE_METHODS:
            raise ConfigError(f"method.method: unknown method {part!r}; allowed: {', '.join(BASE_METHODS)} "
                              f"or a '+'-combination of {', '.join(COMBINABLE_METHODS)}")
    if len(set(parts)) != len(parts):
        raise ConfigError(f"method.method: {text!r} names a method twice")
    if len(parts) > 1:
        odd = [p for p in parts if p not in COMBINABLE_METHODS]
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
                              f"Combinable: {', '.join(COMBINABLE_METHODS)}")
    return tuple(sorted(parts, key=BASE_METHODS.index))


# -- validation --------------------------------------------------------------------------
def check_fields(config: ExperimentConfig) -> None:
    """Each field against its own definition: a finite number where a number is meant, and its ``Allowed``."""
    for section_name, section in config.sections().items():
        for f in fields(section):
            value, allowed = getattr(section, f.name), f.metadata.get("allowed")
            finite = not isinstance(value, float) or math.isfinite(value)
            if finite and (allowed is None or allowed.accepts(value)):
                continue
            what = allowed.describe() if allowed else "a finite number"
            if "None" in str(f.type):
                what += ", or empty"
            if not finite:
                problem = f"is not a finite number; allowed: {what}"
            else:
                problem = f"is not allowed; allowed: {what}" if allowed.choices else f"must be {what}"
            raise ConfigError(f"{section_name}.{f.name}: {value!r} {problem}")


def validate_config(config: ExperimentConfig) -> ExperimentConfig:
    """Refuse any value that cannot run; data-dependent checks (classes) live in the data layer."""
    data, model, method, ev = config.data, config.model, config.method, config.eval
    check_fields(config)
    parse_method(method.method)
    if data.dataset in ("mnist", "svhn", "lsun", "folder") and not data.data_root:
        raise ConfigError(f"data.data_root: dataset {data.dataset!r} reads its standard files from a folder; "
                          f"give it with --data-root (only mnist5k is embedded)")
    sizes = {"small": (32,), "dcgan": (32,), "resnet": (64,)}[model.arch]
    if model.image_size not in sizes:
        raise ConfigError(f"model.image_size: the {model.arch} architecture makes "
                          f"{' or '.join(map(str, sizes))}x{sizes[0]} images, not {model.image_size}; "
                          f"allowed: {', '.join(map(str, sizes))}")
    if method.replay_mode == "fixed" and method.replay_size_per_class <= 0:
        raise ConfigError(f"method.replay_size_per_class: {method.replay_size_per_class} must be > 0 "
                          f"when method.replay_mode is 'fixed'")
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
