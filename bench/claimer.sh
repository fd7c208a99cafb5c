#!/usr/bin/env bash
# One claimer for bench/run-tasks: waits at the start gate (a shared flock that the driver holds
# until every claimer is started), then loops "claim a task, complete it" until a claim says
# there is nothing left (exit 1, or no row), timing each call with $EPOCHREALTIME. Ids and claim
# tokens are taken from the claim's output with bash regexes, not jq (a jq start costs 25-40 ms
# here and would swamp every contender alike).
#
# Writes one line per claim: "claim_start claim_end complete_start complete_end claim_rc complete_rc";
# the final empty claim is written as "start end - - 1 -".
#
# usage: claimer.sh MODE OUTFILE GATEFILE DIR WORKER
#   MODE cortex:  $CORTEX_TASK claim --worker W --dir DIR  /  complete ID --claim C --dir DIR
#   MODE cortex1: bench/cortex1-task.sh claim W DIR        /  complete ID DIR   (flock + jq)
#   MODE sqlite:  one sqlite3 process per claim and per complete on DIR/queue.db (see sqlite-task.sh)
mode=$1 out=$2 gate=$3 dir=$4 worker=$5
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ct=${CORTEX_TASK:-cortex-task}
db=$dir/queue.db
sq=(sqlite3 -cmd ".timeout 60000" -cmd "PRAGMA synchronous=NORMAL" "$db")
flock -s "$gate" true
lines=()
errors=0
while ((errors < 50)); do
    t0=$EPOCHREALTIME
    case $mode in
    cortex) got=$("$ct" claim --worker "$worker" --dir "$dir" 2>/dev/null) ;;
    cortex1) got=$(/bin/bash "$here/cortex1-task.sh" claim "$worker" "$dir" 2>/dev/null) ;;
    sqlite)
        got=$("${sq[@]}" "UPDATE tasks SET status = 'running', worker = '$worker', claim = claim + 1
            WHERE id = (SELECT id FROM tasks WHERE status = 'pending' ORDER BY priority, id LIMIT 1)
            RETURNING id, claim;" 2>/dev/null)
        ;;
    esac
    rc=$?
    t1=$EPOCHREALTIME
    if [[ $mode == sqlite && $rc == 0 && -z $got ]]; then rc=1; fi
    if ((rc == 1)); then
        lines+=("$t0 $t1 - - 1 -")
        break
    elif ((rc != 0)); then
        lines+=("$t0 $t1 - - $rc -")
        ((errors++))
        continue
    fi
    case $mode in
    cortex)
        [[ $got =~ \"id\":\"([^\"]+)\" ]] && id=${BASH_REMATCH[1]}
        [[ $got =~ \"claim\":([0-9]+) ]] && token=${BASH_REMATCH[1]}
        ;;
    cortex1) id=$got token=- ;;
    sqlite) id=${got%%|*} token=${got#*|} ;;
    esac
    t2=$EPOCHREALTIME
    case $mode in
    cortex) "$ct" complete "$id" --claim "$token" --dir "$dir" >/dev/null 2>&1 ;;
    cortex1) /bin/bash "$here/cortex1-task.sh" complete "$id" "$dir" >/dev/null 2>&1 ;;
    sqlite)
        done=$("${sq[@]}" "UPDATE tasks SET status = 'done' WHERE id = $id AND claim = $token AND status = 'running'
            RETURNING id;" 2>/dev/null)
        [[ $done == "$id" ]]
        ;;
    esac
    rc2=$?
    t3=$EPOCHREALTIME
    lines+=("$t0 $t1 $t2 $t3 0 $rc2")
done
printf '%s\n' "${lines[@]}" >"$out"
