#!/usr/bin/env bash
# The five ablation rows of the quick profile, each from its config alone:
# supervised only; mean teacher; + AugIN; + SAM-Mix; + soft-to-hard (full).
set -euo pipefail
python -m s5mars_ssl.train_supervised --config s5mars_ssl/exps/quick/supervised.yaml "$@"
for row in mean_teacher augin sammix full; do
  python -m s5mars_ssl.train_semi --config "s5mars_ssl/exps/quick/$row.yaml" "$@"
done
