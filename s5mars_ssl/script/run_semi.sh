#!/usr/bin/env bash
# Semi-supervised baseline (plain mean teacher). Usage: bash s5mars_ssl/script/run_semi.sh [paper|quick] [args]
set -euo pipefail
profile=${1:-paper}; shift || true
if [[ "$profile" == quick ]]; then cfg=s5mars_ssl/exps/quick/mean_teacher.yaml
else cfg=s5mars_ssl/exps/s5mars/config_semi.yaml; fi
python -m s5mars_ssl.train_semi --config "$cfg" "$@"
