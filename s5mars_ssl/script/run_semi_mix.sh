#!/usr/bin/env bash
# The full S5Mars method (mean teacher + AugIN + SAM-Mix + soft-to-hard).
# Usage: bash s5mars_ssl/script/run_semi_mix.sh [paper|quick] [NGPUS] [extra args]
# With NGPUS > 1 it launches torchrun (NCCL + SyncBatchNorm on CUDA; gloo on CPU).
set -euo pipefail
profile=${1:-paper}; ngpu=${2:-1}; shift 2 || shift $# || true
if [[ "$profile" == quick ]]; then cfg=s5mars_ssl/exps/quick/full.yaml
else cfg=s5mars_ssl/exps/s5mars/config_semi_mix.yaml; fi
if [[ "$ngpu" -gt 1 ]]; then
  torchrun --standalone --nproc_per_node="$ngpu" -m s5mars_ssl.train_semi --config "$cfg" "$@"
else
  python -m s5mars_ssl.train_semi --config "$cfg" "$@"
fi
