"""Figures (the only package that imports matplotlib): functions take arrays and a path."""

from kmnist_jax.plots.common import *  # noqa: F401,F403
