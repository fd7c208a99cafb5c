#!/usr/bin/env bash
# The bash master of one throughput cell of bench/run-spawn: the queue (DIR) already holds the tasks;
# this starts the workers one way and returns (pools) or returns once every worker is started
# (one process per task). Writes "t0 calls queued failed" to OUTFILE, t0 being $EPOCHREALTIME
# before the first start; the driver times from t0 to the last completion in LOGFILE.
#
#   cortex-pool   cortex-spawn --pool N -- bash spawn-worker.sh loop LOGFILE (ids to OUTFILE.ids)
#   cortex-each   per task: cortex-spawn -- bash spawn-worker.sh once LOGFILE; with max_workers = N in
#                 DIR's config.json Cortex itself holds the rest back (exit 75: queued, started as
#                 workers end)
#   bash-each     per task: bash spawn-worker.sh once LOGFILE &, at most N at once (wait -n)
#   bash-pool     N x bash spawn-worker.sh loop LOGFILE &, then waits (the driver kills this
#                 master's process group when the queue is drained): a pool without supervisors
#
# usage: spawn-master.sh MODE TASKS N DIR LOGFILE OUTFILE  (CORTEX_SPAWN, CORTEX_TASK: the binaries)
mode=$1 tasks=$2 n=$3 dir=$4 log=$5 out=$6
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cs=${CORTEX_SPAWN:-cortex-spawn}
worker=$here/spawn-worker.sh
export CORTEX_DIR=$dir
queued=0 failed=0 calls=0
t0=$EPOCHREALTIME
case $mode in
cortex-pool)
    "$cs" --dir "$dir" --pool "$n" -- bash "$worker" loop "$log" >"$out.ids" || failed=1
    calls=1
    ;;
cortex-each)
    for ((i = 0; i < tasks; i++)); do
        "$cs" --dir "$dir" -- bash "$worker" once "$log" >/dev/null 2>&1
        rc=$?
        ((rc == 75)) && ((queued++))
        ((rc != 0 && rc != 75)) && ((failed++))
        ((calls++))
    done
    ;;
bash-each)
    running=0
    for ((i = 0; i < tasks; i++)); do
        if ((running >= n)); then
            wait -n
            ((running--))
        fi
        bash "$worker" once "$log" &
        ((running++, calls++))
    done
    echo "$t0 $calls $queued $failed" >"$out"
    wait
    exit 0
    ;;
bash-pool)
    for ((i = 0; i < n; i++)); do
        bash "$worker" loop "$log" &
        ((calls++))
    done
    echo "$t0 $calls $queued $failed" >"$out"
    wait
    exit 0
    ;;
esac
echo "$t0 $calls $queued $failed" >"$out"
