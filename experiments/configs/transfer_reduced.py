r"""Transfer study, reduced budget: 12 min 11 s on the 2-core CPU (shared), end to end.

  python experiments/transfer_study.py --config experiments/configs/transfer_reduced.py \
      --workdir workdirs/transfer_reduced

Directions MNIST->KMNIST, KMNIST->MNIST, Fashion-MNIST->KMNIST; modes linear_probe,
finetune, finetune_last (the dense block) and the from-scratch baseline; k = 1, 5, 10,
50, 100 and all examples per class; seeds 0, 1, 2: 198 runs of a small CNN (widths
8,16, dense 64), each 100 steps of batch 64 (the same budget for every k and for
scratch), tested on the full 10,000-image test sets. The three source models train
first (2 epochs on 20,000 images each). Writes table.csv / .md / .json, report.md,
metrics.json, accuracy_vs_shots.png, per_class_gain.png and cka.png into
<workdir>/report (or --out); every source, cell and the CKA is a run of
kmnist_jax.studies.runner keyed by its full config (a transfer run's key includes its
source's), so re-running the command skips finished runs and a changed source setting
redoes the source and the runs built on it.

Measured with the earlier study script (the same runs; not re-run through the runner
yet) on the 2-core CPU shared with other jobs (load ~8), from an empty workdir: 12 min
11 s in all (sources 16-56 s each, the 198 runs 9.5 min, 1.3-5 s each); a
second run gave bit-identical tables. Sources: MNIST 97.61%, KMNIST 86.04%, Fashion-MNIST
86.83% test accuracy. Target test accuracy, mean over seeds 0-2 (gain over scratch):
MNIST->KMNIST k=10: scratch 53.8%, linear_probe 41.8% (-12.0 pp), finetune 52.7%
(-1.1), finetune_last 52.7% (-1.1); k=all: scratch 81.0%, finetune 78.0% (-3.0).
KMNIST->MNIST k=1: scratch 46.4%, linear_probe 53.1% (+6.7), finetune 51.8% (+5.4);
k=all: scratch 96.4%, finetune 96.2%. Fashion-MNIST->KMNIST: below scratch in every
cell. The learning rates (head 3e-2, backbone 3e-3) come from one check on
MNIST->KMNIST seed 0 (a 3e-3 head underfits in 100 steps). Full table: README.md,
section "Transfer between MNIST and KMNIST", and results/transfer/.

This file is also a training config (kmnist_jax.config.base() plus a `transfer`
block, ignored by training): the KMNIST source model alone is

  python experiments/train.py --config experiments/configs/transfer_reduced.py \
      --workdir /tmp/transfer_source_kmnist
"""

import ml_collections

from kmnist_jax.experiments.configs import kmnist_cnn


def get_config():
  c = kmnist_cnn.get_config()
  # The source models (one per source dataset; `dataset` is set per source).
  c.model_kwargs = ml_collections.ConfigDict(dict(widths=(8, 16), depth=1, dense=64,
                                                  dropout=0.1))
  c.num_epochs = 2
  c.train_limit = 20000
  c.val_size = 0
  c.progress = False
  c.tensorboard = False
  c.checkpoint_every = 1
  c.keep_checkpoints = 1

  t = c.transfer = ml_collections.ConfigDict()
  t.directions = ("mnist->kmnist", "kmnist->mnist", "fashion_mnist->kmnist")
  t.modes = ("linear_probe", "finetune", "finetune_last")
  t.shots = ("1", "5", "10", "50", "100", "all")
  t.seeds = (0, 1, 2)
  t.steps = 100              # training steps of every run (transfer and scratch)
  t.steps_all = 0            # >0: another budget for k = all
  t.batch_size = 64          # drawn with replacement from the k-shot subset
  t.optimizer = "adamw"
  t.schedule = "cosine"
  t.weight_decay = 5e-4
  t.head_lr = 3e-2           # the new head, and every part of the scratch model
  t.backbone_lr = 3e-3       # fine-tuned backbone blocks (10x lower than the head)
  t.last_n = 1               # finetune_last: how many backbone blocks train
  t.test_limit = 0           # >0: first N test images only
  t.gain_shots = "10"        # per-class gain plot at this k
  t.cka_models = ("mnist", "kmnist", "fashion_mnist")   # source models compared by CKA
  t.cka_dataset = "kmnist"
  t.cka_examples = 2000
  t.cka_debiased = True     # unbiased HSIC: conv layers are wider than the sample
  t.sources = ""             # DATASET=DIR,...: use these training workdirs as sources
  return c
