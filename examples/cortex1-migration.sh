#!/usr/bin/env bash
# A Cortex 1.0 master, rewritten line by line. Each "# 1.0:" comment is the old code (flock on a
# lock file, a jq read-modify-write of the shared JSON file, mv into place); the line right under
# it is the one Cortex 2 call that replaces it. No lock files, no temp files, no `mv`: every call
# is one journal append and the views are rewritten for you. The views keep the file names and
# most of 1.0's fields; what a 1.0 read-only jq line meets that changed, exactly:
#   jq .available / .allocated / .total_budget token-budget.json   unchanged
#   jq .done task-queue.json                                       unchanged (also .counts.done)
#   jq '.running | length' task-queue.json                         unchanged
#   jq '.running[$id]' task-queue.json  (1.0: an object by task id) now an array of
#       {id, worker, claim, claimed_at}:  jq --arg id "$id" '.running[] | select(.id == $id)'
#   jq '.pending | length' task-queue.json  lists at most the next 100 waiting tasks (claim
#       order); the count of all waiting ones:  jq '.counts.pending + .counts.failed'
#
#   CORTEX_DIR=/tmp/migrated examples/cortex1-migration.sh [TASKS]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tasks=${1:-6}
# 1.0: DIR=./coordination
export CORTEX_DIR=${CORTEX_DIR:-./coordination}
DIR=$CORTEX_DIR

# --- setting up ------------------------------------------------------------------------------
# 1.0: mkdir -p "$DIR" && echo '{"total_budget":500000,"allocated":0,"in_use":0,"available":500000}' >"$DIR/token-budget.json"
# 1.0: echo '{"pending":[],"running":{},"done":0}' >"$DIR/task-queue.json"
cortex init --total-tokens 500000 --max-workers 4 >/dev/null

# --- the budget ------------------------------------------------------------------------------
# 1.0: exec 9>"$DIR/token-budget.json.lock"; flock 9
# 1.0: jq -e --argjson t 20000 'if .available >= $t then .allocated += $t | .in_use = .allocated | .available -= $t
# 1.0:   else false end' "$DIR/token-budget.json" >"$DIR/tmp.$$" && mv "$DIR/tmp.$$" "$DIR/token-budget.json" || echo over
# 1.0: flock -u 9
allocation=$(cortex-budget allocate --tokens 20000 --holder master) || { echo "over budget: try later" >&2; exit 1; }

# 1.0: jq .available "$DIR/token-budget.json"                      (unchanged: same file, same field)
jq .available "$DIR/token-budget.json"

# --- enqueueing ------------------------------------------------------------------------------
for i in $(seq "$tasks"); do
  # 1.0: exec 8>"$DIR/task-queue.json.lock"; flock 8
  # 1.0: jq --arg id "task-$i" --arg d "sleep 0.1; echo $i" '.pending += [{id: $id, type: "demo", priority: "medium", description: $d}]' \
  # 1.0:   "$DIR/task-queue.json" >"$DIR/tmp.$$" && mv "$DIR/tmp.$$" "$DIR/task-queue.json"; flock -u 8
  cortex-task create --type demo --description "sleep 0.1; echo $i" --key "migration-$i" >/dev/null
done

# 1.0: jq '.pending | length' "$DIR/task-queue.json"               (the same up to 100 waiting: the list stops there)
jq '.pending | length' "$DIR/task-queue.json"

# --- workers ---------------------------------------------------------------------------------
# 1.0: for n in 1 2; do nohup ./worker.sh "w-$n" >"logs/w-$n.log" 2>&1 & echo $! >>"$DIR/pids"; done
# (Supervised: own session, bounded logs in workers/<id>/, restarted if they die, heartbeat kept.)
# (--name makes it one unit: replacements of lost members keep the name, so `cortex pool stop`
# below reaches them too, which a loop over the ids printed here would not.)
IDLE_LIMIT=20s cortex-spawn --pool 2 --name migration --type demo -- bash "$here/task-worker.sh" >/dev/null || [ $? -eq 75 ]

# A 1.0 worker's loop body, for reference (examples/task-worker.sh is the 2.0 one):
# 1.0: flock 8; id=$(jq -r '.pending[0].id // empty' "$DIR/task-queue.json")
# 1.0: jq --arg id "$id" --arg w "$W" '.running[$id] = {worker: $w} | .pending |= .[1:]' ... && mv ...; flock -u 8
#      task=$(cortex-task claim --worker "$W" --type demo --wait 5m)       # + a fencing token: .claim
# 1.0: flock 8; jq --arg id "$id" 'del(.running[$id]) | .done += 1' ... && mv ...; flock -u 8
#      cortex-task complete "$id" --claim "$claim" --result '{"ok":true}'  # refused if the lease was lost

# 1.0: while [ "$(jq '(.pending | length) + (.running | length)' "$DIR/task-queue.json")" -gt 0 ]; do sleep 1; done
#      cortex-task wait --all --timeout 5m     # sleeps on the journal: 0 all done, 1 some died, 75 time up
# (While spawns wait for room, as on a loaded machine, the reaper starts them once they fit:
# without its cron line or service, run it meanwhile as one: --every D reaps every D until SIGTERM.)
cortex-reap --every 2s >/dev/null 2>&1 &
reaper=$!
drained=0
cortex-task wait --all --timeout "${DRAIN_TIMEOUT:-300}s" || drained=$?
kill "$reaper" 2>/dev/null || true
[ "$drained" -eq 0 ] || { echo "the queue did not drain (cortex-task wait: $drained): see 'cortex worker list'" >&2; exit "$drained"; }

# --- the reaper ------------------------------------------------------------------------------
# 1.0: (cron) for pid in $(cat "$DIR/pids"); do kill -0 "$pid" || requeue-with-jq "$pid"; done
cortex-reap >/dev/null

# --- releasing -------------------------------------------------------------------------------
# 1.0: flock 9; jq --argjson t 20000 '.allocated -= $t | .in_use = .allocated | .available += $t' ... && mv ...; flock -u 9
cortex-budget release "$allocation" --used 12000 >/dev/null   # 12000 spent, 8000 back in the pool

# 1.0: for pid in $(cat "$DIR/pids"); do kill "$pid"; done
cortex pool stop migration --wait 30s >/dev/null   # every member and replacement; none restarted

# 1.0: jq .done "$DIR/task-queue.json"                              (unchanged)
jq .done "$DIR/task-queue.json"
