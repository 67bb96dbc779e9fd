"""Where the integration tests find what they run: the source and build
trees, the httplock binaries, the web servers and their configurations,
and which front end and how many worker processes this run uses.  Read
from the environment that `make check` sets (HTTPLOCK_SRCDIR,
HTTPLOCK_BUILDDIR, LIGHTTPD, APACHE2, HTTPLOCK_FRONT,
HTTPLOCK_TEST_PROCS); the defaults fit the source tree's layout.  And the
store: SQLite under each stack's directory, or, when HTTPLOCK_TEST_PG
names a PostgreSQL server (a libpq URI without a database), a database of
each stack's own on that server (pgdb.py).
"""

import os

HERE = os.path.dirname(os.path.abspath(__file__))

SRCDIR = os.environ.get("HTTPLOCK_SRCDIR") or os.path.dirname(os.path.dirname(HERE))
BUILDDIR = os.environ.get("HTTPLOCK_BUILDDIR")
if not BUILDDIR:
    # The source tree itself, or else its build/ (an out-of-tree build).
    BUILDDIR = SRCDIR
    if not os.path.exists(os.path.join(SRCDIR, "fcgi", "httplock-worker")) and \
            os.path.exists(os.path.join(SRCDIR, "build", "fcgi", "httplock-worker")):
        BUILDDIR = os.path.join(SRCDIR, "build")
LIGHTTPD = os.environ.get("LIGHTTPD") or "/usr/sbin/lighttpd"
APACHE2 = os.environ.get("APACHE2") or "/usr/sbin/apache2"
FRONT = os.environ.get("HTTPLOCK_FRONT") or "lighttpd"
FRONTS = ("lighttpd", "apache")
# Worker processes per stack.  Two by default, so that a lock often passes
# between processes; HTTPLOCK_TEST_PROCS=1 runs every handoff in-process.
PROCS = os.environ.get("HTTPLOCK_TEST_PROCS") or "2"
# The PostgreSQL server the stacks' stores live on, or "" for SQLite.
PG_SERVER = (os.environ.get("HTTPLOCK_TEST_PG") or "").rstrip("/")
STORE = "postgresql" if PG_SERVER else "sqlite"
STORES = ("sqlite", "postgresql")

WORKER_BIN = os.path.join(BUILDDIR, "fcgi", "httplock-worker")
COORD_BIN = os.path.join(BUILDDIR, "coord", "httplock-coord")
LIGHTTPD_CONF = os.path.join(SRCDIR, "conf", "lighttpd.conf")
APACHE_CONF = os.path.join(SRCDIR, "conf", "apache.conf")


def configured_with(option):
    """True if the build in BUILDDIR was configured with `option` (e.g.
    "--enable-asan"), as its config.status records."""
    try:
        with open(os.path.join(BUILDDIR, "config.status")) as f:
            return option in f.read()
    except (OSError, TypeError):
        return False
