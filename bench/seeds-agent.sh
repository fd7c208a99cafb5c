#!/usr/bin/env bash
# One agent of bench/run-seeds (the seeds' table, issue 17): a pool member started by
# `cortex-spawn --pool 100 --restart always`, looping over the tasks of the queue:
#
#   claim (--wait: sleeps in the kernel while the queue is empty)
#   allocate 1000 tokens (--holder: the worker; the allocation belongs to this run)
#   work: the task's description is its duration in seconds (0.3-0.9), slept with bash's read -t on a
#         FIFO nobody writes to (a builtin: no sleep process, so every process the agent starts is a
#         Cortex call)
#   release with the tokens used (100-999, random)
#   5% of attempts are flaky: fail (the queue retries the task, backoff 0); the others complete
#
# MODE process: one process per call (cortex-task claim --wait, cortex-budget allocate/release,
#               cortex-task complete/fail)
# MODE session: the same requests through one `cortex session` this agent keeps
#               (bin/cortex-session.bash: cx task claim …, cx budget allocate …)
#
# One log per agent process (LOGDIR/<worker>.<pid>.log, appended line by line, so a kill -9 loses at
# most the line being written):
#   claim T0 T1 TASK          a claim that returned a task, $EPOCHREALTIME before and after
#   alloc T0 T1 RC ALLOC
#   work T0 T1                the simulated work
#   release-sent ALLOC USED   just before the release: a kill -9 may come while it is in flight
#   release T0 T1 RC USED ALLOC   USED counts as acknowledged only when RC is 0
#   complete|fail T0 T1 RC TASK
#   err WHAT RC               a call that ended otherwise than the loop expects (the agent exits 3;
#                             its supervisor restarts it)
#   times 0mU.UUUs 0mS.SSSs   after each task: bash's `times` (the shell's own CPU, then a line with
#                             its waited children's)
#
# usage: seeds-agent.sh process|session LOGDIR FIFO
#   (CORTEX_DIR, CORTEX_WORKER_ID: from cortex-spawn; SEEDS_BIN: the tools' folder)
mode=$1 logdir=$2 fifo=$3
me=${CORTEX_WORKER_ID:?not started by cortex-spawn}
bin=${SEEDS_BIN:?}
log=$logdir/$me.$$.log
exec {logfd}>>"$log"
exec {sleepfd}<>"$fifo" # O_RDWR on a FIFO: never EOF, so read -t sleeps its full timeout

if [[ $mode == session ]]; then
    export CX_CORTEX=$bin/cortex
    # shellcheck source=../bin/cortex-session.bash
    source "$(dirname "${BASH_SOURCE[0]}")/../bin/cortex-session.bash"
    cortex_session_start --dir "$CORTEX_DIR" || {
        echo "err session-start 74" >&$logfd
        exit 3
    }
    claim() { cx -v got task claim --worker "$me" --wait 60s 2>/dev/null; }
    allocate() { cx -v alloc budget allocate --tokens 1000 --holder "$me" 2>/dev/null; }
    release() { cx budget release "$alloc" --used "$used" >/dev/null 2>&1; }
    complete() { cx task complete "$task" --claim "$token" >/dev/null 2>&1; }
    fail() { cx task fail "$task" --claim "$token" --error flaky >/dev/null 2>&1; }
else
    ct=$bin/cortex-task cb=$bin/cortex-budget
    claim() { got=$("$ct" claim --worker "$me" --wait 60s 2>/dev/null); }
    allocate() { alloc=$("$cb" allocate --tokens 1000 --holder "$me" 2>/dev/null); }
    release() { "$cb" release "$alloc" --used "$used" >/dev/null 2>&1; }
    complete() { "$ct" complete "$task" --claim "$token" >/dev/null 2>&1; }
    fail() { "$ct" fail "$task" --claim "$token" --error flaky >/dev/null 2>&1; }
fi

# bash's `times` (builtin, no fork): "times 0mU.UUUs 0mS.SSSs" (the shell), then a line of its waited
# children's user and system time.
cpu_times() {
    printf 'times ' >&$logfd
    times >&$logfd
}

while true; do
    t0=$EPOCHREALTIME
    claim
    rc=$?
    t1=$EPOCHREALTIME
    ((rc == 1 || rc == 75)) && continue # nothing to claim within the wait
    if ((rc != 0)); then
        echo "err claim $rc" >&$logfd
        exit 3
    fi
    [[ $got =~ \"id\":\"([^\"]+)\" ]] && task=${BASH_REMATCH[1]}
    [[ $got =~ \"claim\":([0-9]+) ]] && token=${BASH_REMATCH[1]}
    [[ $got =~ \"description\":\"([0-9.]+)\" ]] && duration=${BASH_REMATCH[1]}
    echo "claim $t0 $t1 $task" >&$logfd

    t0=$EPOCHREALTIME
    allocate
    rc=$?
    t1=$EPOCHREALTIME
    echo "alloc $t0 $t1 $rc $alloc" >&$logfd

    t0=$EPOCHREALTIME
    read -r -t "$duration" -u "$sleepfd"
    t1=$EPOCHREALTIME
    echo "work $t0 $t1" >&$logfd

    used=$((100 + RANDOM % 900))
    if [[ $rc == 0 ]]; then
        echo "release-sent $alloc $used" >&$logfd
        t0=$EPOCHREALTIME
        release
        rc=$?
        t1=$EPOCHREALTIME
        echo "release $t0 $t1 $rc $used $alloc" >&$logfd
    fi

    t0=$EPOCHREALTIME
    if ((RANDOM % 20 == 0)); then
        fail
        rc=$?
        verb=fail
    else
        complete
        rc=$?
        verb=complete
    fi
    t1=$EPOCHREALTIME
    echo "$verb $t0 $t1 $rc $task" >&$logfd
    cpu_times
done
