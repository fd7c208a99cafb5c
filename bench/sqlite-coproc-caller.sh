#!/usr/bin/env bash
# One caller for bench/run-session holding one `sqlite3` coprocess (the peer driven as a session):
# the same conditional UPDATE ... RETURNING as bench/sqlite-allocate.sh, one per operation, each
# followed by `.print --` so the caller knows where the answer ends (a refused UPDATE prints no
# row). Starts sqlite3 before the start gate; writes "start end exit-status" per call (exit 0 when
# a row came back, 1 when none).
#
# usage: sqlite-coproc-caller.sh COUNT OUTFILE GATEFILE DB TOKENS
count=$1 out=$2 gate=$3 db=$4 tokens=$5
coproc SQL { sqlite3 -cmd ".timeout 60000" -cmd "PRAGMA synchronous=NORMAL" "$db"; }
sql="UPDATE budget SET allocated = allocated + $tokens, available = available - $tokens WHERE id = 1 AND available >= $tokens RETURNING available;"
flock -s "$gate" true
lines=()
for ((i = 0; i < count; i++)); do
    t0=$EPOCHREALTIME
    printf '%s\n.print --\n' "$sql" >&"${SQL[1]}"
    rc=1
    while IFS= read -r row <&"${SQL[0]}" && [[ $row != -- ]]; do rc=0; done
    t1=$EPOCHREALTIME
    lines+=("$t0 $t1 $rc")
done
eval "exec ${SQL[1]}>&-"
wait
printf '%s\n' "${lines[@]}" >"$out"
