/*
 * lctest: the database, requests and grants of the lockcore tests
 * (lctest.h), each failing the test when lockcore does not answer as
 * required.  On PostgreSQL, each test program has a database of its own
 * (make -j runs several programs at once), and each test, run alone in a
 * forked process, empties it by dropping lockcore's schema.
 */
#include <sys/wait.h>

#include <check.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "lctest.h"
#include "proc.h"
#include "unit.h"

struct lockcore *
lct_open(const char *path, const struct lockcore_opts *o)
{
	struct lockcore *c = NULL;
	char err[256] = "";
	int rc;

	rc = lockcore_open(&c, path, o, err, sizeof(err));
	ck_assert_msg(rc == 0, "lockcore_open(%s): %d %s", path, rc, err);
	ck_assert_ptr_nonnull(c);
	return c;
}

struct lock_acquire_req
lct_req(const char *name, const char *rid, bool wait, uint64_t key)
{
	struct lock_acquire_req r;

	memset(&r, 0, sizeof(r));
	r.name = name;
	r.owner = "tester";
	r.request_id = rid;
	r.ttl_ms = TTL;
	r.deadline = T0 + WAITMS;
	r.wait = wait;
	r.max_waiters = 100;
	r.who.pid = getpid();
	r.who.pstart = proc_start(getpid());
	r.who.key = key;
	return r;
}

struct lock_grant
lct_grant(struct lockcore *c, struct lock_acquire_req *r, int64_t now)
{
	struct lock_grant g;
	struct lock_wait_info wi;
	int rc;

	rc = lock_acquire(c, r, now, &g, &wi);
	ck_assert_msg(rc == LC_GRANTED, "acquire %s: %d", r->name, rc);
	return g;
}

bool
lct_pg(void)
{
	const char *s = getenv("HTTPLOCK_TEST_PG");

	return s != NULL && *s != '\0';
}

/*
 * The URI of database `db` on the server HTTPLOCK_TEST_PG names, in
 * uri[n]: the database goes between the server part and any "?options".
 */
static void
pg_uri(char *uri, size_t n, const char *db)
{
	const char *srv = getenv("HTTPLOCK_TEST_PG"), *q;
	size_t len;

	ck_assert_ptr_nonnull(srv);
	q = strchr(srv, '?');
	len = q != NULL ? (size_t)(q - srv) : strlen(srv);
	while (len > 0 && srv[len - 1] == '/')
		len--;
	ck_assert_msg(snprintf(uri, n, "%.*s/%s%s", (int)len, srv, db,
	    q != NULL ? q : "") < (int)n, "HTTPLOCK_TEST_PG too long");
}

/* This test program's database: lc_ and its name (lower case, letters,
 * digits and _ only), in db[n]. */
static void
pg_dbname(char *db, size_t n)
{
	const char *prog = program_invocation_short_name;
	size_t i, j;

	if (strncmp(prog, "lt-", 3) == 0)       /* a libtool wrapper's */
		prog += 3;
	ck_assert(n > 3);
	memcpy(db, "lc_", 3);
	for (i = 0, j = 3; prog[i] != '\0' && j < n - 1; i++, j++)
		db[j] = isalnum((unsigned char)prog[i]) ?
		    (char)tolower((unsigned char)prog[i]) : '_';
	db[j] = '\0';
}

static void
pg_quiet(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

/* A connection to `uri` (notices dropped); fails the test if it cannot,
 * except that *missing tells a database that does not exist, when given. */
static PGconn *
pg_connect(const char *uri, bool *missing)
{
	PGconn *pc = PQconnectdb(uri);

	ck_assert_ptr_nonnull(pc);
	if (PQstatus(pc) != CONNECTION_OK && missing != NULL &&
	    strstr(PQerrorMessage(pc), "does not exist") != NULL) {
		*missing = true;
		PQfinish(pc);
		return NULL;
	}
	ck_assert_msg(PQstatus(pc) == CONNECTION_OK, "connect %s: %s", uri,
	    PQerrorMessage(pc));
	(void)PQsetNoticeProcessor(pc, pg_quiet, NULL);
	return pc;
}

/* Runs `sql` on pc; fails the test on an error other than SQLSTATE
 * `ok1` or `ok2` (NULL: none). */
static void
pg_exec(PGconn *pc, const char *sql, const char *ok1, const char *ok2)
{
	PGresult *r = PQexec(pc, sql);
	const char *state;
	ExecStatusType st = PQresultStatus(r);

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		ck_assert_msg(state != NULL &&
		    ((ok1 != NULL && strcmp(state, ok1) == 0) ||
		    (ok2 != NULL && strcmp(state, ok2) == 0)),
		    "%s: %s", sql, PQerrorMessage(pc));
	}
	PQclear(r);
}

/*
 * Connects to this program's database (uri), creating it first if it is
 * missing.  Several programs, or tests, may create it at once: "exists"
 * (42P04) and the unique index of the catalog (23505) mean another did.
 */
static PGconn *
pg_connect_db(const char *uri, const char *db)
{
	char srv[LCT_PATH_MAX], sql[128];
	bool missing = false;
	PGconn *pc;

	if ((pc = pg_connect(uri, &missing)) != NULL)
		return pc;
	pg_uri(srv, sizeof(srv), "postgres");
	pc = pg_connect(srv, NULL);
	ck_assert(snprintf(sql, sizeof(sql),
	    "CREATE DATABASE \"%s\" TEMPLATE template0", db) <
	    (int)sizeof(sql));
	pg_exec(pc, sql, "42P04", "23505");
	PQfinish(pc);
	return pg_connect(uri, NULL);
}

/* Empties the store of this program's database: lockcore's schema goes. */
static void
pg_reset(char *uri, size_t n)
{
	char db[64];
	PGconn *pc;

	pg_dbname(db, sizeof(db));
	pg_uri(uri, n, db);
	pc = pg_connect_db(uri, db);
	pg_exec(pc, "DROP SCHEMA IF EXISTS httplock CASCADE", NULL, NULL);
	PQfinish(pc);
}

struct lockcore *
lct_setup(char *dir, size_t dn, char *dbpath, size_t pn,
    const struct lockcore_opts *o)
{
	unit_testdir(dir, dn);
	if (lct_pg())
		pg_reset(dbpath, pn);
	else
		ck_assert(snprintf(dbpath, pn, "%s/lock.db", dir) < (int)pn);
	return lct_open(dbpath, o);
}

void
lct_fresh(struct lockcore **c, char *path, size_t n, const char *dir,
    const char *name)
{
	if (!lct_pg()) {
		ck_assert(snprintf(path, n, "%s/%s", dir, name) < (int)n);
		return;
	}
	lockcore_close(*c);
	*c = NULL;
	pg_reset(path, n);
}

static int64_t
pg_query_int(const char *uri, const char *sql)
{
	PGconn *pc = pg_connect(uri, NULL);
	PGresult *r;
	int64_t v = -1;
	char *end;

	pg_exec(pc, "SET search_path TO httplock", NULL, NULL);
	r = PQexec(pc, sql);
	ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", sql,
	    PQerrorMessage(pc));
	if (PQntuples(r) > 0) {
		v = 0;
		if (!PQgetisnull(r, 0, 0)) {
			errno = 0;
			v = strtoll(PQgetvalue(r, 0, 0), &end, 10);
			ck_assert_msg(errno == 0 && *end == '\0', "%s: %s", sql,
			    PQgetvalue(r, 0, 0));
		}
	}
	PQclear(r);
	PQfinish(pc);
	return v;
}

int64_t
lct_query_int(const char *path, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int64_t n = -1;

	if (lct_pg())
		return pg_query_int(path, sql);
	ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL),
	    SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	(void)sqlite3_finalize(st);
	(void)sqlite3_close(db);
	return n;
}

void
lct_teardown(struct lockcore **c, const char *dir)
{
	lockcore_close(*c);
	*c = NULL;
	ck_assert_int_eq(unit_rm_tree(dir), 0);
}

pid_t
lct_dead_pid(void)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(0);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	return pid;
}
