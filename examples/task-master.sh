#!/usr/bin/env bash
# A master that enqueues work and runs a few workers to drain it.
#
#   CORTEX_DIR=/tmp/demo examples/task-master.sh [TASKS] [WORKERS]
set -euo pipefail
tasks=${1:-20}
workers=${2:-4}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export CORTEX_DIR=${CORTEX_DIR:-./coordination}
cortex init >/dev/null

# Enqueue: critical first in claim order, then FIFO within a priority. The same
# --key twice gives the same task id, so re-running the master adds nothing twice.
run=$(date +%s)
for index in $(seq 1 "$tasks"); do
  priority=medium
  [ $((index % 5)) -eq 0 ] && priority=high
  cortex-task create --type demo --priority "$priority" --key "demo-$run-$index" \
    --description "sleep 0.$((RANDOM % 3)); echo task $index" >/dev/null
done
# One task that always fails: retried with backoff, then dead-lettered.
cortex-task create --type demo --max-attempts 2 --backoff 1s --description "exit 3" >/dev/null

for index in $(seq 1 "$workers"); do
  IDLE_LIMIT=3s "$here/task-worker.sh" "w-$index" demo &
done
# Block until the queue is drained (no polling: it sleeps on the journal). Exit 1 names the
# tasks that died on stderr: here the poisoned one, expected.
cortex-task wait --all --timeout 5m || [ $? -eq 1 ]
wait   # the workers end once they have been idle for IDLE_LIMIT

echo
jq -c .counts "$CORTEX_DIR/task-queue.json"
cortex-task list --status dead
