#!/bin/sh
# Peer: nq, one job enqueued per call. nq is a different kind of tool: a serial job queue with no
# budget and no decision. A call forks a job that waits (flock) for every earlier job, then returns
# at once; this measures what it costs a bash caller to hand one unit of work to a lock-based
# queue in one process start. Jobs are `true`; bench/run waits for the queue to drain after each
# cell (not timed) and runs the exec line's argv directly (no sh in between).
#
# usage: NQDIR=DIR nq-enqueue.sh
exec nq -q -c true
