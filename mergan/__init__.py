"""MeRGAN: class-conditional WGAN-GP trainers that learn categories one task at a time."""

__version__ = "0.1.0"
