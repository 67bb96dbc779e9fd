"""The PostgreSQL side of the integration tests: when HTTPLOCK_TEST_PG
names a server (a libpq URI without a database, e.g.
postgresql://httplock@127.0.0.1:5432), every stack runs on a database of
its own on it, made by create_database() and dropped by drop_database();
db_uri() names a database on that server, and query() runs SQL through
psql (the tests read the store's rows with it, as they read an SQLite
file with the sqlite3 module).

psql (postgresql-client) does the work, so that the tests need nothing
beyond the Python 3 standard library.
"""

import itertools
import os
import shutil
import subprocess
import threading
import urllib.parse

from testenv import PG_SERVER

PSQL = os.environ.get("PSQL") or shutil.which("psql") or "/usr/bin/psql"

_seq = itertools.count(1)
_created_lock = threading.Lock()
_created = set()     # (server, name) not yet dropped, for drop_all()


class PgError(Exception):
    """psql failed: the server is down, or the statement failed."""


def db_uri(server, db):
    """server (a URI without a database) with its path set to /db; its
    query string (sslmode=..., target_session_attrs=...) is kept."""
    u = urllib.parse.urlsplit(server)
    return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + db, u.query, u.fragment))


def query(uri, sql, timeout_s=20.0):
    """Runs sql (one or more statements) on the database at uri; returns
    the rows of the last one as lists of strings (unaligned, tab between
    fields).  PgError when psql fails."""
    argv = [PSQL, "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
            "-d", uri, "-c", sql]
    env = dict(os.environ)
    env.setdefault("PGCONNECT_TIMEOUT", "5")
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        raise PgError("psql %r on %s: no answer within %.0f s" % (sql[:80], uri, timeout_s))
    if p.returncode != 0:
        raise PgError("psql %r on %s: status %d: %s" % (
            sql[:80], uri, p.returncode, p.stderr.decode("utf-8", "replace").strip()))
    text = p.stdout.decode("utf-8", "replace")
    return [line.split("\t") for line in text.splitlines() if line != ""]


def create_database(server=None, prefix="hl"):
    """Creates an empty database on server (default HTTPLOCK_TEST_PG) with a
    name of its own; returns (name, its URI)."""
    server = server or PG_SERVER
    name = "%s_%d_%d_%s" % (prefix, os.getpid(), next(_seq), os.urandom(3).hex())
    query(db_uri(server, "postgres"), 'CREATE DATABASE "%s" TEMPLATE template0' % name)
    with _created_lock:
        _created.add((server, name))
    return name, db_uri(server, name)


def drop_database(name, server=None):
    """Drops the database, closing the sessions still on it."""
    server = server or PG_SERVER
    with _created_lock:
        _created.discard((server, name))
    query(db_uri(server, "postgres"), 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)


def keep(name, server=None):
    """Leaves the database to the user (drop_all() will not drop it)."""
    with _created_lock:
        _created.discard((server or PG_SERVER, name))


def drop_all():
    """Drops every database create_database() made and nobody dropped yet
    (the suite's last cleanup); errors are ignored."""
    with _created_lock:
        left = list(_created)
    for server, name in left:
        try:
            drop_database(name, server)
        except PgError:
            pass
