"""Studies: a study is a plan of runs (config overrides x seeds) plus evaluators.

- :mod:`kmnist_jax.studies.runner`: the plan, the cache (one key per run: the SHA-256
  of its full resolved config, sources included), sequential / side-by-side / SLURM
  execution, one lock per workdir.
- :mod:`kmnist_jax.studies.evaluate`: checkpoints x evaluators -> records.
- :mod:`kmnist_jax.studies.augmentation`, :mod:`kmnist_jax.studies.transfer`: the two
  studies (``plan(cfg)``, ``summarize(records)``, ``render(summary, report)``).
"""
