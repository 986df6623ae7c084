#!/usr/bin/env bash
# The prepared device check for a lent GPU (one call): versions, the accuracy table of
# the default configs over 3 seeds (wall-clock includes compilation), and training
# throughput JAX vs PyTorch on the same card. Results land in
# $OUT/{accuracy,throughput}/gpu_<card>/ (OUT default: results).
#   bash benchmarks/run_gpu.sh
# Expects the datasets in $KMNIST_JAX_DATA_DIR (default ./.gpu_data) and, where the
# machine lacks them, pure-Python wheels (ml_collections) in ./.whl.
set -u
OUT="${OUT:-results}"
source "$(dirname "$0")/gpu_env.sh"
timeout "${ACC_TIMEOUT:-220}" python3 benchmarks/accuracy.py \
    --configs kmnist_cnn,mnist_cnn,kmnist_keras_cnn --seeds 0,1,2 \
    --max_minutes "${ACC_MINUTES:-2.6}" --out "$OUT/accuracy/$KIND" --workdir_root /tmp/kmnist_acc 2>&1 \
  | grep -v -i warning
timeout "${TPUT_TIMEOUT:-90}" python3 benchmarks/throughput.py --platform gpu \
    --jax_modes single --torch_variants eager,channels_last --seconds 4 --out_dir "$OUT/throughput/$KIND"
