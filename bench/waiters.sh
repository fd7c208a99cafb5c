#!/usr/bin/env bash
# N concurrent `cortex-task claim --wait` processes on one folder, then TASKS creates: how each
# waiter ended (exit code counts). Under the default fs.inotify.max_user_instances (128), a build
# whose waiters hold an inotify instance each sees exit 74; with the doorbell none should
# (docs/decisions/039-wake.md). Not timed.
#
# usage: waiters.sh N TASKS WAIT BIN_DIR WORKDIR      e.g. waiters.sh 500 20 10s bin /tmp/w
set -u
n=$1 tasks=$2 wait=$3 bin=$4 work=$5
mkdir -p "$work"
dir=$(mktemp -d "$work/waiters-XXXXXX")
"$bin/cortex" init --dir "$dir/c" >/dev/null
pids=()
for ((i = 0; i < n; i++)); do
    "$bin/cortex-task" claim --worker "w$i" --wait "$wait" --dir "$dir/c" >/dev/null 2>>"$dir/stderr" &
    pids+=($!)
done
sleep 2
for ((i = 0; i < tasks; i++)); do "$bin/cortex-task" create --type waiters --dir "$dir/c" >/dev/null; done
declare -A codes=()
for pid in "${pids[@]}"; do
    wait "$pid"
    c=$?
    codes[$c]=$((${codes[$c]:-0} + 1))
done
line="$n waiters, $tasks tasks ($bin, max_user_instances $(cat /proc/sys/fs/inotify/max_user_instances)):"
for c in $(printf '%s\n' "${!codes[@]}" | sort -n); do line+=" exit $c: ${codes[$c]}"; done
echo "$line"
other=$(grep -v 'no task to claim within' "$dir/stderr" | head -1)
[ -n "$other" ] && echo "first other stderr line: $other"
rm -rf "$dir"
