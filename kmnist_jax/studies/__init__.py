"""Studies: a study is a plan of runs (config overrides x seeds) plus evaluators.

- :mod:`kmnist_jax.studies.plan`: runs, plans, cache keys (the SHA-256 of a run's full
  resolved config, sources included), records, the registry of run kinds.
- :mod:`kmnist_jax.studies.execute`: a plan here, one run at a time or side by side.
- :mod:`kmnist_jax.studies.slurm`: a plan as SLURM job arrays.
- :mod:`kmnist_jax.studies.worker`: the process of an array task or side-by-side worker.
- :mod:`kmnist_jax.studies.study`: a study end to end (plan, runs, report).
- :mod:`kmnist_jax.studies.evaluate`: checkpoints x evaluators -> records.
- :mod:`kmnist_jax.studies.augmentation`, :mod:`kmnist_jax.studies.transfer`: the two
  studies (``plan(cfg)``, ``summarize(records)``, ``render(summary, report)``); they
  call plan, never the other way round.
"""
