#!/usr/bin/env bash
# Spawn latency for bench/run-spawn, the contenders interleaved trial by trial (a load change hits
# them alike). The worker is STAMP FILE, a static C program whose first act is to read
# CLOCK_REALTIME and write it to FILE (via FILE.tmp + rename, so a reader never sees half a line).
# Per trial and contender one line: "contender t0 t1 t2 tself" ($EPOCHREALTIME seconds):
#   t0 just before the call, t1 when the call returned, t2 the worker's own timestamp,
#   tself the spawner's own clock just before posix_spawn (posix contender only, else "-").
#
#   cortex  w=$(cortex-spawn --dir D -- STAMP FILE): appends worker.spawn, starts the detached
#           supervisor (`cortex-spawn _supervise W`), which records it and starts the worker
#   bash    STAMP FILE & pid=$!   (what a bash master does without Cortex: no record, no supervisor)
#   setsid  setsid -f STAMP FILE   (detached into its own session, like a Cortex worker; one extra exec)
#   posix   SPAWNER SELF STAMP FILE: a static C program that writes its clock to SELF, posix_spawns
#           the worker and exits without waiting (the cheapest "start a process and return")
#
# usage: spawn-latency.sh TRIALS OUTFILE WORKDIR STAMP SPAWNER CONTENDER...
#        (CORTEX_SPAWN: the cortex-spawn binary; WORKDIR/cortex an initialised coordination folder
#         whose max_workers, max_cpu_pressure and max_load_per_core let every spawn start at once)
trials=$1 out=$2 work=$3 stamp=$4 spawner=$5
shift 5
cs=${CORTEX_SPAWN:-cortex-spawn}
m=$work/marker self=$work/self
exec {nap}<> <(:)   # `read -t` on a pipe nobody writes: a sleep without starting a process
nap() { read -r -t "$1" -u "$nap"; }
# Waits (up to 10 s) for FILE to appear; prints its content or "nan".
woke() {
    local i line
    for ((i = 0; i < 5000; i++)); do
        if [[ -e $m ]]; then read -r line <"$m" && { echo "$line"; return; }; fi
        nap 0.002
    done
    echo nan
}
lines=()
for ((i = -1; i < trials; i++)); do # trial -1: warm-up, not recorded
    for c in "$@"; do
        rm -f "$m" "$self"
        nap 0.05
        ts=-
        case $c in
        cortex)
            t0=$EPOCHREALTIME
            w=$("$cs" --dir "$work/cortex" -- "$stamp" "$m")
            t1=$EPOCHREALTIME
            ;;
        bash)
            t0=$EPOCHREALTIME
            "$stamp" "$m" &
            pid=$!
            t1=$EPOCHREALTIME
            ;;
        setsid)
            t0=$EPOCHREALTIME
            setsid -f "$stamp" "$m"
            t1=$EPOCHREALTIME
            ;;
        posix)
            t0=$EPOCHREALTIME
            "$spawner" "$self" "$stamp" "$m"
            t1=$EPOCHREALTIME
            ;;
        esac
        t2=$(woke)
        [[ $c == bash ]] && wait "$pid"
        [[ $c == posix ]] && read -r ts <"$self"
        ((i >= 0)) && lines+=("$c $t0 $t1 $t2 $ts")
    done
done
printf '%s\n' "${lines[@]}" >"$out"
