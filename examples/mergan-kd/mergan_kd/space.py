"""A search space for KD's knob: ``python sweep.py --space <this file>`` (with mergan-kd installed)."""


def space(trial):
    """How strongly must the generator match its previous self in the previous critic's features to keep the
    earlier classes, before it stops learning the new one? (KD, lambda_kd on a log scale)"""
    trial.suggest_float("lambda_kd", 1e-3, 1e2, log=True)
    return {"method": "kd"}


points_to_evaluate = [{"lambda_kd": 1.0}]
