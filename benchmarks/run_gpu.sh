#!/usr/bin/env bash
# The prepared device check for a lent GPU (one call): versions, the accuracy table of
# the default configs over 3 seeds (wall-clock includes compilation), and training
# throughput JAX vs PyTorch on the same card. Results land in $OUT (or results/).
#   bash benchmarks/run_gpu.sh
# Expects the datasets in $KMNIST_JAX_DATA_DIR (default ./.gpu_data) and, where the
# machine lacks them, pure-Python wheels (ml_collections) in ./.whl.
set -u
export PYTHONUNBUFFERED=1
OUT="${OUT:-results}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export KMNIST_JAX_DATA_DIR="${KMNIST_JAX_DATA_DIR:-$PWD/.gpu_data}"
python3 -c "import jax, flax, optax, orbax.checkpoint as o, torch; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'orbax', o.__version__, 'torch', torch.__version__, jax.devices())"
timeout "${ACC_TIMEOUT:-220}" python3 benchmarks/accuracy.py \
    --configs kmnist_cnn,mnist_cnn,kmnist_keras_cnn --seeds 0,1,2 \
    --max_minutes "${ACC_MINUTES:-2.6}" --out "$OUT" --workdir_root /tmp/kmnist_acc 2>&1 \
  | grep -v -i warning
timeout "${TPUT_TIMEOUT:-90}" python3 benchmarks/throughput.py --platform gpu \
    --jax_modes single --torch_variants eager,channels_last --seconds 4 --out_dir "$OUT"
