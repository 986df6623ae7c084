r"""Classification analysis (what experiments/analyze.py gives): accuracy, per-class
accuracy with 95% Wilson intervals, precision / recall / F1, confusion, the most
confused pairs with their most confident mistakes, calibration, learning curves.

  python experiments/evaluate.py --workdirs=workdirs/mnist_cnn,workdirs/kmnist_cnn \
      --config=experiments/configs/evals/classification.py

Measured on the 2-core CPU (AMD EPYC, shared with other jobs, load ~5): 21 s wall for
mnist_cnn + kmnist_cnn (1-epoch checkpoints of the default configs), 10,000 test images
each, report with 13 figures; accuracy 98.81% (MNIST) / 93.38% (KMNIST) for those
1-epoch checkpoints (the 6-epoch default reaches 96.34% on KMNIST, README).
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.title = "Classification"
  c.cjk_font = "auto"          # hiragana labels: auto (find a CJK font), none, a family
  c.evals = ml_collections.ConfigDict()
  c.evals.classification = dict(
      type="classification",
      dataset="",                # default: each checkpoint's own
      split="test",              # test | validation | train
      limit=0,                   # first N examples (0: all)
      interval="wilson",         # wilson | bootstrap
      top_k=5,                   # confused pairs shown with pictures
  )
  return c
