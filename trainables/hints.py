"""Where to look once a sweep is done: its MLflow run and chart view, the Optuna study, Tune's results."""

from __future__ import annotations

from tracking.store import resolve_tracking_uri
from tracking.sweep_run import chart_view_target, chart_view_url, run_page_url
from trainables.plan import SweepPlan

LOCAL_UI_URL = "http://127.0.0.1:5000"  # where `mlflow ui` serves an SQLite store by default


def mlflow_hint(plan: SweepPlan) -> str:
    """Where to look in MLflow (and at the Optuna study) once the sweep is done."""
    uri = resolve_tracking_uri(plan.tracking_uri)
    lines = [(f"MLflow: tracking URI {uri}, experiment {plan.experiment!r}, sweep run {plan.parent_run_id} "
              f"({plan.name}; trials are its child runs)")]
    served = uri.startswith(("http://", "https://"))
    ui_url = uri if served else LOCAL_UI_URL
    if not served:
        lines.append(f"  mlflow ui --backend-store-uri {uri}    # serves {LOCAL_UI_URL}")
    experiment_id, share_key = chart_view_target(plan.tracking_uri, plan.parent_run_id, plan.sweep_id)
    if experiment_id and plan.parent_run_id:
        lines.append(f"  every trial's forgetting curves: {chart_view_url(ui_url, experiment_id, share_key)}")
        lines.append(f"  the sweep's figures and tables:  "
                     f"{run_page_url(ui_url, experiment_id, plan.parent_run_id, 'forgetting_curves.png')}")
    else:
        lines.append(f"  open {ui_url} in a browser")
    if plan.optuna_storage:
        lines.append(f"Optuna study {plan.name!r}: optuna-dashboard {plan.optuna_storage}")
    lines.append(f"Tune results: {plan.experiment_path}")
    return "\n".join(lines)
