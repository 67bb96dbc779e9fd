/*
 * handlers.c: one HTTP request from accept to response.  The request is
 * parsed by request.c and routed here to its handler; the lock semantics
 * are lockcore's, reached through the database gate (db.h).  A handler
 * tells the coordinator what changed (coordlink.h), delivers what its
 * transaction handed on (deliver.h), hands an acquire that must wait to
 * the parking thread (wait.h), and answers (reply.h).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json.h>

#include "clock.h"
#include "coordlink.h"
#include "db.h"
#include "deliver.h"
#include "handlers.h"
#include "log.h"
#include "rand.h"
#include "reply.h"
#include "wait.h"
#include "wakeup.h"

#define NOMEM_LOG_MS 10000      /* "no memory to park": one line per */

static struct handlers_conf conf;

static json_object *
jstr(const char *s)
{
	return json_object_new_string(s);
}

void
handlers_init(const struct handlers_conf *hc)
{
	conf = *hc;
}

/* On LC_E_DB, logs SQLite's reason for a list (never a token). */
static void
log_list_db_error(struct lockcore *db, int rc, const struct request *rq)
{
	if (rc != LC_E_DB)
		return;
	log_warnx("list of prefix '%s'%s%s%s: %s", LOG_ESC(rq->prefix),
	    rq->tenant ? " of '" : "",
	    rq->tenant ? LOG_ESCN(rq->key_prefix + 1, rq->nslen - 2) : "",
	    rq->tenant ? "'" : "", lockcore_errmsg(db));
}

/* Set while this process refuses waiters (too many parked). */
static atomic_bool parked_full;

/*
 * Hands a queued acquire's connection to the parking thread, which answers
 * it from now on: libfcgi's part of the request goes (its buffers are most
 * of what a waiter would cost), and the caller's FCGX_Finish_r() finds no
 * connection to close.  0, or a WAIT_PARK_* code with fr untouched.
 */
static int
park(FCGX_Request *fr, const struct lockref *ref,
    const struct lock_waiter_ident *who, int64_t deadline,
    const struct lock_wait_info *info, int64_t started)
{
	int rc;

	rc = wait_park(fr->ipcFd, fr->requestId,
	    FCGX_GetParam("REMOTE_ADDR", fr->envp), ref, who, deadline, info,
	    started);
	if (rc != 0)
		return rc;
	/* Frees only memory: the connection is the parking thread's. */
	FCGX_Free(fr, 0);
	fr->ipcFd = -1;
	return 0;
}

static void
handle_acquire(struct reply *r, const struct request *rq)
{
	struct lock_acquire_req ar;
	struct lockref ref = { rq->name, rq->key, rq->tenant, rq->nslen };
	char ns[LC_KEY_MAX + 1];
	struct lock_grant g;
	struct lock_wait_info info;
	struct lockcore *db;
	int64_t now = clock_wall_ms();
	int rc;

	memset(&ar, 0, sizeof(ar));
	ar.name = rq->key;
	ar.owner = rq->owner;
	ar.request_id = rq->request_id[0] != '\0' ? rq->request_id : NULL;
	ar.ttl_ms = rq->ttl_ms;
	ar.deadline = now + rq->timeout_ms;
	ar.wait = rq->timeout_ms > 0;
	ar.max_waiters = conf.max_waiters;
	ar.who.pid = conf.pid;
	ar.who.pstart = conf.pstart;
	ar.who.key = random_u64();
	if (rq->tenant) {
		/* The tenant's keys start with its namespace (request.h). */
		memcpy(ns, rq->key, rq->nslen);
		ns[rq->nslen] = '\0';
		ar.quota_prefix = ns;
		ar.quota_held = conf.tenant_max_held;
		ar.quota_waiting = conf.tenant_max_waiting;
	}

	if ((db = db_enter(DB_WRITE)) == NULL) {
		reply_lc_error(r, LC_E_DB);
		return;
	}
	rc = lock_acquire(db, &ar, now, &g, &info);
	LOG_DB_ERROR(db, rc, "acquire", rq);
	rc = db_leave(rc);

	if (rc == LC_QUEUED) {
		/* The token its grant will carry, which only this request
		 * knows from now on (the database keeps its hash). */
		memcpy(ar.who.token, info.token, sizeof(ar.who.token));
		/* A retry with a request_id may have taken over a queue place
		 * whose old request still waits: wake it to find out. */
		if (ar.request_id != NULL) {
			coordlink_notify(rq->key, false, info.waiter_id, 0);
			(void)wakeup_signal(info.waiter_id);
		}
		if ((rc = park(r->fr, &ref, &ar.who, ar.deadline, &info,
		    now)) == 0) {
			if (atomic_load(&parked_full) &&
			    atomic_exchange(&parked_full, false))
				log_info("waiters are accepted again");
			return;
		}
		wait_withdraw(&ref, &ar.who, info.waiter_id);
		if (rc == WAIT_PARK_NOMEM) {
			static _Atomic int64_t logged_at;
			int64_t t = clock_mono_ms(), last = atomic_load(&logged_at);

			/* One line per NOMEM_LOG_MS: every acquire that would
			 * wait is refused while memory is short. */
			if ((last == 0 || t - last >= NOMEM_LOG_MS) &&
			    atomic_compare_exchange_strong(&logged_at, &last, t))
				log_warnx(LOCK_FMT ": acquire refused: no memory "
				    "to park it (logged once per %d s)",
				    LOCK_ARGS(rq), NOMEM_LOG_MS / 1000);
			reply_lc_error(r, LC_E_NOMEM);
			return;
		}
		if (rc == WAIT_PARK_CLIENT) {
			log_debug(LOCK_FMT ": acquire refused: "
			    "too_many_waiters (client)", LOCK_ARGS(rq));
			reply_error(r, 503, "too_many_waiters", "this client "
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
			    wait_count());
		log_debug(LOCK_FMT ": acquire refused: too_many_waiters "
		    "(worker)", LOCK_ARGS(rq));
		reply_error(r, 503, "too_many_waiters", "this worker holds as "
		    "many waiting requests as it may (max_waiting, file "
		    "descriptors); retry", NULL, false);
		return;
	}
	deliver_acquire(r, &ref, rc, &g, ar.who.key, now, ar.wait);
}

static void
handle_release(struct reply *r, const struct request *rq)
{
	struct lockcore *db;
	struct lock_handoff ho;
	json_object *o;
	bool wake = false;
	int rc;

	if ((db = db_enter(DB_WRITE)) == NULL) {
		reply_lc_error(r, LC_E_DB);
		return;
	}
	coordlink_handoff_init(&ho);
	rc = lock_release(db, rq->key, rq->token, clock_wall_ms(), &wake, &ho);
	LOG_DB_ERROR(db, rc, "release", rq);
	if ((rc = db_leave(rc)) < 0) {
		/* Undone or not committed: nothing to act upon. */
		ho.waiter_id = 0;
		wake = false;
	}
	deliver_handed_on(rq->key, wake, &ho);
	log_debug(LOCK_FMT ": release: %s", LOCK_ARGS(rq),
	    rc == LC_OK ? "released" : reply_lc_code(rc));
	if (rc != LC_OK) {
		reply_lc_error(r, rc);
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "lock", jstr(rq->name));
	json_object_object_add(o, "released", json_object_new_boolean(1));
	(void)reply_json(r, 200, NULL, o, false);
}

static void
handle_renew(struct reply *r, const struct request *rq)
{
	struct lockcore *db;
	struct lock_grant g;
	int rc;

	if ((db = db_enter(DB_WRITE)) == NULL) {
		reply_lc_error(r, LC_E_DB);
		return;
	}
	rc = lock_renew(db, rq->key, rq->token, rq->ttl_ms, clock_wall_ms(), &g);
	LOG_DB_ERROR(db, rc, "renew", rq);
	rc = db_leave(rc);
	log_debug(LOCK_FMT ": renew: %s", LOCK_ARGS(rq),
	    rc == LC_OK ? "renewed" : reply_lc_code(rc));
	if (rc != LC_OK) {
		reply_lc_error(r, rc);
		return;
	}
	/* The coordinator's timer for this lock's waiters moves too. */
	coordlink_notify(rq->key, false, 0, db_local_ms(g.expires_at));
	(void)reply_json(r, 200, NULL, reply_grant(&g, rq->name, g.ttl_ms),
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

	if ((db = db_enter(DB_WRITE)) == NULL) {
		reply_lc_error(r, LC_E_DB);
		return;
	}
	coordlink_handoff_init(&ho);
	rc = lock_cancel(db, rq->key, rq->request_id, clock_wall_ms(), &held, &kick,
	    &wake, &ho);
	LOG_DB_ERROR(db, rc, "cancel", rq);
	if ((rc = db_leave(rc)) < 0) {
		/* Undone or not committed: nothing to act upon. */
		ho.waiter_id = kick = 0;
		wake = false;
	}
	/* The request whose row or grant went away learns it when it looks. */
	if (kick != 0) {
		coordlink_notify(rq->key, false, kick, 0);
		(void)wakeup_signal(kick);
	}
	deliver_handed_on(rq->key, wake, &ho);
	log_debug(LOCK_FMT ": cancel: %s", LOCK_ARGS(rq),
	    rc != LC_OK ? reply_lc_code(rc) : held ? "cancelled (was held)" :
	    "cancelled (was waiting)");
	if (rc != LC_OK) {
		reply_lc_error(r, rc);
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "lock", jstr(rq->name));
	json_object_object_add(o, "cancelled", json_object_new_boolean(1));
	json_object_object_add(o, "was", jstr(held ? "held" : "waiting"));
	(void)reply_json(r, 200, NULL, o, false);
}

static void
handle_status(struct reply *r, const struct request *rq)
{
	struct lockcore *db;
	struct lock_status st;
	json_object *o, *hs;
	int rc, i;

	if ((db = db_enter(DB_READ_FIRST)) == NULL) {
		reply_lc_error(r, LC_E_DB);
		return;
	}
	rc = lock_status(db, rq->key, clock_wall_ms(), &st);
	LOG_DB_ERROR(db, rc, "status", rq);
	rc = db_leave(rc);
	if (rc != LC_OK) {
		reply_lc_error(r, rc);
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
		json_object_object_add(ho, "acquired_at", reply_secs(h->acquired_at));
		json_object_object_add(ho, "expires_at", reply_secs(h->expires_at));
		json_object_array_add(hs, ho);
	}
	json_object_object_add(o, "lock", jstr(rq->name));
	json_object_object_add(o, "held", json_object_new_boolean(st.nholders > 0));
	json_object_object_add(o, "holders", hs);
	json_object_object_add(o, "waiters", json_object_new_int(st.waiters));
	(void)reply_json(r, 200, NULL, o, rq->head);
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

	if ((db = db_enter(DB_READ_FIRST)) == NULL) {
		json_object_put(arr);
		reply_lc_error(r, LC_E_DB);
		return;
	}
	rc = lock_list(db, rq->key_prefix, rq->key_skip,
	    rq->key_after[0] != '\0' ? rq->key_after : NULL, rq->limit,
	    clock_wall_ms(), list_one, &lo, &more);
	log_list_db_error(db, rc, rq);
	rc = db_leave(rc);
	if (rc != LC_OK) {
		json_object_put(arr);
		reply_lc_error(r, rc);
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "locks", arr);
	json_object_object_add(o, "more", json_object_new_boolean(more));
	(void)reply_json(r, 200, NULL, o, rq->head);
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
	struct lockcore_store_info si = { .kind = NULL, .primary = -1 };
	struct lockcore *db;
	json_object *o = json_object_new_object(), *so;
	int64_t grace, t0, us = 0;
	bool db_ok = false, coord_ok;
	char lat[32];
	int rc;

	/* The ping writes: it proves that transactions commit. */
	t0 = clock_mono_us();
	if ((db = db_enter(DB_WRITE)) != NULL) {
		rc = lockcore_ping(db);
		us = clock_mono_us() - t0;
		if (rc == LC_OK && lockcore_store_info(db, &si) != LC_OK)
			si.primary = -1;
		db_ok = db_leave(rc) == LC_OK;
	}
	coord_ok = coordlink_ping(&cs);
	/* The store: its kind, whether it takes writes and how long the
	 * ping took, to everyone; which server, to tenants only. */
	if (si.kind != NULL) {
		so = json_object_new_object();
		json_object_object_add(so, "kind", jstr(si.kind));
		if (si.primary >= 0)
			json_object_object_add(so, "primary",
			    json_object_new_boolean(si.primary));
		(void)snprintf(lat, sizeof(lat), "%.6f", (double)us / 1e6);
		json_object_object_add(so, "latency",
		    json_object_new_double_s((double)us / 1e6, lat));
		if (rq->tenant && si.server[0] != '\0')
			json_object_object_add(so, "server", jstr(si.server));
		json_object_object_add(o, "store", so);
	}
	json_object_object_add(o, "ok", json_object_new_boolean(db_ok));
	json_object_object_add(o, "database", jstr(db_ok ? "ok" : "unavailable"));
	json_object_object_add(o, "coordinator", jstr(coord_ok ? "ok" : "down"));
	if (rq->tenant) {
		if (coord_ok)
			json_object_object_add(o, "waiters",
			    json_object_new_int64((int64_t)cs.waiters));
		json_object_object_add(o, "worker_pid",
		    json_object_new_int(conf.pid));
		json_object_object_add(o, "threads",
		    json_object_new_int(atomic_load(conf.nthreads)));
	}
	/* Still 200: reads, renewals and releases work meanwhile. */
	if (db_ok && (grace = db_grace_until()) > clock_wall_ms())
		json_object_object_add(o, "recovering_until", reply_secs(grace));
	if (!db_ok)
		json_object_object_add(o, "error", jstr("unavailable"));
	(void)reply_json(r, db_ok ? 200 : 503, NULL, o, rq->head);
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
		reply_error(&rp, re.status, re.code, re.message, NULL, false);
		log_info("%s: refused: %d %s", __func__, re.status,
		    re.message);
		return;
	}
	if ((body = malloc(REQ_BODY_MAX)) == NULL) {
		reply_error(&rp, 503, "unavailable", "out of memory", NULL, false);
		return;
	}
	blen = read_body(fr, body, REQ_BODY_MAX);
	if (blen < 0) {
		char msg[64];

		(void)snprintf(msg, sizeof(msg), "the request body is larger "
		    "than %d bytes", REQ_BODY_MAX);
		reply_error(&rp, 413, "too_large", msg, NULL, false);
		goto out;
	}
	in.body = body;
	in.bodylen = (size_t)blen;

	if (request_parse(&in, &conf.limits, &rq, &re) != 0 ||
	    request_scope(&rq, user, conf.anonymous_deny, &re) != 0) {
		reply_error(&rp, re.status, re.code, re.message, re.allow,
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
