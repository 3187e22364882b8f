"""Ray Tune trainables and the sweep machinery around the mergan trainer."""
