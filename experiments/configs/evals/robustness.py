r"""Robustness (what experiments/robustness.py gives): errors on every corruption x
severity of MNIST-C / KMNIST-C, CE / mCE / relative mCE against the logistic-regression
baseline of the model's dataset, per-class accuracy x corruption, adversarial accuracy
against epsilon (PGD-10 and the AutoAttack-grade ensemble), overall, per class and
per attack, with the gradient-masking checks.

  python experiments/evaluate.py --workdirs=workdirs/mnist_cnn,workdirs/kmnist_cnn \
      --config=experiments/configs/evals/robustness.py \
      [--config.evals.corruption.baseline.kmnist=workdirs/kmnist_logreg] \
      [--config.evals.corruption.limit=0 --config.evals.attack.limit=1000]   # full

The default is the cheap subset studies use (the first 1,000 test images, all 20
corruptions x 5 severities, attacks on 500); limit=0 evaluates all 10,000. The corrupted
sets are built once into ~/.cache/kmnist_jax/corrupted (or cache_dir) and reused.

Result (all 10,000 images, the default kmnist_cnn): mCE 88.6%, relative mCE 360.6%
against kmnist_logreg (results/robustness/cpu/robustness_cpu.md, docs/robustness.md).
"""

import os

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.title = "Robustness"
  c.cjk_font = "auto"            # hiragana labels: auto (find a CJK font), none, a family
  c.evals = ml_collections.ConfigDict()
  c.evals.corruption = dict(
      type="corruption",
      dataset="",                  # default: each checkpoint's own
      corruptions="all",           # or "fog,rotate,..." (robustness/corruptions.py)
      severities=(1, 2, 3, 4, 5),
      limit=1000,                  # first N test images (0: all)
      seed=0,                      # of the corruptions
      # A logreg workdir per dataset (missing datasets: no CE / mCE), or precomputed
      # errors {"clean_error": e, "errors": {corruption: [per severity]}}.
      baseline={"kmnist": "workdirs/kmnist_logreg", "mnist": "workdirs/mnist_logreg"},
      baseline_step="best",
      cache_dir="",                # default: $KMNIST_JAX_CACHE_DIR/corrupted
      corrupted_dir={},            # prebuilt sets: {"kmnist": DIR} (make_corrupted.py)
      batch_size=1000,
  )
  c.evals.attack = dict(
      type="attack",
      dataset="",
      # Claims use autoattack (APGD-CE -> APGD-T -> Square); PGD-10 beside it shows
      # how much a weak attack overstates. Settings: kmnist_jax/evaluators/attack.py.
      attacks=("pgd", "autoattack"),
      epsilons=(0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3),   # L-inf, pixels in [0, 1]
      pgd_steps=10,
      pgd_step_size=0.0,           # 0: 2.5 * eps / steps
      square_queries=5000,         # AutoAttack's standard budget
      masking_eps=0.5,             # the gradient-masking sanity radius (0: off)
      limit=500,                   # first N test images (0: all)
      seed=0,                      # the attacks' random starts
      per_class_epsilon=0.1,       # the per-class figure's epsilon (nearest evaluated)
      batch_size=500,
  )
  return c


def from_flags(v, workdirs):
  """experiments/robustness.py's flags -> (this preset as a dict, the output folder)."""
  from kmnist_jax import evaluators
  from kmnist_jax.evaluators import attack, corruption
  from kmnist_jax.robustness import sets
  out = os.path.abspath(v.out or os.path.join(os.path.dirname(os.path.abspath(
      workdirs[0].rstrip("/"))) if workdirs else ".", "robustness"))
  cfg = get_config().to_dict()
  cfg["evals"]["corruption"].update(
      corruptions=v.corruptions, severities=sets.parse_severities(v.severities),
      limit=v.limit, seed=v.seed, batch_size=v.batch_size, baseline_step=v.step,
      baseline=corruption.parse_dataset_dirs(  # a bare DIR: the dataset it learned
          v.baseline, "--baseline",
          infer=lambda p: evaluators.restore(p, v.step).config.dataset),
      corrupted_dir={d: os.path.abspath(p) for d, p in corruption.parse_dataset_dirs(
          v.corrupted_dir, "--corrupted_dir",
          infer=lambda p: sets.read_manifest(p)["dataset"]).items()},
      cache_dir=os.path.join(out, "corrupted"), progress=True, strict=True)
  cfg["evals"]["attack"].update(
      attacks=attack.parse_attacks(v.adversarial), epsilons=v.epsilons,
      pgd_steps=v.pgd_steps, pgd_step_size=v.pgd_step_size, limit=v.adv_limit,
      seed=v.seed, batch_size=min(v.batch_size, 500),
      per_class_epsilon=v.per_class_epsilon, progress=True)
  cfg.update(title="Robustness report", cjk_font=v.cjk_font)
  return cfg, out
