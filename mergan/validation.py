"""Refusing a config that cannot run, before any compute: each field against its definition, then the rules
between fields (a dataset's files, an architecture's image size, a method combination, the task stream)."""

from __future__ import annotations

import os

from mergan.config import NEAREST_K, PAPER_EVALUATOR_DATASETS, ExperimentConfig, method_registry, section_knobs
from mergan.settings import ConfigError
from mergan.task_parsing import parse_task_order, parse_tasks


def validate_config(config: ExperimentConfig) -> ExperimentConfig:
    """Refuse any value that cannot run; data-dependent checks (classes) live in the data layer."""
    data, model, method, ev = config.data, config.model, config.method, config.eval
    for section_name, section in config.sections().items():  # each field against its own definition
        for name, knob in section_knobs(section).items():
            knob.check(getattr(section, name), f"{section_name}.{name}")
    method_registry().parse(method.method, method.modules)  # unknown or contradictory combinations
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
        neighbours = ", and k=5 nearest neighbours" if ev.quality == "full" else ""
        raise ConfigError(f"eval.eval_samples_per_class: eval.quality {ev.quality} needs at least {wanted} generated "
                          f"images per class (a covariance{neighbours}), not {ev.eval_samples_per_class}; raise it "
                          f"or set eval.quality to {'fast or ' if ev.quality == 'full' else ''}none")
    for name in ("inception_weights", "evaluator_weights", "jt_results"):
        path = getattr(ev, name)
        if path and not os.path.isfile(path):
            raise ConfigError(f"eval.{name}: {path} is not a file")
    return config

