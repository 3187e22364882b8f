"""An example of your own search space: copy this file, edit ``space``, run

    python sweep.py --space search_spaces/examples/my_space.py --num-samples 8

Parameter names are config field names (``mergan/config.py``); the sweep checks them, and a few
sampled configurations, against the trainer's config before Ray starts.
"""


def space(trial):
    """Does a slower critic learning rate let replay alignment hold earlier digits with a weaker pull?"""
    trial.suggest_float("lambda_ra", 1e-4, 1e-1, log=True)
    trial.suggest_float("lr_d", 5e-5, 4e-4, log=True)
    if trial.suggest_categorical("critic_steps", [1, 2, 5]) > 2:
        # Only more critic steps can carry a larger gradient penalty: a conditional parameter.
        trial.suggest_float("lambda_gp", 1.0, 20.0)
    return {"method": "ra"}  # constants go into every trial's config


# Configurations run first (known baselines); the sampler fills in what they leave out.
points_to_evaluate = [{"lambda_ra": 1e-2, "lr_d": 2e-4, "critic_steps": 2}]
