r"""The process that runs runs of a saved plan: a SLURM array task or a side-by-side worker.

  python -m kmnist_jax.studies.worker --plan=<workdir>/plan.json --run_index=I [--requeue]
  python -m kmnist_jax.studies.worker --plan=<workdir>/plan.json --worker

A plan file names its runs' kinds; the study modules imported here register theirs
(:func:`kmnist_jax.studies.plan.run_kind`), so a new study with its own run kinds adds
its import here. Nothing imported here starts JAX, so the worker pins itself to its
cores first. Flags and exit codes: :func:`kmnist_jax.cli.worker_script`.
"""

from kmnist_jax import cli
from kmnist_jax.studies import augmentation, execute, transfer  # noqa: F401 - run kinds

if __name__ == "__main__":
  execute.term_with_runner()  # one SIGTERM when the runner dies
  execute.pin_from_env()     # this worker's cores, before anything starts JAX
  cli.worker_script()
