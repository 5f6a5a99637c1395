#!/usr/bin/env bash
# Run pytest once per folder, each in its own process (torch, tensorflow and segment-anything
# must not share a process). Usage: run_pytest.sh [pytest args] -- folder [folder ...]
# Fails if any folder fails or collects no test at all (pytest exit code 5).
set -u
PY=${PY:-.venv/bin/python}
args=()
while [[ $# -gt 0 && "$1" != "--" ]]; do args+=("$1"); shift; done
shift || true
status=0
summary=()
for folder in "$@"; do
  target="$folder"
  [[ "$folder" != "tests" ]] && target="$folder/tests"
  echo "=== pytest $target"
  start=$(date +%s)
  "$PY" -m pytest "${args[@]}" "$target"
  rc=$?
  secs=$(( $(date +%s) - start ))
  if [[ $rc -eq 5 ]]; then
    echo "error: $target collected no tests"
  fi
  if [[ $rc -ne 0 ]]; then status=1; summary+=("FAIL  $target (exit $rc, ${secs}s)");
  else summary+=("ok    $target (${secs}s)"); fi
done
echo "=== summary"
printf '%s\n' "${summary[@]}"
exit $status
