# Sourced by the prepared GPU checks (run_gpu.sh, run_gpu_perf.sh; study_env.sh for the
# study scripts): prints the card, puts this checkout (and, where the machine lacks
# them, the pure-Python wheels in ./.whl) on PYTHONPATH, points KMNIST_JAX_DATA_DIR at
# ./.gpu_data unless it is set, and sets KIND, the machine-kind folder of
# results/<what>/<kind>/ (e.g. gpu_h100, as the benchmarks' own default:
# benchmarks/throughput.py machine_kind).
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
KIND="gpu_$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 \
            | sed 's/^NVIDIA //; s/^Tesla //; s/[^A-Za-z0-9].*//' | tr 'A-Z' 'a-z')"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export KMNIST_JAX_DATA_DIR="${KMNIST_JAX_DATA_DIR:-$PWD/.gpu_data}"
python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
