r"""Learning rate x seed on KMNIST: 2 x 2 = 4 short runs of the default CNN.

  python launch/sweep.py --sweep launch/sweeps/lr_x_seed.py --parallel 2

One epoch on the first 10,000 training images (1,000 of them held out for validation),
tested on the full 10,000-image test set: a smoke-sized grid that shows the machinery
(the table, resume, results.csv / results.md), not a tuned result.
"""


def get_sweep():
  return {
      "config": "experiments/configs/kmnist_cnn.py",
      "fixed": {"num_epochs": 1, "train_limit": 10000, "val_size": 1000},
      # Groups multiply; keys inside one group are zipped.
      "product": [{"learning_rate": [1e-3, 3e-3]}, {"seed": [0, 1]}],
  }
