r"""Every evaluator: classification, embeddings, linear CKA between the models, and
robustness (corruptions + attacks, experiments/configs/evals/robustness.py).

  python experiments/evaluate.py --workdirs=workdirs/mnist_cnn,workdirs/kmnist_cnn \
      --config=experiments/configs/evals/all.py

Measured: MEASURED
"""

import ml_collections

from kmnist_jax.experiments.configs.evals import classification, embed, robustness


def get_config():
  c = ml_collections.ConfigDict()
  c.title = "All evaluators"
  c.cjk_font = "auto"
  c.evals = ml_collections.ConfigDict()
  for preset in (classification, embed, robustness):
    for name, entry in preset.get_config().evals.items():
      c.evals[name] = entry
  c.evals.cka = dict(type="cka", dataset="", examples=1000, debiased=False,
                     random_init=True)
  return c
