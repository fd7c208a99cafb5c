#!/usr/bin/env bash
# Cortex 1.0's way to allocate tokens, kept as the baseline for bench/run: take an exclusive
# flock on a lock file, read-modify-write token-budget.json with jq, rename the result into
# place. Grants only if the tokens fit. One jq call does both the check and the update (the
# leanest faithful version: fewer process starts than read-then-write with two jq calls).
#
# usage: cortex1-allocate.sh TOKENS [DIR]     (DIR defaults to $CORTEX_DIR, then ./coordination)
#        cortex1-allocate.sh --init TOTAL [DIR]
# exit:  0 granted, 1 budget would be exceeded, 2 usage/other error
set -u
if [[ ${1-} == --init ]]; then
    dir=${3:-${CORTEX_DIR:-./coordination}}
    mkdir -p "$dir" && printf '{"total_budget":%d,"allocated":0,"in_use":0,"available":%d}\n' "$2" "$2" >"$dir/token-budget.json"
    exit
fi
tokens=${1:?usage: cortex1-allocate.sh TOKENS [DIR]}
dir=${2:-${CORTEX_DIR:-./coordination}}
budget=$dir/token-budget.json
exec 9>"$budget.lock" && flock 9 || exit 2
jq -e --argjson t "$tokens" \
    'if .available >= $t then .allocated += $t | .in_use = .allocated | .available -= $t else false end' \
    "$budget" >"$budget.tmp.$$" 2>/dev/null
case $? in
0) mv -f "$budget.tmp.$$" "$budget" ;;
1) rm -f "$budget.tmp.$$"; echo "cortex1-allocate: budget would be exceeded" >&2; exit 1 ;;
*) rm -f "$budget.tmp.$$"; exit 2 ;;
esac
