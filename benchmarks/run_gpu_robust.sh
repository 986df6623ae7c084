#!/usr/bin/env bash
# The adversarial work on one GPU, one call (the prepared device check):
#   bash benchmarks/run_gpu_robust.sh             # full budget, each step time-boxed
#   TINY=1 bash benchmarks/run_gpu_robust.sh      # a tiny version (runs on a CPU too)
# Steps (STEPS, default "flagship robust adversarial"; each skips what its records or
# workdir already hold, so the same command continues):
#   flagship     experiments/configs/mnist_robust.py trained, then the ensemble on all
#                10,000 MNIST test images at eps 0 / 0.1 / 0.2 / 0.3
#                -> $OUT/mnist_robust/$KIND/ (report.md, metrics.json, tables)
#   robust       the robust-training study (experiments/configs/studies/robust_training.py)
#                -> $OUT/robust_training/$KIND/{report,runs}/
#   adversarial  the augmentation study's none / noise policies under the ensemble
#                (experiments/configs/studies/augment_adversarial.py)
#                -> $OUT/augment_adversarial/$KIND/{report,runs}/
#   anchors      (not in the default STEPS: ~1 h on an H100) the published MNIST budgets
#                on the flagship's model: PGD-40 (step 0.01) for 83 epochs, as Madry et
#                al., and TRADES (40 steps of 0.01, beta 6) for 100 epochs, each then
#                the ensemble on all 10,000 test images -> $OUT/mnist_robust_{pgd40,trades}/$KIND/
# Each study runs PARALLEL runs side by side (default 4) and starts no run after
# MAX_MINUTES (default 4). Environment: PYTHON (default python3), WORK (workdirs,
# default /tmp/kmnist_gpu_robust), OUT (default results; results/tmp/gpu_robust_tiny
# for TINY=1).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${STEPS:-flagship robust adversarial}"
for step in $STEPS; do           # every step checked before any runs
  case "$step" in flagship|robust|adversarial|anchors) ;; *)
    echo "error: unknown step '$step'; valid steps: flagship, robust, adversarial, anchors" >&2
    exit 2 ;;
  esac
done
source benchmarks/study_env.sh   # PY, KIND (cpu / gpu_<card>), PARALLEL
WORK="${WORK:-/tmp/kmnist_gpu_robust}"
MAX_MINUTES="${MAX_MINUTES:-4}"
flag=() ev=(--config.evals.attack.limit=0) rob=() adv=()
if [[ "${TINY:-0}" == 1 ]]; then
  OUT="${OUT:-results/tmp/gpu_robust_tiny}"
  flag=(--config.num_epochs=1 --config.train_limit=512 --config.adversarial.steps=2
        --config.adversarial.eps_warmup_epochs=0 --config.adversarial.check_images=32)
  ev=(--config.evals.attack.limit=32 --config.evals.attack.apgd_steps=4
      --config.evals.attack.apgd_targets=1 --config.evals.attack.square_queries=8
      --config.evals.smoothing.limit=8 --config.evals.smoothing.n0=8 --config.evals.smoothing.n=40)
  rob=(--config.num_epochs=1 --config.train_limit=256 --config.test_limit=200
       --config.model=logreg "--config.model_kwargs={}"
       "--config.study.methods=('none','pgd')" "--config.study.datasets=('mnist',)"
       "--config.study.seeds=(0,)" --config.study.overrides.pgd.adversarial.steps=2
       --config.adversarial.check_images=32 --config.adversarial.eps_warmup_epochs=0
       --config.evals.attack.limit=16
       --config.evals.attack.apgd_steps=4 --config.evals.attack.apgd_targets=1
       --config.evals.attack.square_queries=8 "--config.evals.corruption.corruptions=fog"
       "--config.evals.corruption.severities=(1,)" --config.evals.corruption.limit=32
       --config.evals.smoothing.n0=8 --config.evals.smoothing.n=40 --config.evals.smoothing.limit=8)
  adv=(--config.num_epochs=1 --config.train_limit=256 --config.test_limit=200
       --config.model=logreg "--config.model_kwargs={}"
       "--config.study.datasets=('kmnist',)" "--config.study.seeds=(0,)"
       --config.evals.attack.limit=16 --config.evals.attack.pgd_steps=2
       --config.evals.attack.square_queries=8)
fi
OUT="${OUT:-results}"
echo "adversarial work on ${KIND}: STEPS='${STEPS}' PARALLEL=${PARALLEL} MAX_MINUTES=${MAX_MINUTES} -> ${OUT}"
for step in $STEPS; do
  SECONDS=0
  case "$step" in
    flagship)
      "$PY" experiments/train.py --config experiments/configs/mnist_robust.py "${flag[@]}" \
          --workdir "$WORK/mnist_robust"
      "$PY" experiments/evaluate.py --workdirs "$WORK/mnist_robust" \
          --config experiments/configs/evals/adversarial.py "${ev[@]}" \
          "--config.evals.attack.epsilons=(0.0,0.1,0.2,0.3)" \
          --out "$OUT/mnist_robust/$KIND"
      ;;
    anchors)
      for a in pgd40 trades; do
        over=(--config.adversarial.steps=40 --config.adversarial.step_size=0.01)
        if [[ "$a" == pgd40 ]]; then over+=(--config.num_epochs=83)
        else over+=(--config.adversarial.method=trades --config.adversarial.beta=6.0
                    --config.num_epochs=100); fi
        "$PY" experiments/train.py --config experiments/configs/mnist_robust.py \
            "${over[@]}" "${flag[@]}" --workdir "$WORK/mnist_robust_$a"
        "$PY" experiments/evaluate.py --workdirs "$WORK/mnist_robust_$a" \
            --config experiments/configs/evals/adversarial.py "${ev[@]}" \
            "--config.evals.attack.epsilons=(0.0,0.1,0.2,0.3)" \
            --out "$OUT/mnist_robust_$a/$KIND"
      done
      ;;
    robust)
      "$PY" experiments/robust_training_study.py \
          --config experiments/configs/studies/robust_training.py "${rob[@]}" \
          --workdir "$WORK/robust_training" --out "$OUT/robust_training/$KIND/report" \
          --records "$OUT/robust_training/$KIND/runs" --parallel="$PARALLEL" \
          --max_minutes="$MAX_MINUTES"
      ;;
    adversarial)
      "$PY" experiments/augmentation_study.py \
          --config experiments/configs/studies/augment_adversarial.py "${adv[@]}" \
          --workdir "$WORK/augment_adversarial" \
          --out "$OUT/augment_adversarial/$KIND/report" \
          --records "$OUT/augment_adversarial/$KIND/runs" --parallel="$PARALLEL" \
          --max_minutes="$MAX_MINUTES"
      ;;
  esac
  echo "$step: ${SECONDS} s"
done
