#!/bin/bash
# The whole test suite RUNS times in a row while a CPU hog keeps every core busy (issue 20:
# tests that hold under load). The hog is one bounded busy loop per core, at HOG_NICE (0: as
# greedy as the tests), stopped when the runs end. Summary lines and times go to
# suite-under-load.txt; each run's output to suite-under-load-N.log. Arguments after the
# first two go to pytest (default: the whole suite).
#   scripts/suite-under-load.sh [RUNS] [HOG_NICE] [PYTEST ARGS...]
set -u
RUNS=${1:-3}
HOG_NICE=${2:-0}
shift $(( $# < 2 ? $# : 2 ))
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
LOG=suite-under-load.txt
echo "commit $(git rev-parse --short HEAD) start $(date -u +%FT%TZ) cores $(nproc) hog nice $HOG_NICE" > "$LOG"
pids=()
for _ in $(seq "$(nproc)"); do
  nice -n "$HOG_NICE" timeout 14400 python3 -c "
import time
end = time.time() + 14400  # bounded: four hours at most
while time.time() < end:
    pass
" &
  pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null' EXIT
for run in $(seq "$RUNS"); do
  started=$(date +%s)
  "$PY" -m pytest -q -p no:cacheprovider "$@" > "suite-under-load-$run.log" 2>&1
  rc=$?
  echo "run $run rc=$rc seconds=$(( $(date +%s) - started )) :: $(grep -E '^[0-9]+ (passed|failed)' "suite-under-load-$run.log" | tail -1)" >> "$LOG"
done
echo "end $(date -u +%FT%TZ)" >> "$LOG"
cat "$LOG"
