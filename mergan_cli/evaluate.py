"""``mergan eval CHECKPOINT`` and ``mergan classifier --dataset D``: the evaluation's command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from mergan.config import DATASETS, DEVICES, DataConfig, EvalConfig


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
    evaluate.set_defaults(handler=cmd_eval)

    classifier = subparsers.add_parser(
        "classifier", help="train (once) or show the cached evaluator classifier of a dataset")
    classifier.add_argument("--dataset", choices=DATASETS, required=True)
    classifier.add_argument("--data-root", default=None, help="folder of the dataset's files (not for mnist5k)")
    classifier.add_argument("--image-size", type=int, default=None, help="default: 64 for lsun, else 32")
    classifier.add_argument("--retrain", action="store_true", help="train again even when cached")
    classifier.add_argument("--cache-dir", default=None, help="default: $MERGAN_CACHE_DIR or ~/.cache/mergan")
    classifier.add_argument("--epochs", type=int, default=EvalConfig.evaluator_epochs,
                            help=f"training epochs (default {EvalConfig.evaluator_epochs}; part of the cache key)")
    classifier.add_argument("--device", choices=DEVICES, default="auto", help="default: auto (cuda when present)")
    classifier.set_defaults(handler=cmd_classifier)


def cmd_eval(args: argparse.Namespace) -> int:
    from mergan.evaluation.evaluate import evaluate_after_task
    from mergan.results import read_matrix
    from mergan.trainer import Trainer

    overrides: dict[str, Any] = {}
    if args.device:
        overrides["device"] = args.device
    if args.samples_per_class is not None:
        if args.samples_per_class < 1:
            raise ValueError(f"--samples-per-class {args.samples_per_class}: allowed: >= 1 (or leave it out for "
                             f"the run's eval_samples_per_class)")
        overrides["eval_samples_per_class"] = args.samples_per_class
    jt_matrix = read_matrix(args.jt_results) if args.jt_results else None  # before any compute
    trainer = Trainer.from_checkpoint(args.checkpoint, overrides=overrides)
    task = int(trainer.tasks_done)
    if task < 1:
        raise ValueError(f"{args.checkpoint}: the checkpoint has no finished task to evaluate")
    evaluator = trainer.evaluator()
    result = evaluate_after_task(trainer.sampler(), trainer.dataset, trainer.tasks, task - 1, trainer.config.eval,
                                 evaluator, trainer.device, trainer.accuracy_matrix[: task - 1], jt_matrix,
                                 seed=trainer.config.run.seed, samples_dir=args.samples_dir)
    report = {
        "checkpoint": str(args.checkpoint), "task": task, "tasks": trainer.tasks,
        "method": trainer.config.method.method, "dataset": trainer.config.data.dataset,
        "samples_per_class": trainer.config.eval.eval_samples_per_class,
        "accuracy_matrix": result.matrix, "row": result.row,
        "class_accuracy": {str(c): v for c, v in result.class_accuracy.items()},
        "metrics": result.metrics, "samples_path": result.samples_path, "seconds": round(result.seconds, 3),
        "evaluator": evaluator.describe(),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        Path(args.out).write_text(text + "\n")
        print(f"written to {args.out}", file=sys.stderr)
    return 0


def cmd_classifier(args: argparse.Namespace) -> int:
    from mergan.data import load_dataset
    from mergan.evaluation.classifier import get_evaluator
    from mergan.trainer import resolve_device

    image_size = args.image_size or (64 if args.dataset == "lsun" else 32)
    ds = load_dataset(DataConfig(dataset=args.dataset, data_root=args.data_root), image_size=image_size)
    eval_config = EvalConfig(cache_dir=args.cache_dir, evaluator_epochs=args.epochs)
    evaluator = get_evaluator(ds, eval_config, resolve_device(args.device), retrain=args.retrain)
    info = evaluator.describe()
    state = "loaded from the cache" if info.get("cached") else "trained now"
    print(f"evaluator for {ds.name} ({len(ds.train)} train / {len(ds.test)} test images, {image_size}x{image_size}), "
          f"{state}\n  path: {evaluator.path}\n  cache key: {evaluator.cache_key}\n"
          f"  real test accuracy: {evaluator.test_accuracy:.4f}\n"
          f"  training seconds: {info.get('train_seconds', float('nan'))}")
    return 0
