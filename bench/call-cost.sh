#!/usr/bin/env bash
# Per-call cost for bench/run-tasks: PAIRS rounds; each round does one pair of calls in every
# folder in turn (interleaved, so a load change hits all folders alike). One line per pair:
# "folder first_start first_end second_end first_rc second_rc".
#   claim     `cortex-task claim` + `complete` (CORTEX_TASK: the cortex-task binary)
#   allocate  `cortex-budget allocate` + `release` (CORTEX_BUDGET: the cortex-budget binary); the
#             release keeps the number outstanding the same
#
# usage: call-cost.sh claim|allocate PAIRS OUTFILE DIR...
mode=$1 pairs=$2 out=$3
shift 3
ct=${CORTEX_TASK:-cortex-task}
cb=${CORTEX_BUDGET:-cortex-budget}
first() {
    case $mode in
    claim) got=$("$ct" claim --worker w --dir "$1" 2>/dev/null) ;;
    *) got=$("$cb" allocate --tokens 1 --holder bench --dir "$1" 2>/dev/null) ;;
    esac
}
second() {
    case $mode in
    claim)
        [[ $got =~ \"id\":\"([^\"]+)\" ]] && id=${BASH_REMATCH[1]}
        [[ $got =~ \"claim\":([0-9]+) ]] && token=${BASH_REMATCH[1]}
        "$ct" complete "$id" --claim "$token" --dir "$1" >/dev/null 2>&1
        ;;
    *) "$cb" release "$got" --used 1 --dir "$1" >/dev/null 2>&1 ;;
    esac
}
lines=()
for ((i = 0; i < pairs; i++)); do
    for d in "$@"; do
        t0=$EPOCHREALTIME
        first "$d"
        rc=$?
        t1=$EPOCHREALTIME
        second "$d"
        rc2=$?
        t2=$EPOCHREALTIME
        lines+=("$d $t0 $t1 $t2 $rc $rc2")
    done
done
printf '%s\n' "${lines[@]}" >"$out"
