/*
 * Unit tests of libhttplock.  The "server" cases run against the real
 * stack (lighttpd, workers, coordinator) that tests/client.sh starts with
 * tests/integ/withstack.py and names in HTTPLOCK_URL; every lock name starts
 * with this run's prefix.  The "fake" cases need answers the real server
 * gives only in trouble (HTML 500s, dropped connections, malformed JSON),
 * so a scripted HTTP server in a thread of the test process gives them and
 * records what the library sent.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <check.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "httplock.h"

static const char *url;         /* HTTPLOCK_URL, checked by main */
static char pfx[32];            /* "ck<pid>-": this run's lock names */

/* ============================================================ helpers */

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
sleep_s(double s)
{
	struct timespec ts;

	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* This run's name for lock `what` into buf[HTTPLOCK_NAME_MAX + 1]. */
static void
lname(char *buf, const char *what)
{
	int n = snprintf(buf, HTTPLOCK_NAME_MAX + 1, "%s%s", pfx, what);

	ck_assert(n > 0 && n <= HTTPLOCK_NAME_MAX);
}

/* A request_id for `what` into rid[64]: "<what>-" and 22 random
 * characters of [A-Za-z0-9_-], as the server wants request ids to be hard
 * to guess. */
static void
rand_rid(char *rid, const char *what)
{
	static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned char r[22];
	size_t i, n;

	ck_assert(getrandom(r, sizeof(r), 0) == (ssize_t)sizeof(r));
	n = (size_t)snprintf(rid, 64, "%s-", what);
	ck_assert(n + sizeof(r) < 64);
	for (i = 0; i < sizeof(r); i++)
		rid[n + i] = abc[r[i] % 64];
	rid[n + sizeof(r)] = '\0';
}

static struct httplock *
hnew(void)
{
	struct httplock *h = httplock_new(url, NULL);

	ck_assert_ptr_nonnull(h);
	return h;
}

/* Acquires with `timeout` and the default ttl; returns the code. */
static enum httplock_code
acq(struct httplock *h, const char *name, double timeout,
    struct httplock_grant *g, struct httplock_error *e)
{
	struct httplock_acquire_opts ao = HTTPLOCK_ACQUIRE_DEFAULTS;

	ao.timeout = timeout;
	return httplock_acquire(h, name, &ao, g, e);
}

/* Acquires `name`, which must be free. */
static void
must_acquire(struct httplock *h, const char *name, struct httplock_grant *g)
{
	struct httplock_error e;
	enum httplock_code rc = acq(h, name, 0, g, &e);

	ck_assert_msg(rc == HTTPLOCK_OK, "acquire %s: %s (%ld %s: %s)", name,
	    httplock_strerror(rc), e.http_status, e.server_code, e.message);
}

static void
must_release(struct httplock *h, const char *name, const char *token)
{
	struct httplock_error e;
	enum httplock_code rc = httplock_release(h, name, token, &e);

	ck_assert_msg(rc == HTTPLOCK_OK, "release %s: %s (%s)", name,
	    httplock_strerror(rc), e.message);
}

static void
must_status(struct httplock *h, const char *name, struct httplock_status *st)
{
	struct httplock_error e;
	enum httplock_code rc = httplock_status(h, name, st, &e);

	ck_assert_msg(rc == HTTPLOCK_OK, "status %s: %s (%s)", name,
	    httplock_strerror(rc), e.message);
}

static bool
is_hex(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (s[i] == '\0' || strchr("0123456789abcdef", s[i]) == NULL)
			return false;
	return s[len] == '\0';
}

/* Waits up to 5 s until `name` has `n` waiters. */
static void
wait_waiters(struct httplock *h, const char *name, long n)
{
	struct httplock_status st;
	double end = now_s() + 5;

	do {
		must_status(h, name, &st);
		if (st.waiters == n)
			return;
		sleep_s(0.02);
	} while (now_s() < end);
	ck_abort_msg("%s: %ld waiters, not %ld", name, st.waiters, n);
}

/* An acquire in a thread of its own. */
struct waiter {
	struct httplock       *h;
	const char            *name;
	struct httplock_acquire_opts ao;
	struct httplock_grant  g;
	struct httplock_error  e;
	enum httplock_code     rc;
	double                 took;        /* seconds */
	pthread_t              thr;
};

static void *
waiter_run(void *arg)
{
	struct waiter *w = arg;
	double t0 = now_s();

	w->rc = httplock_acquire(w->h, w->name, &w->ao, &w->g, &w->e);
	w->took = now_s() - t0;
	return NULL;
}

static void
waiter_start(struct waiter *w, struct httplock *h, const char *name,
    double timeout, const char *request_id)
{
	struct httplock_acquire_opts ao = HTTPLOCK_ACQUIRE_DEFAULTS;

	memset(w, 0, sizeof(*w));
	w->h = h;
	w->name = name;
	w->ao = ao;
	w->ao.timeout = timeout;
	w->ao.request_id = request_id;
	ck_assert_int_eq(pthread_create(&w->thr, NULL, waiter_run, w), 0);
}

static void
waiter_join(struct waiter *w)
{
	ck_assert_int_eq(pthread_join(w->thr, NULL), 0);
}

/* =========================================================== the handle */

static const struct {
	const char *url;
	int         ok;
} new_cases[] = {
	{ NULL, 0 },
	{ "", 0 },
	{ "not a url", 0 },
	{ "127.0.0.1:8080", 0 },
	{ "ftp://127.0.0.1/", 0 },
	{ "file:///tmp/x", 0 },
	{ "http://127.0.0.1:8080/?a=b", 0 },
	{ "http://127.0.0.1:8080/#frag", 0 },
	{ "http://127.0.0.1:1", 1 },
	{ "http://127.0.0.1:8080/", 1 },
	{ "HTTPS://example.com/httplock/", 1 },
	{ "https://example.com/httplock", 1 },
};

START_TEST(test_new_free)
{
	struct httplock *h = httplock_new(new_cases[_i].url, NULL);

	ck_assert_msg((h != NULL) == new_cases[_i].ok, "line %d: %s", _i,
	    new_cases[_i].url != NULL ? new_cases[_i].url : "NULL");
	httplock_free(h);
	httplock_free(NULL);
}
END_TEST

START_TEST(test_no_trailing_slash)
{
	char base[256], name[HTTPLOCK_NAME_MAX + 1];
	struct httplock_status st;
	struct httplock *h;
	size_t len = strlen(url);

	ck_assert(len > 1 && len < sizeof(base));
	memcpy(base, url, len + 1);
	if (base[len - 1] == '/')
		base[len - 1] = '\0';
	ck_assert_ptr_nonnull(h = httplock_new(base, NULL));
	lname(name, "noslash");
	must_status(h, name, &st);
	ck_assert_int_eq(st.held, 0);
	ck_assert_int_eq(st.nholders, 0);
	ck_assert_int_eq(st.waiters, 0);
	httplock_free(h);
}
END_TEST

START_TEST(test_strerror)
{
	int i, j;

	for (i = HTTPLOCK_OK; i <= HTTPLOCK_NOMEM; i++) {
		const char *s = httplock_strerror((enum httplock_code)i);

		ck_assert_msg(s != NULL && s[0] != '\0', "code %d", i);
		for (j = HTTPLOCK_OK; j < i; j++)
			ck_assert_str_ne(s,
			    httplock_strerror((enum httplock_code)j));
	}
	ck_assert_str_eq(httplock_strerror(HTTPLOCK_TIMEOUT), "timeout");
	ck_assert_str_eq(httplock_strerror(HTTPLOCK_NOT_HELD), "not held");
	ck_assert_str_eq(httplock_strerror((enum httplock_code)99),
	    "unknown error");
}
END_TEST

/* ======================================================= against server */

START_TEST(test_acquire_status_release)
{
	struct httplock_acquire_opts ao = HTTPLOCK_ACQUIRE_DEFAULTS;
	char name[HTTPLOCK_NAME_MAX + 1];
	struct httplock_grant g;
	struct httplock_status st;
	struct httplock_error e;
	struct httplock *h = hnew();

	lname(name, "basic");
	ao.timeout = 0;
	ao.ttl = 12.5;
	ao.owner = "ck owner & co";
	ck_assert_int_eq(httplock_acquire(h, name, &ao, &g, &e), HTTPLOCK_OK);
	ck_assert_int_eq(e.code, HTTPLOCK_OK);
	ck_assert_int_eq(e.http_status, 200);
	ck_assert_str_eq(g.lock, name);
	ck_assert(is_hex(g.token, HTTPLOCK_TOKEN_LEN));
	ck_assert_int_ge(g.fence, 1);
	ck_assert_double_eq_tol(g.ttl, 12.5, 1e-6);
	ck_assert_double_eq_tol(g.expires_at - g.acquired_at, 12.5, 0.0015);
	ck_assert_double_eq_tol(g.acquired_at, (double)time(NULL), 5);
	ck_assert_str_eq(g.owner, "ck owner & co");
	ck_assert(strncmp(g.request_id, "c-", 2) == 0);
	ck_assert(is_hex(g.request_id + 2, 32));

	must_status(h, name, &st);
	ck_assert_int_eq(st.held, 1);
	ck_assert_int_eq(st.nholders, 1);
	ck_assert_int_eq(st.waiters, 0);
	ck_assert_str_eq(st.holders[0].owner, "ck owner & co");
	ck_assert_int_eq(st.holders[0].fence, g.fence);
	ck_assert_double_eq_tol(st.holders[0].acquired_at, g.acquired_at,
	    0.0015);
	ck_assert_double_eq_tol(st.holders[0].expires_at, g.expires_at,
	    0.0015);

	must_release(h, name, g.token);
	must_status(h, name, &st);
	ck_assert_int_eq(st.held, 0);
	ck_assert_int_eq(st.nholders, 0);
	httplock_free(h);
}
END_TEST

START_TEST(test_timeout_zero)
{
	char name[HTTPLOCK_NAME_MAX + 1];
	struct httplock_grant g, g2;
	struct httplock_error e;
	struct httplock *h = hnew();

	lname(name, "busy0");
	must_acquire(h, name, &g);
	ck_assert_int_eq(acq(h, name, 0, &g2, &e), HTTPLOCK_TIMEOUT);
	ck_assert_int_eq(e.code, HTTPLOCK_TIMEOUT);
	ck_assert_int_eq(e.http_status, 423);
	ck_assert_str_eq(e.server_code, "timeout");
	ck_assert(e.message[0] != '\0');
	must_release(h, name, g.token);
	httplock_free(h);
}
END_TEST

START_TEST(test_timeout_half)
{
	char name[HTTPLOCK_NAME_MAX + 1];
	struct httplock_grant g, g2;
	struct httplock_error e;
	struct httplock *h = hnew();
	double t0, took;

	lname(name, "busy05");
	must_acquire(h, name, &g);
	t0 = now_s();
	ck_assert_int_eq(acq(h, name, 0.5, &g2, &e), HTTPLOCK_TIMEOUT);
	took = now_s() - t0;
	printf("check_client: acquire with timeout 0.5 gave up after "
	    "%.3f s\n", took);
	ck_assert_int_eq(e.http_status, 423);
	ck_assert_msg(took >= 0.45 && took < 3.0, "took %.3f s", took);
	must_release(h, name, g.token);
	httplock_free(h);
}
END_TEST

START_TEST(test_handoff)
{
	char name[HTTPLOCK_NAME_MAX + 1];
	struct httplock_grant g;
	struct waiter w;
	struct httplock *h = hnew();

	lname(name, "handoff");
	must_acquire(h, name, &g);
	waiter_start(&w, h, name, 10, NULL);
	wait_waiters(h, name, 1);
	sleep_s(0.2);
	must_release(h, name, g.token);
	waiter_join(&w);
	ck_assert_msg(w.rc == HTTPLOCK_OK, "waiter: %s (%s)",
	    httplock_strerror(w.rc), w.e.message);
	ck_assert_int_eq(w.g.fence, g.fence + 1);
	ck_assert_str_ne(w.g.token, g.token);
	ck_assert_msg(w.took >= 0.2 && w.took < 5, "waited %.3f s", w.took);
	must_release(h, name, w.g.token);
	httplock_free(h);
}
END_TEST

START_TEST(test_renew)
{
	struct httplock_acquire_opts ao = HTTPLOCK_ACQUIRE_DEFAULTS;
	char name[HTTPLOCK_NAME_MAX + 1];
	struct httplock_grant g, r;
	struct httplock_status st;
	struct httplock_error e;
	struct httplock *h = hnew();
	double old;

	lname(name, "renew");
	ao.timeout = 0;
	ao.ttl = 5;
	ck_assert_int_eq(httplock_acquire(h, name, &ao, &g, &e), HTTPLOCK_OK);
	old = g.expires_at;
	r = g;
	ck_assert_int_eq(httplock_renew(h, name, g.token, 60, &r, &e),
	    HTTPLOCK_OK);
	ck_assert_msg(r.expires_at >= old + 54, "expires %.3f, was %.3f",
	    r.expires_at, old);
	ck_assert_double_eq_tol(r.ttl, 60, 1e-6);
	ck_assert_str_eq(r.token, g.token);
	ck_assert_int_eq(r.fence, g.fence);
	ck_assert_str_eq(r.request_id, g.request_id);   /* kept */
	must_status(h, name, &st);
	ck_assert_double_eq_tol(st.holders[0].expires_at, r.expires_at,
	    0.0015);

	/* ttl 0: the grant's own lease (60 s, as last renewed), not the
	 * server's default_ttl (30 s); no grant wanted. */
	ck_assert_int_eq(httplock_renew(h, name, g.token, 0, NULL, &e),
	    HTTPLOCK_OK);
	must_status(h, name, &st);
	ck_assert_double_eq_tol(st.holders[0].expires_at -
	    st.holders[0].acquired_at, 60, 5);
	must_release(h, name, g.token);
	httplock_free(h);
}
END_TEST

START_TEST(test_wrong_token)
{
	static const char wrong[] = "0123456789abcdef0123456789abcdef";
	char name[HTTPLOCK_NAME_MAX + 1];
	struct httplock_grant g, r;
	struct httplock_error e;
	struct httplock *h = hnew();

	lname(name, "wrongtoken");
	must_acquire(h, name, &g);
	ck_assert_str_ne(g.token, wrong);
	memset(&r, 0, sizeof(r));
	ck_assert_int_eq(httplock_renew(h, name, wrong, 10, &r, &e),
	    HTTPLOCK_NOT_HELD);
	ck_assert_int_eq(e.http_status, 409);
	ck_assert_str_eq(e.server_code, "not_held");
	ck_assert_int_eq(r.fence, 0);                   /* untouched */
	ck_assert_int_eq(httplock_release(h, name, wrong, &e),
	    HTTPLOCK_NOT_HELD);
	ck_assert_str_eq(e.server_code, "not_held");
	must_release(h, name, g.token);
	httplock_free(h);
}
END_TEST

START_TEST(test_release_twice)
{
	char name[HTTPLOCK_NAME_MAX + 1];
	struct httplock_grant g;
	struct httplock_error e;
	struct httplock *h = hnew();

	lname(name, "twice");
	must_acquire(h, name, &g);
	must_release(h, name, g.token);
	ck_assert_int_eq(httplock_release(h, name, g.token, &e),
	    HTTPLOCK_NOT_HELD);
	ck_assert_int_eq(e.code, HTTPLOCK_NOT_HELD);
	ck_assert_int_eq(e.http_status, 409);
	ck_assert_int_eq(httplock_renew(h, name, g.token, 0, NULL, &e),
	    HTTPLOCK_NOT_HELD);
	httplock_free(h);
}
END_TEST

START_TEST(test_request_id_explicit)
{
	struct httplock_acquire_opts ao = HTTPLOCK_ACQUIRE_DEFAULTS;
	char name[HTTPLOCK_NAME_MAX + 1], rid[64];
	struct httplock_grant g1, g2;
	struct httplock_error e;
	struct httplock *h = hnew();

	lname(name, "rid");
	rand_rid(rid, "explicit");
	ao.timeout = 0;
	ao.request_id = rid;
	ck_assert_int_eq(httplock_acquire(h, name, &ao, &g1, &e), HTTPLOCK_OK);
	ck_assert_int_eq(httplock_acquire(h, name, &ao, &g2, &e), HTTPLOCK_OK);
	ck_assert_str_eq(g1.request_id, rid);
	ck_assert_str_eq(g2.request_id, rid);
	ck_assert_str_eq(g1.token, g2.token);
	ck_assert_int_eq(g1.fence, g2.fence);
	must_release(h, name, g1.token);
	httplock_free(h);
}
END_TEST

START_TEST(test_request_id_generated)
{
	struct httplock_acquire_opts ao = HTTPLOCK_ACQUIRE_DEFAULTS;
	char name[HTTPLOCK_NAME_MAX + 1];
	struct httplock_grant g1, g2, g3;
	struct httplock_error e;
	struct httplock *h = hnew();

	lname(name, "ridgen");
	must_acquire(h, name, &g1);
	ck_assert_uint_eq(strlen(g1.request_id), 34);
	ck_assert(strncmp(g1.request_id, "c-", 2) == 0);
	ck_assert(is_hex(g1.request_id + 2, 32));
	ao.timeout = 0;
	ao.request_id = g1.request_id;
	ck_assert_int_eq(httplock_acquire(h, name, &ao, &g2, &e), HTTPLOCK_OK);
	ck_assert_str_eq(g2.token, g1.token);
	ck_assert_int_eq(g2.fence, g1.fence);
	ck_assert_str_eq(g2.request_id, g1.request_id);
	/* A fresh acquire makes a fresh id, and waits like anybody. */
	ck_assert_int_eq(acq(h, name, 0, &g3, &e), HTTPLOCK_TIMEOUT);
	must_release(h, name, g1.token);
	must_acquire(h, name, &g3);
	ck_assert_str_ne(g3.request_id, g1.request_id);
	must_release(h, name, g3.token);
	httplock_free(h);
}
END_TEST

START_TEST(test_cancel_held)
{
	char name[HTTPLOCK_NAME_MAX + 1];
	struct httplock_grant g;
	struct httplock_status st;
	struct httplock_error e;
	struct httplock *h = hnew();
	int was_held = -1;

	lname(name, "cancelheld");
	must_acquire(h, name, &g);
	ck_assert_int_eq(httplock_cancel(h, name, g.request_id, &was_held, &e),
	    HTTPLOCK_OK);
	ck_assert_int_eq(was_held, 1);
	must_status(h, name, &st);
	ck_assert_int_eq(st.held, 0);
	ck_assert_int_eq(httplock_cancel(h, name, g.request_id, NULL, &e),
	    HTTPLOCK_NOT_HELD);
	ck_assert_str_eq(e.server_code, "not_held");
	ck_assert_int_eq(httplock_release(h, name, g.token, &e),
	    HTTPLOCK_NOT_HELD);
	httplock_free(h);
}
END_TEST

START_TEST(test_cancel_waiting)
{
	char name[HTTPLOCK_NAME_MAX + 1], rid[64];
	struct httplock_grant g;
	struct httplock_error e;
	struct waiter w;
	struct httplock *h = hnew();
	int was_held = -1;

	lname(name, "cancelwait");
	rand_rid(rid, "waiting");
	must_acquire(h, name, &g);
	waiter_start(&w, h, name, 10, rid);
	wait_waiters(h, name, 1);
	ck_assert_int_eq(httplock_cancel(h, name, rid, &was_held, &e),
	    HTTPLOCK_OK);
	ck_assert_int_eq(was_held, 0);
	waiter_join(&w);
	ck_assert_msg(w.rc == HTTPLOCK_CANCELLED, "waiter: %s (%s)",
	    httplock_strerror(w.rc), w.e.message);
	ck_assert_int_eq(w.e.http_status, 409);
	ck_assert_str_eq(w.e.server_code, "cancelled");
	ck_assert_msg(w.took < 5, "waited %.3f s", w.took);
	must_release(h, name, g.token);
	httplock_free(h);
}
END_TEST

START_TEST(test_superseded)
{
	char name[HTTPLOCK_NAME_MAX + 1], rid[64];
	struct httplock_grant g;
	struct waiter w1, w2;
	struct httplock *h = hnew();

	lname(name, "superseded");
	rand_rid(rid, "super");
	must_acquire(h, name, &g);
	waiter_start(&w1, h, name, 10, rid);
	wait_waiters(h, name, 1);
	waiter_start(&w2, h, name, 10, rid);
	waiter_join(&w1);
	ck_assert_msg(w1.rc == HTTPLOCK_SUPERSEDED, "first: %s (%s)",
	    httplock_strerror(w1.rc), w1.e.message);
	ck_assert_str_eq(w1.e.server_code, "superseded");
	wait_waiters(h, name, 1);
	must_release(h, name, g.token);
	waiter_join(&w2);
	ck_assert_msg(w2.rc == HTTPLOCK_OK, "second: %s (%s)",
	    httplock_strerror(w2.rc), w2.e.message);
	ck_assert_int_eq(w2.g.fence, g.fence + 1);
	ck_assert_str_eq(w2.g.request_id, rid);
	must_release(h, name, w2.g.token);
	httplock_free(h);
}
END_TEST

/* Collects listed names; stops after `stop_after` if that is > 0. */
struct seen {
	char   names[8][HTTPLOCK_NAME_MAX + 1];
	long   holders[8];
	long   waiters[8];
	int    n;
	int    stop_after;
	char   last[HTTPLOCK_NAME_MAX + 1];
	bool   sorted;
};

static int
see(const struct httplock_lock_info *info, void *arg)
{
	struct seen *s = arg;

	if (s->n > 0 && strcmp(s->last, info->lock) >= 0)
		s->sorted = false;
	snprintf(s->last, sizeof(s->last), "%s", info->lock);
	if (s->n < 8) {
		snprintf(s->names[s->n], sizeof(s->names[0]), "%s", info->lock);
		s->holders[s->n] = info->holders;
		s->waiters[s->n] = info->waiters;
	}
	s->n++;
	return s->stop_after > 0 && s->n >= s->stop_after;
}

START_TEST(test_list_prefix)
{
	static const char *const what[] = { "list:b", "list:a", "list:c" };
	char names[3][HTTPLOCK_NAME_MAX + 1], prefix[HTTPLOCK_NAME_MAX + 1];
	struct httplock_grant g[3];
	struct httplock_error e;
	struct seen s;
	struct httplock *h = hnew();
	int i;

	for (i = 0; i < 3; i++) {
		lname(names[i], what[i]);
		must_acquire(h, names[i], &g[i]);
	}
	lname(prefix, "list:");
	memset(&s, 0, sizeof(s));
	s.sorted = true;
	ck_assert_int_eq(httplock_list(h, prefix, see, &s, &e), HTTPLOCK_OK);
	ck_assert_int_eq(s.n, 3);
	ck_assert(s.sorted);
	ck_assert_str_eq(s.names[0], names[1]);         /* list:a */
	ck_assert_str_eq(s.names[1], names[0]);
	ck_assert_str_eq(s.names[2], names[2]);
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(s.holders[i], 1);
		ck_assert_int_eq(s.waiters[i], 0);
	}

	/* fn asking to stop ends the walk, with HTTPLOCK_OK. */
	memset(&s, 0, sizeof(s));
	s.stop_after = 1;
	ck_assert_int_eq(httplock_list(h, prefix, see, &s, &e), HTTPLOCK_OK);
	ck_assert_int_eq(s.n, 1);

	/* A released lock leaves the list. */
	must_release(h, names[1], g[1].token);
	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(httplock_list(h, prefix, see, &s, &e), HTTPLOCK_OK);
	ck_assert_int_eq(s.n, 2);
	ck_assert_str_eq(s.names[0], names[0]);

	/* NULL lists everything, ours among it. */
	memset(&s, 0, sizeof(s));
	s.sorted = true;
	ck_assert_int_eq(httplock_list(h, NULL, see, &s, &e), HTTPLOCK_OK);
	ck_assert_int_ge(s.n, 2);
	ck_assert(s.sorted);
	must_release(h, names[0], g[0].token);
	must_release(h, names[2], g[2].token);
	httplock_free(h);
}
END_TEST

#define PAGED 1003              /* more than one page of 1000 */

struct paged {
	struct httplock *h;
	int              from, to;
	int              failed;
};

static void *
paged_run(void *arg)
{
	struct paged *p = arg;
	char name[HTTPLOCK_NAME_MAX + 1], what[32];
	struct httplock_acquire_opts ao = HTTPLOCK_ACQUIRE_DEFAULTS;
	struct httplock_grant g;
	int i;

	ao.timeout = 0;
	ao.ttl = 120;
	for (i = p->from; i < p->to; i++) {
		snprintf(what, sizeof(what), "page:%04d", i);
		snprintf(name, sizeof(name), "%s%s", pfx, what);
		if (httplock_acquire(p->h, name, &ao, &g, NULL) != HTTPLOCK_OK)
			p->failed++;
	}
	return NULL;
}

START_TEST(test_list_pages)
{
	char prefix[HTTPLOCK_NAME_MAX + 1], want[HTTPLOCK_NAME_MAX + 1];
	struct paged p[4];
	struct httplock_error e;
	struct seen s;
	struct httplock *h = hnew();
	double t0 = now_s();
	int i;

	/* The grants are left to expire with the stack. */
	for (i = 0; i < 4; i++) {
		p[i].h = h;
		p[i].from = PAGED * i / 4;
		p[i].to = PAGED * (i + 1) / 4;
		p[i].failed = 0;
	}
	{
		pthread_t t[4];

		for (i = 0; i < 4; i++)
			ck_assert_int_eq(pthread_create(&t[i], NULL,
			    paged_run, &p[i]), 0);
		for (i = 0; i < 4; i++)
			ck_assert_int_eq(pthread_join(t[i], NULL), 0);
	}
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(p[i].failed, 0);
	printf("check_client: %d acquires in %.3f s\n", PAGED, now_s() - t0);
	lname(prefix, "page:");
	memset(&s, 0, sizeof(s));
	s.sorted = true;
	ck_assert_int_eq(httplock_list(h, prefix, see, &s, &e), HTTPLOCK_OK);
	ck_assert_int_eq(s.n, PAGED);
	ck_assert(s.sorted);
	snprintf(want, sizeof(want), "%spage:%04d", pfx, PAGED - 1);
	ck_assert_str_eq(s.last, want);
	httplock_free(h);
}
END_TEST

/* Names: suffix, or a name of `len` bytes; and what the server says. */
static const struct {
	const char         *what;
	size_t              len;            /* > 0: pad with 'x' to this */
	enum httplock_code  rc;
	long                status;
} name_cases[] = {
	{ "with space", 0, HTTPLOCK_OK, 200 },
	{ "\xc3\xbc" "tf-8 \xe2\x9c\x93 \xc3\xb1", 0, HTTPLOCK_OK, 200 },
	{ "100%", 0, HTTPLOCK_OK, 200 },
	{ "50%25", 0, HTTPLOCK_OK, 200 },
	{ "a+b=c&d;e", 0, HTTPLOCK_OK, 200 },
	{ "q?x#y", 0, HTTPLOCK_OK, 200 },
	{ "dots..", 0, HTTPLOCK_OK, 200 },
	{ "max", HTTPLOCK_NAME_MAX, HTTPLOCK_OK, 200 },
	{ "a/b", 0, HTTPLOCK_BAD_REQUEST, 400 },
	{ "tab\there", 0, HTTPLOCK_BAD_REQUEST, 400 },
	{ "bad\xff" "utf8", 0, HTTPLOCK_BAD_REQUEST, 400 },
	{ "long", HTTPLOCK_NAME_MAX + 1, HTTPLOCK_INVALID, 0 },
	{ "longer", 1000, HTTPLOCK_INVALID, 0 },
};

START_TEST(test_names)
{
	char name[1001], prefix[HTTPLOCK_NAME_MAX + 1];
	struct httplock_grant g;
	struct httplock_status st;
	struct httplock_error e;
	struct seen s;
	struct httplock *h = hnew();
	size_t len;
	int n;

	n = snprintf(name, sizeof(name), "%sn%d-%s", pfx, _i,
	    name_cases[_i].what);
	ck_assert(n > 0 && (size_t)n < sizeof(name));
	for (len = (size_t)n; len < name_cases[_i].len; len++)
		name[len] = 'x';
	name[len] = '\0';
	ck_assert_int_eq(acq(h, name, 0, &g, &e), name_cases[_i].rc);
	ck_assert_int_eq(e.code, name_cases[_i].rc);
	ck_assert_int_eq(e.http_status, name_cases[_i].status);
	ck_assert_int_eq(httplock_status(h, name, &st, &e),
	    name_cases[_i].rc);
	if (name_cases[_i].rc != HTTPLOCK_OK) {
		ck_assert_int_eq(httplock_release(h, name,
		    "0123456789abcdef0123456789abcdef", &e),
		    name_cases[_i].rc);
		httplock_free(h);
		return;
	}
	ck_assert_str_eq(g.lock, name);
	ck_assert_int_eq(st.held, 1);
	/* The exact name, prefix-listed, comes back byte for byte. */
	memcpy(prefix, name, strlen(name) + 1);
	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(httplock_list(h, prefix, see, &s, &e), HTTPLOCK_OK);
	ck_assert_int_eq(s.n, 1);
	ck_assert_str_eq(s.names[0], name);
	must_release(h, name, g.token);
	must_status(h, name, &st);
	ck_assert_int_eq(st.held, 0);
	httplock_free(h);
}
END_TEST

START_TEST(test_unreachable)
{
	struct httplock_opts o = { NULL, 0, NULL, 1000 };
	struct httplock_grant g;
	struct httplock_status st;
	struct httplock_error e;
	struct httplock *h = httplock_new("http://127.0.0.1:1/", &o);
	double t0, took;

	ck_assert_ptr_nonnull(h);
	t0 = now_s();
	ck_assert_int_eq(httplock_status(h, "x", &st, &e), HTTPLOCK_CONNECT);
	took = now_s() - t0;
	ck_assert_int_eq(e.code, HTTPLOCK_CONNECT);
	ck_assert_int_eq(e.http_status, 0);
	ck_assert_str_eq(e.server_code, "");
	ck_assert(e.message[0] != '\0');
	ck_assert_msg(took < 2, "status took %.3f s", took);

	t0 = now_s();
	ck_assert_int_eq(acq(h, "x", 0, &g, &e), HTTPLOCK_CONNECT);
	ck_assert_msg(now_s() - t0 < 2, "acquire 0 took %.3f s", now_s() - t0);

	t0 = now_s();
	ck_assert_int_eq(acq(h, "x", 1.0, &g, &e), HTTPLOCK_CONNECT);
	took = now_s() - t0;
	printf("check_client: acquire with timeout 1 against nothing gave up "
	    "after %.3f s\n", took);
	ck_assert_msg(took >= 0.9 && took < 3, "acquire 1 took %.3f s", took);
	httplock_free(h);
}
END_TEST

#define NTHREADS 8
#define NCYCLES  20

struct crowd {
	struct httplock *h;
	const char      *name;
	atomic_int       inside;        /* holders in the critical section */
	atomic_int       overlaps;
	atomic_int       errors;
	atomic_int       cycles;
	_Atomic int64_t  last_fence;
	atomic_int       backwards;     /* fences that did not grow */
	char             error[400];    /* the first error, for the report */
	pthread_mutex_t  mu;
};

static void
crowd_error(struct crowd *c, enum httplock_code rc,
    const struct httplock_error *e)
{
	pthread_mutex_lock(&c->mu);
	if (atomic_fetch_add(&c->errors, 1) == 0)
		snprintf(c->error, sizeof(c->error), "%s (%ld %s: %s)",
		    httplock_strerror(rc), e->http_status, e->server_code,
		    e->message);
	pthread_mutex_unlock(&c->mu);
}

static void *
crowd_run(void *arg)
{
	struct crowd *c = arg;
	struct httplock_acquire_opts ao = HTTPLOCK_ACQUIRE_DEFAULTS;
	struct httplock_grant g;
	struct httplock_error e;
	enum httplock_code rc;
	int i;

	ao.timeout = 30;
	ao.ttl = 30;
	for (i = 0; i < NCYCLES; i++) {
		if ((rc = httplock_acquire(c->h, c->name, &ao, &g, &e)) !=
		    HTTPLOCK_OK) {
			crowd_error(c, rc, &e);
			continue;
		}
		if (atomic_fetch_add(&c->inside, 1) != 0)
			atomic_fetch_add(&c->overlaps, 1);
		if (g.fence <= atomic_load(&c->last_fence))
			atomic_fetch_add(&c->backwards, 1);
		atomic_store(&c->last_fence, g.fence);
		sleep_s(0.002);
		atomic_fetch_sub(&c->inside, 1);
		atomic_fetch_add(&c->cycles, 1);
		if ((rc = httplock_release(c->h, c->name, g.token, &e)) !=
		    HTTPLOCK_OK)
			crowd_error(c, rc, &e);
	}
	return NULL;
}

START_TEST(test_threads)
{
	char name[HTTPLOCK_NAME_MAX + 1];
	pthread_t t[NTHREADS];
	struct crowd c;
	double t0 = now_s();
	int i;

	lname(name, "crowd");
	memset(&c, 0, sizeof(c));
	c.h = hnew();
	c.name = name;
	pthread_mutex_init(&c.mu, NULL);
	for (i = 0; i < NTHREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, crowd_run, &c), 0);
	for (i = 0; i < NTHREADS; i++)
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
	printf("check_client: %d threads x %d cycles in %.3f s\n", NTHREADS,
	    NCYCLES, now_s() - t0);
	ck_assert_msg(atomic_load(&c.errors) == 0, "%d errors, first: %s",
	    atomic_load(&c.errors), c.error);
	ck_assert_int_eq(atomic_load(&c.overlaps), 0);
	ck_assert_int_eq(atomic_load(&c.backwards), 0);
	ck_assert_int_eq(atomic_load(&c.cycles), NTHREADS * NCYCLES);
	pthread_mutex_destroy(&c.mu);
	httplock_free(c.h);
}
END_TEST

/* Each line must answer HTTPLOCK_INVALID with http_status 0. */
#define INVALID(call) do {                                              \
	memset(&e, 0xff, sizeof(e));                                    \
	ck_assert_int_eq((call), HTTPLOCK_INVALID);                     \
	ck_assert_int_eq(e.code, HTTPLOCK_INVALID);                     \
	ck_assert_int_eq(e.http_status, 0);                             \
	ck_assert(e.message[0] != '\0');                                \
} while (0)

START_TEST(test_invalid_args)
{
	static const char tok[] = "0123456789abcdef0123456789abcdef";
	struct httplock_acquire_opts ao = HTTPLOCK_ACQUIRE_DEFAULTS;
	char big[HTTPLOCK_REQUEST_ID_MAX + 2];
	struct httplock_grant g;
	struct httplock_status st;
	struct httplock_error e;
	struct httplock *h = hnew();

	memset(big, 'r', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	INVALID(httplock_acquire(NULL, "x", NULL, &g, &e));
	INVALID(httplock_acquire(h, NULL, NULL, &g, &e));
	INVALID(httplock_acquire(h, "", NULL, &g, &e));
	INVALID(httplock_acquire(h, "x", NULL, NULL, &e));
	ao.timeout = NAN;
	INVALID(httplock_acquire(h, "x", &ao, &g, &e));
	ao.timeout = 1e300;
	INVALID(httplock_acquire(h, "x", &ao, &g, &e));
	ao.timeout = 0;
	ao.ttl = -1;
	INVALID(httplock_acquire(h, "x", &ao, &g, &e));
	ao.ttl = INFINITY;
	INVALID(httplock_acquire(h, "x", &ao, &g, &e));
	ao.ttl = 0;
	ao.request_id = "";
	INVALID(httplock_acquire(h, "x", &ao, &g, &e));
	ao.request_id = big;
	INVALID(httplock_acquire(h, "x", &ao, &g, &e));
	ao.request_id = NULL;
	ao.owner = big;         /* 129 bytes: one too many */
	INVALID(httplock_acquire(h, "x", &ao, &g, &e));

	INVALID(httplock_release(NULL, "x", tok, &e));
	INVALID(httplock_release(h, NULL, tok, &e));
	INVALID(httplock_release(h, "x", NULL, &e));
	INVALID(httplock_release(h, "x", "short", &e));
	INVALID(httplock_release(h, "x", "0123456789abcdef0123456789abcdeg",
	    &e));
	INVALID(httplock_renew(h, NULL, tok, 0, NULL, &e));
	INVALID(httplock_renew(h, "x", NULL, 0, NULL, &e));
	INVALID(httplock_renew(h, "x", tok, -1, NULL, &e));
	INVALID(httplock_renew(h, "x", tok, NAN, NULL, &e));
	INVALID(httplock_cancel(NULL, "x", "r", NULL, &e));
	INVALID(httplock_cancel(h, NULL, "r", NULL, &e));
	INVALID(httplock_cancel(h, "x", NULL, NULL, &e));
	INVALID(httplock_cancel(h, "x", "", NULL, &e));
	INVALID(httplock_cancel(h, "x", big, NULL, &e));
	INVALID(httplock_status(NULL, "x", &st, &e));
	INVALID(httplock_status(h, NULL, &st, &e));
	INVALID(httplock_status(h, "x", NULL, &e));
	INVALID(httplock_list(NULL, NULL, see, NULL, &e));
	INVALID(httplock_list(h, NULL, NULL, NULL, &e));

	/* err may be NULL. */
	ck_assert_int_eq(httplock_acquire(h, NULL, NULL, &g, NULL),
	    HTTPLOCK_INVALID);
	httplock_free(h);
}
END_TEST

/* ======================================================== fake server */

#define FAKE_MAX 64             /* requests recorded */
#define REQ_MAX  (32 * 1024)

struct fake {
	int              lfd;
	int              port;
	pthread_t        thr;
	pthread_mutex_t  mu;
	char            *script[FAKE_MAX];  /* answers; NULL: hang up */
	size_t           nscript;
	char            *log[FAKE_MAX];     /* requests: head and body */
	size_t           nlog;
	atomic_int       stop;
	char             url[64];
};

/* Adds the answer to the next request; status 0: close without one. */
static void
fake_answer(struct fake *f, int status, const char *body)
{
	size_t size = strlen(body) + 256;
	char *r = NULL;

	ck_assert_uint_lt(f->nscript, FAKE_MAX);
	if (status != 0) {
		ck_assert_ptr_nonnull(r = malloc(size));
		snprintf(r, size, "HTTP/1.1 %d Whatever\r\n"
		    "Content-Type: %s\r\nConnection: close\r\n\r\n%s",
		    status, body[0] == '{' ? "application/json" : "text/html",
		    body);
	}
	f->script[f->nscript++] = r;
}

/* Reads one request into buf (NUL-terminated); -1 on error. */
static int
fake_read(int fd, char *buf, size_t size)
{
	size_t len = 0, want = 0;
	char *end, *cl;
	ssize_t n;

	for (;;) {
		if (len + 1 >= size)
			return -1;
		if ((n = recv(fd, buf + len, size - len - 1, 0)) <= 0)
			return -1;
		len += (size_t)n;
		buf[len] = '\0';
		if ((end = strstr(buf, "\r\n\r\n")) == NULL)
			continue;
		if (want == 0) {
			want = (size_t)(end + 4 - buf);
			if ((cl = strcasestr(buf, "\r\nContent-Length:")) !=
			    NULL && cl < end)
				want += strtoul(cl + 17, NULL, 10);
		}
		if (len >= want)
			return 0;
	}
}

static void *
fake_run(void *arg)
{
	struct fake *f = arg;
	char *req = malloc(REQ_MAX);
	struct pollfd p;
	const char *answer;
	size_t i, len, off;
	ssize_t n;
	int fd;

	while (req != NULL && !atomic_load(&f->stop)) {
		p.fd = f->lfd;
		p.events = POLLIN;
		if (poll(&p, 1, 50) <= 0)
			continue;
		if ((fd = accept(f->lfd, NULL, NULL)) < 0)
			continue;
		if (fake_read(fd, req, REQ_MAX) != 0) {
			close(fd);
			continue;
		}
		pthread_mutex_lock(&f->mu);
		i = f->nlog < f->nscript ? f->nlog : f->nscript - 1;
		answer = f->script[i];
		if (f->nlog < FAKE_MAX)
			f->log[f->nlog++] = strdup(req);
		pthread_mutex_unlock(&f->mu);
		len = answer != NULL ? strlen(answer) : 0;
		for (off = 0; off < len; off += (size_t)n)
			if ((n = send(fd, answer + off, len - off,
			    MSG_NOSIGNAL)) <= 0)
				break;
		close(fd);
	}
	free(req);
	return NULL;
}

/* Starts serving the answers added so far (at least one). */
static void
fake_start(struct fake *f)
{
	struct sockaddr_in sa;
	socklen_t salen = sizeof(sa);

	ck_assert_uint_gt(f->nscript, 0);
	ck_assert_int_ge(f->lfd = socket(AF_INET, SOCK_STREAM, 0), 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(f->lfd, 16), 0);
	ck_assert_int_eq(getsockname(f->lfd, (struct sockaddr *)&sa, &salen),
	    0);
	f->port = ntohs(sa.sin_port);
	snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d/", f->port);
	pthread_mutex_init(&f->mu, NULL);
	ck_assert_int_eq(pthread_create(&f->thr, NULL, fake_run, f), 0);
}

static void
fake_stop(struct fake *f)
{
	size_t i;

	atomic_store(&f->stop, 1);
	pthread_join(f->thr, NULL);
	close(f->lfd);
	for (i = 0; i < f->nscript; i++)
		free(f->script[i]);
	for (i = 0; i < f->nlog; i++)
		free(f->log[i]);
	pthread_mutex_destroy(&f->mu);
}

static size_t
fake_nlog(struct fake *f)
{
	size_t n;

	pthread_mutex_lock(&f->mu);
	n = f->nlog;
	pthread_mutex_unlock(&f->mu);
	return n;
}

/* Request i's first line, or its body, or the value of a form field. */
static void
fake_line(struct fake *f, size_t i, char *buf, size_t size)
{
	const char *r;

	ck_assert_uint_lt(i, fake_nlog(f));
	r = f->log[i];
	snprintf(buf, size, "%.*s", (int)strcspn(r, "\r"), r);
}

static const char *
fake_body(struct fake *f, size_t i)
{
	const char *end;

	ck_assert_uint_lt(i, fake_nlog(f));
	ck_assert_ptr_nonnull(end = strstr(f->log[i], "\r\n\r\n"));
	return end + 4;
}

static void
fake_field(struct fake *f, size_t i, const char *key, char *buf, size_t size)
{
	const char *b = fake_body(f, i), *p;
	size_t klen = strlen(key);

	buf[0] = '\0';
	for (p = b; p != NULL && *p != '\0'; p = strchr(p, '&')) {
		if (*p == '&')
			p++;
		if (strncmp(p, key, klen) == 0 && p[klen] == '=') {
			snprintf(buf, size, "%.*s", (int)strcspn(p + klen + 1,
			    "&"), p + klen + 1);
			return;
		}
	}
}

#define GRANT(lock, token) "{\"lock\":\"" lock "\",\"token\":\"" token    \
	"\",\"fence\":7,\"ttl\":30.000,\"acquired_at\":1764125000.123,"  \
	"\"expires_at\":1764125030.123,\"owner\":\"o\"}\n"
#define TOKEN "3f1c0000000000000000000000000abc"
#define HTML  "<html><body>500 Internal Server Error</body></html>"

/* What one status and body map to, tried with release. */
static const struct {
	int                 status;
	const char         *body;
	enum httplock_code  rc;
	const char         *server_code;
} map_cases[] = {
	{ 200, "{\"lock\":\"x\",\"released\":true}\n", HTTPLOCK_OK, "" },
	{ 200, "<html>hello</html>", HTTPLOCK_PROTOCOL, "" },
	{ 200, "", HTTPLOCK_PROTOCOL, "" },
	{ 200, "[1,2]", HTTPLOCK_PROTOCOL, "" },
	{ 200, "{\"a\":1} {\"b\":2}", HTTPLOCK_PROTOCOL, "" },
	{ 200, "{\"a\":", HTTPLOCK_PROTOCOL, "" },
	{ 409, "{\"error\":\"not_held\",\"message\":\"m\"}",
	    HTTPLOCK_NOT_HELD, "not_held" },
	{ 409, "{\"error\":\"cancelled\",\"message\":\"m\"}",
	    HTTPLOCK_CANCELLED, "cancelled" },
	{ 409, "{\"error\":\"superseded\",\"message\":\"m\"}",
	    HTTPLOCK_SUPERSEDED, "superseded" },
	{ 409, "{\"error\":\"novel\",\"message\":\"m\"}",
	    HTTPLOCK_PROTOCOL, "novel" },
	{ 409, HTML, HTTPLOCK_PROTOCOL, "" },
	{ 423, "{\"error\":\"timeout\",\"message\":\"m\"}",
	    HTTPLOCK_TIMEOUT, "timeout" },
	{ 503, "{\"error\":\"too_many_waiters\",\"message\":\"m\"}",
	    HTTPLOCK_TOO_MANY_WAITERS, "too_many_waiters" },
	{ 503, "{\"error\":\"unavailable\",\"message\":\"m\"}",
	    HTTPLOCK_UNAVAILABLE, "unavailable" },
	{ 500, HTML, HTTPLOCK_UNAVAILABLE, "" },
	{ 502, "", HTTPLOCK_UNAVAILABLE, "" },
	{ 400, "{\"error\":\"bad_request\",\"message\":\"m\"}",
	    HTTPLOCK_BAD_REQUEST, "bad_request" },
	{ 404, HTML, HTTPLOCK_BAD_REQUEST, "" },
	{ 405, "{\"error\":\"method_not_allowed\",\"message\":\"m\"}",
	    HTTPLOCK_BAD_REQUEST, "method_not_allowed" },
	{ 411, HTML, HTTPLOCK_BAD_REQUEST, "" },
	{ 413, "{\"error\":\"too_large\",\"message\":\"m\"}",
	    HTTPLOCK_BAD_REQUEST, "too_large" },
	{ 414, HTML, HTTPLOCK_BAD_REQUEST, "" },
	{ 431, HTML, HTTPLOCK_BAD_REQUEST, "" },
	{ 401, HTML, HTTPLOCK_AUTH, "" },
	{ 403, HTML, HTTPLOCK_AUTH, "" },
	{ 302, HTML, HTTPLOCK_PROTOCOL, "" },
	{ 0, "", HTTPLOCK_CONNECT, "" },
};

START_TEST(test_fake_map)
{
	struct fake f = { 0 };
	struct httplock_error e;
	struct httplock *h;

	fake_answer(&f, map_cases[_i].status, map_cases[_i].body);
	fake_start(&f);
	ck_assert_ptr_nonnull(h = httplock_new(f.url, NULL));
	ck_assert_msg(httplock_release(h, "x", TOKEN, &e) == map_cases[_i].rc,
	    "line %d: %s (%s)", _i, httplock_strerror(e.code), e.message);
	ck_assert_int_eq(e.code, map_cases[_i].rc);
	ck_assert_int_eq(e.http_status, map_cases[_i].status);
	ck_assert_str_eq(e.server_code, map_cases[_i].server_code);
	if (map_cases[_i].body[0] == '{' && map_cases[_i].status != 200)
		ck_assert_str_eq(e.message, "m");
	if (map_cases[_i].rc != HTTPLOCK_OK)
		ck_assert(e.message[0] != '\0');
	httplock_free(h);
	fake_stop(&f);
}
END_TEST

START_TEST(test_fake_too_large)
{
	struct fake f = { 0 };
	struct httplock_status st;
	struct httplock_error e;
	struct httplock *h;
	char *big;

	ck_assert_ptr_nonnull(big = malloc(70001));
	memset(big, ' ', 70000);
	big[0] = '{';
	memcpy(big + 69998, "}", 2);
	fake_answer(&f, 200, big);
	free(big);
	fake_start(&f);
	ck_assert_ptr_nonnull(h = httplock_new(f.url, NULL));
	ck_assert_int_eq(httplock_status(h, "x", &st, &e), HTTPLOCK_PROTOCOL);
	ck_assert_int_eq(e.http_status, 200);
	ck_assert_msg(strstr(e.message, "larger") != NULL, "%s", e.message);
	httplock_free(h);
	fake_stop(&f);
}
END_TEST

/* Answers to acquire with timeout 0 and what becomes of them. */
static const struct {
	int                 status;
	const char         *body;
	enum httplock_code  rc;
	int                 cancels;        /* a cancel follows */
} grant_cases[] = {
	{ 200, GRANT("x", TOKEN), HTTPLOCK_OK, 0 },
	{ 200, GRANT("y", TOKEN), HTTPLOCK_PROTOCOL, 1 },
	{ 200, GRANT("x", "3f1c"), HTTPLOCK_PROTOCOL, 1 },
	{ 200, GRANT("x", "3f1c000000000000000000000000zabc"),
	    HTTPLOCK_PROTOCOL, 1 },
	{ 200, "{\"lock\":\"x\",\"token\":\"" TOKEN "\",\"fence\":\"7\","
	    "\"ttl\":30,\"acquired_at\":1,\"expires_at\":31,\"owner\":\"\"}",
	    HTTPLOCK_PROTOCOL, 1 },
	{ 200, "{\"lock\":\"x\",\"token\":\"" TOKEN "\",\"fence\":7}",
	    HTTPLOCK_PROTOCOL, 1 },
	{ 200, "<html></html>", HTTPLOCK_PROTOCOL, 1 },
	{ 423, "{\"error\":\"timeout\",\"message\":\"m\"}", HTTPLOCK_TIMEOUT,
	    0 },
	{ 409, "{\"error\":\"cancelled\",\"message\":\"m\"}",
	    HTTPLOCK_CANCELLED, 0 },
	{ 400, "{\"error\":\"bad_request\",\"message\":\"m\"}",
	    HTTPLOCK_BAD_REQUEST, 0 },
};

START_TEST(test_fake_grant)
{
	struct fake f = { 0 };
	struct httplock_grant g;
	struct httplock_error e;
	struct httplock *h;
	char rid[160], rid2[160], line[256];

	fake_answer(&f, grant_cases[_i].status, grant_cases[_i].body);
	fake_answer(&f, 200, "{\"lock\":\"x\",\"cancelled\":true,"
	    "\"was\":\"held\"}");
	fake_start(&f);
	ck_assert_ptr_nonnull(h = httplock_new(f.url, NULL));
	ck_assert_int_eq(acq(h, "x", 0, &g, &e), grant_cases[_i].rc);
	if (grant_cases[_i].rc == HTTPLOCK_OK) {
		ck_assert_str_eq(g.lock, "x");
		ck_assert_str_eq(g.token, TOKEN);
		ck_assert_int_eq(g.fence, 7);
		ck_assert_double_eq_tol(g.ttl, 30, 1e-9);
		ck_assert_double_eq_tol(g.acquired_at, 1764125000.123, 1e-6);
		ck_assert_double_eq_tol(g.expires_at, 1764125030.123, 1e-6);
		ck_assert_str_eq(g.owner, "o");
	}
	ck_assert_uint_eq(fake_nlog(&f), 1 + (size_t)grant_cases[_i].cancels);
	fake_field(&f, 0, "request_id", rid, sizeof(rid));
	ck_assert_uint_eq(strlen(rid), 34);
	if (grant_cases[_i].rc == HTTPLOCK_OK)
		ck_assert_str_eq(g.request_id, rid);
	if (grant_cases[_i].cancels) {
		fake_line(&f, 1, line, sizeof(line));
		ck_assert_str_eq(line, "POST /lock/x/cancel HTTP/1.1");
		fake_field(&f, 1, "request_id", rid2, sizeof(rid2));
		ck_assert_str_eq(rid2, rid);
	}
	httplock_free(h);
	fake_stop(&f);
}
END_TEST

/* What the library sends: path, form, content type, credentials. */
START_TEST(test_fake_request)
{
	struct httplock_acquire_opts ao = HTTPLOCK_ACQUIRE_DEFAULTS;
	struct httplock_opts o = { "us er:p@ss", 0, NULL, 0 };
	struct fake f = { 0 };
	struct httplock_grant g;
	struct httplock_status st;
	struct httplock_error e;
	struct httplock *h;
	char line[512], v[256];

	fake_answer(&f, 200, GRANT("a b/c%\xc3\xbc", TOKEN));
	fake_answer(&f, 200, "{\"lock\":\"x\",\"held\":false,\"holders\":[],"
	    "\"waiters\":0}");
	fake_start(&f);
	ck_assert_ptr_nonnull(h = httplock_new(f.url, &o));
	ao.timeout = 2.25;
	ao.ttl = 12.5;
	ao.owner = "me & you=us";
	ao.request_id = "r/1 2";
	ck_assert_int_eq(httplock_acquire(h, "a b/c%\xc3\xbc", &ao, &g, &e),
	    HTTPLOCK_OK);
	ck_assert_str_eq(g.request_id, "r/1 2");
	fake_line(&f, 0, line, sizeof(line));
	ck_assert_str_eq(line,
	    "POST /lock/a%20b%2Fc%25%C3%BC/acquire HTTP/1.1");
	ck_assert(strcasestr(f.log[0], "\r\nContent-Type: "
	    "application/x-www-form-urlencoded\r\n") != NULL);
	/* base64("us er:p@ss") */
	ck_assert(strstr(f.log[0], "\r\nAuthorization: Basic "
	    "dXMgZXI6cEBzcw==\r\n") != NULL);
	fake_field(&f, 0, "timeout", v, sizeof(v));
	ck_assert_msg(strcmp(v, "2.250") == 0 || strcmp(v, "2.249") == 0 ||
	    strcmp(v, "2.248") == 0, "timeout=%s", v);
	fake_field(&f, 0, "ttl", v, sizeof(v));
	ck_assert_str_eq(v, "12.500");
	fake_field(&f, 0, "owner", v, sizeof(v));
	ck_assert_str_eq(v, "me%20%26%20you%3Dus");
	fake_field(&f, 0, "request_id", v, sizeof(v));
	ck_assert_str_eq(v, "r%2F1%202");

	ck_assert_int_eq(httplock_status(h, "s", &st, &e), HTTPLOCK_OK);
	fake_line(&f, 1, line, sizeof(line));
	ck_assert_str_eq(line, "GET /lock/s HTTP/1.1");
	httplock_free(h);
	fake_stop(&f);
}
END_TEST

START_TEST(test_fake_netrc)
{
	struct httplock_opts o = { NULL, 1, NULL, 0 };
	struct fake f = { 0 };
	struct httplock_error e;
	struct httplock *h;
	char path[] = "/tmp/check_client_netrc.XXXXXX";
	FILE *fp;
	int fd;

	fake_answer(&f, 200, "{\"lock\":\"x\",\"released\":true}");
	fake_start(&f);
	ck_assert_int_ge(fd = mkstemp(path), 0);
	ck_assert_ptr_nonnull(fp = fdopen(fd, "w"));
	fprintf(fp, "machine 127.0.0.1 login nu password np\n");
	fclose(fp);
	o.netrc_file = path;
	h = httplock_new(f.url, &o);
	ck_assert_ptr_nonnull(h);
	ck_assert_int_eq(httplock_release(h, "x", TOKEN, &e), HTTPLOCK_OK);
	unlink(path);
	/* base64("nu:np") */
	ck_assert(strstr(f.log[0], "\r\nAuthorization: Basic bnU6bnA=\r\n") !=
	    NULL);
	httplock_free(h);
	fake_stop(&f);
}
END_TEST

/* Transient failures are retried with the same request_id. */
START_TEST(test_fake_retry)
{
	struct fake f = { 0 };
	struct httplock_grant g;
	struct httplock_error e;
	struct httplock *h;
	char rid[160], v[160], line[256];
	size_t i;

	fake_answer(&f, 503, "{\"error\":\"unavailable\",\"message\":\"m\"}");
	fake_answer(&f, 500, HTML);
	fake_answer(&f, 0, "");
	fake_answer(&f, 200, GRANT("x", TOKEN));
	fake_start(&f);
	ck_assert_ptr_nonnull(h = httplock_new(f.url, NULL));
	ck_assert_int_eq(acq(h, "x", 5, &g, &e), HTTPLOCK_OK);
	ck_assert_int_eq(e.code, HTTPLOCK_OK);
	ck_assert_uint_eq(fake_nlog(&f), 4);         /* no cancel */
	fake_field(&f, 0, "request_id", rid, sizeof(rid));
	ck_assert_str_eq(g.request_id, rid);
	for (i = 0; i < 4; i++) {
		fake_line(&f, i, line, sizeof(line));
		ck_assert_str_eq(line, "POST /lock/x/acquire HTTP/1.1");
		fake_field(&f, i, "request_id", v, sizeof(v));
		ck_assert_str_eq(v, rid);
		fake_field(&f, i, "timeout", v, sizeof(v));
		ck_assert(strtod(v, NULL) <= 5 && strtod(v, NULL) > 4);
	}
	httplock_free(h);
	fake_stop(&f);
}
END_TEST

/* A give-up after answers that never came cancels the request_id. */
START_TEST(test_fake_giveup)
{
	struct fake f = { 0 };
	struct httplock_grant g;
	struct httplock_error e;
	struct httplock *h;
	char rid[160], v[160], line[256];
	double t0 = now_s(), took;
	size_t n;

	fake_answer(&f, 0, "");
	fake_start(&f);
	ck_assert_ptr_nonnull(h = httplock_new(f.url, NULL));
	ck_assert_int_eq(acq(h, "x", 0.5, &g, &e), HTTPLOCK_CONNECT);
	took = now_s() - t0;
	ck_assert_msg(took >= 0.45 && took < 2.5, "took %.3f s", took);
	ck_assert_int_eq(e.http_status, 0);
	n = fake_nlog(&f);
	ck_assert_uint_ge(n, 3);
	fake_field(&f, 0, "request_id", rid, sizeof(rid));
	fake_line(&f, n - 1, line, sizeof(line));
	ck_assert_str_eq(line, "POST /lock/x/cancel HTTP/1.1");
	fake_field(&f, n - 1, "request_id", v, sizeof(v));
	ck_assert_str_eq(v, rid);
	httplock_free(h);
	fake_stop(&f);
}
END_TEST

/* Definite answers are not retried; the server's max_wait is retried a
 * bounded number of times. */
START_TEST(test_fake_no_retry)
{
	struct fake f = { 0 };
	struct httplock_grant g;
	struct httplock_error e;
	struct httplock *h;
	char v[64];

	fake_answer(&f, 503, "{\"error\":\"too_many_waiters\","
	    "\"message\":\"m\"}");
	fake_start(&f);
	ck_assert_ptr_nonnull(h = httplock_new(f.url, NULL));
	ck_assert_int_eq(acq(h, "x", 5, &g, &e), HTTPLOCK_TOO_MANY_WAITERS);
	ck_assert_uint_eq(fake_nlog(&f), 1);
	httplock_free(h);
	fake_stop(&f);

	memset(&f, 0, sizeof(f));
	fake_answer(&f, 503, "{\"error\":\"unavailable\",\"message\":\"m\"}");
	fake_start(&f);
	ck_assert_ptr_nonnull(h = httplock_new(f.url, NULL));
	ck_assert_int_eq(acq(h, "x", -1, &g, &e), HTTPLOCK_UNAVAILABLE);
	ck_assert_uint_eq(fake_nlog(&f), 10);        /* and no cancel */
	fake_field(&f, 0, "timeout", v, sizeof(v));
	ck_assert_str_eq(v, "");                     /* the server's */
	httplock_free(h);
	fake_stop(&f);
}
END_TEST

START_TEST(test_fake_status_list)
{
	struct fake f = { 0 };
	struct httplock_status st;
	struct httplock_error e;
	struct httplock *h;
	struct seen s;
	char body[4096], line[512];
	size_t used;
	int i;

	/* 20 holders: the first HTTPLOCK_HOLDERS_MAX are kept. */
	used = (size_t)snprintf(body, sizeof(body),
	    "{\"lock\":\"x\",\"held\":true,\"holders\":[");
	for (i = 0; i < 20; i++)
		used += (size_t)snprintf(body + used, sizeof(body) - used,
		    "%s{\"owner\":\"o%d\",\"fence\":%d,\"acquired_at\":1.5,"
		    "\"expires_at\":2.5}", i > 0 ? "," : "", i, i + 1);
	snprintf(body + used, sizeof(body) - used, "],\"waiters\":3}");
	fake_answer(&f, 200, body);
	fake_answer(&f, 200, "{\"locks\":[{\"lock\":\"a\",\"holders\":1,"
	    "\"waiters\":0},{\"lock\":\"b c\",\"holders\":0,\"waiters\":2}],"
	    "\"more\":true}");
	fake_answer(&f, 200, "{\"locks\":[{\"lock\":\"d\",\"holders\":1,"
	    "\"waiters\":0}],\"more\":false}");
	fake_answer(&f, 200, "{\"locks\":[],\"more\":true}");
	fake_start(&f);
	ck_assert_ptr_nonnull(h = httplock_new(f.url, NULL));
	ck_assert_int_eq(httplock_status(h, "x", &st, &e), HTTPLOCK_OK);
	ck_assert_int_eq(st.held, 1);
	ck_assert_int_eq(st.nholders, HTTPLOCK_HOLDERS_MAX);
	ck_assert_int_eq(st.waiters, 3);
	ck_assert_str_eq(st.holders[15].owner, "o15");
	ck_assert_int_eq(st.holders[15].fence, 16);
	ck_assert_double_eq(st.holders[15].acquired_at, 1.5);

	memset(&s, 0, sizeof(s));
	s.sorted = true;
	ck_assert_int_eq(httplock_list(h, "", see, &s, &e), HTTPLOCK_OK);
	ck_assert_int_eq(s.n, 3);
	ck_assert_str_eq(s.names[1], "b c");
	ck_assert_int_eq(s.waiters[1], 2);
	fake_line(&f, 1, line, sizeof(line));
	ck_assert_str_eq(line, "GET /locks/?prefix=&limit=1000 HTTP/1.1");
	fake_line(&f, 2, line, sizeof(line));
	ck_assert_str_eq(line,
	    "GET /locks/?prefix=&after=b%20c&limit=1000 HTTP/1.1");
	/* "more" with an empty page would never end. */
	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(httplock_list(h, NULL, see, &s, &e),
	    HTTPLOCK_PROTOCOL);
	httplock_free(h);
	fake_stop(&f);
}
END_TEST

/* ================================================================ main */

static Suite *
client_suite(void)
{
	Suite *s = suite_create("client");
	TCase *tc;

	tc = tcase_create("handle");
	tcase_add_loop_test(tc, test_new_free, 0,
	    (int)(sizeof(new_cases) / sizeof(new_cases[0])));
	tcase_add_test(tc, test_no_trailing_slash);
	tcase_add_test(tc, test_strerror);
	tcase_add_test(tc, test_invalid_args);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);

	tc = tcase_create("server");
	tcase_add_test(tc, test_acquire_status_release);
	tcase_add_test(tc, test_timeout_zero);
	tcase_add_test(tc, test_timeout_half);
	tcase_add_test(tc, test_handoff);
	tcase_add_test(tc, test_renew);
	tcase_add_test(tc, test_wrong_token);
	tcase_add_test(tc, test_release_twice);
	tcase_add_test(tc, test_request_id_explicit);
	tcase_add_test(tc, test_request_id_generated);
	tcase_add_test(tc, test_cancel_held);
	tcase_add_test(tc, test_cancel_waiting);
	tcase_add_test(tc, test_superseded);
	tcase_add_test(tc, test_list_prefix);
	tcase_add_test(tc, test_list_pages);
	tcase_add_loop_test(tc, test_names, 0,
	    (int)(sizeof(name_cases) / sizeof(name_cases[0])));
	tcase_add_test(tc, test_unreachable);
	tcase_add_test(tc, test_threads);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);

	tc = tcase_create("fake");
	tcase_add_loop_test(tc, test_fake_map, 0,
	    (int)(sizeof(map_cases) / sizeof(map_cases[0])));
	tcase_add_test(tc, test_fake_too_large);
	tcase_add_loop_test(tc, test_fake_grant, 0,
	    (int)(sizeof(grant_cases) / sizeof(grant_cases[0])));
	tcase_add_test(tc, test_fake_request);
	tcase_add_test(tc, test_fake_netrc);
	tcase_add_test(tc, test_fake_retry);
	tcase_add_test(tc, test_fake_giveup);
	tcase_add_test(tc, test_fake_no_retry);
	tcase_add_test(tc, test_fake_status_list);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr;
	int failed;

	url = getenv("HTTPLOCK_URL");
	if (url == NULL || url[0] == '\0') {
		fprintf(stderr, "check_client: HTTPLOCK_URL is not set: run "
		    "it with tests/client.sh, which starts a server "
		    "(tests/integ/withstack.py -- tests/unit/check_client)\n");
		return EXIT_FAILURE;
	}
	/* A write to a connection the library dropped must not kill us. */
	signal(SIGPIPE, SIG_IGN);
	snprintf(pfx, sizeof(pfx), "ck%ld-", (long)getpid());
	sr = srunner_create(client_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
