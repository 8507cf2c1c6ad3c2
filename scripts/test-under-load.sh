#!/usr/bin/env bash
# Runs the README's test command RUNS times in a row (default 10) while a busy loop occupies every
# core, and stops at the first failure. The suite's simulations own their clock and scheduler, so
# CPU starvation may slow them down but must never change an outcome; this script is how we show it.
#   scripts/test-under-load.sh [RUNS]         # busy loops on every core
#   BUSY=0 scripts/test-under-load.sh [RUNS]  # the plain command, repeated
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=${1:-10}
busy=${BUSY:-1}
pids=()
stop_busy() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap stop_busy EXIT
if [[ "$busy" == 1 ]]; then
  for _ in $(seq "$(nproc)"); do
    ( while :; do :; done ) &
    pids+=($!)
  done
  echo "busy loops on $(nproc) cores: ${pids[*]}"
fi
dotnet build P2PInference.sln -c Release -v q -nologo >/dev/null || { echo "build failed"; exit 1; }
for i in $(seq "$runs"); do
  start=$SECONDS
  log=$(mktemp)
  # ─── the README's test command ───
  dotnet test P2PInference.sln -c Release >"$log" 2>&1
  rc=$?
  summary=$(grep -E '^(Passed|Failed)!' "$log" | sed -E 's/ +- +/ /' | tr '\n' ';')
  echo "run $i/$runs: exit $rc in $((SECONDS - start)) s: $summary"
  if [[ $rc -ne 0 ]]; then
    grep -E '^\s+Failed |P2P_TEST_SEED=|replay:' "$log" | head -40
    echo "log kept at $log"
    exit 1
  fi
  rm -f "$log"
done
echo "all $runs runs passed"
