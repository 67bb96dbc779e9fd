"""The store seen beside the service, on either store: rows() runs a
read-only query on a stack's SQLite file or on its PostgreSQL database
(schema httplock; the tables and columns the tests read have the same
names on both), and dump() gives every byte the store keeps, for
searching it for what it must not keep (tokens, request ids).
"""

import os
import sqlite3
import subprocess

import pgdb

PG_DUMP = os.path.join(os.path.dirname(pgdb.PSQL), "pg_dump")


def _pg_value(v):
    """A PostgreSQL value as psql prints it, as SQLite's module would give
    it: an int for an integer, a str for a bytea (lock names are bytea
    there, text in SQLite: its bytes as UTF-8), else the string."""
    if v.lstrip("-").isdigit():
        return int(v)
    if v.startswith("\\x"):
        try:
            return bytes.fromhex(v[2:]).decode("utf-8", "surrogateescape")
        except ValueError:
            pass
    return v


def rows(s, sql, args=()):
    """The rows of sql (a SELECT; `args` for SQLite's ? placeholders
    only) on stack s's store, as tuples; on PostgreSQL see _pg_value."""
    if s.store_kind == "sqlite":
        db = sqlite3.connect("file:%s?mode=ro" % s.db_path, uri=True, timeout=5)
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()
    assert not args, "rows(): no placeholders on PostgreSQL"
    out = []
    for r in pgdb.query(s.store_uri, "SET search_path = httplock; " + sql):
        out.append(tuple(_pg_value(v) for v in r))
    return out


def columns(s, table):
    """Column names of a table of the store."""
    if s.store_kind == "sqlite":
        return [r[1] for r in rows(s, "PRAGMA table_info(%s)" % table)]
    return [r[0] for r in rows(
        s, "SELECT column_name FROM information_schema.columns WHERE table_schema = "
           "'httplock' AND table_name = '%s' ORDER BY ordinal_position" % table)]


def dump(s):
    """Every byte of the store: the SQLite file with its WAL and
    shared-memory index, or pg_dump's text of the schema httplock (bytea
    shown in hex).  b"" when there is nothing."""
    if s.store_kind == "sqlite":
        data = b""
        for sfx in ("", "-wal", "-shm"):
            try:
                with open(s.db_path + sfx, "rb") as f:
                    data += f.read()
            except FileNotFoundError:
                pass
        return data
    p = subprocess.run([PG_DUMP, "-d", s.store_uri, "-n", "httplock", "--data-only"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    if p.returncode != 0:
        raise AssertionError("pg_dump of %s: %s" % (s.store_uri, p.stderr.decode().strip()))
    return p.stdout
