#!/usr/bin/env bash
# Cortex 1.0's way to run a task queue, kept as the baseline for bench/run-tasks: an exclusive
# flock on task-queue.json.lock, one jq read-modify-write of task-queue.json, the result renamed
# into place. The leanest faithful version: one jq per call does both the check and the update
# (claim prints the popped id on its first output line and the new file on the second).
#
#   task-queue.json: {"pending":[{"id","type","priority"},...], "running":{"ID":{"worker"}}, "done":N}
#
# usage: cortex1-task.sh --init N DIR        N pending tasks task-1..task-N
#        cortex1-task.sh claim WORKER DIR    prints the task id; exit 1 when nothing is pending
#        cortex1-task.sh complete ID DIR     exit 1 when ID is not running
set -u
cmd=${1:?usage: cortex1-task.sh --init N DIR | claim WORKER DIR | complete ID DIR}
dir=${3:?missing DIR}
queue=$dir/task-queue.json
if [[ $cmd == --init ]]; then
    mkdir -p "$dir" && jq -nc --argjson n "$2" \
        '{pending: [range(1; $n + 1) | {id: "task-\(.)", type: "bench", priority: "medium"}], running: {}, done: 0}' >"$queue"
    exit
fi
exec 9>"$queue.lock" && flock 9 || exit 2
case $cmd in
claim)
    out=$(jq -rc --arg w "$2" \
        'if (.pending | length) > 0 then .pending[0].id as $id | $id, (.running[$id] = {worker: $w} | .pending |= .[1:])
         else empty end' "$queue") || exit 2
    [[ -n $out ]] || exit 1
    printf '%s\n' "${out#*$'\n'}" >"$queue.tmp.$$" && mv -f "$queue.tmp.$$" "$queue" || exit 2
    printf '%s\n' "${out%%$'\n'*}"
    ;;
complete)
    jq -ec --arg id "$2" 'if .running[$id] then del(.running[$id]) | .done += 1 else false end' \
        "$queue" >"$queue.tmp.$$" 2>/dev/null
    case $? in
    0) mv -f "$queue.tmp.$$" "$queue" ;;
    1) rm -f "$queue.tmp.$$"; exit 1 ;;
    *) rm -f "$queue.tmp.$$"; exit 2 ;;
    esac
    ;;
*) exit 2 ;;
esac
