#!/usr/bin/env bash
# Both real-budget studies of issue 16 on one GPU, one call (the prepared device check):
#   bash benchmarks/run_gpu_studies.sh            # full budget (estimate: < 10 min, H100)
#   TINY=1 bash benchmarks/run_gpu_studies.sh     # a tiny version (tests run it on CPU)
# The augmentation x robustness study (experiments/configs/studies/augment_robustness.py)
# then the transfer study (experiments/configs/transfer_full.py), each with PARALLEL runs
# sharing the card (default 4; the study runner gives each worker a share of the GPU
# memory) and at most MAX_MINUTES of new runs each (default 4.5: a lent card's time is
# never overrun; the same command continues from the records). Writes
#   $OUT/{augmentation_study,transfer_study}/gpu_<card>/report/  tables, reports, figures
#   $OUT/{augmentation_study,transfer_study}/gpu_<card>/runs/  every run's record.json
# with OUT defaulting to results (results/tmp/gpu_studies_tiny for TINY=1).
# Environment: PYTHON (default python3), WORK (workdirs, default /tmp/kmnist_gpu_studies).
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/study_env.sh   # PY, KIND (cpu / gpu_<card>), PARALLEL
WORK="${WORK:-/tmp/kmnist_gpu_studies}"
MAX_MINUTES="${MAX_MINUTES:-4.5}"
aug=() tr=()
if [[ "${TINY:-0}" == 1 ]]; then
  OUT="${OUT:-results/tmp/gpu_studies_tiny}"
  aug=(--config.num_epochs=1 --config.train_limit=256 --config.test_limit=200
       "--config.study.policies=('none','affine')" "--config.study.datasets=('kmnist',)"
       "--config.study.seeds=(0,1)" --config.study.grid_examples=0
       --config.study.measure_costs=False
       "--config.evals.corruption.corruptions=shot_noise,fog"
       "--config.evals.corruption.severities=(1,)" --config.evals.corruption.limit=50
       --config.evals.attack.limit=50 --config.evals.attack.pgd_steps=2)
  tr=(--config.num_epochs=1 --config.train_limit=256 "--config.model_kwargs.widths=(4,8)"
      --config.model_kwargs.dense=16 "--config.transfer.directions=('mnist->kmnist',)"
      "--config.transfer.modes=('linear_probe',)" "--config.transfer.shots=('5','all')"
      --config.transfer.gain_shots=5 "--config.transfer.seeds=(0,)"
      --config.transfer.steps=10 --config.transfer.steps_all=10
      --config.transfer.test_limit=200 "--config.transfer.cka_models=()")
fi
OUT="${OUT:-results}"
echo "studies on ${KIND}: PARALLEL=${PARALLEL} MAX_MINUTES=${MAX_MINUTES} -> ${OUT}"
SECONDS=0
"$PY" experiments/augmentation_study.py \
    --config experiments/configs/studies/augment_robustness.py "${aug[@]}" \
    --workdir "$WORK/augment_robustness" --out "$OUT/augmentation_study/$KIND/report" \
    --records "$OUT/augmentation_study/$KIND/runs" --parallel="$PARALLEL" \
    --max_minutes="$MAX_MINUTES"
echo "augmentation study: ${SECONDS} s"
SECONDS=0
"$PY" experiments/transfer_study.py --config experiments/configs/transfer_full.py "${tr[@]}" \
    --workdir "$WORK/transfer_full" --out "$OUT/transfer_study/$KIND/report" \
    --records "$OUT/transfer_study/$KIND/runs" --parallel="$PARALLEL" \
    --max_minutes="$MAX_MINUTES"
echo "transfer study: ${SECONDS} s"
