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
 *
 * Tenants (docs/tenants.md): request_scope() then puts the request into the
 * namespace of the user the web server authenticated (REMOTE_USER).  Lock
 * names are what clients see; keys are what lockcore and the coordinator
 * see: "/" + enc(user) + "/" + name for a tenant, the name itself in the
 * default namespace.  Names never contain '/', so no key of one namespace
 * can be a key of another.
 */
#ifndef HTTPLOCK_REQUEST_H
#define HTTPLOCK_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lockcore.h"

#define REQ_BODY_MAX    (16 * 1024)   /* larger bodies are 413 */
#define REQ_URI_MAX     (8 * 1024)    /* longer URIs are 414 -> 413 too_large */
/*
 * The FastCGI parameters as a whole.  A web server sends a few dozen (its
 * CGI variables and one HTTP_* per request header) and caps headers
 * itself (lighttpd at 8 KiB, Apache at 100 fields of 8 KiB): these caps
 * only matter to a peer that speaks FastCGI to the worker's socket directly.
 */
#define REQ_PARAMS_MAX  (64 * 1024)   /* bytes of all "NAME=value" */
#define REQ_PARAMS_NMAX 512           /* number of parameters */
#define REQ_LIST_MAX    1000
#define REQ_LIST_DEFAULT 100
#define REQ_NAME_MAX    255           /* bytes of a lock name */
#define REQ_RID_MIN     16            /* characters of a request_id */
#define REQ_TENANT_MAX  128           /* bytes of a REMOTE_USER */
/* "/" + enc(user) + "/": every byte of the user may be percent-encoded. */
#define REQ_NS_MAX      (2 + 3 * REQ_TENANT_MAX)

_Static_assert(REQ_NS_MAX + REQ_NAME_MAX <= LC_KEY_MAX,
    "every tenant's key must fit lockcore's");

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
	const char *path_info;      /* PATH_INFO: lighttpd's decoded, normalised
	                               path after SCRIPT_NAME (NULL: absent,
	                               as from Apache's mod_proxy_fcgi) */
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
	char    name[REQ_NAME_MAX + 1];        /* decoded, validated */
	int64_t timeout_ms;                    /* acquire: capped at max_wait */
	bool    has_timeout;                   /* false: wait up to max_wait */
	int64_t ttl_ms;                        /* acquire: default filled; renew:
	                                          0 when absent (the grant's
	                                          own lease) */
	char    owner[LC_OWNER_MAX + 1];
	char    request_id[LC_REQUEST_ID_MAX + 1];   /* "" when absent */
	char    token[LC_TOKEN_LEN + 1];       /* release, renew */
	char    prefix[REQ_NAME_MAX + 1];      /* list */
	char    after[REQ_NAME_MAX + 1];       /* list; "" from the start */
	int     limit;                         /* list */

	/* Filled by request_scope(): */
	bool    tenant;                        /* false: default namespace */
	size_t  nslen;                         /* bytes of the key before the
	                                          name: 0 by default */
	char    key[LC_KEY_MAX + 1];           /* lockcore's key for name */
	char    key_prefix[LC_KEY_MAX + 1];    /* list: keys start with this */
	char    key_after[LC_KEY_MAX + 1];     /* list; "" from the start */
	const char *key_skip;                  /* list: but not with this
	                                          (static; NULL: none) */
};

struct request_error {
	int         status;       /* 400, 401, 404, 405, 413; 500 on out of
	                             memory */
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

/*
 * Puts *rq, as request_parse() filled it, into the namespace of
 * `remote_user` (REMOTE_USER from the web server; NULL or "" when it did not
 * authenticate the request): fills rq->tenant, nslen, key and, for a list,
 * key_prefix, key_after and key_skip.  An unauthenticated request uses the
 * default namespace, or with `anonymous_deny` is refused with 401 (but
 * GET /healthz, which shows no lock).  A remote_user longer than
 * REQ_TENANT_MAX bytes or not UTF-8 is refused with 400.  Returns 0, or -1
 * with *err filled and *rq unchanged.
 */
int request_scope(struct request *rq, const char *remote_user,
    bool anonymous_deny, struct request_error *err)
    __attribute__((warn_unused_result));

/*
 * Writes the key of `name` in the namespace of `tenant` (NULL or "" for the
 * default namespace) into key[0..cap): "/" + enc(tenant) + "/" + name, or
 * name itself, where enc percent-encodes '%', '/', C0 controls and DEL
 * ("%2F", upper-case hex) and keeps every other byte.  name may be "" (the
 * namespace's prefix).  Returns the key's length, or -1 if it does not fit
 * (key is then "").  Nothing is validated: request_scope() does that.
 */
int request_tenant_key(const char *tenant, const char *name, char *key,
    size_t cap) __attribute__((warn_unused_result));

/*
 * Checks the FastCGI parameters before anything else looks at them:
 * `envp` is libfcgi's NULL-terminated array of "NAME=value" strings.
 * Refused with 413 too_large: more than REQ_PARAMS_NMAX parameters, more
 * than REQ_PARAMS_MAX bytes of them, a QUERY_STRING or REQUEST_URI longer
 * than REQ_URI_MAX, a CONTENT_LENGTH above REQ_BODY_MAX; with 400
 * bad_request: a CONTENT_LENGTH that is not a decimal number.  Returns 0,
 * or -1 with *err filled.  Reads at most a bounded prefix of each string.
 */
int request_env_check(char *const *envp, struct request_error *err)
    __attribute__((warn_unused_result));

/* True if s[0..len) is valid UTF-8 without control characters. */
bool request_text_ok(const char *s, size_t len);

#endif /* HTTPLOCK_REQUEST_H */
