#!/usr/bin/env bash
# The full S5Mars method (mean teacher + AugIN + SAM-Mix + soft-to-hard).
# Usage: bash s5mars_ssl/script/run_semi_mix.sh [paper|quick] [NGPUS] [extra args]
# With NGPUS > 1 it launches torchrun (NCCL + SyncBatchNorm on CUDA; gloo on CPU).
# Run from the repository root.
set -euo pipefail
profile=paper
ngpu=1
if [[ $# -gt 0 && ( "$1" == paper || "$1" == quick ) ]]; then profile=$1; shift; fi
if [[ $# -gt 0 && "$1" =~ ^[0-9]+$ ]]; then ngpu=$1; shift; fi
if [[ "$profile" == quick ]]; then cfg=s5mars_ssl/exps/quick/full.yaml
else cfg=s5mars_ssl/exps/s5mars/config_semi_mix.yaml; fi
if [[ "$ngpu" -gt 1 ]]; then
  torchrun --standalone --nproc_per_node="$ngpu" -m s5mars_ssl.train_semi --config "$cfg" "$@"
else
  python -m s5mars_ssl.train_semi --config "$cfg" "$@"
fi
