#!/usr/bin/env bash
# Semi-supervised baseline (plain mean teacher). Usage: bash s5mars_ssl/script/run_semi.sh [paper|quick] [args]
set -euo pipefail
profile=paper
if [[ $# -gt 0 && ( "$1" == paper || "$1" == quick ) ]]; then profile=$1; shift; fi
if [[ "$profile" == quick ]]; then cfg=s5mars_ssl/exps/quick/mean_teacher.yaml
else cfg=s5mars_ssl/exps/s5mars/config_semi.yaml; fi
python -m s5mars_ssl.train_semi --config "$cfg" "$@"
