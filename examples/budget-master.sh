#!/usr/bin/env bash
# A first bash master that shares one token budget between concurrent workers.
#
# Each worker reserves tokens *before* it starts work and releases the
# reservation with what it really used when done; the unused rest goes back to
# the pool. A reservation that would exceed the budget is never over-allocated:
# without --wait it is refused (exit 1, a normal "no"); with --wait D the worker
# sleeps on the journal until a release makes room (exit 75 if D passes). No
# locks, no polling of JSON files, no retry loop.
#
#   CORTEX_DIR=/tmp/demo examples/budget-master.sh [WORKERS] [TOKENS_EACH]
set -euo pipefail
workers=${1:-8}
tokens_each=${2:-30000}
export CORTEX_DIR=${CORTEX_DIR:-./coordination}

# Room for only 3/4 of the workers' reservations at once, so some wait for
# others' releases; every worker spends at most half its reservation, so all of
# them finish.
total=$((workers * tokens_each * 3 / 4))
cortex init >/dev/null                       # idempotent: creates the folder once
cortex-budget reset >/dev/null               # a new budget period for this run
cortex-budget set --total "$total" >/dev/null

worker() {
  local name=$1 allocation status used
  # Sleeps until the tokens fit (75: not within a minute; 1: they never can this period).
  allocation=$(cortex-budget allocate --tokens "$tokens_each" --holder "$name" --wait 60s) || {
    status=$?
    echo "$name: allocate failed with exit $status" >&2
    return "$status"
  }
  echo "$name: reserved $tokens_each tokens as $allocation"
  sleep "0.$((RANDOM % 5 + 1))"               # the "work"
  used=$((tokens_each / 4 + RANDOM % (tokens_each / 4)))
  cortex-budget release "$allocation" --used "$used" >/dev/null
  echo "$name: done, used $used"
}

for index in $(seq 1 "$workers"); do
  worker "w-$index" &
done
failed=0
for job in $(jobs -p); do wait "$job" || failed=$((failed + 1)); done

echo
echo "budget after $workers workers ($failed failed):"
if command -v jq >/dev/null; then
  jq -c '{total_budget, allocated, spent, available}' "$CORTEX_DIR/token-budget.json"
else
  cortex-budget status
fi
[ "$failed" -eq 0 ]
