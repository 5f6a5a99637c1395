#!/usr/bin/env bash
# Supervised-only baseline. Usage: bash s5mars_ssl/script/run_supervised.sh [paper|quick] [extra args]
# Run from the repository root. Single GPU / CPU; see run_semi_mix.sh for multi-GPU.
set -euo pipefail
profile=paper
if [[ $# -gt 0 && ( "$1" == paper || "$1" == quick ) ]]; then profile=$1; shift; fi
if [[ "$profile" == quick ]]; then cfg=s5mars_ssl/exps/quick/supervised.yaml
else cfg=s5mars_ssl/exps/s5mars/config_supervised.yaml; fi
python -m s5mars_ssl.train_supervised --config "$cfg" "$@"
