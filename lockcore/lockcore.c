/*
 * lockcore: the implementation of httplock's lock semantics on SQLite.
 *
 * One lock is a row of `locks`; a grant is a row of `holders`; a request
 * waiting for a lock is a row of `waiters`, and waiter ids (AUTOINCREMENT,
 * so they only grow) define the FIFO order.  Every read-modify-write runs in
 * one BEGIN IMMEDIATE transaction, so the database serialises all writers of
 * all processes; expired holders and dead waiters are treated as absent and
 * deleted lazily by whichever transaction next touches their lock.
 *
 * Statements are prepared once per connection from the table `sqltab` and
 * reset (with their bindings cleared) after every use.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "clock.h"
#include "lcint.h"
#include "proc.h"

/*
 * Unclean shutdowns.  With synchronous=NORMAL in WAL mode a commit survives
 * the crash of its process (the OS still has it) but not an OS crash or a
 * power loss: the last commits before it may be gone from the file when
 * the machine comes back.  Those commits may have granted locks whose
 * clients still hold them (their processes ran on other machines), and
 * their fences were seen.  So every connection registers itself in
 * `sessions` with the kernel's boot id, in a transaction synced to disk
 * (synchronous=FULL for that commit) before it can grant anything, and
 * removes its row when closed.  A later open that finds a row of another
 * boot knows that the machine went down under a connection that was open:
 * if that connection ran with synchronous=NORMAL, commits may have been
 * lost, and in the same transaction that removes the stale rows it
 *  - raises meta.fence_floor to FENCE_JUMP above the highest fence on disk,
 *    so no fence that a lost commit issued is issued again (the lost tail
 *    of the WAL holds far fewer than 2^32 grants), and
 *  - unless no_crash_grace, sets meta.grace_until to the time this boot
 *    began plus the longest lease any of those connections could grant:
 *    every lost grant was made before the crash, hence before the boot,
 *    and has expired by then.  Until then no new grant is made
 *    (LC_E_RECOVERING); renewals, releases and reads go on.
 * A row of this boot whose process is gone is a process crash, which
 * loses nothing, and is only removed.  A machine that was shut down
 * cleanly closed its connections first and needs nothing.  With
 * synchronous=FULL every grant was on disk before it was answered.
 */

/*
 * Fences.  A fence must never be issued twice for a name, for as long as
 * the database exists, or a new grant could carry a fence an old holder
 * already showed to a resource.  Every fence is at least meta.fence_floor,
 * which only grows:
 *  - a lockcore_open that finds no other connection open (the first
 *    after a stop) raises it to the wall clock in microseconds, so a copy
 *    of the database restored from a backup (with the server stopped)
 *    issues fences above every fence the server issued after the copy
 *    was taken: those grew by one per grant from a floor set at an
 *    earlier start, far more slowly than the clock.  Later opens leave it,
 *    so fences of a running server go up by one per grant;
 *  - lockcore_sweep deletes the rows of locks idle for a while (no live
 *    holder, no waiter, no grant since `idle_ms`: locks.used_at) and
 *    raises it above their fence_seq in the same transaction, so a name
 *    used again starts above every fence it had;
 *  - an unclean shutdown raises it by FENCE_JUMP (above).
 * The grant's transaction reads it (S_FENCE_BUMP), so a floor raised by
 * another connection is in force at once.
 */

/* Sessions: see "Unclean shutdowns" at the top. */

/*
 * Removes the sessions that are over: those of another boot (noting in
 * *lost whether one of them ran with synchronous=NORMAL, and in *ttl the
 * longest lease one of them could grant) and those of this boot whose
 * process is gone.  *alone is set when no session is left.  The scan
 * restarts after a delete, as walk_waiters() does.
 */
static int
reap_sessions(struct lockcore *lc, const char *boot, bool *lost,
    int64_t *ttl, bool *alone)
{
	sqlite3_stmt *s = NULL, *d = NULL;
	int64_t last = 0;
	int rc;

	*lost = false;
	*ttl = 0;
	*alone = true;
	if ((rc = prepare1(lc, "SELECT id, boot_id, pid, pstart, sync_full,"
	    " max_ttl_ms FROM sessions WHERE id > ?1 ORDER BY id", &s)) < 0 ||
	    (rc = prepare1(lc, "DELETE FROM sessions WHERE id = ?1", &d)) < 0)
		goto out;
	for (;;) {
		const char *b;
		int64_t id = 0;
		int brc = SQLITE_OK;
		bool found, other = false, drop = false;

		bind_i64(s, 1, last, &brc);
		if ((rc = step_row(lc, s, brc, &found)) < 0 || !found) {
			done(s);
			break;
		}
		id = sqlite3_column_int64(s, 0);
		b = (const char *)sqlite3_column_text(s, 1);
		other = b == NULL || strcmp(b, boot) != 0;
		drop = other || !proc_alive(
		    (pid_t)sqlite3_column_int64(s, 2),
		    (uint64_t)sqlite3_column_int64(s, 3));
		if (other) {
			lc->rec.stale_sessions++;
			if (sqlite3_column_int(s, 4) == 0)
				*lost = true;
			if (sqlite3_column_int64(s, 5) > *ttl)
				*ttl = sqlite3_column_int64(s, 5);
		}
		done(s);
		last = id;
		if (!drop) {
			*alone = false;
			continue;
		}
		bind_i64(d, 1, id, &brc);
		if ((rc = run(lc, d, brc)) < 0)
			break;
	}
out:
	(void)sqlite3_finalize(s);
	(void)sqlite3_finalize(d);
	return rc;
}

/*
 * The session transaction of lockcore_open(): reaps the sessions that are
 * over, recovers from an unclean shutdown if one of them says so, adds
 * ours and reads the floor and grace in force.  It is committed with
 * synchronous=FULL, so our row is on disk before we grant anything.
 */
static int
open_session(struct lockcore *lc, const struct lockcore_opts *opts,
    const char **why)
{
	char boot[BOOT_ID_LEN + 1];
	sqlite3_stmt *s = NULL;
	int64_t now = clock_wall_ms(), ttl, floor, top, until, my_ttl;
	int rc, brc = SQLITE_OK;
	bool lost, alone, found, full = opts != NULL && opts->synchronous_full;

	my_ttl = lc->max_ttl_ms;
	if (opts != NULL && opts->boot_id != NULL)
		(void)snprintf(boot, sizeof(boot), "%s", opts->boot_id);
	else
		proc_boot_id(boot, sizeof(boot));
	if (!full && sqlite3_exec(lc->db, "PRAGMA synchronous=FULL", NULL,
	    NULL, NULL) != SQLITE_OK) {
		*why = sqlite3_errmsg(lc->db);
		return -1;
	}
	if ((rc = tx_begin(lc, true, &now)) < 0)
		goto out;
	if ((rc = reap_sessions(lc, boot, &lost, &ttl, &alone)) < 0 ||
	    (rc = meta_get(lc, "fence_floor", &floor)) < 0 ||
	    (rc = meta_get(lc, "grace_until", &until)) < 0)
		goto end;
	/* The first connection after a stop: no fence below the wall clock
	 * in microseconds (see "Fences"). */
	if (alone && now < INT64_MAX / 1000 && floor < now * 1000) {
		floor = now * 1000;
		if ((rc = meta_set(lc, "fence_floor", floor)) < 0)
			goto end;
	}
	if (lost) {
		lc->rec.recovered = 1;
		if ((rc = prepare1(lc, "SELECT max(fence_seq) FROM locks",
		    &s)) < 0)
			goto end;
		rc = step_row(lc, s, SQLITE_OK, &found);
		top = rc == 0 && found ? sqlite3_column_int64(s, 0) : 0;
		(void)sqlite3_finalize(s);
		s = NULL;
		if (rc < 0)
			goto end;
		if (top < floor)
			top = floor;
		floor = top + FENCE_JUMP;
		if ((rc = meta_set(lc, "fence_floor", floor)) < 0)
			goto end;
		if (opts == NULL || !opts->no_crash_grace) {
			int64_t t = opts != NULL && opts->boot_time_ms > 0 ?
			    opts->boot_time_ms : proc_boot_time_ms();

			t += ttl > my_ttl ? ttl : my_ttl;
			if (t > until) {
				until = t;
				if ((rc = meta_set(lc, "grace_until",
				    until)) < 0)
					goto end;
			}
		}
	}
	if ((rc = prepare1(lc, "INSERT INTO sessions(boot_id, pid, pstart,"
	    " sync_full, max_ttl_ms, opened_at)"
	    " VALUES (?1, ?2, ?3, ?4, ?5, ?6)", &s)) < 0)
		goto end;
	bind_txt(s, 1, boot, &brc);
	bind_i64(s, 2, getpid(), &brc);
	bind_i64(s, 3, (int64_t)proc_start(getpid()), &brc);
	bind_i64(s, 4, full, &brc);
	bind_i64(s, 5, my_ttl, &brc);
	bind_i64(s, 6, now, &brc);
	if ((rc = run(lc, s, brc)) == 0)
		lc->session = sqlite3_last_insert_rowid(lc->db);
	(void)sqlite3_finalize(s);
	lc->rec.fence_floor = floor;
	lc->rec.grace_until = until > now ? until : 0;
end:
	rc = tx_end(lc, rc);
out:
	if (rc < 0)
		*why = lockcore_errmsg(lc);
	if (!full && sqlite3_exec(lc->db, "PRAGMA synchronous=NORMAL", NULL,
	    NULL, NULL) != SQLITE_OK && rc == 0) {
		*why = sqlite3_errmsg(lc->db);
		rc = -1;
	}
	return rc < 0 ? -1 : 0;
}

/*
 * The database and its -wal and -shm files hold grants: no other user may
 * read them, whatever the umask.  A new database file is created here
 * (SQLite gives its -wal and -shm the database file's mode) with mode
 * 0660 in a directory its group may write (the group shares the service,
 * docs/install.md), else 0600; files that exist lose every permission of
 * other users, and execute bits.  Names SQLite does not take as a plain
 * path (":memory:", URIs) are left alone.  0, or -1 with *why set.
 */
static int
secure_files(const char *path, const char **why)
{
	static const char *const sfx[] = { "", "-wal", "-shm" };
	char dir[PATH_MAX], name[PATH_MAX];
	const char *slash;
	struct stat st;
	mode_t mode = 0600;
	size_t i;
	int fd;

	if (path[0] == '\0' || strcmp(path, ":memory:") == 0 ||
	    strncmp(path, "file:", 5) == 0)
		return 0;
	slash = strrchr(path, '/');
	if (slash == NULL)
		(void)snprintf(dir, sizeof(dir), ".");
	else if ((size_t)(slash - path) < sizeof(dir))
		(void)snprintf(dir, sizeof(dir), "%.*s",
		    slash == path ? 1 : (int)(slash - path), path);
	else {
		*why = "path too long";
		return -1;
	}
	if (stat(dir, &st) == 0 && (st.st_mode & S_IWGRP))
		mode = 0660;
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	    mode);
	if (fd >= 0) {
		/* The umask may have taken bits the group needs. */
		(void)fchmod(fd, mode);
		(void)close(fd);
		return 0;
	}
	if (errno != EEXIST) {
		*why = strerror(errno);
		return -1;
	}
	for (i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		if ((size_t)snprintf(name, sizeof(name), "%s%s", path,
		    sfx[i]) >= sizeof(name))
			continue;
		fd = open(name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		    (st.st_mode & (S_IRWXO | S_IXUSR | S_IXGRP)) != 0 &&
		    st.st_uid == geteuid())
			(void)fchmod(fd, st.st_mode & 0660);
		(void)close(fd);
	}
	return 0;
}

int
lockcore_open(struct lockcore **out, const char *path,
    const struct lockcore_opts *opts, char *err, size_t errlen)
{
	struct lockcore *lc = NULL;
	const char *what = "sqlite3_open_v2", *why = NULL;
	char pragma[64];
	int rc = LC_E_DB;
	bool upgraded;

	if (out == NULL || path == NULL)
		return LC_E_INVAL;
	*out = NULL;
	if ((lc = calloc(1, sizeof(*lc))) == NULL) {
		what = "calloc";
		why = strerror(errno);
		rc = LC_E_NOMEM;
		goto out;
	}
	lc->busy_ms = opts != NULL ? opts->busy_timeout_ms : BUSY_DEFAULT_MS;
	lc->max_ttl_ms = opts != NULL && opts->max_ttl_ms > 0 ?
	    opts->max_ttl_ms : LC_GRACE_DEFAULT_MS;
	lc->live_clock = opts != NULL && opts->live_clock;
	lc->self_pid = getpid();
	lc->self_pstart = proc_start(lc->self_pid);
	if (lc->busy_ms < 0)
		lc->busy_ms = 0;
	what = "permissions";
	if (secure_files(path, &why) < 0)
		goto out;
	what = "sqlite3_open_v2";
	if (sqlite3_open_v2(path, &lc->db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW,
	    NULL) != SQLITE_OK) {
		why = lc->db != NULL ? sqlite3_errmsg(lc->db) :
		    "out of memory";
		goto out;
	}
	if (sqlite3_busy_handler(lc->db, busy_wait, lc) != SQLITE_OK) {
		why = sqlite3_errmsg(lc->db);
		goto out;
	}
	what = "journal_mode";
	if (set_wal(lc, &why) < 0)
		goto out;
	what = "synchronous";
	(void)snprintf(pragma, sizeof(pragma), "PRAGMA synchronous=%s",
	    opts != NULL && opts->synchronous_full ? "FULL" : "NORMAL");
	if (sqlite3_exec(lc->db, pragma, NULL, NULL, NULL) != SQLITE_OK) {
		why = sqlite3_errmsg(lc->db);
		goto out;
	}
	what = "journal_size_limit";
	lc->ckpt_at = CKPT_FRAMES;
	(void)sqlite3_wal_hook(lc->db, wal_hook, lc);
	(void)snprintf(pragma, sizeof(pragma),
	    "PRAGMA journal_size_limit=%d", WAL_LIMIT);
	if (sqlite3_exec(lc->db, pragma, NULL, NULL, NULL) != SQLITE_OK) {
		why = sqlite3_errmsg(lc->db);
		goto out;
	}
	what = "schema";
	if (make_schema(lc->db, &upgraded, &why) < 0 ||
	    prepare_all(lc, &why) < 0 ||
	    check_version(lc, &why) < 0)
		goto out;
	what = "session";
	/* A read-only file would refuse every write later, and quietly. */
	if (sqlite3_db_readonly(lc->db, "main") == 1) {
		why = "the database is read-only";
		goto out;
	}
	if (open_session(lc, opts, &why) < 0)
		goto out;
	*out = lc;
	lc = NULL;
	rc = 0;
out:
	if (rc < 0 && err != NULL && errlen > 0)
		(void)snprintf(err, errlen, "%s: %s: %s", path, what,
		    why != NULL ? why : "failed");
	lockcore_close(lc);
	return rc;
}

void
lockcore_recovery(struct lockcore *lc, struct lockcore_recovery *r)
{
	*r = lc->rec;
}

/* Removes our session row; a failure leaves it to the next opener. */
static void
close_session(struct lockcore *lc)
{
	sqlite3_stmt *s = NULL;
	int64_t now = 0;
	int rc, brc = SQLITE_OK;

	if (lc->session == 0 || lc->st[S_BEGIN] == NULL)
		return;
	if (tx_begin(lc, true, &now) < 0)
		return;
	if ((rc = prepare1(lc, "DELETE FROM sessions WHERE id = ?1",
	    &s)) == 0) {
		bind_i64(s, 1, lc->session, &brc);
		rc = run(lc, s, brc);
	}
	(void)sqlite3_finalize(s);
	(void)tx_end(lc, rc);
	lc->session = 0;
}

void
lockcore_close(struct lockcore *lc)
{
	int i;

	if (lc == NULL)
		return;
	if (lc->batch && lockcore_batch_end(lc, LC_E_DB) < 0) {
		/* Rolled back, as asked: a batch left open is not done. */
	}
	close_session(lc);
	for (i = 0; i < S_COUNT; i++)
		(void)sqlite3_finalize(lc->st[i]);
	for (i = 0; i < 3; i++)
		(void)sqlite3_finalize(lc->sp[i]);
	(void)sqlite3_close_v2(lc->db);
	free(lc);
}

int
lockcore_batch_begin(struct lockcore *lc)
{
	static const char *const sql[3] = {
		"SAVEPOINT op", "RELEASE op", "ROLLBACK TO op"
	};
	int i, rc;

	if (lc->batch)
		return LC_E_INVAL;
	for (i = 0; i < 3; i++)
		if (lc->sp[i] == NULL && (rc = prepare1(lc, sql[i],
		    &lc->sp[i])) < 0)
			return rc;
	if ((rc = run(lc, lc->st[S_BEGIN], SQLITE_OK)) < 0)
		return rc;
	lc->batch = true;
	lc->batch_failed = false;
	return 0;
}

int
lockcore_batch_end(struct lockcore *lc, int rc)
{
	if (!lc->batch)
		return LC_E_INVAL;
	lc->batch = false;
	/* An error may have ended the transaction early, or left it
	 * untrustworthy. */
	if (rc >= 0 && (lc->batch_failed || sqlite3_get_autocommit(lc->db)))
		rc = LC_E_DB;
	lc->batch_failed = false;
	return tx_end(lc, rc);
}

const char *
lockcore_errmsg(struct lockcore *lc)
{
	if (lc == NULL)
		return "no connection";
	if (lc->err[0] != '\0')
		return lc->err;
	return sqlite3_errmsg(lc->db);
}

int
lockcore_ping(struct lockcore *lc)
{
	int64_t now = 0;
	int rc, brc = SQLITE_OK;

	if (lc == NULL)
		return LC_E_INVAL;
	if ((rc = tx_begin(lc, true, &now)) < 0)
		return rc;
	bind_i64(lc->st[S_PING], 1, clock_wall_ms(), &brc);
	rc = run(lc, lc->st[S_PING], brc);
	return tx_end(lc, rc);
}
