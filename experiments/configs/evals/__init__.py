"""Evaluator presets for experiments/evaluate.py: each file's get_config() holds
``config.evals`` (kmnist_jax.evaluators) and its docstring the command and the
measured result."""
