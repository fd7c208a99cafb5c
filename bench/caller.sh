#!/usr/bin/env bash
# One benchmark caller for bench/run: waits at the start gate (a shared flock that bench/run
# holds exclusively until every caller is started), then runs CMD COUNT times in a loop and
# writes one line per call: "start end exit-status" (EPOCHREALTIME seconds). The lines are kept
# in memory and written at the end, so the log adds no I/O between calls.
#
# With CALLER_RELEASE set (a command line, e.g. "cortex-budget release --dir D"), each iteration
# is two timed calls: CMD, whose stdout (an allocation id) is captured, then CALLER_RELEASE ID.
#
# usage: caller.sh COUNT OUTFILE GATEFILE CMD [ARG...]
count=$1 out=$2 gate=$3
shift 3
flock -s "$gate" true
lines=()
if [[ -n ${CALLER_RELEASE-} ]]; then
    read -r -a release <<<"$CALLER_RELEASE"
    for ((i = 0; i < count; i++)); do
        t0=$EPOCHREALTIME
        id=$("$@" 2>/dev/null)
        rc=$?
        t1=$EPOCHREALTIME
        lines+=("$t0 $t1 $rc")
        t0=$EPOCHREALTIME
        "${release[@]}" "$id" >/dev/null 2>&1
        rc=$?
        t1=$EPOCHREALTIME
        lines+=("$t0 $t1 $rc")
    done
else
    for ((i = 0; i < count; i++)); do
        t0=$EPOCHREALTIME
        "$@" >/dev/null 2>&1
        rc=$?
        t1=$EPOCHREALTIME
        lines+=("$t0 $t1 $rc")
    done
fi
printf '%s\n' "${lines[@]}" >"$out"
