"""Evaluation of continual generators: evaluator classifiers, accuracy matrix, CL metrics, FID, grids.

```python
evaluator = get_evaluator(ds, config.eval, device)      # cached classifier trained on ds.train
result = evaluate_after_task(sampler, ds, tasks, task_index0, config.eval, evaluator, device,
                             previous_matrix, jt_matrix=None, seed=config.run.seed, samples_dir=...)
```
"""

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

__all__ = [
    "ClassifierSettings", "EvalResult", "Evaluator", "EvaluatorError", "EvaluatorNet", "InceptionWeightsError",
    "average_accuracy", "average_forgetting", "backward_transfer", "default_cache_dir", "evaluate_after_task",
    "frechet_distance", "get_evaluator", "intransigence", "load_evaluator_weights", "summarize",
]
