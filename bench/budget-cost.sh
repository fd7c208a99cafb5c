#!/usr/bin/env bash
# Allocate cost vs outstanding allocations, for bench/run-tasks: PAIRS rounds; each round does one
# `cortex-budget allocate` + `release` in every folder in turn (interleaved, so a load change hits
# all folders alike; the release keeps the number outstanding the same). One line per pair:
# "folder allocate_start allocate_end release_end allocate_rc release_rc".
#
# usage: budget-cost.sh PAIRS OUTFILE DIR...     (CORTEX_BUDGET: the cortex-budget binary)
pairs=$1 out=$2
shift 2
cb=${CORTEX_BUDGET:-cortex-budget}
lines=()
for ((i = 0; i < pairs; i++)); do
    for d in "$@"; do
        t0=$EPOCHREALTIME
        id=$("$cb" allocate --tokens 1 --holder bench --dir "$d" 2>/dev/null)
        rc=$?
        t1=$EPOCHREALTIME
        "$cb" release "$id" --used 1 --dir "$d" >/dev/null 2>&1
        rc2=$?
        t2=$EPOCHREALTIME
        lines+=("$d $t0 $t1 $t2 $rc $rc2")
    done
done
printf '%s\n' "${lines[@]}" >"$out"
