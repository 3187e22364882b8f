"""``mergan train``: train one method on one task stream, with progress, Ctrl-C and resume.

Every run keeps its record in its folder (``mergan.record``); ``mergan train`` also mirrors it into
MLflow (``tracking.mirror``), like a sweep trial does, unless ``--no-mlflow``, which imports no MLflow.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import shutil
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mergan.callbacks import Callback, StepInfo, TaskResult
from mergan.config import ExperimentConfig, MethodConfig, resolve_key, section_knobs
from mergan.config_io import load_yaml, parse_assignment
from mergan.files import temporary_name
from mergan.presets import PAPER_ITERATIONS, PRESETS, build_config
from mergan.record import CONFIG_FILE, RECORD_FILE
from mergan.run_folder import MIRRORS
from mergan.settings import ConfigError, Knob, value_text
from tracking.store import DEFAULT_EXPERIMENT

if TYPE_CHECKING:
    from tracking.mirror import MLflowMirror


EXIT_INTERRUPTED = 130  # what shells report for a program ended by Ctrl-C (128 + SIGINT)
EXIT_FAILED = 1  # the machine failed the run (disk full, out of memory); what is saved can be resumed
# How PyTorch says it ran out of memory: CUDA's OutOfMemoryError, the CPU allocator's RuntimeError.
OUT_OF_MEMORY = ("out of memory", "can't allocate memory")


# Flags whose name is not the field's own: --iterations is short, --method-module says whose module it is.
FLAG_NAMES = {"iterations_per_task": ["--iterations-per-task", "--iterations"], "module": ["--method-module"]}


def field_help(knob: Knob, users: list[str] | None = None) -> str:
    """A config flag's help from the field's own definition: meaning, allowed values, default, presets;
    for a method knob, the methods that read it."""
    default = PRESETS["small"].get(knob.name, knob.default)
    by_value: dict[str, list[str]] = {}
    for preset, values in PRESETS.items():
        if knob.name in values and value_text(values[knob.name]) != value_text(default):
            by_value.setdefault(value_text(values[knob.name]), []).append(preset)
    presets = "".join(f"; {value} in {', '.join(names)}" for value, names in by_value.items())
    prefix = f"{', '.join(users)}: " if users else ""
    text = prefix + knob.help_text() + f" (default: {value_text(default)}{presets})"
    return text.replace("%", "%%")  # argparse %-formats help strings


def _add_config_flags(parser: argparse.ArgumentParser, modules: tuple[str, ...] = ()) -> None:
    """One flag per config field (``--lr-g``, ``--lambda-ra`` ...), all defaulting to 'not given'; the method
    knobs are those of the built-in methods, the installed plugins and ``modules``."""
    from mergan.methods import REGISTRY

    users = REGISTRY.knob_users(modules)
    for section_name, section in ExperimentConfig(method=MethodConfig(module=modules[0] if modules else None)
                                                  ).sections().items():
        group = parser.add_argument_group(f"{section_name} settings")
        for name, knob in section_knobs(section).items():
            flags = FLAG_NAMES.get(name, [f"--{name.replace('_', '-')}"])
            group.add_argument(*flags, dest=f"cfg__{name}", default=argparse.SUPPRESS, metavar=name.upper(),
                               help=field_help(knob, users.get(name)))


def methods_help(modules: tuple[str, ...] = ()) -> list[str]:
    """One line per method --method may name (built in, installed plugins, ``modules``), and the broken plugins."""
    from mergan.methods import REGISTRY

    methods = REGISTRY.methods(modules)
    combinable = [name for name, method in methods.items() if method.changes is not None]
    width = max(len(name) for name in methods)
    lines = [(f"methods (--method; {', '.join(combinable)} combine with '+' when they change different parts of "
              f"training, e.g. jtr+ra):")]
    for name, method in methods.items():
        origin = REGISTRY.origin(name, modules)
        where = "" if origin == "built in" else f" [{origin}]"
        lines.append(f"  {name:<{width}} {method.summary}{where}")
    lines += [f"  broken plugin {name}: {plugin.error}" for name, plugin in REGISTRY.installed().items()
              if plugin.error]
    return lines


def train_epilog(width: int = 100, modules: tuple[str, ...] = ()) -> str:
    """The methods and the presets' contents, for ``mergan train --help``."""
    lines = methods_help(modules)
    lines.append("")
    lines.append("presets (--preset; applied over the defaults, then --config, then the flags):")
    indent = " " * 14
    for name, values in PRESETS.items():
        contents = " ".join(f"{key}={value_text(value)}" for key, value in values.items())
        lines.append(textwrap.fill(contents, width, initial_indent=f"  {name:<11} ", subsequent_indent=indent))
    return "\n".join(lines)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values = {k[len("cfg__"):]: v for k, v in vars(args).items() if k.startswith("cfg__")}
    for item in getattr(args, "set", None) or []:
        key, value = parse_assignment(item, "optim.lr_g=1e-4")
        values[key] = value.strip()
    return values


def named_out_dir(values: dict[str, Any]) -> str | None:
    """The run folder that these config values name (the last one given), or None (empty: the default)."""
    probe = ExperimentConfig()
    for key, value in values.items():
        if resolve_key(key) == ("run", "out_dir"):
            probe.set(key, value)
    return probe.run.out_dir


def config_from_args(args: argparse.Namespace):
    overrides = _overrides(args)
    if args.preset:
        overrides["preset"] = args.preset
    config = build_config(overrides=overrides, yaml_path=args.config)
    if args.paper_iterations:
        config.optim.iterations_per_task = PAPER_ITERATIONS[config.data.dataset]
        if "iterations_per_task" in overrides:  # an explicit count on top of the paper's raises it
            config.set("iterations_per_task", overrides["iterations_per_task"])
    return config


class ProgressPrinter(Callback):
    """A tqdm bar per task (task, step, losses, steps/s) and a short summary after each task."""

    def __init__(self, stream=None):
        self._stream = stream
        self.bar = None
        self.last_step: StepInfo | None = None  # the latest progress of the task in training
        self.tasks_saved: int | None = None  # tasks whose checkpoint is written (known once the run starts)

    @property
    def stream(self):
        return self._stream or sys.stderr

    def on_run_start(self, trainer) -> None:
        self.tasks_saved = trainer.tasks_done

    def on_step(self, trainer, info: StepInfo) -> None:
        from tqdm import tqdm

        self.last_step = info
        if self.bar is None:
            # The bar moves every log_every steps, so tqdm's own rate would be nonsense: show only the
            # trainer's measured steps/s, and estimate the time left from the task's average (smoothing 0).
            self.bar = tqdm(total=info.steps_in_task, desc=f"task {info.task}/{len(trainer.tasks)}",
                            file=self.stream, dynamic_ncols=True, leave=False, smoothing=0,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                                       "[{elapsed}<{remaining}{postfix}]")
        self.bar.update(info.step - self.bar.n)
        shown = {k: v for k, v in info.losses.items() if k.startswith("loss_")}  # the method's own terms too
        self.bar.set_postfix({**{k: f"{v:.3g}" for k, v in shown.items()}, "it/s": f"{info.steps_per_second:.1f}"})

    def close(self) -> None:
        """End the task's bar (so that the next line starts clean)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_task_end(self, trainer, result: TaskResult) -> None:
        self.close()
        self.last_step = None
        self.tasks_saved = result.task  # the trainer calls back after the task's checkpoint is written
        metrics = result.metrics
        row = result.accuracy_matrix[-1] if result.accuracy_matrix else []
        accuracies = " ".join(f"{v:.2f}" if v is not None else "-" for v in row)
        line = (f"task {result.task}/{result.num_tasks} classes {result.classes}: "
                f"train {result.train_seconds:.1f}s eval {result.eval_seconds:.1f}s")
        if metrics:
            line += f" | acc per task [{accuracies}] avg_acc {metrics.get('avg_acc', float('nan')):.3f}"
            for name in ("forgetting", "bwt", "fid_classifier", "fid_inception", "fr_recall_classifier", "reverse_acc"):
                if name in metrics:
                    line += f" {name} {metrics[name]:.3g}"
        if result.samples_path:
            line += f" | samples {result.samples_path}"
        print(line, file=self.stream, flush=True)


def _tracking_mirror(args: argparse.Namespace) -> MLflowMirror | None:
    """The MLflow mirror of this run, once the store is known to take it: a store that refuses this client
    (a login, a permission, a URI MLflow cannot use) stops the run before any training; one that does not
    answer is a warning (the record waits in the run folder for ``mergan sync``)."""
    if args.no_mlflow:
        return None
    from tracking.mirror import MLflowMirror, Target
    from tracking.store import (
        TrackingServerDown,
        TrackingServerError,
        check_tracking_server,
        resolve_tracking_uri,
    )

    uri = resolve_tracking_uri(args.tracking_uri)
    try:
        check_tracking_server(uri)
    except TrackingServerDown as error:
        print(f"mergan train: warning: {error}; training goes on, its record waits in the run folder for "
              f"`mergan sync`", file=sys.stderr)
    except TrackingServerError as error:
        raise ConfigError(f"--tracking-uri: {error} (or train with --no-mlflow)") from None
    return MLflowMirror(Target(uri, args.experiment, log_checkpoint=not args.no_log_checkpoint))


def _new_run_trainer(args: argparse.Namespace, printer: ProgressPrinter,
                     mirror: MLflowMirror | None, held: contextlib.ExitStack) -> Any:
    """A trainer for a new run, in a folder of its own (see ``mergan.run_folder``) that ``held`` holds until
    the run ends."""
    from mergan.run_folder import link_latest, prepare_out_dir
    from mergan.trainer import Trainer

    config = config_from_args(args)
    values = {**(load_yaml(args.config) if args.config is not None else {}), **_overrides(args)}
    named = named_out_dir(values) is not None
    if named and args.overwrite:
        _refuse_unsent_records(Path(config.run.out_dir))
    lock = held.enter_context(prepare_out_dir(config.run.out_dir, named=named, overwrite=args.overwrite))
    folder = lock.folder
    config.run.out_dir = str(folder)
    try:
        trainer = Trainer(config, callbacks=[printer, mirror])
    except BaseException:
        lock.release()
        if lock.created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # the fresh folder, still empty: no run started there
        raise
    if not named and link_latest(folder) is None:
        print(f"note: {folder.parent / 'latest'} is not a link to the newest run (a folder of an earlier version, "
              f"or links are not supported here); this run is in {folder}", file=sys.stderr)
    return trainer


def _resumed_trainer(args: argparse.Namespace, printer: ProgressPrinter, mirror: MLflowMirror | None,
                     held: contextlib.ExitStack) -> Any:
    """A trainer continuing ``--resume``'s run (in its own folder unless ``--out-dir`` names another, held by
    ``held`` until the run ends); its MLflow mirror finds the run's MLflow run again by the record's run key."""
    from mergan.checkpoint import find_checkpoint
    from mergan.run_folder import RunFolderLock, make_folder, prepare_out_dir, run_folder_of
    from mergan.trainer import Trainer

    overrides = _overrides(args)
    checkpoint = find_checkpoint(args.resume)
    own_folder = run_folder_of(checkpoint)
    named = named_out_dir(overrides)
    if named is not None and (own_folder is None or Path(named).resolve() != own_folder):
        if args.overwrite:
            _refuse_unsent_records(Path(named))
        held.enter_context(prepare_out_dir(named, named=True, overwrite=args.overwrite))
    elif own_folder is not None:
        # Held before its files are read: a run still going on there would change them under us.
        held.enter_context(RunFolderLock(own_folder).acquire(
            advice=f"continue it in a folder you can write: mergan train --resume {own_folder} --out-dir NEW_FOLDER"))
        saved = load_yaml(own_folder / "config.yaml").get("run.out_dir")
        if named is None and (not saved or Path(saved).resolve() != own_folder):  # moved, or reached from elsewhere
            overrides["out_dir"] = str(own_folder)
    trainer = Trainer.from_checkpoint(checkpoint, overrides=overrides)
    if own_folder is None and named is None:  # a checkpoint kept elsewhere goes on in the folder its config names
        make_folder(trainer.out_dir)
        held.enter_context(RunFolderLock(trainer.out_dir).acquire())
    trainer.callbacks.callbacks.extend(c for c in (printer, mirror) if c is not None)
    print(f"resuming after task {trainer.tasks_done}/{len(trainer.tasks)} from {checkpoint}", file=sys.stderr)
    return trainer


def _refuse_unsent_records(folder: Path) -> None:
    """--overwrite deletes a run's record: not while it holds what its MLflow run has not received."""
    from tracking.mirror import unsent  # no MLflow import: it reads the run folder only

    if unsent(folder):
        raise ConfigError(f"--overwrite: {folder} holds a run whose MLflow run lacks part of its record; send it "
                          f"with `mergan sync {folder}`, then overwrite")


def resume_command(args: argparse.Namespace, out_dir: Path) -> str:
    """The command that continues this run: the same MLflow settings, the run's folder."""
    words = ["mergan", "train", "--resume", str(out_dir)]
    if args.no_mlflow:
        words.append("--no-mlflow")
    else:
        if args.tracking_uri:
            words += ["--tracking-uri", args.tracking_uri]
        if args.experiment != DEFAULT_EXPERIMENT:
            words += ["--experiment", args.experiment]
        if args.no_log_checkpoint:
            words.append("--no-log-checkpoint")
    return shlex.join(words)


def stopped_message(args: argparse.Namespace, trainer: Any, printer: ProgressPrinter,
                    cause: str = "stopped by Ctrl-C") -> str:
    """One line for a run that stopped before its end (Ctrl-C, or ``cause``): where, what is saved, how to go on."""
    saved = trainer.tasks_done if printer.tasks_saved is None else printer.tasks_saved
    where = f"task {saved + 1}/{len(trainer.tasks)}"
    step = printer.last_step
    if step is not None and step.task == saved + 1:
        where += f", step {step.step}/{step.steps_in_task}"
    if not trainer.config.run.save_checkpoints:
        return f"mergan train: {cause} in {where}; checkpoints were off, so there is nothing to resume"
    if saved == 0:
        return f"mergan train: {cause} in {where}, before any task was saved; nothing to resume, start the run again"
    done = "task 1 is" if saved == 1 else f"tasks 1-{saved} are"
    return (f"mergan train: {cause} in {where}; {done} saved in {trainer.out_dir}; "
            f"continue with: {resume_command(args, trainer.out_dir)}")


def failure_cause(error: BaseException) -> str | None:
    """What stopped a run, in a few words, for the machine's faults (disk full, out of memory); None otherwise."""
    if isinstance(error, OSError):
        where = f" {error.filename}" if error.filename else ""
        return f"could not write{where} ({error.strerror or error})"
    if isinstance(error, RuntimeError) and any(text in str(error) for text in OUT_OF_MEMORY):
        first = str(error).strip().splitlines()[0]
        return (f"ran out of memory ({first[:160]}); lower optim.batch_size or the nets' widths, or train on a "
                f"device with more memory")
    return None


def _forget_unsaved_run(trainer: Any, mirror: Any) -> None:
    """A new run that ends before its first task is saved leaves nothing in its folder, so that starting it
    again in the same --out-dir is not refused as 'holds another run'. Its record stays while MLflow has not
    received all of it (``mergan sync`` can still send it); what MLflow holds stays there."""
    if trainer.tasks_done > 0:
        return
    folder = Path(trainer.out_dir)
    keep_record = False  # the record stays while MLflow lacks part of it; without a mirror nothing waits
    if mirror is not None:  # only a tracked run imports tracking
        from tracking.mirror import unsent

        keep_record = unsent(folder)
    for name in [CONFIG_FILE] if keep_record else [CONFIG_FILE, RECORD_FILE, temporary_name(RECORD_FILE), MIRRORS]:
        with contextlib.suppress(OSError):
            path = folder / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def cmd_train(args: argparse.Namespace) -> int:
    for flag in ("resume", "config", "tracking_uri", "experiment"):  # config fields take "" as 'empty'; these do not
        value = getattr(args, flag)
        if value is not None and not value.strip():
            raise ConfigError(f"--{flag.replace('_', '-')}: empty; give a value, or leave the flag out")
    printer = ProgressPrinter()
    mirror = _tracking_mirror(args)
    with contextlib.ExitStack() as held:  # the run folder, held until the run ends
        trainer = (_resumed_trainer if args.resume is not None else _new_run_trainer)(args, printer, mirror, held)
        if trainer.graph_note is not None:
            print(f"note: {trainer.graph_note}", file=sys.stderr)
        config = trainer.config
        print(f"mergan train: {config.method.method} on {config.data.dataset}, preset {config.preset}, "
              f"tasks {trainer.tasks}, {config.optim.iterations_per_task} iterations per task, device "
              f"{trainer.device}, out {trainer.out_dir}", file=sys.stderr)
        try:
            # The record (and its MLflow mirror) ends FINISHED, FAILED (divergence) or KILLED.
            with mirror or contextlib.nullcontext(), trainer.record.ending():
                trainer.fit()
        except KeyboardInterrupt:
            printer.close()
            _forget_unsaved_run(trainer, mirror)
            print(stopped_message(args, trainer, printer), file=sys.stderr)
            return EXIT_INTERRUPTED
        except (OSError, RuntimeError) as error:
            cause = failure_cause(error)
            if cause is None:
                raise
            printer.close()
            _forget_unsaved_run(trainer, mirror)
            print(stopped_message(args, trainer, printer, cause), file=sys.stderr)
            return EXIT_FAILED
    print(f"done: checkpoints and samples in {trainer.out_dir}", file=sys.stderr)
    return 0


def method_modules(argv: list[str]) -> tuple[str, ...]:
    """The ``--method-module`` a command line gives (read before the parser is built, so that the module's
    methods and knobs appear in ``--help`` and get flags of their own)."""
    found = []
    for index, word in enumerate(argv):
        if word == "--method-module" and index + 1 < len(argv):
            found.append(argv[index + 1])
        elif word.startswith("--method-module="):
            found.append(word.partition("=")[2])
    return tuple(found[-1:])


def add_subcommands(commands: argparse._SubParsersAction, argv: list[str] | None = None) -> None:
    """Register ``mergan train`` (the handler is ``args.handler``); ``argv`` may name a method module.

    Its flags and methods come from the methods' registry, which imports torch and every plugin: only
    when the command line is ``mergan train ...`` (``argv`` None: always)."""
    modules = method_modules(argv or [])
    full = argv is None or argv[:1] == ["train"]
    train = commands.add_parser("train", help="train one method on one task stream",
                                description="Train one method on one task stream; each new run gets its own "
                                            "folder runs/<method>-<YYYYmmdd-HHMMSS> (runs/latest links to the "
                                            "newest) unless --out-dir names one.",
                                epilog=train_epilog(modules=modules) if full else None,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--preset", choices=list(PRESETS), default=None,
                       help="model and hyperparameter preset (default: small, or the YAML file's)")
    train.add_argument("--config", help="YAML file of config fields (flat, dotted or by section)")
    train.add_argument("--set", action="append", metavar="FIELD=VALUE", help="set any config field")
    train.add_argument("--paper-iterations", action="store_true",
                       help="the paper's iterations per task for the dataset (MNIST 4,000, SVHN 8,000, "
                            "LSUN 20,000); --iterations N on top raises it")
    train.add_argument("--resume", metavar="PATH",
                       help="continue a run from its checkpoint (file, task or run folder, e.g. runs/latest), in "
                            "that run's folder. It trains what the run trained: only --device, --out-dir, "
                            "--log-every, --save-checkpoints, --deterministic, --data-root, the evaluation settings "
                            "and --iterations (of the tasks still to train) may change; any other change is refused")
    train.add_argument("--overwrite", action="store_true",
                       help="let a new run use an --out-dir that holds another run, deleting that run's files first")
    train.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    train.add_argument("--experiment", default=DEFAULT_EXPERIMENT,
                       help=f"MLflow experiment name (default: {DEFAULT_EXPERIMENT})")
    train.add_argument("--no-mlflow", action="store_true", help="do not record the run in MLflow")
    train.add_argument("--no-log-checkpoint", action="store_true", help="do not upload the final checkpoint to MLflow")
    if full:
        _add_config_flags(train, modules)
    train.set_defaults(handler=cmd_train)
