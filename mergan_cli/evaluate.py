"""``mergan eval CHECKPOINT`` and ``mergan classifier --dataset D``: the evaluation's command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from mergan.config import DATASETS, DEVICES, EVALUATORS, LSUN_RESIZES, QUALITY_LEVELS, DataConfig, EvalConfig


def add_subcommands(subparsers: Any) -> None:
    """Register ``eval`` and ``classifier`` on the ``mergan`` parser's subparsers."""
    evaluate = subparsers.add_parser(
        "eval", help="evaluate a saved checkpoint: accuracy row, matrix summaries, FID; prints JSON")
    evaluate.add_argument("checkpoint", help="a checkpoint.pt, a task_<t> folder, or a run folder (latest task)")
    evaluate.add_argument("--out", metavar="FILE.json", help="also write the JSON here")
    evaluate.add_argument("--samples-per-class", type=int, default=None,
                          help="generated images per class (default: the run's eval_samples_per_class)")
    evaluate.add_argument("--device", choices=DEVICES, default=None, help="default: the run's device")
    evaluate.add_argument("--samples-dir", default=None, help="write the class grid PNG here (default: none)")
    evaluate.add_argument("--jt-results", metavar="FILE.json", default=None,
                          help="a JT run's results.json (its accuracy_matrix) for intransigence")
    evaluate.add_argument("--evaluator", choices=EVALUATORS, default=None,
                          help="judge with this evaluator instead of the run's (cnn, or paper: the authors' for "
                               "the dataset); the same checkpoint can so be scored by both")
    evaluate.add_argument("--data-root", default=None, help="where the dataset is now (default: the run's)")
    evaluate.add_argument("--quality", choices=QUALITY_LEVELS, default=None,
                          help="per-task quality matrices: full, fast or none (default: the run's eval.quality)")
    evaluate.set_defaults(handler=cmd_eval)

    classifier = subparsers.add_parser(
        "classifier", help="train (once) or show the cached evaluator classifier of a dataset")
    classifier.add_argument("--dataset", choices=DATASETS, required=True)
    classifier.add_argument("--data-root", default=None, help="folder of the dataset's files (not for mnist5k)")
    classifier.add_argument("--image-size", type=int, default=None, help="default: 64 for lsun, else 32")
    classifier.add_argument("--retrain", action="store_true", help="train again even when cached")
    classifier.add_argument("--cache-dir", default=None, help="default: $MERGAN_CACHE_DIR or ~/.cache/mergan")
    classifier.add_argument("--evaluator", choices=EVALUATORS, default="cnn",
                            help="cnn (default) or paper: the authors' evaluator of the dataset")
    classifier.add_argument("--epochs", type=int, default=None,
                            help="training epochs (default: the evaluator's recipe; part of the cache key)")
    classifier.add_argument("--width", type=int, default=None,
                            help="first-layer width (default: as published; part of the cache key)")
    classifier.add_argument("--lsun-max-per-class", type=int, default=None, help="lsun: images read per category")
    classifier.add_argument("--lsun-balance", action="store_true", help="lsun: as many images per category as the "
                                                                       "smallest one has")
    classifier.add_argument("--lsun-resize", choices=LSUN_RESIZES, default="center-crop",
                            help="lsun: center-crop (default) or squash (the authors')")
    classifier.add_argument("--device", choices=DEVICES, default="auto", help="default: auto (cuda when present)")
    classifier.set_defaults(handler=cmd_classifier)


def evaluate_checkpoint(checkpoint: str | os.PathLike, overrides: dict[str, Any] | None = None,
                        jt_results: str | None = None, samples_dir: str | None = None) -> dict[str, Any]:
    """Evaluate the last finished task of a checkpoint (``overrides``: config values such as ``evaluator``,
    ``device``, ``eval_samples_per_class``); the JSON-ready report ``mergan eval`` prints."""
    from mergan.evaluation.evaluate import evaluate_after_task
    from mergan.results import read_matrix
    from mergan.trainer import Trainer

    jt_matrix = read_matrix(jt_results) if jt_results else None  # before any compute
    trainer = Trainer.from_checkpoint(checkpoint, overrides=overrides)
    task = int(trainer.tasks_done)
    if task < 1:
        raise ValueError(f"{checkpoint}: the checkpoint has no finished task to evaluate")
    evaluator = trainer.evaluator()
    result = evaluate_after_task(trainer.sampler(), trainer.dataset, trainer.tasks, task - 1, trainer.config.eval,
                                 evaluator, trainer.device, trainer.accuracy_matrix[: task - 1], jt_matrix,
                                 seed=trainer.config.run.seed, samples_dir=samples_dir,
                                 previous_quality={name: matrix[: task - 1]
                                                   for name, matrix in trainer.quality_matrices.items()})
    return {
        "checkpoint": str(checkpoint), "task": task, "tasks": trainer.tasks,
        "method": trainer.config.method.method, "dataset": trainer.config.data.dataset, "seed": trainer.config.run.seed,
        "samples_per_class": trainer.config.eval.eval_samples_per_class,
        "accuracy_matrix": result.matrix, "row": result.row, "quality_matrices": result.quality_matrices,
        "class_accuracy": {str(c): v for c, v in result.class_accuracy.items()},
        "metrics": result.metrics, "samples_path": result.samples_path, "seconds": round(result.seconds, 3),
        "evaluator": evaluator.describe(),
    }


def cmd_eval(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.device:
        overrides["device"] = args.device
    if args.samples_per_class is not None:
        if args.samples_per_class < 1:
            raise ValueError(f"--samples-per-class {args.samples_per_class}: allowed: >= 1 (or leave it out for "
                             f"the run's eval_samples_per_class)")
        overrides["eval_samples_per_class"] = args.samples_per_class
    if args.evaluator:
        overrides["evaluator"] = args.evaluator
    if args.data_root:
        overrides["data_root"] = args.data_root
    if args.quality:
        overrides["quality"] = args.quality
    report = evaluate_checkpoint(args.checkpoint, overrides, args.jt_results, args.samples_dir)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        Path(args.out).write_text(text + "\n")
        print(f"written to {args.out}", file=sys.stderr)
    return 0


def cmd_classifier(args: argparse.Namespace) -> int:
    from mergan.config import ExperimentConfig
    from mergan.data import load_dataset
    from mergan.evaluation.classifier import get_evaluator
    from mergan.trainer import resolve_device
    from mergan.validation import validate_config

    image_size = args.image_size or (64 if args.dataset == "lsun" else 32)
    data_config = DataConfig(dataset=args.dataset, data_root=args.data_root, lsun_max_per_class=args.lsun_max_per_class,
                             lsun_balance=args.lsun_balance, lsun_resize=args.lsun_resize)
    eval_config = EvalConfig(evaluator=args.evaluator, cache_dir=args.cache_dir, evaluator_epochs=args.epochs,
                             evaluator_width=args.width)
    validate_config(ExperimentConfig(data=data_config, eval=eval_config))
    ds = load_dataset(data_config, image_size=image_size)
    evaluator = get_evaluator(ds, eval_config, resolve_device(args.device), retrain=args.retrain,
                              data_config=data_config)
    info = evaluator.describe()
    state = "loaded from the cache" if info.get("cached") else "trained now"
    print(f"evaluator for {ds.name} ({info.get('train_images', len(ds.train))} train / "
          f"{info.get('test_images', len(ds.test))} test images, {image_size}x{image_size}), "
          f"{state}\n  architecture: {evaluator.description()}\n  path: {evaluator.path}\n"
          f"  cache key: {evaluator.cache_key}\n"
          f"  real test accuracy: {evaluator.test_accuracy:.4f} over {evaluator.num_classes} classes "
          f"(chance {evaluator.chance_accuracy:.4f})\n"
          f"  training seconds: {info.get('train_seconds', float('nan'))}")
    return 0
