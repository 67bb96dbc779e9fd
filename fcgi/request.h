/*
 * request: turns one HTTP request, as the web server hands it to FastCGI
 * (method, raw request URI, script name, content type, body, Lock-Token
 * header), into a route and validated parameters, or into the 4xx error that
 * says what is wrong with it.  Pure functions: no I/O, no globals, so every
 * byte of input can be unit-tested and fuzzed.
 *
 * Routes (a trailing slash is optional):
 *   POST /lock/<name>/acquire/   timeout, ttl, owner, request_id
 *   POST /lock/<name>/release/   token (or the Lock-Token header)
 *   POST /lock/<name>/renew/     token (or Lock-Token), ttl
 *   POST /lock/<name>/cancel/    request_id
 *   GET  /lock/<name>/
 *   GET  /locks/                 prefix, after, limit
 *   GET  /healthz
 * HEAD is accepted wherever GET is.  Parameters come from the query string
 * and from an application/x-www-form-urlencoded body; a parameter the route
 * does not take, or one given twice, is an error.
 */
#ifndef HTTPLOCK_REQUEST_H
#define HTTPLOCK_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lockcore.h"

#define REQ_BODY_MAX    (16 * 1024)   /* larger bodies are 413 */
#define REQ_URI_MAX     (8 * 1024)    /* longer URIs are 414 -> 413 too_large */
#define REQ_LIST_MAX    1000
#define REQ_LIST_DEFAULT 100

enum route {
	ROUTE_NONE = 0,
	ROUTE_ACQUIRE,
	ROUTE_RELEASE,
	ROUTE_RENEW,
	ROUTE_CANCEL,
	ROUTE_STATUS,
	ROUTE_LIST,
	ROUTE_HEALTH
};

/* What the web server gave us.  Strings may be NULL when absent. */
struct request_in {
	const char *method;         /* REQUEST_METHOD */
	const char *uri;            /* REQUEST_URI: raw path and query */
	const char *script_name;    /* SCRIPT_NAME: the mount prefix, if any */
	const char *content_type;   /* CONTENT_TYPE */
	const char *lock_token;     /* HTTP_LOCK_TOKEN */
	const char *body;           /* not NUL-terminated */
	size_t      bodylen;
};

/* Limits the parser enforces that come from configuration. */
struct request_limits {
	int64_t default_ttl_ms;
	int64_t max_ttl_ms;
	int64_t max_wait_ms;
};

struct request {
	enum route route;
	bool    head;                          /* HEAD: send no body */
	char    name[LC_NAME_MAX + 1];         /* decoded, validated */
	int64_t timeout_ms;                    /* acquire: capped at max_wait */
	bool    has_timeout;                   /* false: wait up to max_wait */
	int64_t ttl_ms;                        /* acquire, renew: default filled */
	char    owner[LC_OWNER_MAX + 1];
	char    request_id[LC_REQUEST_ID_MAX + 1];   /* "" when absent */
	char    token[LC_TOKEN_LEN + 1];       /* release, renew */
	char    prefix[LC_NAME_MAX + 1];       /* list */
	char    after[LC_NAME_MAX + 1];        /* list; "" from the start */
	int     limit;                         /* list */
};

struct request_error {
	int         status;       /* 400, 404, 405, 413; 500 on out of memory */
	const char *code;         /* "bad_request", "not_found", ... */
	const char *allow;        /* for 405: the Allow header value */
	char        message[256]; /* for humans; never echoes a token */
};

/*
 * Parses *in into *out under *lim.  Returns 0, or -1 with *err filled.
 * Any input, however malformed, gives one of the two.
 */
int request_parse(const struct request_in *in, const struct request_limits *lim,
    struct request *out, struct request_error *err)
    __attribute__((warn_unused_result));

/* True if s[0..len) is valid UTF-8 without control characters. */
bool request_text_ok(const char *s, size_t len);

#endif /* HTTPLOCK_REQUEST_H */
