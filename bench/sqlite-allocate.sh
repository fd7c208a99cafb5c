#!/bin/sh
# Peer: SQLite, one sqlite3 process per allocation. WAL mode (set once by --init, it persists in
# the file), synchronous=NORMAL (no fsync per commit, like Cortex's default), busy timeout 60 s.
# A single UPDATE ... WHERE available >= N is atomic; RETURNING prints a row only when granted.
# bench/run runs the exec line's argv directly (no sh in between), so this script only documents it.
#
# usage: sqlite-allocate.sh DB TOKENS      sqlite-allocate.sh --init DB TOTAL
if [ "$1" = --init ]; then
    exec sqlite3 "$2" "PRAGMA journal_mode=WAL; CREATE TABLE budget(id INTEGER PRIMARY KEY, total_budget INTEGER,
        allocated INTEGER, available INTEGER); INSERT INTO budget VALUES (1, $3, 0, $3);" >/dev/null
fi
exec sqlite3 -cmd ".timeout 60000" -cmd "PRAGMA synchronous=NORMAL" "$1" \
    "UPDATE budget SET allocated = allocated + $2, available = available - $2 WHERE id = 1 AND available >= $2 RETURNING available;"
