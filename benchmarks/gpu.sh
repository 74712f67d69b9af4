#!/usr/bin/env bash
# The `thesis` shapes on one CUDA GPU, in under 10 minutes: the VQ-VAE step in bf16, both priors' steps (SDPA
# against the explicit attention matrix), sampling and coding positions per second -> benchmarks/results/gpu.json.
#
#   benchmarks/gpu.sh                     # on a CUDA machine
#   benchmarks/gpu.sh --dry-run           # anywhere, in seconds: tiny shapes on the CPU, nothing written
#   benchmarks/gpu.sh --dry-run --out F   # the same, writing its (meaningless) figures to F
#
# Uses $PYTHON, else .venv/bin/python, else python3. What it measures: benchmarks/bench_gpu.py.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$root/.venv/bin/python" ]]; then python="$root/.venv/bin/python"; else python=python3; fi
fi
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
# 10 minutes at most, whatever the machine: a case that hangs ends the run instead of holding the GPU.
exec timeout --signal=INT --kill-after=15 "${VQVID_GPU_BENCH_LIMIT_S:-570}" "$python" "$root/benchmarks/bench_gpu.py" "$@"
