#!/usr/bin/env bash
# One caller for bench/run-session holding a `cortex session` coprocess (bin/cortex-session.bash):
# starts its session before the start gate (bench/caller.sh's shared flock), then runs
# `cx -v id budget allocate --tokens TOKENS` COUNT times (the id kept in a variable, as a master
# would, with no subshell) and writes "start end exit-status" per call. With RELEASE=1 each
# iteration is two timed calls: the allocate, then `cx budget release ID` (a steady state).
#
# usage: CX_CORTEX=PATH session-caller.sh COUNT OUTFILE GATEFILE DIR TOKENS
count=$1 out=$2 gate=$3 dir=$4 tokens=$5
source "$(dirname "${BASH_SOURCE[0]}")/../bin/cortex-session.bash"
cortex_session_start --dir "$dir" || exit 74
flock -s "$gate" true
lines=()
for ((i = 0; i < count; i++)); do
    t0=$EPOCHREALTIME
    cx -v id budget allocate --tokens "$tokens" 2>/dev/null
    rc=$?
    t1=$EPOCHREALTIME
    lines+=("$t0 $t1 $rc")
    if [[ -n ${RELEASE-} ]]; then
        t0=$EPOCHREALTIME
        cx budget release "$id" >/dev/null 2>&1
        rc=$?
        t1=$EPOCHREALTIME
        lines+=("$t0 $t1 $rc")
    fi
done
cortex_session_stop
printf '%s\n' "${lines[@]}" >"$out"
