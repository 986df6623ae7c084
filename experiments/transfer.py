r"""The old name of experiments/transfer_study.py (same flags, same study):

  python experiments/transfer.py --config experiments/configs/transfer_reduced.py \
      --workdir workdirs/transfer_reduced [--sources=mnist=DIR,...]
"""

import _bootstrap  # noqa: F401  (XLA:CPU defaults before JAX starts)

from kmnist_jax.studies import runner, transfer

if __name__ == "__main__":
  runner.study_script(transfer, default_config="experiments/configs/transfer_reduced.py",
                      sources_flag=True)
