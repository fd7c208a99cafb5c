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

# Wait until the queue is drained: `cortex-task wait` sleeps on the journal (no polling) and
# exits 0 when every task is done, 1 naming any that died, 75 when the time is up.
# Spawns queued for room (exit 75: a loaded machine, a full pool) start when a worker ends or
# when the reaper sees they fit: on a machine without the reaper's cron line or service, run it
# as one meanwhile (--every D: reap every D until SIGTERM).
cortex-reap --every 2s >/dev/null 2>&1 &
reaper=$!
status=0
cortex-task wait --all --timeout "${DRAIN_TIMEOUT:-300}s" || status=$?
kill "$reaper" 2>/dev/null || true
if [ "$status" -eq 75 ]; then
  echo "pool-master: the queue did not drain in time; see 'cortex worker list' and 'cortex status'" >&2
  exit 75
fi
cortex status

# Drain the pool: every member (and any replacement the reaper started) gets SIGTERM through
# its supervisor and is not restarted. --wait returns once every member has ended (and
# worker-pool.json says so), so a script that runs next never sees the pool half stopped.
cortex pool stop demo-pool --wait 30s >/dev/null
