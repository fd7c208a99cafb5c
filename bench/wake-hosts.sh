#!/usr/bin/env bash
# Wake latency across hosts for bench/run-etcd, the contenders interleaved trial by trial (a load
# change hits them alike). A `cortex-task claim --wait 30s` is started on one folder and given 0.3 s
# to arm its watch (inotify on a file folder, an etcd watch on an etcd folder); then
# `cortex-task create` is issued on another folder of the same journal (for etcd: host A creates,
# host B waits; for the file backend both sides use the one folder, as in bench/wake.sh).
# Per trial and contender one line: "contender issue_start issue_end woke" ($EPOCHREALTIME seconds;
# woke = the moment the waiting claim process exited, stamped by the subshell that ran it).
#
# usage: wake-hosts.sh TRIALS OUTFILE WORKDIR NAME:CREATE_DIR:CLAIM_DIR...   (CORTEX_TASK: the binary)
trials=$1 out=$2 work=$3
shift 3
ct=${CORTEX_TASK:-cortex-task}
lines=()
for ((i = 0; i < trials; i++)); do
    for spec in "$@"; do
        IFS=: read -r name create_dir claim_dir <<<"$spec"
        rm -f "$work/woke"
        { "$ct" claim --worker w --wait 30s --dir "$claim_dir" >/dev/null 2>&1; echo "$EPOCHREALTIME" >"$work/woke"; } &
        pid=$!
        sleep 0.3
        t0=$EPOCHREALTIME
        "$ct" create --type bench --dir "$create_dir" >/dev/null
        t1=$EPOCHREALTIME
        wait "$pid"
        read -r t2 <"$work/woke" || t2=nan
        lines+=("$name $t0 $t1 $t2")
    done
done
printf '%s\n' "${lines[@]}" >"$out"
