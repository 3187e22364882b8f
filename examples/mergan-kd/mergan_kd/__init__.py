"""mergan-kd: a continual-learning method for the MeRGAN platform, written as a plugin (see distillation.py)."""

from mergan_kd.distillation import FeatureDistillation

__all__ = ["FeatureDistillation"]
