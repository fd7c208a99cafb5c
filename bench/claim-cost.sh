#!/usr/bin/env bash
# Claim cost vs finished work, for bench/run-tasks: PAIRS rounds; each round does one
# `cortex-task claim` + `complete` in every folder in turn (interleaved, so a load change hits
# all folders alike). One line per call pair: "folder claim_start claim_end complete_end claim_rc complete_rc".
#
# usage: claim-cost.sh PAIRS OUTFILE DIR...     (CORTEX_TASK: the cortex-task binary)
pairs=$1 out=$2
shift 2
ct=${CORTEX_TASK:-cortex-task}
lines=()
for ((i = 0; i < pairs; i++)); do
    for d in "$@"; do
        t0=$EPOCHREALTIME
        got=$("$ct" claim --worker w --dir "$d" 2>/dev/null)
        rc=$?
        t1=$EPOCHREALTIME
        [[ $got =~ \"id\":\"([^\"]+)\" ]] && id=${BASH_REMATCH[1]}
        [[ $got =~ \"claim\":([0-9]+) ]] && token=${BASH_REMATCH[1]}
        "$ct" complete "$id" --claim "$token" --dir "$d" >/dev/null 2>&1
        rc2=$?
        t2=$EPOCHREALTIME
        lines+=("$d $t0 $t1 $t2 $rc $rc2")
    done
done
printf '%s\n' "${lines[@]}" >"$out"
