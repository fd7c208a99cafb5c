#!/usr/bin/env bash
# Wake latency for bench/run-tasks, the contenders interleaved trial by trial (a load change hits
# them alike). Per trial and contender one line: "contender issue_start issue_end woke" ($EPOCHREALTIME
# seconds; woke is when the waiting side returned or the job started).
#
#   cortex  a `cortex-task claim --wait 30s` is started and given 0.3 s to arm its waiter (the
#           journal's doorbell, docs/decisions/039-wake.md); then `cortex-task create` is issued;
#           woke = the moment the waiting claim process exited (stamped by the subshell that ran
#           it, right after reaping it).
#   baseline  the same with another build's cortex and cortex-task (CORTEX_BASE_BIN, e.g. one from
#           before the doorbell, whose waiter is an inotify watch) in a folder of its own.
#   tsp     `tsp -n STAMP FILE` to a private task-spooler server (TS_SOCKET); woke = the job's own
#           first instruction (STAMP, a static C program, writes CLOCK_REALTIME to FILE).
#   nq      `nq -q STAMP FILE` into a private NQDIR; woke as for tsp.
#
# usage: wake.sh TRIALS OUTFILE WORKDIR STAMP CONTENDER...     (CORTEX_TASK: the cortex-task binary;
#        WORKDIR/cortex must be an initialised coordination folder with no pending task; for
#        baseline, WORKDIR/baseline one initialised by CORTEX_BASE_BIN/cortex)
trials=$1 out=$2 work=$3 stamp=$4
shift 4
ct=${CORTEX_TASK:-cortex-task}
export TS_SOCKET=$work/tsp.sock NQDIR=$work/nq TMPDIR=$work
mkdir -p "$NQDIR"
lines=()
for c in "$@"; do  # warm-up, untimed: starts the tsp server, creates the folders
    case $c in
    tsp) tsp -n "$stamp" "$work/warm" >/dev/null && tsp -w >/dev/null 2>&1 ;;
    nq) nq -q "$stamp" "$work/warm" && nq -w ;;
    esac
done
for ((i = 0; i < trials; i++)); do
    for c in "$@"; do
        rm -f "$work/woke"
        case $c in
        cortex | baseline)
            if [ "$c" = cortex ]; then bin=$ct folder=$work/cortex; else bin=$CORTEX_BASE_BIN/cortex-task folder=$work/baseline; fi
            { "$bin" claim --worker w --wait 30s --dir "$folder" >/dev/null 2>&1; echo "$EPOCHREALTIME" >"$work/woke"; } &
            pid=$!
            sleep 0.3
            t0=$EPOCHREALTIME
            "$bin" create --type bench --dir "$folder" >/dev/null
            t1=$EPOCHREALTIME
            wait "$pid"
            ;;
        tsp)
            sleep 0.05
            t0=$EPOCHREALTIME
            tsp -n "$stamp" "$work/woke" >/dev/null
            t1=$EPOCHREALTIME
            tsp -w >/dev/null 2>&1
            ;;
        nq)
            sleep 0.05
            t0=$EPOCHREALTIME
            nq -q "$stamp" "$work/woke"
            t1=$EPOCHREALTIME
            nq -w
            ;;
        esac
        read -r t2 <"$work/woke" || t2=nan
        lines+=("$c $t0 $t1 $t2")
    done
done
[[ " $* " == *" tsp "* ]] && tsp -K >/dev/null 2>&1
printf '%s\n' "${lines[@]}" >"$out"
