r"""Classification analysis (what experiments/analyze.py gives): accuracy, per-class
accuracy with 95% Wilson intervals, precision / recall / F1, confusion, the most
confused pairs with their most confident mistakes, calibration, learning curves.

  python experiments/evaluate.py --workdirs=workdirs/mnist_cnn,workdirs/kmnist_cnn \
      --config=experiments/configs/evals/classification.py

Measured: MEASURED
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
