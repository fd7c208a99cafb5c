#!/usr/bin/env bash
# The task worker of bench/run-spawn's throughput test: examples/task-worker.sh's loop (claim, then
# complete with the claim token) without its demo parts (jq, the heartbeat subshell, running the
# description with bash -c): ids and tokens are parsed with bash regexes, as in claimer.sh, because a
# jq start (25-40 ms here) would swamp every contender alike. The tasks themselves do nothing.
#
#   loop  a pool member: `claim --wait $IDLE_LIMIT` (sleeps in the kernel until a task exists) in a
#         loop; exits 0 after IDLE_LIMIT without work (default 60s; the benchmark stops the pool first)
#   once  one process per task (Cortex 1.0's way): claim one task without waiting, complete it, exit
#
# After each complete that succeeded it appends $EPOCHREALTIME to LOGFILE (one short O_APPEND write).
# usage: spawn-worker.sh loop|once LOGFILE     (CORTEX_DIR: the folder; CORTEX_TASK: the cortex-task binary)
mode=$1 log=$2
ct=${CORTEX_TASK:-cortex-task}
worker=${CORTEX_WORKER_ID:-p-$$}
wait=()
[[ $mode == loop ]] && wait=(--wait "${IDLE_LIMIT:-60s}")
while true; do
    got=$("$ct" claim --worker "$worker" "${wait[@]}" 2>/dev/null)
    rc=$?
    ((rc == 1 || rc == 75)) && exit 0 # nothing to claim / idle for IDLE_LIMIT
    if ((rc != 0)); then
        echo "$worker: claim failed (exit $rc)" >&2
        exit "$rc"
    fi
    [[ $got =~ \"id\":\"([^\"]+)\" ]] && id=${BASH_REMATCH[1]}
    [[ $got =~ \"claim\":([0-9]+) ]] && token=${BASH_REMATCH[1]}
    if "$ct" complete "$id" --claim "$token" >/dev/null 2>&1; then
        echo "$EPOCHREALTIME" >>"$log"
    else
        echo "$worker: complete $id failed" >&2
    fi
    [[ $mode == once ]] && exit 0
done
