"""Evaluation of continual generators: evaluator classifiers, accuracy matrix, CL metrics, FID, grids.

```python
evaluator = get_evaluator(ds, config.eval, device)      # cached classifier trained on ds.train
result = evaluate_after_task(sampler, ds, tasks, task_index0, config.eval, evaluator, device,
                             previous_matrix, jt_matrix=None, seed=config.run.seed, samples_dir=...)
```
Names are imported on first use, so ``mergan.evaluation.metrics`` (pure Python) loads without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mergan.evaluation.classifier import (
        ClassifierSettings,
        Evaluator,
        EvaluatorError,
        EvaluatorNet,
        default_cache_dir,
        get_evaluator,
        load_evaluator_weights,
    )
    from mergan.evaluation.evaluate import EvalResult, evaluate_after_task
    from mergan.evaluation.frechet import InceptionWeightsError, frechet_distance
    from mergan.evaluation.metrics import (
        average_accuracy,
        average_forgetting,
        backward_transfer,
        intransigence,
        summarize,
    )

_EXPORTS = {
    "ClassifierSettings": "classifier", "Evaluator": "classifier", "EvaluatorError": "classifier",
    "EvaluatorNet": "classifier", "default_cache_dir": "classifier", "get_evaluator": "classifier",
    "load_evaluator_weights": "classifier",
    "EvalResult": "evaluate", "evaluate_after_task": "evaluate",
    "InceptionWeightsError": "frechet", "frechet_distance": "frechet",
    "average_accuracy": "metrics", "average_forgetting": "metrics", "backward_transfer": "metrics",
    "intransigence": "metrics", "summarize": "metrics",
}

__all__ = [
    "ClassifierSettings", "EvalResult", "Evaluator", "EvaluatorError", "EvaluatorNet", "InceptionWeightsError",
    "average_accuracy", "average_forgetting", "backward_transfer", "default_cache_dir", "evaluate_after_task",
    "frechet_distance", "get_evaluator", "intransigence", "load_evaluator_weights", "summarize",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
