#!/bin/sh
# Peer: a SQLite task queue, one sqlite3 process per claim and per complete. WAL (set once by
# --init, it persists in the file), synchronous=NORMAL (no fsync per commit, like Cortex's
# default), busy timeout 60 s. A claim is one atomic UPDATE of the first pending row (by
# priority, then id) RETURNING the id and the new claim token (a fencing token like Cortex's);
# a complete is one UPDATE fenced by that token. bench/claimer.sh runs the same statements.
#
# usage: sqlite-task.sh --init DB N          N pending tasks
#        sqlite-task.sh claim DB WORKER      prints "id|claim"; nothing when the queue is empty
#        sqlite-task.sh complete DB ID CLAIM prints the id when the claim was current
case $1 in
--init)
    exec sqlite3 "$2" "PRAGMA journal_mode=WAL;
        CREATE TABLE tasks(id INTEGER PRIMARY KEY, type TEXT, priority INTEGER, status TEXT, worker TEXT, claim INTEGER);
        CREATE INDEX claim_order ON tasks(status, priority, id);
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $3)
        INSERT INTO tasks SELECT i, 'bench', 2, 'pending', NULL, 0 FROM n;" >/dev/null ;;
claim)
    exec sqlite3 -cmd ".timeout 60000" -cmd "PRAGMA synchronous=NORMAL" "$2" \
        "UPDATE tasks SET status = 'running', worker = '$3', claim = claim + 1
         WHERE id = (SELECT id FROM tasks WHERE status = 'pending' ORDER BY priority, id LIMIT 1) RETURNING id, claim;" ;;
complete)
    exec sqlite3 -cmd ".timeout 60000" -cmd "PRAGMA synchronous=NORMAL" "$2" \
        "UPDATE tasks SET status = 'done' WHERE id = $3 AND claim = $4 AND status = 'running' RETURNING id;" ;;
esac
