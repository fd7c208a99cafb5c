#!/usr/bin/env bash
# A worker loop: claim a task (sleeping in the kernel until one exists, no
# polling), keep its lease alive with heartbeats while it runs, then complete
# or fail it. The claim token fences the worker: if the reaper declared it lost
# and the task went to someone else, its late complete/fail is refused (exit 1)
# and cannot overwrite the successor's work.
#
#   CORTEX_DIR=./coordination examples/task-worker.sh WORKER_ID [TYPE ...]
#   cortex-spawn --pool 4 -- examples/task-worker.sh     # under supervision: the id is $CORTEX_WORKER_ID
#
# Each task's description is run as a bash command (a demo convention).
set -uo pipefail
worker=${1:-${CORTEX_WORKER_ID:-}}
[ -n "$worker" ] || { echo "usage: task-worker.sh WORKER_ID [TYPE ...] (or run it under cortex-spawn)" >&2; exit 64; }
[ $# -gt 0 ] && shift
type_flags=()
for type in "$@"; do type_flags+=(--type "$type"); done
idle_limit=${IDLE_LIMIT:-10s}   # exit after this long without work

while true; do
  task_json=$(cortex-task claim --worker "$worker" "${type_flags[@]}" --wait "$idle_limit" 2>/dev/null)
  status=$?
  if [ "$status" -eq 75 ]; then echo "$worker: idle for $idle_limit, exiting"; exit 0; fi
  if [ "$status" -ne 0 ]; then echo "$worker: claim failed (exit $status)" >&2; exit "$status"; fi

  task=$(jq -r .id <<<"$task_json")
  claim=$(jq -r .claim <<<"$task_json")
  command=$(jq -r '.description // "true"' <<<"$task_json")

  # Heartbeat while the work runs; stop when the lease is lost.
  (while sleep 5; do cortex-task heartbeat "$task" --claim "$claim" 2>/dev/null || exit; done) &
  heartbeat_pid=$!

  output=$(bash -c "$command" 2>&1)
  exit_code=$?
  kill "$heartbeat_pid" 2>/dev/null
  wait "$heartbeat_pid" 2>/dev/null

  if [ "$exit_code" -eq 0 ]; then
    result=$(jq -cn --arg output "$output" '{output: $output}')
    cortex-task complete "$task" --claim "$claim" --result "$result" >/dev/null
  else
    cortex-task fail "$task" --claim "$claim" --error "exit $exit_code: ${output:0:200}"
  fi
  status=$?
  case $status in
    0) echo "$worker: $task finished" ;;
    1) echo "$worker: $task was taken from us (stale claim $claim)" ;;
    # Killed or broken: we cannot know whether the task was recorded. Exit: the supervisor's
    # exit record (or, unsupervised, the reaper once our heartbeat is stale) gives it back.
    *) echo "$worker: finishing $task failed (exit $status), exiting" >&2; exit "$status" ;;
  esac
done
