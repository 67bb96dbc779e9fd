#!/usr/bin/python3
"""bench/w5_populate.py: fill an httplock database for W5 (scale of state).

    w5_populate.py DB HELD UNHELD [PREFIX]

DB must already carry lockcore's schema (bench/run starts the stack once,
which creates it, and stops it cleanly, so `sessions` is empty) and no
stack may have it open.  Adds HELD locks named PREFIX-h-<i>, each with one
holder (the hash of a random token, fence 1 = the lock's fence_seq, an
owner, acquired now, expiring in ten years), and UNHELD lock rows
PREFIX-u-<i> with fence_seq 1 and no holder (a lock that was used and
released; marked used in ten years, so that idle_reclaim keeps them).
Rows are inserted in one transaction, then the WAL is checkpointed and
truncated, so the stack starts from a plain database file.  Prints one
line: held=... unheld=... secs=... db_bytes=...
"""
import os
import sqlite3
import sys
import time


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    path, held, unheld = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    prefix = sys.argv[4] if len(sys.argv) == 5 else "w5"
    t0 = time.time()
    db = sqlite3.connect(path, isolation_level=None)
    ver = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    if ver is None or ver[0] != 5:
        sys.exit("w5_populate: unexpected schema_version %r" % (ver,))
    for (pid,) in db.execute("SELECT pid FROM sessions").fetchall():
        # rows of dead processes are left for lockcore (a process crash of
        # this boot: it only removes them); a live one means the stack runs
        try:
            os.kill(pid, 0)
            sys.exit("w5_populate: the database is open (pid %d)" % pid)
        except ProcessLookupError:
            pass
    if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        sys.exit("w5_populate: the database is not in WAL mode")
    db.execute("PRAGMA cache_size=-262144")      # 256 MiB for the load only
    db.execute("PRAGMA synchronous=OFF")
    now = int(time.time() * 1000)
    far = now + 10 * 365 * 86400 * 1000
    rnd = os.urandom
    db.execute("BEGIN IMMEDIATE")
    base = db.execute("SELECT coalesce(max(id), 0) FROM locks").fetchone()[0]
    # locks first, ids base+1..base+held (held), then the unheld ones
    # used_at: far ahead, so that idle_reclaim leaves the unheld rows alone
    db.executemany("INSERT INTO locks(id, name, fence_seq, max_holders, used_at)"
                   " VALUES (?, ?, 1, 1, ?)",
                   ((base + 1 + i, "%s-h-%d" % (prefix, i), far) for i in range(held)))
    db.executemany("INSERT INTO locks(id, name, fence_seq, max_holders, used_at)"
                   " VALUES (?, ?, 1, 1, ?)",
                   ((base + 1 + held + i, "%s-u-%d" % (prefix, i), far)
                    for i in range(unheld)))
    # token_hash: the SHA-256 of a token nobody knows
    db.executemany("INSERT INTO holders(token_hash, lock_id, fence, owner,"
                   " rid_hash, seal, acquired_at, expires_at, ttl_ms)"
                   " VALUES (?, ?, 1, 'w5', NULL, NULL, ?, ?, ?)",
                   ((rnd(32), base + 1 + i, now, far + i % 1000, far - now)
                    for i in range(held)))
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    print("held=%d unheld=%d secs=%.1f db_bytes=%d" %
          (held, unheld, time.time() - t0, os.path.getsize(path)))


if __name__ == "__main__":
    main()
