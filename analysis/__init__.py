"""Reading runs back from MLflow: tidy frames, the paper's tables, figures, ``mergan report``, notebooks.

- ``analysis.load``: an experiment or a sweep's trials -> ``ExperimentData`` (runs, accuracy, task_metrics)
- ``analysis.aggregate``: final values, each method's best configuration, mean and spread over seeds
- ``analysis.tables``: Table 1 / Table 2 beside the paper's numbers (``analysis.paper``), Markdown and LaTeX
- ``analysis.figures``: forgetting curves, accuracy matrices, hyperparameter response, samples, Optuna study
- ``analysis.report``: ``mergan report`` (one self-contained HTML page)
- ``analysis/notebooks``: a finished sweep, step by step; what a search found

The package reads; it never trains and never writes runs.
"""
