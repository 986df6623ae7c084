"""The one thing pyproject.toml cannot say: experiments/ (the scripts and their configs)
ships inside the wheel as kmnist_jax/experiments/, so the console scripts
(kmnist_jax/cli.py) run the very files `python experiments/<script>.py` runs.
Everything else is in pyproject.toml."""

from setuptools import find_namespace_packages, find_packages, setup

_EXP = "kmnist_jax.experiments"
_sub = [p for p in find_namespace_packages(where="experiments") if "__pycache__" not in p]

setup(
    packages=(find_packages(include=["kmnist_jax", "kmnist_jax.*"])
              + [_EXP] + [f"{_EXP}.{p}" for p in _sub]),
    package_dir={_EXP: "experiments"},
    package_data={_EXP: ["*.md", "**/*.md", "**/*.json", "**/*.txt", "**/*.yaml"]},
)
