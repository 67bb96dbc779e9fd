/*
 * handlers.c: one HTTP request from accept to response.  The request is
 * parsed by request.c, the lock semantics are lockcore's, and this file
 * glues them: it serialises database use inside the process, tells the
 * coordinator what changed, hands an acquire that must wait to wait.c, and
 * writes every answer as JSON.  Errors map to HTTP statuses in one table
 * (lc_errors) and one function (send_error).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json.h>

#include "autostart.h"
#include "clock.h"
#include "log.h"
#include "proto.h"
#include "worker.h"

_Static_assert(LC_KEY_MAX <= PROTO_NAME_MAX,
    "the coordinator must carry every lock key");

#define COORD_ACK_MS     250

struct status_text {
	int         status;
	const char *text;
};

static const struct status_text status_texts[] = {
	{ 200, "OK" }, { 400, "Bad Request" }, { 401, "Unauthorized" },
	{ 404, "Not Found" },
	{ 405, "Method Not Allowed" }, { 409, "Conflict" },
	{ 413, "Payload Too Large" }, { 423, "Locked" },
	{ 429, "Too Many Requests" },
	{ 500, "Internal Server Error" }, { 503, "Service Unavailable" },
};

/* How each lockcore error reaches the client. */
struct lc_error {
	int         rc;
	int         status;
	const char *code;
	const char *message;
};

static const struct lc_error lc_errors[] = {
	{ LC_E_INVAL, 400, "bad_request", "invalid argument" },
	{ LC_E_NOT_HELD, 409, "not_held",
	    "the lock is not held with this token or request_id "
	    "(unknown, expired or already released)" },
	{ LC_E_TOO_MANY, 503, "too_many_waiters",
	    "the lock has reached its cap of waiters (max_waiters)" },
	{ LC_E_GONE, 409, "cancelled",
	    "the queued acquire was cancelled or removed" },
	{ LC_E_SUPERSEDED, 409, "superseded",
	    "a newer request with the same request_id took over this "
	    "place in the queue" },
	{ LC_E_QUOTA_HELD, 429, "quota_exceeded",
	    "your namespace holds as many locks as its quota allows "
	    "(tenant_max_held): release one first" },
	{ LC_E_QUOTA_WAIT, 429, "quota_exceeded",
	    "your namespace has as many waiting acquires as its quota "
	    "allows (tenant_max_waiting)" },
	{ LC_E_DB, 503, "unavailable", "the lock database is unavailable" },
	{ LC_E_NOMEM, 503, "unavailable", "out of memory" },
	{ LC_E_RECOVERING, 503, "unavailable",
	    "recovering from an unclean shutdown (power loss or OS crash): "
	    "no new grant until every lease that may have been lost has "
	    "expired" },
};

static const char *
status_text(int status)
{
	size_t i;

	for (i = 0; i < sizeof(status_texts) / sizeof(status_texts[0]); i++)
		if (status_texts[i].status == status)
			return status_texts[i].text;
	return "Unknown";
}

/*
 * Writes the response: status, JSON content type, optional extra header
 * (already formatted "Name: value"), and the body unless `head`.  Consumes
 * `body`.  Returns 0, or -1 if the connection to the web server failed.
 */
static int
send_json(struct reply *r, int status, const char *extra, json_object *body,
    bool head)
{
	const char *text;
	char hdr[512];
	size_t len = 0;
	int rc = 0, n;

	/* libfcgi's FCGX_FPrintF knows only a subset of printf formats (no
	 * %zu), so the header is formatted here.  The body ends with the
	 * newline json-c's string lacks. */
	text = json_object_to_json_string_length(body,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	n = snprintf(hdr, sizeof(hdr), "Status: %d %s\r\n"
	    "Content-Type: application/json\r\n"
	    "Cache-Control: no-store\r\n"
	    "Content-Length: %zu\r\n"
	    "%s%s\r\n", status, status_text(status), len + 1,
	    extra != NULL ? extra : "", extra != NULL ? "\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof(hdr))
		rc = -1;
	else if (r->fr == NULL)
		rc = wait_reply_raw(r->fd, r->reqid, hdr, (size_t)n,
		    head ? NULL : text, head ? 0 : len);
	else {
		if (FCGX_PutStr(hdr, n, r->fr->out) < 0)
			rc = -1;
		if (rc == 0 && !head &&
		    (FCGX_PutStr(text, (int)len, r->fr->out) < 0 ||
		    FCGX_PutChar('\n', r->fr->out) < 0))
			rc = -1;
		if (rc == 0 && FCGX_FFlush(r->fr->out) < 0)
			rc = -1;
	}
	json_object_put(body);
	return rc;
}

static json_object *
jstr(const char *s)
{
	return json_object_new_string(s);
}

/* Milliseconds as a JSON number of seconds with three decimals. */
static json_object *
jsecs(int64_t ms)
{
	char buf[32];
	int64_t abs_ms = ms < 0 ? -ms : ms;

	snprintf(buf, sizeof(buf), "%s%" PRId64 ".%03" PRId64,
	    ms < 0 ? "-" : "", abs_ms / 1000, abs_ms % 1000);
	return json_object_new_double_s((double)ms / 1000.0, buf);
}

void
send_error(struct reply *r, int status, const char *code, const char *msg,
    const char *allow, bool head)
{
	json_object *o = json_object_new_object();
	char extra[64];

	json_object_object_add(o, "error", jstr(code));
	json_object_object_add(o, "message", jstr(msg));
	if (allow != NULL)
		snprintf(extra, sizeof(extra), "Allow: %s", allow);
	(void)send_json(r, status, allow != NULL ? extra : NULL, o, head);
}

/*
 * 503 while lockcore's grace after an unclean shutdown runs: says until
 * when, as Retry-After (whole seconds, rounded up) and in the body.
 */
static void
send_recovering(struct reply *r, const char *message)
{
	json_object *o = json_object_new_object();
	int64_t until = atomic_load(&W.grace_until);
	int64_t left = until - clock_wall_ms();
	char extra[64];

	if (left < 0)
		left = 0;
	json_object_object_add(o, "error", jstr("unavailable"));
	json_object_object_add(o, "message", jstr(message));
	json_object_object_add(o, "recovering_until", jsecs(until));
	json_object_object_add(o, "retry_after", jsecs(left));
	snprintf(extra, sizeof(extra), "Retry-After: %" PRId64,
	    (left + 999) / 1000);
	(void)send_json(r, 503, extra, o, false);
}

/* Answers a lockcore error; `what` refines the message when not NULL. */
static void
send_lc_error(struct reply *r, int rc, const char *what)
{
	char msg[512];
	size_t i;

	for (i = 0; i < sizeof(lc_errors) / sizeof(lc_errors[0]); i++) {
		if (lc_errors[i].rc != rc)
			continue;
		if (rc == LC_E_TOO_MANY)
			snprintf(msg, sizeof(msg), "%s: max_waiters is %d",
			    lc_errors[i].message, W.conf.max_waiters);
		else if (rc == LC_E_RECOVERING) {
			send_recovering(r, lc_errors[i].message);
			return;
		} else
			snprintf(msg, sizeof(msg), "%s%s%s",
			    lc_errors[i].message, what != NULL ? ": " : "",
			    what != NULL ? what : "");
		send_error(r, lc_errors[i].status, lc_errors[i].code, msg,
		    NULL, false);
		return;
	}
	send_error(r, 500, "internal", "unexpected internal error", NULL,
	    false);
}

/* Opens the database (db_mu held).  0, or -1 when it cannot be opened. */
static int
db_open(void)
{
	struct lockcore_opts opts;
	struct lockcore_recovery rec;
	const char *v;
	char err[256];

	memset(&opts, 0, sizeof(opts));
	opts.busy_timeout_ms = (int)W.conf.busy_timeout_ms;
	opts.synchronous_full = W.conf.synchronous_full;
	opts.live_clock = 1;
	opts.no_crash_grace = !W.conf.crash_grace;
	opts.max_ttl_ms = W.conf.max_ttl_ms;
	/* Only the tests set these, to play a reboot without one. */
	opts.boot_id = getenv("HTTPLOCK_TEST_BOOT_ID");
	if ((v = getenv("HTTPLOCK_TEST_BOOT_TIME")) != NULL)
		opts.boot_time_ms = strtoll(v, NULL, 10);
	if (lockcore_open(&W.db, W.conf.database, &opts, err,
	    sizeof(err)) != 0) {
		/* Said once per outage, not once per request (db_mu held). */
		if (!W.db_open_failed)
			log_warnx("%s: %s", __func__, err);
		W.db_open_failed = true;
		return -1;
	}
	if (W.db_open_failed)
		log_info("%s: database %s open again", __func__,
		    W.conf.database);
	W.db_open_failed = false;
	lockcore_recovery(W.db, &rec);
	atomic_store(&W.grace_until, rec.grace_until);
	if (rec.recovered)
		log_warnx("database %s: %d connection(s) of an earlier boot "
		    "never closed (power loss or OS crash) and may have lost "
		    "their last commits; fences now start at %" PRId64 "%s",
		    W.conf.database, rec.stale_sessions, rec.fence_floor,
		    rec.grace_until > 0 ? "" : ", no grace (crash_grace = no)");
	if (rec.grace_until > 0)
		log_warnx("database %s: no new grant for %" PRId64 " s, until "
		    "every lease granted before the crash has expired",
		    W.conf.database,
		    (rec.grace_until - clock_wall_ms() + 999) / 1000);
	return 0;
}

/*
 * Group commit.  Every request's database work is serialised on db_mu; a
 * thread that finishes while others wait for db_mu does not commit: it
 * leaves the transaction open for the next one (lockcore_batch_begin) and
 * sleeps until the thread that ends the batch has committed it.  So under
 * load the BEGIN IMMEDIATE, the COMMIT and the pages several requests
 * touch in common (a lock's row, the index pages) are paid once per batch,
 * not once per request.  Nothing is answered, and no wake or handoff
 * acted upon, before the commit: db_leave() returns only then.  A batch
 * ends after BATCH_OPS_MAX requests or BATCH_MS, so it cannot grow for
 * ever under a stream of arrivals.
 */
#define BATCH_OPS_MAX 32
#define BATCH_MS      2

/* A request of the open batch that waits for its commit. */
struct batch_wait {
	int                rc;
	bool               done;
	struct batch_wait *next;
};

static atomic_int db_want;             /* threads waiting for db_mu */
static bool batch_open;                /* these under db_mu */
static bool db_solo;                   /* a read outside any batch */
static int batch_ops;
static int64_t batch_t0;
static struct batch_wait *batch_waiting;
static pthread_mutex_t done_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;

/* Says once per outage that transactions fail, and when they work again
 * (db_mu held). */
static void
db_failing(bool failing, const char *what)
{
	static bool failed;

	if (failing && !failed)
		log_warnx("database %s: %s: %s", W.conf.database, what,
		    lockcore_errmsg(W.db));
	else if (!failing && failed)
		log_info("database %s: transactions commit again",
		    W.conf.database);
	failed = failing;
}

/*
 * Locks the process's database mutex and returns the connection, opening
 * it on first use.  A request that may write joins the open batch (a new
 * one if none is open); a read-only one (`write` false) joins it only if
 * one is open, else it runs in a deferred transaction of its own, which in
 * WAL never waits for another process's writer.  NULL (mutex released)
 * when the database cannot be opened or a batch cannot begin.  Every
 * non-NULL return is paired with db_leave().
 */
struct lockcore *
db_enter(bool write)
{
	atomic_fetch_add(&db_want, 1);
	pthread_mutex_lock(&W.db_mu);
	atomic_fetch_sub(&db_want, 1);
	if (W.db == NULL && db_open() != 0) {
		pthread_mutex_unlock(&W.db_mu);
		return NULL;
	}
	if (!batch_open && !write) {
		db_solo = true;
		return W.db;
	}
	if (!batch_open) {
		/* BEGIN IMMEDIATE: may wait up to busy_timeout for another
		 * process's writer. */
		if (lockcore_batch_begin(W.db) != 0) {
			db_failing(true, "cannot begin a transaction");
			pthread_mutex_unlock(&W.db_mu);
			return NULL;
		}
		batch_open = true;
		batch_ops = 0;
		batch_t0 = now_ms();
	}
	batch_ops++;
	return W.db;
}

/*
 * Ends this request's part of the batch; returns rc, or LC_E_DB if the
 * batch could not be committed.  A caller acts on nothing its call
 * reported (wakes, kicks, handoffs) unless this returns >= 0: a call that
 * failed was undone, and a batch that failed never happened.
 */
int
db_leave(int rc)
{
	struct batch_wait self, *w;
	int crc;

	if (db_solo) {
		db_solo = false;
		pthread_mutex_unlock(&W.db_mu);
		return rc;
	}
	if (atomic_load(&db_want) > 0 && batch_ops < BATCH_OPS_MAX &&
	    now_ms() - batch_t0 < BATCH_MS) {
		/* Someone is about to enter: it commits, or passes on. */
		self.done = false;
		self.next = batch_waiting;
		batch_waiting = &self;
		pthread_mutex_unlock(&W.db_mu);
		pthread_mutex_lock(&done_mu);
		while (!self.done)
			pthread_cond_wait(&done_cv, &done_mu);
		pthread_mutex_unlock(&done_mu);
		crc = self.rc;
	} else {
		crc = lockcore_batch_end(W.db, 0);
		db_failing(crc != 0, "commit failed");
		batch_open = false;
		w = batch_waiting;
		batch_waiting = NULL;
		if (w != NULL) {
			pthread_mutex_lock(&done_mu);
			for (; w != NULL; w = w->next) {
				w->rc = crc;
				w->done = true;
			}
			pthread_cond_broadcast(&done_cv);
			pthread_mutex_unlock(&done_mu);
		}
		pthread_mutex_unlock(&W.db_mu);
	}
	return crc < 0 ? LC_E_DB : rc;
}

/* The API's error code for a lockcore error, for log lines. */
static const char *
lc_code(int rc)
{
	size_t i;

	for (i = 0; i < sizeof(lc_errors) / sizeof(lc_errors[0]); i++)
		if (lc_errors[i].rc == rc)
			return lc_errors[i].code;
	return "internal";
}

/* On LC_E_DB, logs SQLite's reason for a list (never a token). */
static void
log_list_db_error(int rc, const struct request *rq)
{
	if (rc != LC_E_DB || W.db == NULL)
		return;
	log_warnx("list of prefix '%s'%s%s%s: %s", LOG_ESC(rq->prefix),
	    rq->tenant ? " of '" : "",
	    rq->tenant ? LOG_ESCN(rq->key_prefix + 1, rq->nslen - 2) : "",
	    rq->tenant ? "'" : "", lockcore_errmsg(W.db));
}

/* Set while the coordinator does not answer (last registration or
 * notification failed). */
static atomic_bool coord_down;

/*
 * The coordinator's state as waiters and notifications last found it:
 * logged once per change, not once per request.
 */
void
coord_seen(bool up)
{
	atomic_bool *down = &coord_down;

	if (up) {
		if (atomic_load(down) && atomic_exchange(down, false))
			log_info("coordinator at %s is back: waiters are "
			    "woken again", W.conf.coord_socket);
	} else if (!atomic_load(down) && !atomic_exchange(down, true))
		log_warnx("coordinator at %s unreachable: waiters poll the "
		    "database every %" PRId64 " ms until it is back",
		    W.conf.coord_socket, (int64_t)W.conf.poll_ms);
}

/*
 * A grant of lock `name` (as the client calls it; g->name is the key) as
 * JSON; ttl_ms is the lease it was given or renewed with.
 */
static json_object *
grant_json(const struct lock_grant *g, const char *name, int64_t ttl_ms)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "lock", jstr(name));
	json_object_object_add(o, "token", jstr(g->token));
	json_object_object_add(o, "fence", json_object_new_int64(g->fence));
	json_object_object_add(o, "ttl", jsecs(ttl_ms));
	json_object_object_add(o, "acquired_at", jsecs(g->acquired_at));
	json_object_object_add(o, "expires_at", jsecs(g->expires_at));
	json_object_object_add(o, "owner", jstr(g->owner));
	return o;
}

/* Tells the coordinator; whether it answered decides handoffs (below). */
void
notify(const char *name, bool wake_first, int64_t kick, int64_t expires)
{
	coord_seen(coord_notify(W.notifier, name, wake_first, kick,
	    expires) == COORDC_OK);
}

/*
 * Whose waiters a transaction that frees a lock may grant at once.  Our
 * own process's, always: we wake them directly.  Another process's only
 * while the coordinator is seen up, since without it that waiter would
 * learn of its grant only at its next poll, its lease already running.
 */
void
handoff_init(struct lock_handoff *ho)
{
	memset(ho, 0, sizeof(*ho));
	ho->only_pid = atomic_load(&coord_down) ? W.pid : 0;
}

/*
 * After a transaction on lock `name` that may have handed it on (and
 * committed): answers the waiter it granted if that request is parked
 * here (its parking thread then withdraws its registration with the
 * coordinator), wakes it through the coordinator's kick otherwise; the
 * new lease re-arms the coordinator's timer either way.  Without a
 * handoff, wakes the first waiter if `wake`.
 */
void
handed_on(const char *name, bool wake, const struct lock_handoff *ho)
{
	if (ho->waiter_id != 0 && ho->pid == W.pid &&
	    wait_answer_grant(ho))
		notify(name, wake, 0, ho->expires_at);
	else if (ho->waiter_id != 0)
		notify(name, wake, ho->waiter_id, ho->expires_at);
	else if (wake)
		notify(name, true, 0, 0);
}

/*
 * Sends a grant of `name`.  If it cannot be delivered (the web server
 * dropped the connection), the grant is released at once rather than left
 * to expire.
 */
static void
send_grant(struct reply *r, const struct lock_grant *g,
    const struct lockref *rq, uint64_t key)
{
	char extra[64];
	struct lockcore *db;
	struct lock_handoff ho;
	bool wake = false;
	int rc;

	snprintf(extra, sizeof(extra), "Lock-Token: %s", g->token);
	if (send_json(r, 200, extra,
	    grant_json(g, rq->name, g->ttl_ms), false) == 0)
		return;
	/* Only while the grant is still ours: a retry with our request_id
	 * may have been given it meanwhile, and its client keeps it. */
	if ((db = db_enter(true)) == NULL)
		return;
	handoff_init(&ho);
	rc = lock_undo(db, g->name, g->token, key, now_ms(), &wake, &ho);
	if ((rc = db_leave(rc)) < 0) {
		/* Undone or not committed: nothing to act upon. */
		ho.waiter_id = 0;
		wake = false;
	}
	log_info(LOCK_FMT ": grant with fence %" PRId64 " undeliverable "
	    "(client gone), %s", LOCK_ARGS(rq), g->fence,
	    rc == LC_OK ? "released" : rc == LC_E_SUPERSEDED ?
	    "kept: a retry with the same request_id has it" : lc_code(rc));
	handed_on(g->name, wake, &ho);
}

/* The debug line of an acquire's outcome; `started` is its arrival. */
static void
log_acquire(const struct lockref *rq, int rc, const struct lock_grant *g,
    int64_t started, bool wait)
{
	int64_t waited = now_ms() - started;

	if (rc == LC_GRANTED)
		log_debug(LOCK_FMT ": granted, fence %" PRId64 ", owner '%s', "
		    "waited %" PRId64 " ms%s", LOCK_ARGS(rq), g->fence,
		    LOG_ESC(g->owner), waited, g->acquired_at < started ?
		    " (replayed for its request_id)" : "");
	else if (rc == LC_BUSY)
		log_debug(LOCK_FMT ": %s after %" PRId64 " ms", LOCK_ARGS(rq),
		    wait ? "timeout" : "held, no wait", waited);
	else
		log_debug(LOCK_FMT ": acquire ended after %" PRId64 " ms: %s",
		    LOCK_ARGS(rq), waited, lc_code(rc));
}

void
acquire_answer(struct reply *r, const struct lockref *ref, int rc,
    const struct lock_grant *g, uint64_t wkey, int64_t started, bool wait)
{
	if (log_debug_enabled())
		log_acquire(ref, rc, g, started, wait);
	switch (rc) {
	case LC_GRANTED:
		send_grant(r, g, ref, wkey);
		break;
	case LC_BUSY:
		send_error(r, 423, "timeout",
		    wait ? "the lock is still held after the timeout" :
		    "the lock is held", NULL, false);
		break;
	default:
		send_lc_error(r, rc, NULL);
		break;
	}
}

/*
 * Housekeeping after a request, at most every SWEEP_EVERY_MS in a
 * process: one batch of lockcore_sweep (expired holders, and the rows of
 * locks idle for idle_reclaim, so that names used once do not stay in
 * the file forever).
 * The interval is measured on the monotonic clock.
 */
#define SWEEP_EVERY_MS 1000
#define SWEEP_BATCH    1000

static void
db_sweep(void)
{
	static _Atomic int_least64_t next;
	struct timespec ts;
	struct lockcore *db;
	int64_t t, due;
	int changed = 0, rc;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	t = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	due = atomic_load(&next);
	if (t < due ||
	    !atomic_compare_exchange_strong(&next, &due, t + SWEEP_EVERY_MS))
		return;
	if ((db = db_enter(true)) == NULL)
		return;
	rc = lockcore_sweep(db, now_ms(), SWEEP_BATCH, W.conf.idle_reclaim_ms,
	    &changed);
	if (rc == LC_E_DB)
		log_warnx("sweep: %s", lockcore_errmsg(db));
	if (db_leave(rc) == 0 && changed > 0)
		log_debug("sweep: %d rows of expired grants and idle locks "
		    "deleted", changed);
}

/* Set while this process refuses waiters (too many parked). */
static atomic_bool parked_full;

static void
handle_acquire(struct reply *r, const struct request *rq)
{
	struct lock_acquire_req ar;
	struct lockref ref = { rq->name, rq->key, rq->tenant, rq->nslen };
	char ns[LC_KEY_MAX + 1];
	struct lock_grant g;
	struct lock_wait_info info;
	struct lockcore *db;
	int64_t now = now_ms();
	int rc;

	memset(&ar, 0, sizeof(ar));
	ar.name = rq->key;
	ar.owner = rq->owner;
	ar.request_id = rq->request_id[0] != '\0' ? rq->request_id : NULL;
	ar.ttl_ms = rq->ttl_ms;
	ar.deadline = now + rq->timeout_ms;
	ar.wait = rq->timeout_ms > 0;
	ar.max_waiters = W.conf.max_waiters;
	ar.who.pid = W.pid;
	ar.who.pstart = W.pstart;
	ar.who.key = random_u64();
	if (rq->tenant) {
		/* The tenant's keys start with its namespace (request.h). */
		memcpy(ns, rq->key, rq->nslen);
		ns[rq->nslen] = '\0';
		ar.quota_prefix = ns;
		ar.quota_held = W.conf.tenant_max_held;
		ar.quota_waiting = W.conf.tenant_max_waiting;
	}

	if ((db = db_enter(true)) == NULL) {
		send_lc_error(r, LC_E_DB, NULL);
		return;
	}
	rc = lock_acquire(db, &ar, now, &g, &info);
	LOG_DB_ERROR(rc, "acquire", rq);
	rc = db_leave(rc);

	if (rc == LC_QUEUED) {
		/* The token its grant will carry, which only this request
		 * knows from now on (the database keeps its hash). */
		memcpy(ar.who.token, info.token, sizeof(ar.who.token));
		/* A retry with a request_id may have taken over a queue place
		 * whose old request still waits: wake it to find out. */
		if (ar.request_id != NULL) {
			notify(rq->key, false, info.waiter_id, 0);
			(void)wakeup_signal(info.waiter_id);
		}
		/* The parking thread answers it from now on. */
		if ((rc = wait_park(r->fr, rq, &ar.who, ar.deadline, &info,
		    now)) == 0) {
			if (atomic_load(&parked_full) &&
			    atomic_exchange(&parked_full, false))
				log_info("waiters are accepted again");
			return;
		}
		wait_withdraw(&ref, &ar.who, info.waiter_id);
		if (rc == WAIT_PARK_CLIENT) {
			log_debug(LOCK_FMT ": acquire refused: "
			    "too_many_waiters (client)", LOCK_ARGS(rq));
			send_error(r, 503, "too_many_waiters", "this client "
			    "address has as many waiting requests as one "
			    "address may have (max_waiting_per_client); "
			    "retry", NULL, false);
			return;
		}
		if (!atomic_load(&parked_full) &&
		    !atomic_exchange(&parked_full, true))
			log_warnx("%d requests are waiting, this worker's cap "
			    "(max_waiting, file descriptors): new waiters are "
			    "refused (too_many_waiters)",
			    atomic_load(&W.waiting));
		log_debug(LOCK_FMT ": acquire refused: too_many_waiters "
		    "(worker)", LOCK_ARGS(rq));
		send_error(r, 503, "too_many_waiters", "this worker holds as "
		    "many waiting requests as it may (max_waiting, file "
		    "descriptors); retry", NULL, false);
		return;
	}
	acquire_answer(r, &ref, rc, &g, ar.who.key, now, ar.wait);
}

static void
handle_release(struct reply *r, const struct request *rq)
{
	struct lockcore *db;
	struct lock_handoff ho;
	json_object *o;
	bool wake = false;
	int rc;

	if ((db = db_enter(true)) == NULL) {
		send_lc_error(r, LC_E_DB, NULL);
		return;
	}
	handoff_init(&ho);
	rc = lock_release(db, rq->key, rq->token, now_ms(), &wake, &ho);
	LOG_DB_ERROR(rc, "release", rq);
	if ((rc = db_leave(rc)) < 0) {
		/* Undone or not committed: nothing to act upon. */
		ho.waiter_id = 0;
		wake = false;
	}
	handed_on(rq->key, wake, &ho);
	log_debug(LOCK_FMT ": release: %s", LOCK_ARGS(rq),
	    rc == LC_OK ? "released" : lc_code(rc));
	if (rc != LC_OK) {
		send_lc_error(r, rc, NULL);
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "lock", jstr(rq->name));
	json_object_object_add(o, "released", json_object_new_boolean(1));
	(void)send_json(r, 200, NULL, o, false);
}

static void
handle_renew(struct reply *r, const struct request *rq)
{
	struct lockcore *db;
	struct lock_grant g;
	int rc;

	if ((db = db_enter(true)) == NULL) {
		send_lc_error(r, LC_E_DB, NULL);
		return;
	}
	rc = lock_renew(db, rq->key, rq->token, rq->ttl_ms, now_ms(), &g);
	LOG_DB_ERROR(rc, "renew", rq);
	rc = db_leave(rc);
	log_debug(LOCK_FMT ": renew: %s", LOCK_ARGS(rq),
	    rc == LC_OK ? "renewed" : lc_code(rc));
	if (rc != LC_OK) {
		send_lc_error(r, rc, NULL);
		return;
	}
	/* The coordinator's timer for this lock's waiters moves too. */
	notify(rq->key, false, 0, g.expires_at);
	(void)send_json(r, 200, NULL, grant_json(&g, rq->name, g.ttl_ms),
	    false);
}

static void
handle_cancel(struct reply *r, const struct request *rq)
{
	struct lockcore *db;
	struct lock_handoff ho;
	json_object *o;
	bool held = false, wake = false;
	int64_t kick = 0;
	int rc;

	if ((db = db_enter(true)) == NULL) {
		send_lc_error(r, LC_E_DB, NULL);
		return;
	}
	handoff_init(&ho);
	rc = lock_cancel(db, rq->key, rq->request_id, now_ms(), &held, &kick,
	    &wake, &ho);
	LOG_DB_ERROR(rc, "cancel", rq);
	if ((rc = db_leave(rc)) < 0) {
		/* Undone or not committed: nothing to act upon. */
		ho.waiter_id = kick = 0;
		wake = false;
	}
	/* The request whose row or grant went away learns it when it looks. */
	if (kick != 0) {
		notify(rq->key, false, kick, 0);
		(void)wakeup_signal(kick);
	}
	handed_on(rq->key, wake, &ho);
	log_debug(LOCK_FMT ": cancel: %s", LOCK_ARGS(rq),
	    rc != LC_OK ? lc_code(rc) : held ? "cancelled (was held)" :
	    "cancelled (was waiting)");
	if (rc != LC_OK) {
		send_lc_error(r, rc, NULL);
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "lock", jstr(rq->name));
	json_object_object_add(o, "cancelled", json_object_new_boolean(1));
	json_object_object_add(o, "was", jstr(held ? "held" : "waiting"));
	(void)send_json(r, 200, NULL, o, false);
}

static void
handle_status(struct reply *r, const struct request *rq)
{
	struct lockcore *db;
	struct lock_status st;
	json_object *o, *hs;
	int rc, i;

	if ((db = db_enter(false)) == NULL) {
		send_lc_error(r, LC_E_DB, NULL);
		return;
	}
	rc = lock_status(db, rq->key, now_ms(), &st);
	LOG_DB_ERROR(rc, "status", rq);
	rc = db_leave(rc);
	if (rc != LC_OK) {
		send_lc_error(r, rc, NULL);
		return;
	}
	o = json_object_new_object();
	hs = json_object_new_array();
	for (i = 0; i < st.nholders; i++) {
		const struct lock_holder *h = &st.holders[i];
		json_object *ho = json_object_new_object();

		json_object_object_add(ho, "owner", jstr(h->owner));
		json_object_object_add(ho, "fence",
		    json_object_new_int64(h->fence));
		json_object_object_add(ho, "acquired_at", jsecs(h->acquired_at));
		json_object_object_add(ho, "expires_at", jsecs(h->expires_at));
		json_object_array_add(hs, ho);
	}
	json_object_object_add(o, "lock", jstr(rq->name));
	json_object_object_add(o, "held", json_object_new_boolean(st.nholders > 0));
	json_object_object_add(o, "holders", hs);
	json_object_object_add(o, "waiters", json_object_new_int(st.waiters));
	(void)send_json(r, 200, NULL, o, rq->head);
}

/* What list_one() adds to: keys lose their namespace's nslen bytes. */
struct list_out {
	json_object *arr;
	size_t       nslen;
};

static int
list_one(const struct lock_list_entry *e, void *arg)
{
	struct list_out *lo = arg;
	json_object *o;

	/* lockcore returns only keys that start with the namespace. */
	if (strlen(e->name) <= lo->nslen)
		return 0;
	o = json_object_new_object();
	json_object_object_add(o, "lock", jstr(e->name + lo->nslen));
	json_object_object_add(o, "holders", json_object_new_int(e->holders));
	json_object_object_add(o, "waiters", json_object_new_int(e->waiters));
	json_object_array_add(lo->arr, o);
	return 0;
}

static void
handle_list(struct reply *r, const struct request *rq)
{
	struct lockcore *db;
	json_object *o, *arr = json_object_new_array();
	struct list_out lo = { arr, rq->nslen };
	bool more = false;
	int rc;

	if ((db = db_enter(false)) == NULL) {
		json_object_put(arr);
		send_lc_error(r, LC_E_DB, NULL);
		return;
	}
	rc = lock_list(db, rq->key_prefix, rq->key_skip,
	    rq->key_after[0] != '\0' ? rq->key_after : NULL, rq->limit,
	    now_ms(), list_one, &lo, &more);
	log_list_db_error(rc, rq);
	rc = db_leave(rc);
	if (rc != LC_OK) {
		json_object_put(arr);
		send_lc_error(r, rc, NULL);
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "locks", arr);
	json_object_object_add(o, "more", json_object_new_boolean(more));
	(void)send_json(r, 200, NULL, o, rq->head);
}

/*
 * GET /healthz.  Everyone sees whether the database and the coordinator
 * work (and a recovery's end).  The figures of the whole service (the
 * coordinator's count of waiting requests, over every namespace) and of
 * this process are shown only to an authenticated request: an anonymous
 * one may come from anywhere, as /healthz is left open for monitors, and
 * must not learn how busy the tenants are.
 */
static void
handle_health(struct reply *r, const struct request *rq)
{
	struct coord_stats cs;
	struct lockcore *db;
	json_object *o = json_object_new_object();
	int64_t grace;
	bool db_ok = false, coord_ok;

	if ((db = db_enter(true)) != NULL) {
		db_ok = db_leave(lockcore_ping(db)) == LC_OK;
	}
	coord_ok = coord_ping(W.conf.coord_socket, &cs, COORD_ACK_MS) ==
	    COORDC_OK;
	json_object_object_add(o, "ok", json_object_new_boolean(db_ok));
	json_object_object_add(o, "database", jstr(db_ok ? "ok" : "unavailable"));
	json_object_object_add(o, "coordinator", jstr(coord_ok ? "ok" : "down"));
	if (rq->tenant) {
		if (coord_ok)
			json_object_object_add(o, "waiters",
			    json_object_new_int64((int64_t)cs.waiters));
		json_object_object_add(o, "worker_pid",
		    json_object_new_int(W.pid));
		json_object_object_add(o, "threads",
		    json_object_new_int(atomic_load(&W.nthreads)));
	}
	/* Still 200: reads, renewals and releases work meanwhile. */
	if (db_ok && (grace = atomic_load(&W.grace_until)) >
	    clock_wall_ms())
		json_object_object_add(o, "recovering_until", jsecs(grace));
	if (!db_ok)
		json_object_object_add(o, "error", jstr("unavailable"));
	(void)send_json(r, db_ok ? 200 : 503, NULL, o, rq->head);
}

/*
 * Reads the whole body up to the end of FastCGI stdin, so that nothing is
 * left unread on the connection (a waiter polls it to notice a client that
 * went away).  Returns the length, or -1 if it exceeds `cap`.
 */
static ssize_t
read_body(FCGX_Request *fr, char *buf, size_t cap)
{
	size_t len = 0;
	char sink[1024];
	bool over = false;

	for (;;) {
		int n;

		if (!over && len < cap)
			n = FCGX_GetStr(buf + len, (int)(cap - len), fr->in);
		else
			n = FCGX_GetStr(sink, (int)sizeof(sink), fr->in);
		if (n <= 0)
			break;
		if (!over && len < cap)
			len += (size_t)n;
		else
			over = true;
		if (len == cap && !over) {
			/* One more byte decides whether it was too large. */
			if (FCGX_GetChar(fr->in) != EOF)
				over = true;
		}
	}
	return over ? -1 : (ssize_t)len;
}

typedef void (*handler_fn)(struct reply *, const struct request *);

static const handler_fn handlers[] = {
	[ROUTE_ACQUIRE] = handle_acquire,
	[ROUTE_RELEASE] = handle_release,
	[ROUTE_RENEW] = handle_renew,
	[ROUTE_CANCEL] = handle_cancel,
	[ROUTE_STATUS] = handle_status,
	[ROUTE_LIST] = handle_list,
	[ROUTE_HEALTH] = handle_health,
};

void
handle_request(FCGX_Request *fr)
{
	static char body_none[1];
	struct reply rp = { fr, -1, 0 };
	struct request_in in;
	struct request rq;
	struct request_error re;
	char *body = NULL;
	ssize_t blen;
	const char *user;

	memset(&in, 0, sizeof(in));
	in.method = FCGX_GetParam("REQUEST_METHOD", fr->envp);
	in.uri = FCGX_GetParam("REQUEST_URI", fr->envp);
	in.script_name = FCGX_GetParam("SCRIPT_NAME", fr->envp);
	in.path_info = FCGX_GetParam("PATH_INFO", fr->envp);
	in.content_type = FCGX_GetParam("CONTENT_TYPE", fr->envp);
	in.lock_token = FCGX_GetParam("HTTP_LOCK_TOKEN", fr->envp);
	/* REMOTE_USER is the web server's; a client's Remote-User header
	 * arrives as HTTP_REMOTE_USER and is never read. */
	user = FCGX_GetParam("REMOTE_USER", fr->envp);

	/* Before anything else looks at the parameters: libfcgi trusts its
	 * peer, so their number and sizes are capped here (request.h). */
	if (request_env_check(fr->envp, &re) != 0) {
		(void)read_body(fr, body_none, 0);
		send_error(&rp, re.status, re.code, re.message, NULL, false);
		log_info("%s: refused: %d %s", __func__, re.status,
		    re.message);
		return;
	}
	if ((body = malloc(REQ_BODY_MAX)) == NULL) {
		send_error(&rp, 503, "unavailable", "out of memory", NULL, false);
		return;
	}
	blen = read_body(fr, body, REQ_BODY_MAX);
	if (blen < 0) {
		send_error(&rp, 413, "too_large", "the request body is larger "
		    "than 16384 bytes", NULL, false);
		goto out;
	}
	in.body = body;
	in.bodylen = (size_t)blen;

	if (request_parse(&in, &W.limits, &rq, &re) != 0 ||
	    request_scope(&rq, user, W.conf.anonymous_deny != 0, &re) != 0) {
		send_error(&rp, re.status, re.code, re.message, re.allow,
		    in.method != NULL && strcmp(in.method, "HEAD") == 0);
		goto out;
	}
	/* Everything is copied into rq. */
	free(body);
	body = NULL;
	handlers[rq.route](&rp, &rq);
	db_sweep();
out:
	free(body);
}
