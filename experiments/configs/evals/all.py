r"""Every evaluator: classification, embeddings, linear CKA between the models, and
robustness (corruptions + attacks, experiments/configs/evals/robustness.py).

  python experiments/evaluate.py --workdirs=workdirs/mnist_cnn,workdirs/kmnist_cnn \
      --config=experiments/configs/evals/all.py   # baselines: workdirs/*_logreg

Measured on the 2-core CPU (AMD EPYC, shared with other jobs, load ~2-4): 9 min 7 s
wall for mnist_cnn + kmnist_cnn (1-epoch checkpoints of the default configs; 1-epoch
logreg baselines; corrupted sets already built), one report of 77 files: accuracy
98.81% / 93.38%; on the first 1,000 test images mCE 106.1% (MNIST) / 87.0% (KMNIST),
relative mCE 302.9% / 518.9%; linear CKA mnist_cnn vs kmnist_cnn features 0.71
(stage1 0.999). The embedding maps take about 60% of the time (embed.py).
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
