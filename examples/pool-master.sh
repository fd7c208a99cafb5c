#!/usr/bin/env bash
# A master that spawns a pool of supervised workers and feeds it tasks. The pool
# members are persistent: each runs examples/task-worker.sh, which claims tasks
# (sleeping in the kernel until one exists) for as long as there is work; its
# supervisor restarts it if it dies, keeps its heartbeat fresh and bounds its logs.
#
#   CORTEX_DIR=./coordination examples/pool-master.sh [WORKERS] [TASKS]
set -euo pipefail
export CORTEX_DIR=${CORTEX_DIR:-./coordination}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
workers=${1:-4}
tasks=${2:-20}

cortex init >/dev/null
# Feasibility is checked before anything starts: pool capacity (max_workers), CPU, memory and
# tokens. What does not fit now is queued (exit 75) and starts when a place frees.
# Named, so one command reaches every member, replacements of lost ones included.
pool=$(IDLE_LIMIT=30s cortex-spawn --pool "$workers" --name demo-pool --type demo -- bash "$here/task-worker.sh") || [ $? -eq 75 ]
echo "pool demo-pool: $(echo $pool)"

for i in $(seq "$tasks"); do
  cortex-task create --type demo --description "sleep 0.$((RANDOM % 4)); echo item $i" >/dev/null
done

# Wait until the queue is drained (the view is rewritten by every command that changes it).
# Spawns queued for room (exit 75: a loaded machine, a full pool) start when a worker ends or
# when the reaper sees they fit: on a machine without the reaper's cron line, be the cron.
deadline=$((SECONDS + ${DRAIN_TIMEOUT:-300})) next_reap=$SECONDS
until jq -e '(.counts.pending // 0) + (.counts.running // 0) + (.counts.failed // 0) == 0' \
  "$CORTEX_DIR/task-queue.json" >/dev/null; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "pool-master: the queue did not drain in time; see 'cortex worker list' and 'cortex status'" >&2
    exit 75
  fi
  if [ "$SECONDS" -ge "$next_reap" ] && jq -e '.queued | length > 0' "$CORTEX_DIR/worker-pool.json" >/dev/null; then
    cortex-reap >/dev/null
    next_reap=$((SECONDS + 2))
  fi
  sleep 0.2
done
cortex status

# Drain the pool: every member (and any replacement the reaper started) gets SIGTERM through
# its supervisor and is not restarted.
cortex pool stop demo-pool >/dev/null
