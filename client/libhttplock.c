/*
 * libhttplock.c: the C client of the httplock HTTP API (README, "HTTP API").
 * A call builds its request (the lock name percent-encoded into the path,
 * the parameters form-encoded as curl -d sends them), runs it on a libcurl
 * easy handle of its own that shares the handle's DNS cache (and only
 * that: see httplock_new()), reads at most RESP_MAX bytes of answer, and
 * turns the HTTP status and the JSON body into an enum httplock_code in
 * one place (classify()).
 * httplock_acquire() adds the retry loop with one request_id around that.
 * Nothing here prints, exits or keeps global state.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <json.h>

#include "hlclock.h"
#include "httplock.h"
#include "reqid.h"

/* The library is built with -fvisibility=hidden: only these are exported. */
#define HL_API __attribute__((visibility("default")))

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0"
#endif

#define RESP_MAX          (64 * 1024)   /* longest answer we read */
#define URL_MAX           (16 * 1024)   /* longest URL or form we build */
#define PARAM_MAX         1024          /* longest parameter value */
#define CONNECT_MS        5000          /* default connect timeout */
#define CALL_MS           30000L        /* total time of a call but acquire */
#define ACQUIRE_MARGIN_MS 15000L        /* acquire: the wait plus this */
#define ACQUIRE_LONG_MS   600000L       /* acquire with the server's max_wait */
#define GIVEUP_CANCEL_MS  5000L         /* the cancel after acquire gave up */
#define BACKOFF_MIN_MS    50L
#define BACKOFF_MAX_MS    1000L
#define ATTEMPTS_MAX      10            /* acquire attempts without a deadline */
#define LIST_PAGE         "1000"        /* the server's largest page */
#define SECONDS_MAX       1e9           /* largest timeout or ttl we send */
#define REQUEST_ID_PREFIX "c-"          /* starts a request_id we make */
#define BUF_FIRST         256           /* a buffer's first allocation */

struct httplock {
	char            *base;          /* the server's URL, ends with '/' */
	char            *user;          /* "name:password", or NULL */
	char            *netrc_file;    /* or NULL */
	int              netrc;         /* 1: read credentials from netrc */
	long             connect_timeout_ms;
	CURLSH          *share;         /* the DNS cache */
	pthread_mutex_t  mu[CURL_LOCK_DATA_LAST];   /* one per kind of data */
	int              nmu;           /* how many of mu are initialised */
};

/* A growing string with a hard cap; p is always NUL-terminated. */
struct buf {
	char   *p;
	size_t  len;
	size_t  cap;                    /* allocated, including the NUL */
	size_t  max;                    /* len may not exceed this */
	int     err;                    /* BUF_E_* of the first failure */
};

enum {
	BUF_OK = 0,
	BUF_E_NOMEM = -1,
	BUF_E_TOOBIG = -2
};

/* One HTTP exchange. */
struct call {
	CURL        *c;
	struct buf   url;               /* base and path; a GET's query too */
	struct buf   params;            /* form-encoded parameters */
	struct buf   body;              /* the answer */
	bool         post;
	long         status;            /* HTTP status, 0 if none came */
	bool         maybe_sent;        /* transport error after sending began */
	json_object *json;              /* the answer's object, or NULL */
	char         errbuf[CURL_ERROR_SIZE];
};

/* How a status (and, where it matters, the "error" code) is reported. */
struct status_map {
	long                status;
	const char         *server_code;   /* NULL: any */
	enum httplock_code  code;
};

static const struct status_map status_map[] = {
	{ 423, NULL, HTTPLOCK_TIMEOUT },
	{ 409, "not_held", HTTPLOCK_NOT_HELD },
	{ 409, "cancelled", HTTPLOCK_CANCELLED },
	{ 409, "superseded", HTTPLOCK_SUPERSEDED },
	{ 503, "too_many_waiters", HTTPLOCK_TOO_MANY_WAITERS },
	{ 400, NULL, HTTPLOCK_BAD_REQUEST },
	{ 404, NULL, HTTPLOCK_BAD_REQUEST },
	{ 405, NULL, HTTPLOCK_BAD_REQUEST },
	{ 411, NULL, HTTPLOCK_BAD_REQUEST },
	{ 413, NULL, HTTPLOCK_BAD_REQUEST },
	{ 414, NULL, HTTPLOCK_BAD_REQUEST },
	{ 431, NULL, HTTPLOCK_BAD_REQUEST },
	{ 401, NULL, HTTPLOCK_AUTH },
	{ 403, NULL, HTTPLOCK_AUTH },
};

static const char *const code_names[] = {
	[HTTPLOCK_OK] = "ok",
	[HTTPLOCK_TIMEOUT] = "timeout",
	[HTTPLOCK_NOT_HELD] = "not held",
	[HTTPLOCK_CANCELLED] = "cancelled",
	[HTTPLOCK_SUPERSEDED] = "superseded",
	[HTTPLOCK_TOO_MANY_WAITERS] = "too many waiters",
	[HTTPLOCK_UNAVAILABLE] = "unavailable",
	[HTTPLOCK_BAD_REQUEST] = "bad request",
	[HTTPLOCK_AUTH] = "not authorised",
	[HTTPLOCK_CONNECT] = "cannot connect",
	[HTTPLOCK_PROTOCOL] = "protocol error",
	[HTTPLOCK_INVALID] = "invalid argument",
	[HTTPLOCK_NOMEM] = "out of memory",
};

static enum httplock_code fail(struct httplock_error *, enum httplock_code,
    long, const char *, const char *, ...)
    __attribute__((format(printf, 5, 6)));

/*
 * Fills *err (if not NULL) and returns `code`.  Messages that do not fit
 * are cut short: they are for humans, and the code says what happened.
 */
static enum httplock_code
fail(struct httplock_error *err, enum httplock_code code, long status,
    const char *server_code, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return code;
	err->code = code;
	err->http_status = status;
	(void)snprintf(err->server_code, sizeof(err->server_code), "%s",
	    server_code != NULL ? server_code : "");
	va_start(ap, fmt);
	(void)vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return code;
}

static enum httplock_code
ok(struct httplock_error *err)
{
	return fail(err, HTTPLOCK_OK, 200, NULL, "%s", "");
}

/* ------------------------------------------------------------ buffers */

static void
buf_init(struct buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

static void
buf_free(struct buf *b)
{
	free(b->p);
	buf_init(b, b->max);
}

/*
 * Appends n bytes of s.  Returns BUF_OK, or BUF_E_TOOBIG past b->max or
 * BUF_E_NOMEM, which are also kept in b->err; b is unchanged then.
 */
static int
buf_add(struct buf *b, const char *s, size_t n)
{
	size_t cap;
	char *p;

	if (n > b->max - b->len)
		return b->err = BUF_E_TOOBIG;
	if (b->len + n + 1 > b->cap) {
		cap = b->cap > 0 ? b->cap : BUF_FIRST;
		while (cap < b->len + n + 1)
			cap *= 2;
		if (cap > b->max + 1)
			cap = b->max + 1;
		if ((p = realloc(b->p, cap)) == NULL)
			return b->err = BUF_E_NOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return BUF_OK;
}

static int
buf_str(struct buf *b, const char *s)
{
	return buf_add(b, s, strlen(s));
}

/* Appends s percent-encoded (all but RFC 3986 unreserved characters). */
static int
buf_escaped(struct buf *b, CURL *c, const char *s)
{
	size_t len = strlen(s);
	char *e;
	int rc;

	if (len > PARAM_MAX)
		return b->err = BUF_E_TOOBIG;
	if ((e = curl_easy_escape(c, s, (int)len)) == NULL)
		return b->err = BUF_E_NOMEM;
	rc = buf_str(b, e);
	curl_free(e);
	return rc;
}

/* libcurl's write callback: keeps the answer, aborts past its cap. */
static size_t
on_body(char *data, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;

	if (buf_add(b, data, size * n) != BUF_OK)
		return 0;               /* CURLE_WRITE_ERROR */
	return size * n;
}

/* --------------------------------------------------------------- JSON */

/*
 * Parses s[0..len) as one JSON object with nothing but white space after
 * it.  Returns the object (the caller puts it), or NULL.  A failing
 * allocation inside json-c also gives NULL, reported as a protocol error.
 */
static json_object *
parse_object(const char *s, size_t len)
{
	struct json_tokener *tok;
	json_object *o;
	size_t end;

	if (len == 0 || len > INT_MAX || memchr(s, '\0', len) != NULL)
		return NULL;
	if ((tok = json_tokener_new()) == NULL)
		return NULL;
	o = json_tokener_parse_ex(tok, s, (int)len);
	if (o != NULL && (json_tokener_get_error(tok) != json_tokener_success ||
	    !json_object_is_type(o, json_type_object))) {
		json_object_put(o);
		o = NULL;
	}
	for (end = json_tokener_get_parse_end(tok); o != NULL && end < len;
	    end++) {
		if (strchr(" \t\r\n", s[end]) == NULL) {
			json_object_put(o);
			o = NULL;
		}
	}
	json_tokener_free(tok);
	return o;
}

/* The value at key if it is of type t, else NULL. */
static json_object *
get_typed(json_object *o, const char *key, json_type t)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, t))
		return NULL;
	return v;
}

/* The string at key if it is one of at most max bytes, else NULL. */
static const char *
get_string(json_object *o, const char *key, size_t max)
{
	json_object *v;
	const char *s;
	size_t len;

	if ((v = get_typed(o, key, json_type_string)) == NULL)
		return NULL;
	s = json_object_get_string(v);
	len = (size_t)json_object_get_string_len(v);
	if (len > max || strlen(s) != len)      /* an escaped NUL */
		return NULL;
	return s;
}

/* Copies the string at key into dst[size]; -1 if absent or too long. */
static int
copy_string(json_object *o, const char *key, char *dst, size_t size)
{
	const char *s = get_string(o, key, size - 1);

	if (s == NULL)
		return -1;
	memcpy(dst, s, strlen(s) + 1);
	return 0;
}

/* The number (integer or not) at key into *out; -1 if absent or not
 * finite. */
static int
get_double(json_object *o, const char *key, double *out)
{
	json_object *v;

	if ((v = get_typed(o, key, json_type_double)) == NULL &&
	    (v = get_typed(o, key, json_type_int)) == NULL)
		return -1;
	*out = json_object_get_double(v);
	return isfinite(*out) ? 0 : -1;
}

/* The integer at key into *out; -1 if absent. */
static int
get_int64(json_object *o, const char *key, int64_t *out)
{
	json_object *v;

	if ((v = get_typed(o, key, json_type_int)) == NULL)
		return -1;
	*out = json_object_get_int64(v);
	return 0;
}

/* The boolean at key into *out (0 or 1); -1 if absent. */
static int
get_bool(json_object *o, const char *key, int *out)
{
	json_object *v;

	if ((v = get_typed(o, key, json_type_boolean)) == NULL)
		return -1;
	*out = json_object_get_boolean(v) ? 1 : 0;
	return 0;
}

static bool
is_token(const char *s)
{
	size_t i;

	for (i = 0; i < HTTPLOCK_TOKEN_LEN; i++)
		if (s[i] == '\0' || strchr("0123456789abcdefABCDEF", s[i]) ==
		    NULL)
			return false;
	return s[i] == '\0';
}

/*
 * Fills *g from a grant object of the lock `name` (request_id is left
 * alone).  Returns 0, or -1 if a field is missing or malformed.
 */
static int
parse_grant(json_object *o, const char *name, struct httplock_grant *g)
{
	if (copy_string(o, "lock", g->lock, sizeof(g->lock)) != 0 ||
	    strcmp(g->lock, name) != 0 ||
	    copy_string(o, "token", g->token, sizeof(g->token)) != 0 ||
	    !is_token(g->token) ||
	    get_int64(o, "fence", &g->fence) != 0 ||
	    get_double(o, "ttl", &g->ttl) != 0 ||
	    get_double(o, "acquired_at", &g->acquired_at) != 0 ||
	    get_double(o, "expires_at", &g->expires_at) != 0 ||
	    copy_string(o, "owner", g->owner, sizeof(g->owner)) != 0)
		return -1;
	return 0;
}

/* ------------------------------------------------------------- checks */

static bool
valid_name(const char *name)
{
	size_t len;

	if (name == NULL)
		return false;
	len = strnlen(name, HTTPLOCK_NAME_MAX + 1);
	return len > 0 && len <= HTTPLOCK_NAME_MAX;
}

/* A number of seconds as we send it: finite, >= 0, not absurd. */
static bool
valid_seconds(double s)
{
	return isfinite(s) && s >= 0 && s <= SECONDS_MAX;
}

static long
ms(double seconds)
{
	return (long)(seconds * 1000.0);
}

static void
sleep_ms(long n)
{
	struct timespec ts;

	ts.tv_sec = n / 1000;
	ts.tv_nsec = (n % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ------------------------------------------------------------ a call */

static void
call_end(struct call *k)
{
	if (k->c != NULL)
		curl_easy_cleanup(k->c);
	k->c = NULL;
	buf_free(&k->url);
	buf_free(&k->params);
	buf_free(&k->body);
	if (k->json != NULL)
		json_object_put(k->json);
	k->json = NULL;
}

static enum httplock_code
build_failed(const struct buf *b, struct httplock_error *err)
{
	if (b->err == BUF_E_NOMEM)
		return fail(err, HTTPLOCK_NOMEM, 0, NULL, "out of memory");
	return fail(err, HTTPLOCK_INVALID, 0, NULL, "a parameter is too long");
}

/*
 * Starts a call: a POST to lock/<name>/<action>, a GET of lock/<name> if
 * action is NULL, or a GET of locks/ if name is NULL too.  On failure
 * *k holds nothing (call_end is still safe).
 */
static enum httplock_code
call_start(struct call *k, struct httplock *h, const char *name,
    const char *action, struct httplock_error *err)
{
	memset(k, 0, sizeof(*k));
	buf_init(&k->url, URL_MAX);
	buf_init(&k->params, URL_MAX);
	buf_init(&k->body, RESP_MAX);
	if ((k->c = curl_easy_init()) == NULL)
		return fail(err, HTTPLOCK_NOMEM, 0, NULL,
		    "curl_easy_init failed");
	k->post = action != NULL;
	if (buf_str(&k->url, h->base) != BUF_OK)
		return build_failed(&k->url, err);
	if (name == NULL) {
		if (buf_str(&k->url, "locks/") != BUF_OK)
			return build_failed(&k->url, err);
		return HTTPLOCK_OK;
	}
	if (buf_str(&k->url, "lock/") != BUF_OK ||
	    buf_escaped(&k->url, k->c, name) != BUF_OK ||
	    (action != NULL && (buf_str(&k->url, "/") != BUF_OK ||
	    buf_str(&k->url, action) != BUF_OK)))
		return build_failed(&k->url, err);
	return HTTPLOCK_OK;
}

/* Adds key=value (value encoded) to the form or the query. */
static enum httplock_code
call_param(struct call *k, const char *key, const char *value,
    struct httplock_error *err)
{
	if ((k->params.len > 0 && buf_str(&k->params, "&") != BUF_OK) ||
	    buf_str(&k->params, key) != BUF_OK ||
	    buf_str(&k->params, "=") != BUF_OK ||
	    buf_escaped(&k->params, k->c, value) != BUF_OK)
		return build_failed(&k->params, err);
	return HTTPLOCK_OK;
}

static enum httplock_code
call_seconds(struct call *k, const char *key, double s,
    struct httplock_error *err)
{
	char num[32];
	int n;

	n = snprintf(num, sizeof(num), "%.3f", s);
	if (n < 0 || (size_t)n >= sizeof(num))
		return fail(err, HTTPLOCK_INVALID, 0, NULL,
		    "%s is out of range", key);
	return call_param(k, key, num, err);
}

static CURLcode
call_setopts(struct call *k, struct httplock *h, long timeout_ms)
{
	CURLcode cc;

	if ((cc = curl_easy_setopt(k->c, CURLOPT_URL, k->url.p)) != CURLE_OK ||
	    (cc = curl_easy_setopt(k->c, CURLOPT_SHARE, h->share)) !=
	    CURLE_OK ||
	    (cc = curl_easy_setopt(k->c, CURLOPT_NOSIGNAL, 1L)) != CURLE_OK ||
	    (cc = curl_easy_setopt(k->c, CURLOPT_CONNECTTIMEOUT_MS,
	    h->connect_timeout_ms)) != CURLE_OK ||
	    (cc = curl_easy_setopt(k->c, CURLOPT_TIMEOUT_MS, timeout_ms)) !=
	    CURLE_OK ||
	    (cc = curl_easy_setopt(k->c, CURLOPT_ERRORBUFFER, k->errbuf)) !=
	    CURLE_OK ||
	    (cc = curl_easy_setopt(k->c, CURLOPT_WRITEFUNCTION, on_body)) !=
	    CURLE_OK ||
	    (cc = curl_easy_setopt(k->c, CURLOPT_WRITEDATA, &k->body)) !=
	    CURLE_OK ||
	    (cc = curl_easy_setopt(k->c, CURLOPT_USERAGENT,
	    "libhttplock/" PACKAGE_VERSION)) != CURLE_OK)
		return cc;
	if (h->user != NULL && (cc = curl_easy_setopt(k->c, CURLOPT_USERPWD,
	    h->user)) != CURLE_OK)
		return cc;
	if (h->netrc && ((cc = curl_easy_setopt(k->c, CURLOPT_NETRC,
	    (long)CURL_NETRC_OPTIONAL)) != CURLE_OK ||
	    (h->netrc_file != NULL && (cc = curl_easy_setopt(k->c,
	    CURLOPT_NETRC_FILE, h->netrc_file)) != CURLE_OK)))
		return cc;
	if (k->post)
		/* lighttpd wants a length even for an empty body: "" gives
		 * Content-Length: 0 and the form content type. */
		return (cc = curl_easy_setopt(k->c, CURLOPT_POSTFIELDSIZE,
		    (long)k->params.len)) != CURLE_OK ? cc :
		    curl_easy_setopt(k->c, CURLOPT_POSTFIELDS,
		    k->params.p != NULL ? k->params.p : "");
	return curl_easy_setopt(k->c, CURLOPT_HTTPGET, 1L);
}

/*
 * True if a transport error left open whether the server got the request:
 * not when the name did not resolve or the connection was never made (so
 * that a give-up against a server that is down sends no useless cancel).
 */
static bool
maybe_sent(CURL *c, CURLcode cc)
{
	curl_off_t pretransfer = 1;
	long sent = 1;

	if (cc == CURLE_COULDNT_RESOLVE_HOST ||
	    cc == CURLE_COULDNT_RESOLVE_PROXY || cc == CURLE_COULDNT_CONNECT)
		return false;
	/* Both zero: the transfer never began (e.g. the connect timed out). */
	if (curl_easy_getinfo(c, CURLINFO_PRETRANSFER_TIME_T, &pretransfer) !=
	    CURLE_OK || curl_easy_getinfo(c, CURLINFO_REQUEST_SIZE, &sent) !=
	    CURLE_OK)
		return true;
	return pretransfer != 0 || sent != 0;
}

/*
 * Maps an HTTP answer to a code, filling *err from the body's "error" and
 * "message" when it is httplock's JSON.  For a 5xx the status wins over
 * the body (lighttpd answers HTML while a worker restarts); a 200 must be
 * a JSON object and a 409 must name a known error.
 */
static enum httplock_code
classify(struct call *k, struct httplock_error *err)
{
	const char *server_code = NULL, *msg = NULL;
	enum httplock_code code;
	size_t i;

	k->json = parse_object(k->body.p, k->body.len);
	if (k->json != NULL) {
		server_code = get_string(k->json, "error", SIZE_MAX);
		msg = get_string(k->json, "message", SIZE_MAX);
	}
	if (k->status == 200) {
		if (k->json == NULL)
			return fail(err, HTTPLOCK_PROTOCOL, k->status, NULL,
			    "HTTP 200 without a JSON object: is this "
			    "httplock?");
		return ok(err);
	}
	for (i = 0; i < sizeof(status_map) / sizeof(status_map[0]); i++) {
		const struct status_map *m = &status_map[i];

		if (m->status == k->status && (m->server_code == NULL ||
		    (server_code != NULL &&
		    strcmp(m->server_code, server_code) == 0)))
			break;
	}
	if (i < sizeof(status_map) / sizeof(status_map[0]))
		code = status_map[i].code;
	else if (k->status >= 500 && k->status <= 599)
		code = HTTPLOCK_UNAVAILABLE;
	else
		code = HTTPLOCK_PROTOCOL;
	if (msg != NULL)
		return fail(err, code, k->status, server_code, "%s", msg);
	return fail(err, code, k->status, server_code, "HTTP %ld%s", k->status,
	    k->json != NULL ? " without a message" :
	    ", not from httplock (the body is not its JSON)");
}

/*
 * Runs the call with a total time limit and classifies the answer.  On
 * HTTPLOCK_OK, k->json holds the answer's object (the call owns it).
 */
static enum httplock_code
call_run(struct call *k, struct httplock *h, long timeout_ms,
    struct httplock_error *err)
{
	CURLcode cc;

	if (k->params.err != BUF_OK || k->url.err != BUF_OK)
		return build_failed(k->params.err != BUF_OK ? &k->params :
		    &k->url, err);
	if (!k->post && k->params.len > 0 &&
	    (buf_str(&k->url, "?") != BUF_OK ||
	    buf_add(&k->url, k->params.p, k->params.len) != BUF_OK))
		return build_failed(&k->url, err);
	if ((cc = call_setopts(k, h, timeout_ms)) != CURLE_OK)
		return fail(err, cc == CURLE_OUT_OF_MEMORY ? HTTPLOCK_NOMEM :
		    HTTPLOCK_INVALID, 0, NULL, "libcurl: %s",
		    curl_easy_strerror(cc));
	k->errbuf[0] = '\0';
	cc = curl_easy_perform(k->c);
	if (curl_easy_getinfo(k->c, CURLINFO_RESPONSE_CODE, &k->status) !=
	    CURLE_OK)
		k->status = 0;
	if (cc == CURLE_WRITE_ERROR && k->body.err == BUF_E_TOOBIG)
		return fail(err, HTTPLOCK_PROTOCOL, k->status, NULL,
		    "the answer is larger than %d bytes", RESP_MAX);
	if (cc == CURLE_OUT_OF_MEMORY ||
	    (cc == CURLE_WRITE_ERROR && k->body.err == BUF_E_NOMEM))
		return fail(err, HTTPLOCK_NOMEM, k->status, NULL,
		    "out of memory");
	if (cc != CURLE_OK) {
		k->maybe_sent = maybe_sent(k->c, cc);
		return fail(err, HTTPLOCK_CONNECT, k->status, NULL, "%s",
		    k->errbuf[0] != '\0' ? k->errbuf : curl_easy_strerror(cc));
	}
	return classify(k, err);
}

/* ------------------------------------------------------------- handle */

static void
share_lock(CURL *c, curl_lock_data data, curl_lock_access access, void *arg)
{
	struct httplock *h = arg;

	(void)c;
	(void)access;
	if ((unsigned)data < (unsigned)CURL_LOCK_DATA_LAST)
		pthread_mutex_lock(&h->mu[data]);
}

static void
share_unlock(CURL *c, curl_lock_data data, void *arg)
{
	struct httplock *h = arg;

	(void)c;
	if ((unsigned)data < (unsigned)CURL_LOCK_DATA_LAST)
		pthread_mutex_unlock(&h->mu[data]);
}

/*
 * Checks that url is http(s) without query or fragment and returns it,
 * as libcurl normalises it, with a trailing '/' (the caller frees it), or
 * NULL.
 */
static char *
base_url(const char *url)
{
	CURLU *u;
	char *scheme = NULL, *part = NULL, *full = NULL, *base = NULL;
	size_t len;

	if ((u = curl_url()) == NULL)
		return NULL;
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    (strcasecmp(scheme, "http") != 0 &&
	    strcasecmp(scheme, "https") != 0))
		goto out;
	if (curl_url_get(u, CURLUPART_QUERY, &part, 0) != CURLUE_NO_QUERY ||
	    curl_url_get(u, CURLUPART_FRAGMENT, &part, 0) !=
	    CURLUE_NO_FRAGMENT)
		goto out;
	if (curl_url_get(u, CURLUPART_URL, &full, 0) != CURLUE_OK)
		goto out;
	len = strlen(full);
	if ((base = malloc(len + 2)) == NULL)
		goto out;
	memcpy(base, full, len + 1);
	if (len == 0 || base[len - 1] != '/')
		memcpy(base + len, "/", 2);
out:
	curl_free(scheme);
	curl_free(part);
	curl_free(full);
	curl_url_cleanup(u);
	return base;
}

static int
dup_opt(char **dst, const char *s)
{
	*dst = NULL;
	if (s == NULL)
		return 0;
	return (*dst = strdup(s)) != NULL ? 0 : -1;
}

HL_API struct httplock *
httplock_new(const char *url, const struct httplock_opts *opts)
{
	static const struct httplock_opts none;
	struct httplock *h, *ret = NULL;

	if (url == NULL)
		return NULL;
	if (opts == NULL)
		opts = &none;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return NULL;
	if ((h->base = base_url(url)) == NULL ||
	    dup_opt(&h->user, opts->user) != 0 ||
	    dup_opt(&h->netrc_file, opts->netrc_file) != 0)
		goto out;
	h->netrc = opts->netrc || opts->netrc_file != NULL;
	h->connect_timeout_ms = opts->connect_timeout_ms > 0 ?
	    opts->connect_timeout_ms : CONNECT_MS;
	for (; h->nmu < CURL_LOCK_DATA_LAST; h->nmu++)
		if (pthread_mutex_init(&h->mu[h->nmu], NULL) != 0)
			goto out;
	/*
	 * Only DNS is shared.  libcurl's CURLSHOPT_SHARE(3) calls sharing the
	 * connection cache between concurrent threads "not supported" (curl's
	 * KNOWN_BUGS), and calls on one handle may run concurrently; so each
	 * call connects afresh (on loopback or a LAN that costs well under a
	 * millisecond).
	 */
	if ((h->share = curl_share_init()) == NULL ||
	    curl_share_setopt(h->share, CURLSHOPT_USERDATA, h) != CURLSHE_OK ||
	    curl_share_setopt(h->share, CURLSHOPT_LOCKFUNC, share_lock) !=
	    CURLSHE_OK ||
	    curl_share_setopt(h->share, CURLSHOPT_UNLOCKFUNC, share_unlock) !=
	    CURLSHE_OK ||
	    curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) !=
	    CURLSHE_OK)
		goto out;
	ret = h;
	h = NULL;
out:
	httplock_free(h);
	return ret;
}

HL_API void
httplock_free(struct httplock *h)
{
	int i;

	if (h == NULL)
		return;
	if (h->share != NULL)
		curl_share_cleanup(h->share);
	for (i = 0; i < h->nmu; i++)
		pthread_mutex_destroy(&h->mu[i]);
	free(h->base);
	free(h->user);
	free(h->netrc_file);
	free(h);
}

/* ------------------------------------------------------------ acquire */

/*
 * One acquire request.  wait < 0 leaves the timeout to the server.  On
 * HTTPLOCK_OK *grant is filled; *unknown is set when the server may have
 * acted on a request whose answer we did not get or could not read.
 */
static enum httplock_code
acquire_once(struct httplock *h, const char *name,
    const struct httplock_acquire_opts *o, double wait, const char *rid,
    struct httplock_grant *grant, bool *unknown, struct httplock_error *err)
{
	struct httplock_grant g;
	struct call k;
	enum httplock_code code;
	long limit = wait >= 0 ? ms(wait) + ACQUIRE_MARGIN_MS : ACQUIRE_LONG_MS;

	if ((code = call_start(&k, h, name, "acquire", err)) != HTTPLOCK_OK ||
	    (wait >= 0 && (code = call_seconds(&k, "timeout", wait, err)) !=
	    HTTPLOCK_OK) ||
	    (o->ttl > 0 && (code = call_seconds(&k, "ttl", o->ttl, err)) !=
	    HTTPLOCK_OK) ||
	    (o->owner != NULL && (code = call_param(&k, "owner", o->owner,
	    err)) != HTTPLOCK_OK) ||
	    (code = call_param(&k, "request_id", rid, err)) != HTTPLOCK_OK)
		goto out;
	code = call_run(&k, h, limit, err);
	/* A 5xx that is not httplock's JSON comes from the web server, which
	 * may have lost the worker after it granted; a 200 we cannot read may
	 * be a grant. */
	if (k.maybe_sent || (k.json == NULL && (k.status == 200 ||
	    k.status >= 500)))
		*unknown = true;
	if (code != HTTPLOCK_OK)
		goto out;
	memset(&g, 0, sizeof(g));
	if (parse_grant(k.json, name, &g) != 0) {
		*unknown = true;        /* a grant we cannot use */
		code = fail(err, HTTPLOCK_PROTOCOL, k.status, NULL,
		    "the grant in the answer is malformed");
		goto out;
	}
	memcpy(g.request_id, rid, strlen(rid) + 1);
	*grant = g;
out:
	call_end(&k);
	return code;
}

static enum httplock_code cancel_call(struct httplock *, const char *,
    const char *, long, int *, struct httplock_error *);

/*
 * The retry loop: connection failures and 5xx but too_many_waiters are
 * asked again with the same request_id, after 50 ms doubling up to 1 s,
 * until the deadline (or ATTEMPTS_MAX attempts when the server's max_wait
 * is the limit).  Each attempt asks the server to wait only for what is
 * left.  A give-up after an attempt with an unknown outcome cancels the
 * request_id, best effort, so that a grant we never saw is released.
 */
HL_API enum httplock_code
httplock_acquire(struct httplock *h, const char *name,
    const struct httplock_acquire_opts *opts, struct httplock_grant *grant,
    struct httplock_error *err)
{
	static const struct httplock_acquire_opts defaults =
	    HTTPLOCK_ACQUIRE_DEFAULTS;
	char rid[HTTPLOCK_REQUEST_ID_MAX + 1];
	enum httplock_code code;
	double deadline = 0, now, wait = -1;
	long backoff = BACKOFF_MIN_MS;
	bool unknown = false;
	int attempt;

	if (opts == NULL)
		opts = &defaults;
	if (h == NULL || !valid_name(name) || grant == NULL)
		return fail(err, HTTPLOCK_INVALID, 0, NULL,
		    "a handle, a lock name of 1 to %d bytes and a grant are "
		    "required", HTTPLOCK_NAME_MAX);
	if (isnan(opts->timeout) || (opts->timeout >= 0 &&
	    !valid_seconds(opts->timeout)) || !valid_seconds(opts->ttl))
		return fail(err, HTTPLOCK_INVALID, 0, NULL,
		    "timeout or ttl is not a valid number of seconds");
	if (opts->owner != NULL &&
	    strnlen(opts->owner, HTTPLOCK_OWNER_MAX + 1) > HTTPLOCK_OWNER_MAX)
		return fail(err, HTTPLOCK_INVALID, 0, NULL,
		    "owner is longer than %d bytes", HTTPLOCK_OWNER_MAX);
	if (opts->request_id != NULL) {
		size_t len = strnlen(opts->request_id,
		    HTTPLOCK_REQUEST_ID_MAX + 1);

		if (len == 0 || len > HTTPLOCK_REQUEST_ID_MAX)
			return fail(err, HTTPLOCK_INVALID, 0, NULL,
			    "request_id must have 1 to %d bytes",
			    HTTPLOCK_REQUEST_ID_MAX);
		memcpy(rid, opts->request_id, len + 1);
	} else if (reqid_make(rid, sizeof(rid), REQUEST_ID_PREFIX) != 0)
		return fail(err, HTTPLOCK_NOMEM, 0, NULL,
		    "getrandom failed: no request_id");

	if (opts->timeout >= 0)
		deadline = hlclock_mono() + opts->timeout;
	for (attempt = 1;; attempt++) {
		if (opts->timeout >= 0)
			wait = deadline - hlclock_mono() > 0 ?
			    deadline - hlclock_mono() : 0;
		code = acquire_once(h, name, opts, wait, rid, grant, &unknown,
		    err);
		if (code != HTTPLOCK_CONNECT && code != HTTPLOCK_UNAVAILABLE)
			break;
		if (opts->timeout >= 0) {
			now = hlclock_mono();
			if (now >= deadline)
				break;
			sleep_ms(backoff < ms(deadline - now) ? backoff :
			    ms(deadline - now));
		} else {
			if (attempt >= ATTEMPTS_MAX)
				break;
			sleep_ms(backoff);
		}
		backoff = backoff * 2 < BACKOFF_MAX_MS ? backoff * 2 :
		    BACKOFF_MAX_MS;
	}
	/* A definite answer (a grant, 423, 409, 400...) needs no cancel: a
	 * grant made for an earlier attempt would have been replayed. */
	if (unknown && (code == HTTPLOCK_CONNECT ||
	    code == HTTPLOCK_UNAVAILABLE || code == HTTPLOCK_PROTOCOL))
		(void)cancel_call(h, name, rid, GIVEUP_CANCEL_MS, NULL, NULL);
	return code;
}

/* ----------------------------------------------------- other requests */

static enum httplock_code
check_token(struct httplock *h, const char *name, const char *token,
    struct httplock_error *err)
{
	if (h == NULL || !valid_name(name))
		return fail(err, HTTPLOCK_INVALID, 0, NULL,
		    "a handle and a lock name of 1 to %d bytes are required",
		    HTTPLOCK_NAME_MAX);
	if (token == NULL || !is_token(token))
		return fail(err, HTTPLOCK_INVALID, 0, NULL,
		    "the token must be %d hexadecimal digits",
		    HTTPLOCK_TOKEN_LEN);
	return HTTPLOCK_OK;
}

HL_API enum httplock_code
httplock_release(struct httplock *h, const char *name, const char *token,
    struct httplock_error *err)
{
	struct call k;
	enum httplock_code code;

	if ((code = check_token(h, name, token, err)) != HTTPLOCK_OK)
		return code;
	if ((code = call_start(&k, h, name, "release", err)) == HTTPLOCK_OK &&
	    (code = call_param(&k, "token", token, err)) == HTTPLOCK_OK)
		code = call_run(&k, h, CALL_MS, err);
	call_end(&k);
	return code;
}

HL_API enum httplock_code
httplock_renew(struct httplock *h, const char *name, const char *token,
    double ttl, struct httplock_grant *grant, struct httplock_error *err)
{
	struct httplock_grant g;
	struct call k;
	enum httplock_code code;

	if ((code = check_token(h, name, token, err)) != HTTPLOCK_OK)
		return code;
	if (!valid_seconds(ttl))
		return fail(err, HTTPLOCK_INVALID, 0, NULL,
		    "ttl is not a valid number of seconds");
	if ((code = call_start(&k, h, name, "renew", err)) != HTTPLOCK_OK ||
	    (code = call_param(&k, "token", token, err)) != HTTPLOCK_OK ||
	    (ttl > 0 && (code = call_seconds(&k, "ttl", ttl, err)) !=
	    HTTPLOCK_OK) ||
	    (code = call_run(&k, h, CALL_MS, err)) != HTTPLOCK_OK)
		goto out;
	memset(&g, 0, sizeof(g));
	if (parse_grant(k.json, name, &g) != 0) {
		code = fail(err, HTTPLOCK_PROTOCOL, k.status, NULL,
		    "the grant in the answer is malformed");
		goto out;
	}
	if (grant != NULL) {
		memcpy(g.request_id, grant->request_id, sizeof(g.request_id));
		*grant = g;
	}
out:
	call_end(&k);
	return code;
}

static enum httplock_code
cancel_call(struct httplock *h, const char *name, const char *request_id,
    long limit, int *was_held, struct httplock_error *err)
{
	struct call k;
	enum httplock_code code;
	const char *was;

	if ((code = call_start(&k, h, name, "cancel", err)) != HTTPLOCK_OK ||
	    (code = call_param(&k, "request_id", request_id, err)) !=
	    HTTPLOCK_OK ||
	    (code = call_run(&k, h, limit, err)) != HTTPLOCK_OK)
		goto out;
	was = get_string(k.json, "was", sizeof("waiting") - 1);
	if (was == NULL || (strcmp(was, "held") != 0 &&
	    strcmp(was, "waiting") != 0)) {
		code = fail(err, HTTPLOCK_PROTOCOL, k.status, NULL,
		    "the answer to cancel lacks \"was\"");
		goto out;
	}
	if (was_held != NULL)
		*was_held = strcmp(was, "held") == 0;
out:
	call_end(&k);
	return code;
}

HL_API enum httplock_code
httplock_cancel(struct httplock *h, const char *name, const char *request_id,
    int *was_held, struct httplock_error *err)
{
	size_t len;

	if (h == NULL || !valid_name(name) || request_id == NULL)
		return fail(err, HTTPLOCK_INVALID, 0, NULL,
		    "a handle, a lock name and a request_id are required");
	len = strnlen(request_id, HTTPLOCK_REQUEST_ID_MAX + 1);
	if (len == 0 || len > HTTPLOCK_REQUEST_ID_MAX)
		return fail(err, HTTPLOCK_INVALID, 0, NULL,
		    "request_id must have 1 to %d bytes",
		    HTTPLOCK_REQUEST_ID_MAX);
	return cancel_call(h, name, request_id, CALL_MS, was_held, err);
}

/* Fills holder *hd from one element of "holders"; -1 if malformed. */
static int
parse_holder(json_object *o, struct httplock_holder *hd)
{
	if (!json_object_is_type(o, json_type_object) ||
	    copy_string(o, "owner", hd->owner, sizeof(hd->owner)) != 0 ||
	    get_int64(o, "fence", &hd->fence) != 0 ||
	    get_double(o, "acquired_at", &hd->acquired_at) != 0 ||
	    get_double(o, "expires_at", &hd->expires_at) != 0)
		return -1;
	return 0;
}

/*
 * Fills *st from a status answer; holders past HTTPLOCK_HOLDERS_MAX are
 * left out.  -1 if malformed.
 */
static int
parse_status(json_object *o, struct httplock_status *st)
{
	json_object *hs;
	int64_t waiters;
	size_t i, n;

	if (get_bool(o, "held", &st->held) != 0 ||
	    !json_object_object_get_ex(o, "holders", &hs) ||
	    !json_object_is_type(hs, json_type_array) ||
	    get_int64(o, "waiters", &waiters) != 0 || waiters < 0 ||
	    waiters > LONG_MAX)
		return -1;
	st->waiters = (long)waiters;
	n = json_object_array_length(hs);
	for (i = 0; i < n && i < HTTPLOCK_HOLDERS_MAX; i++)
		if (parse_holder(json_object_array_get_idx(hs, i),
		    &st->holders[i]) != 0)
			return -1;
	st->nholders = (int)i;
	return 0;
}

HL_API enum httplock_code
httplock_status(struct httplock *h, const char *name,
    struct httplock_status *st, struct httplock_error *err)
{
	struct httplock_status s;
	struct call k;
	enum httplock_code code;

	if (h == NULL || !valid_name(name) || st == NULL)
		return fail(err, HTTPLOCK_INVALID, 0, NULL,
		    "a handle, a lock name of 1 to %d bytes and a status are "
		    "required", HTTPLOCK_NAME_MAX);
	if ((code = call_start(&k, h, name, NULL, err)) != HTTPLOCK_OK ||
	    (code = call_run(&k, h, CALL_MS, err)) != HTTPLOCK_OK)
		goto out;
	memset(&s, 0, sizeof(s));
	if (parse_status(k.json, &s) != 0) {
		code = fail(err, HTTPLOCK_PROTOCOL, k.status, NULL,
		    "the status in the answer is malformed");
		goto out;
	}
	*st = s;
out:
	call_end(&k);
	return code;
}

/*
 * Reports one page of a list answer to fn.  Sets *stop when fn asked to
 * stop and copies the last name into after[HTTPLOCK_NAME_MAX + 1].
 * Returns 0, or -1 if the page is malformed, empty while "more" is true, or
 * not past the previous page's last name.
 */
static int
list_page(json_object *o, int (*fn)(const struct httplock_lock_info *,
    void *), void *arg, char *after, int *more, int *stop)
{
	struct httplock_lock_info info;
	json_object *locks, *e;
	int64_t holders, waiters;
	size_t i, n;

	if (!json_object_object_get_ex(o, "locks", &locks) ||
	    !json_object_is_type(locks, json_type_array) ||
	    get_bool(o, "more", more) != 0)
		return -1;
	n = json_object_array_length(locks);
	if (n == 0 && *more)
		return -1;
	for (i = 0; i < n && !*stop; i++) {
		e = json_object_array_get_idx(locks, i);
		if (!json_object_is_type(e, json_type_object) ||
		    (info.lock = get_string(e, "lock", HTTPLOCK_NAME_MAX)) ==
		    NULL || info.lock[0] == '\0' ||
		    strcmp(info.lock, after) <= 0 ||
		    get_int64(e, "holders", &holders) != 0 ||
		    get_int64(e, "waiters", &waiters) != 0 ||
		    holders < 0 || holders > LONG_MAX ||
		    waiters < 0 || waiters > LONG_MAX)
			return -1;
		info.holders = (long)holders;
		info.waiters = (long)waiters;
		memcpy(after, info.lock, strlen(info.lock) + 1);
		if (fn(&info, arg) != 0)
			*stop = 1;
	}
	return 0;
}

HL_API enum httplock_code
httplock_list(struct httplock *h, const char *prefix,
    int (*fn)(const struct httplock_lock_info *info, void *arg), void *arg,
    struct httplock_error *err)
{
	char after[HTTPLOCK_NAME_MAX + 1] = "";
	struct call k;
	enum httplock_code code;
	int more = 1, stop = 0;

	if (h == NULL || fn == NULL)
		return fail(err, HTTPLOCK_INVALID, 0, NULL,
		    "a handle and a callback are required");
	if (prefix != NULL &&
	    strnlen(prefix, HTTPLOCK_NAME_MAX + 1) > HTTPLOCK_NAME_MAX)
		return fail(err, HTTPLOCK_INVALID, 0, NULL,
		    "prefix is longer than %d bytes", HTTPLOCK_NAME_MAX);
	while (more && !stop) {
		if ((code = call_start(&k, h, NULL, NULL, err)) != HTTPLOCK_OK ||
		    (prefix != NULL && (code = call_param(&k, "prefix", prefix,
		    err)) != HTTPLOCK_OK) ||
		    (after[0] != '\0' && (code = call_param(&k, "after", after,
		    err)) != HTTPLOCK_OK) ||
		    (code = call_param(&k, "limit", LIST_PAGE, err)) !=
		    HTTPLOCK_OK ||
		    (code = call_run(&k, h, CALL_MS, err)) != HTTPLOCK_OK) {
			call_end(&k);
			return code;
		}
		if (list_page(k.json, fn, arg, after, &more, &stop) != 0) {
			call_end(&k);
			return fail(err, HTTPLOCK_PROTOCOL, 200, NULL,
			    "the list in the answer is malformed");
		}
		call_end(&k);
	}
	return ok(err);
}

HL_API const char *
httplock_strerror(enum httplock_code code)
{
	if ((unsigned)code < sizeof(code_names) / sizeof(code_names[0]) &&
	    code_names[code] != NULL)
		return code_names[code];
	return "unknown error";
}
