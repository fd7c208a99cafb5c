#!/usr/bin/env bash
# A master that keeps one `cortex session` open (bin/cortex-session.bash, docs/decisions/038):
# N allocate + release pairs through `cx`, then the same N pairs with one process per call, on
# the same folder; prints both times. Every `cx` call appends its own record and folds up to it,
# as the one-process call does: the session only saves the process start and the reload.
#
#   CORTEX_DIR=./coordination examples/session-master.sh [PAIRS]
set -euo pipefail
export CORTEX_DIR=${CORTEX_DIR:-./coordination}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pairs=${1:-100}
# shellcheck source=../bin/cortex-session.bash
source "$here/../bin/cortex-session.bash"

cortex init >/dev/null
milliseconds() { echo $(($(date +%s%N) / 1000000)); }

cortex_session_start
started=$(milliseconds)
for i in $(seq "$pairs"); do
  cx -v id budget allocate --tokens 10 --holder "session-$i"
  cx budget release "$id" --used 5 >/dev/null
done
session_ms=$(($(milliseconds) - started))
cortex_session_stop

started=$(milliseconds)
for i in $(seq "$pairs"); do
  id=$(cortex-budget allocate --tokens 10 --holder "call-$i")
  cortex-budget release "$id" --used 5 >/dev/null
done
calls_ms=$(($(milliseconds) - started))

echo "$pairs allocate+release pairs: ${session_ms} ms through one session, ${calls_ms} ms with one process per call"
