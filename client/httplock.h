/*
 * libhttplock: a C client for the httplock HTTP lock service.
 *
 *     struct httplock *h = httplock_new("http://127.0.0.1:8080/", NULL);
 *     struct httplock_grant g;
 *     struct httplock_acquire_opts ao = HTTPLOCK_ACQUIRE_DEFAULTS;
 *
 *     ao.timeout = 10;                        wait at most 10 s
 *     if (httplock_acquire(h, "session:42", &ao, &g, NULL) == HTTPLOCK_OK) {
 *             ... work, calling httplock_renew() before g.expires_at ...
 *             httplock_release(h, "session:42", g.token, NULL);
 *     }
 *     httplock_free(h);
 *
 * Every call is blocking and may be made from any thread, also
 * concurrently on one handle (each call uses its own libcurl easy handle;
 * connections are shared).  The library keeps no global state of its own;
 * call curl_global_init() before starting threads if your program has
 * any, as libcurl asks.
 *
 * Errors: each call returns an enum httplock_code and, if `err` is not
 * NULL, fills *err with the HTTP status, the server's error code and a
 * message (on HTTPLOCK_OK: code 0, the status and empty strings).  Nothing
 * is ever printed.  Output structures are written only on HTTPLOCK_OK.
 *
 * Acquire is safe to retry: unless the caller gives one, the library makes
 * a random request_id, so when the connection fails (or the server answers
 * 503 unavailable) it asks again with the same id and gets the same grant
 * or queue place back, never a second one.  If it gives up (the deadline
 * passed without an answer), it cancels that request_id so that a grant
 * that arrived unseen is released rather than orphaned.
 */
#ifndef HTTPLOCK_CLIENT_H
#define HTTPLOCK_CLIENT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HTTPLOCK_NAME_MAX       255
#define HTTPLOCK_OWNER_MAX      128
#define HTTPLOCK_REQUEST_ID_MAX 128
#define HTTPLOCK_TOKEN_LEN      32
#define HTTPLOCK_HOLDERS_MAX    16

enum httplock_code {
	HTTPLOCK_OK = 0,
	HTTPLOCK_TIMEOUT,          /* 423: still held when the timeout ran out */
	HTTPLOCK_NOT_HELD,         /* 409 not_held: lease gone or wrong token */
	HTTPLOCK_CANCELLED,        /* 409 cancelled: our queued acquire was cancelled */
	HTTPLOCK_SUPERSEDED,       /* 409 superseded: a retry took our place */
	HTTPLOCK_TOO_MANY_WAITERS, /* 503 too_many_waiters */
	HTTPLOCK_UNAVAILABLE,      /* 503 unavailable, or another 5xx */
	HTTPLOCK_BAD_REQUEST,      /* 400, 404, 405, 411, 413, 414, 431: the server refused the request */
	HTTPLOCK_AUTH,             /* 401 or 403 from the web server */
	HTTPLOCK_CONNECT,          /* the server cannot be reached */
	HTTPLOCK_PROTOCOL,         /* an answer that is not httplock's (or over 64 KiB) */
	HTTPLOCK_INVALID,          /* a bad argument (caught before sending) */
	HTTPLOCK_NOMEM
};

struct httplock_error {
	enum httplock_code code;
	long http_status;          /* 0 if there was no HTTP answer */
	char server_code[32];      /* "timeout", "not_held", ... or "" */
	char message[256];         /* the server's message, or libcurl's */
};

struct httplock_opts {
	const char *user;          /* "name:password" for web-server auth, or NULL */
	int         netrc;         /* 1: take credentials from ~/.netrc */
	const char *netrc_file;    /* another netrc file (implies netrc), or NULL */
	long        connect_timeout_ms;  /* <= 0: 5000 */
};

struct httplock_grant {
	char    lock[HTTPLOCK_NAME_MAX + 1];
	char    token[HTTPLOCK_TOKEN_LEN + 1];
	int64_t fence;
	double  ttl;               /* seconds */
	double  acquired_at;       /* Unix time, seconds */
	double  expires_at;        /* Unix time, seconds */
	char    owner[HTTPLOCK_OWNER_MAX + 1];
	char    request_id[HTTPLOCK_REQUEST_ID_MAX + 1];   /* the id used */
};

struct httplock_acquire_opts {
	double      timeout;       /* seconds to wait; < 0: the server's max_wait; 0: try once */
	double      ttl;           /* lease seconds; 0: the server's default */
	const char *owner;         /* or NULL */
	const char *request_id;    /* or NULL: the library makes one */
};
#define HTTPLOCK_ACQUIRE_DEFAULTS { -1.0, 0.0, NULL, NULL }

struct httplock_holder {
	char    owner[HTTPLOCK_OWNER_MAX + 1];
	int64_t fence;
	double  acquired_at;
	double  expires_at;
};

struct httplock_status {
	int  held;
	int  nholders;
	struct httplock_holder holders[HTTPLOCK_HOLDERS_MAX];
	long waiters;
};

struct httplock_lock_info {
	const char *lock;          /* valid during the callback only */
	long        holders;
	long        waiters;
};

struct httplock;

/*
 * A handle for the server at `url` ("http://host:port/" or with a path
 * prefix, "https://host/httplock/").  opts may be NULL.  Returns NULL if the
 * URL is not http(s) or memory runs out.  The strings are copied.
 */
struct httplock *httplock_new(const char *url, const struct httplock_opts *opts);

/* Frees the handle; no call may be running on it.  NULL is a no-op. */
void httplock_free(struct httplock *h);

/*
 * Acquires lock `name`, waiting as opts->timeout says (opts may be NULL:
 * HTTPLOCK_ACQUIRE_DEFAULTS).  On HTTPLOCK_OK *grant holds the grant.
 * Retries transparently on connection failures and 503 unavailable until
 * the wait's deadline, with the same request_id (see above).
 */
enum httplock_code httplock_acquire(struct httplock *h, const char *name,
    const struct httplock_acquire_opts *opts, struct httplock_grant *grant,
    struct httplock_error *err);

/* Releases the grant with `token`.  HTTPLOCK_NOT_HELD if it was not held. */
enum httplock_code httplock_release(struct httplock *h, const char *name,
    const char *token, struct httplock_error *err);

/*
 * Extends the lease of `token` to now + ttl seconds (0: by the grant's
 * own lease, as acquired or last renewed).  *grant (may be NULL) gets the renewed grant, all but its
 * request_id, which is kept: pass the grant acquire gave.  HTTPLOCK_NOT_HELD
 * once the lease is gone: stop using the resource.
 */
enum httplock_code httplock_renew(struct httplock *h, const char *name,
    const char *token, double ttl, struct httplock_grant *grant,
    struct httplock_error *err);

/*
 * Withdraws the queued acquire with `request_id`, or releases the grant it
 * got.  *was_held (may be NULL) says which.
 */
enum httplock_code httplock_cancel(struct httplock *h, const char *name,
    const char *request_id, int *was_held, struct httplock_error *err);

/* Who holds `name` and how many wait. */
enum httplock_code httplock_status(struct httplock *h, const char *name,
    struct httplock_status *st, struct httplock_error *err);

/*
 * Calls fn for every held or awaited lock whose name starts with `prefix`
 * (NULL: all), in name order, fetching pages as needed.  fn returning
 * non-zero stops the walk (HTTPLOCK_OK is still returned).
 */
enum httplock_code httplock_list(struct httplock *h, const char *prefix,
    int (*fn)(const struct httplock_lock_info *info, void *arg), void *arg,
    struct httplock_error *err);

/* A short English name for a code ("timeout", "not held", ...). */
const char *httplock_strerror(enum httplock_code code);

#ifdef __cplusplus
}
#endif

#endif /* HTTPLOCK_CLIENT_H */
