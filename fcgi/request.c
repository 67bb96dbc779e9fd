/*
 * request: the pure parser behind every httplock endpoint.  It splits the
 * raw REQUEST_URI into path and query, strips the mount prefix, matches the
 * path against routes[], checks the method, decodes and validates the lock
 * name, collects parameters from the query string and the form body
 * (whitelisted per route, as bgplgd's qsargs[]), and turns each into its
 * typed field.  Percent-decoding and form dissection are uriparser's; what
 * uriparser lets through silently (a malformed escape is kept literally,
 * "%00" truncates a value) is refused here before it gets the string.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <uriparser/Uri.h>

#include "conf.h"
#include "request.h"

/* parse_seconds' largest value; caps and maxima are applied here. */
#define SECONDS_ANY INT64_C(999999999999)

/* Longest raw name segment that could still decode to REQ_NAME_MAX bytes. */
#define NAME_RAW_MAX (3 * REQ_NAME_MAX)

/* Longest unknown parameter name echoed back in a message. */
#define ECHO_MAX 40

enum param {
	P_TIMEOUT,
	P_TTL,
	P_OWNER,
	P_REQUEST_ID,
	P_TOKEN,
	P_PREFIX,
	P_AFTER,
	P_LIMIT,
	P_COUNT
};

static const char *const param_names[P_COUNT] = {
	[P_TIMEOUT] = "timeout",
	[P_TTL] = "ttl",
	[P_OWNER] = "owner",
	[P_REQUEST_ID] = "request_id",
	[P_TOKEN] = "token",
	[P_PREFIX] = "prefix",
	[P_AFTER] = "after",
	[P_LIMIT] = "limit",
};

#define PB(p) (1u << (p))

enum { M_POST, M_GET_HEAD };

/*
 * The routes.  A path is "/top", "/top/name" or "/top/name/action" (a
 * trailing slash allowed); `named` says the second segment is a lock name.
 */
struct route_def {
	enum route   route;
	const char  *top;
	bool         named;
	const char  *action;     /* third segment, or NULL for none */
	int          methods;    /* M_POST or M_GET_HEAD */
	unsigned     params;     /* PB() of each parameter it takes */
};

static const struct route_def routes[] = {
	{ ROUTE_ACQUIRE, "lock", true, "acquire", M_POST,
	  PB(P_TIMEOUT) | PB(P_TTL) | PB(P_OWNER) | PB(P_REQUEST_ID) },
	{ ROUTE_RELEASE, "lock", true, "release", M_POST, PB(P_TOKEN) },
	{ ROUTE_RENEW, "lock", true, "renew", M_POST, PB(P_TOKEN) | PB(P_TTL) },
	{ ROUTE_CANCEL, "lock", true, "cancel", M_POST, PB(P_REQUEST_ID) },
	{ ROUTE_STATUS, "lock", true, NULL, M_GET_HEAD, 0 },
	{ ROUTE_LIST, "locks", false, NULL, M_GET_HEAD,
	  PB(P_PREFIX) | PB(P_AFTER) | PB(P_LIMIT) },
	{ ROUTE_HEALTH, "healthz", false, NULL, M_GET_HEAD, 0 },
};

#define NROUTES (sizeof(routes) / sizeof(routes[0]))

static const char FORM_TYPE[] = "application/x-www-form-urlencoded";

/* A piece of a longer string: not NUL-terminated. */
struct span {
	const char *p;
	size_t      len;
};

/* Parameter values as found; val[i] is NULL when absent. */
struct params {
	const char *val[P_COUNT];    /* NUL-terminated, owned by a query list */
	size_t      len[P_COUNT];
};

enum text_result { TEXT_OK, TEXT_BAD_UTF8, TEXT_CONTROL };

static int fail(struct request_error *err, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Fills *err for `status` with a message.  Always returns -1.  The code
 * follows from the status, so the two cannot disagree.
 */
static int
fail(struct request_error *err, int status, const char *fmt, ...)
{
	va_list ap;

	err->status = status;
	switch (status) {
	case 400: err->code = "bad_request"; break;
	case 401: err->code = "unauthorized"; break;
	case 404: err->code = "not_found"; break;
	case 405: err->code = "method_not_allowed"; break;
	case 413: err->code = "too_large"; break;
	default: err->code = "internal"; break;    /* as reply.c says it */
	}
	va_start(ap, fmt);
	/* Every message fits; a cut one would still be a valid string. */
	(void)vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return -1;
}

/*
 * Checks s[0..len) as UTF-8 (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF, no truncated sequence) and, unless controls_ok,
 * for control characters: C0, DEL and C1 (U+0080..U+009F).
 */
static enum text_result
utf8_check(const char *str, size_t len, bool controls_ok)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		unsigned char lo = 0x80, hi = 0xbf;  /* range of 2nd byte */
		size_t n, k;

		if (c < 0x80) {
			if (!controls_ok && (c < 0x20 || c == 0x7f))
				return TEXT_CONTROL;
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1;
		else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			if (c == 0xe0)
				lo = 0xa0;      /* overlong below U+0800 */
			else if (c == 0xed)
				hi = 0x9f;      /* surrogates U+D800..DFFF */
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			if (c == 0xf0)
				lo = 0x90;      /* overlong below U+10000 */
			else if (c == 0xf4)
				hi = 0x8f;      /* above U+10FFFF */
		} else {
			/* 80..BF continuation, C0 C1 overlong, F5.. too big */
			return TEXT_BAD_UTF8;
		}
		if (len - i <= n)
			return TEXT_BAD_UTF8;
		if (s[i + 1] < lo || s[i + 1] > hi)
			return TEXT_BAD_UTF8;
		for (k = 2; k <= n; k++)
			if ((s[i + k] & 0xc0) != 0x80)
				return TEXT_BAD_UTF8;
		/* C1 controls are C2 80..C2 9F. */
		if (!controls_ok && c == 0xc2 && s[i + 1] <= 0x9f)
			return TEXT_CONTROL;
		i += n + 1;
	}
	return TEXT_OK;
}

static enum text_result
text_check(const char *str, size_t len)
{
	return utf8_check(str, len, false);
}

bool
request_text_ok(const char *s, size_t len)
{
	if (s == NULL)
		return len == 0;
	return text_check(s, len) == TEXT_OK;
}

static bool
is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
	    (c >= 'A' && c <= 'F');
}

enum { ESC_OK = 0, ESC_MALFORMED = -1, ESC_NUL = -2 };

/*
 * Every '%' in s[0..len) must start "%XX" with two hex digits: uriparser
 * keeps "%zz" and "%4" as they are, which would make a name or value that
 * the client never meant.  "%00" is ESC_NUL: uriparser's query lists are
 * NUL-terminated strings, so it would cut the value short unnoticed.
 */
static int
escapes_check(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (s[i] != '%')
			continue;
		if (len - i < 3 || !is_hex(s[i + 1]) || !is_hex(s[i + 2]))
			return ESC_MALFORMED;
		if (s[i + 1] == '0' && s[i + 2] == '0')
			return ESC_NUL;
		i += 2;
	}
	return ESC_OK;
}

/* Case-insensitive ASCII prefix test: does s[0..len) start with lit? */
static bool
starts_with_ci(const char *s, size_t len, const char *lit)
{
	size_t i, n = strlen(lit);

	if (len < n)
		return false;
	for (i = 0; i < n; i++) {
		char a = s[i];

		if (a >= 'A' && a <= 'Z')
			a = (char)(a - 'A' + 'a');
		if (a != lit[i])
			return false;
	}
	return true;
}

/* True for "application/x-www-form-urlencoded", any case, any params. */
static bool
content_type_is_form(const char *ct)
{
	size_t len, n = sizeof(FORM_TYPE) - 1;

	while (*ct == ' ' || *ct == '\t')
		ct++;
	len = strlen(ct);
	if (!starts_with_ci(ct, len, FORM_TYPE))
		return false;
	for (ct += n; *ct == ' ' || *ct == '\t'; ct++)
		continue;
	return *ct == '\0' || *ct == ';';
}

/*
 * Splits in->uri into the routed path and the query, after the mount
 * prefix in->script_name (ignored when empty or "/") is stripped.
 */
static int
split_uri(const struct request_in *in, struct span *path, struct span *query,
    struct request_error *err)
{
	const char *uri = in->uri, *q;
	const char *sn = in->script_name;
	size_t ulen, snlen, i;

	if (uri == NULL)
		return fail(err, 400, "request URI is missing");
	ulen = strnlen(uri, REQ_URI_MAX + 1);
	if (ulen > REQ_URI_MAX)
		return fail(err, 413, "request URI is longer than %d bytes",
		    REQ_URI_MAX);
	/*
	 * A raw control byte has no place in a URI (RFC 3986), and web servers
	 * disagree on what it means: lighttpd resolves "/a\x01/../b" as "/b".
	 * (A NUL never gets here: libfcgi cuts the parameter at it; see
	 * check_server_path().)
	 */
	for (i = 0; i < ulen; i++) {
		unsigned char c = (unsigned char)uri[i];

		if (c < 0x20 || c == 0x7f)
			return fail(err, 400, "the request URI contains a "
			    "control byte (0x%02X); encode it as %%%02X", c, c);
	}
	q = memchr(uri, '?', ulen);
	path->p = uri;
	path->len = q != NULL ? (size_t)(q - uri) : ulen;
	query->p = q != NULL ? q + 1 : uri + ulen;
	query->len = ulen - (size_t)(query->p - uri);

	if (sn == NULL)
		return 0;
	/* "/httplock/" mounts the same place as "/httplock". */
	snlen = strlen(sn);
	while (snlen > 0 && sn[snlen - 1] == '/')
		snlen--;
	if (snlen > 0 && snlen <= path->len &&
	    memcmp(path->p, sn, snlen) == 0 &&
	    (snlen == path->len || path->p[snlen] == '/')) {
		path->p += snlen;
		path->len -= snlen;
	}
	return 0;
}

/*
 * Checks that the path httplock routes on is the one the web server judged.
 * lighttpd matches its access rules (auth.require, conditionals) against
 * its own percent-decoded path with dot segments resolved, and sends that
 * path as SCRIPT_NAME + PATH_INFO; REQUEST_URI is the raw request target.
 * For a path that routed (no empty, "." or ".." segment, no '/' in a name)
 * both agree, but for one thing the worker cannot see by itself: libfcgi
 * passes parameters as C strings, so a raw NUL byte in the request target
 * cuts REQUEST_URI short ("/lock/a/acquire\0/../../../x" arrives as
 * "/lock/a/acquire", while lighttpd judged "/x").  So the percent-decoded
 * path of REQUEST_URI must equal SCRIPT_NAME + PATH_INFO, byte for byte.
 * Without PATH_INFO (Apache's mod_proxy_fcgi sends none; Apache refuses
 * control bytes in the request line itself) there is nothing to compare.
 */
static int
check_server_path(const struct request_in *in, struct request_error *err)
{
	char buf[REQ_URI_MAX + 1];
	const char *sn = in->script_name != NULL ? in->script_name : "";
	const char *end;
	size_t plen, snlen, pilen, len;

	if (in->path_info == NULL)
		return 0;
	/* split_uri() has bounded the URI and refused control bytes. */
	plen = strcspn(in->uri, "?");
	memcpy(buf, in->uri, plen);
	buf[plen] = '\0';
	end = uriUnescapeInPlaceExA(buf, URI_FALSE, URI_BR_DONT_TOUCH);
	len = (size_t)(end - buf);
	snlen = strnlen(sn, REQ_URI_MAX + 1);
	pilen = strnlen(in->path_info, REQ_URI_MAX + 1);
	if (snlen > len || pilen != len - snlen ||
	    memcmp(buf, sn, snlen) != 0 ||
	    memcmp(buf + snlen, in->path_info, pilen) != 0)
		return fail(err, 400, "the web server saw another path than "
		    "the request URI (SCRIPT_NAME and PATH_INFO do not match "
		    "REQUEST_URI; does the URI hold a NUL byte?)");
	return 0;
}

/*
 * Matches path against routes[].  On success *rd is the route and *name
 * the raw (still encoded) name segment.  Returns 0, or -1 with a 404.
 */
static int
match_route(struct span path, const struct route_def **rd, struct span *name,
    struct request_error *err)
{
	struct span seg[3];
	size_t nseg = 0, i, start;

	if (path.len == 0 || path.p[0] != '/')
		return fail(err, 404, "no such endpoint: the path must start "
		    "with '/'");
	/* One trailing slash is optional. */
	if (path.len > 1 && path.p[path.len - 1] == '/')
		path.len--;
	start = 1;
	for (i = 1; i <= path.len; i++) {
		if (i < path.len && path.p[i] != '/')
			continue;
		if (nseg == 3)
			return fail(err, 404, "no such endpoint: the path has "
			    "too many segments");
		seg[nseg].p = path.p + start;
		seg[nseg].len = i - start;
		nseg++;
		start = i + 1;
	}

	for (i = 0; i < NROUTES; i++) {
		const struct route_def *r = &routes[i];
		size_t want = 1 + (r->named ? 1 : 0) + (r->action ? 1 : 0);

		if (nseg != want || seg[0].len != strlen(r->top) ||
		    memcmp(seg[0].p, r->top, seg[0].len) != 0)
			continue;
		if (r->action != NULL && (seg[2].len != strlen(r->action) ||
		    memcmp(seg[2].p, r->action, seg[2].len) != 0))
			continue;
		*rd = r;
		if (r->named)
			*name = seg[1];
		return 0;
	}
	if (nseg == 3 && seg[0].len == 4 && memcmp(seg[0].p, "lock", 4) == 0)
		return fail(err, 404, "no such endpoint: the action must be "
		    "acquire, release, renew or cancel");
	if (nseg == 1 && seg[0].len == 4 && memcmp(seg[0].p, "lock", 4) == 0)
		return fail(err, 404, "no such endpoint: expected "
		    "/lock/<name>");
	return fail(err, 404, "no such endpoint");
}

static int
check_method(const char *method, const struct route_def *rd, bool *head,
    struct request_error *err)
{
	if (rd->methods == M_POST) {
		if (method != NULL && strcmp(method, "POST") == 0)
			return 0;
		err->allow = "POST";
		return fail(err, 405, "method not allowed: use POST");
	}
	if (method != NULL && strcmp(method, "GET") == 0)
		return 0;
	if (method != NULL && strcmp(method, "HEAD") == 0) {
		*head = true;
		return 0;
	}
	err->allow = "GET, HEAD";
	return fail(err, 405, "method not allowed: use GET or HEAD");
}

/*
 * Validates text v[0..len) for field `what` (a name for messages) and
 * copies it, NUL-terminated, into dst (size max + 1).
 */
static int
take_text(const char *what, const char *v, size_t len, size_t min,
    size_t max, char *dst, struct request_error *err)
{
	if (len < min)
		return fail(err, 400, "%s is empty", what);
	if (len > max)
		return fail(err, 400, "%s is longer than %zu bytes", what, max);
	switch (text_check(v, len)) {
	case TEXT_OK:
		break;
	case TEXT_BAD_UTF8:
		return fail(err, 400, "%s is not valid UTF-8", what);
	case TEXT_CONTROL:
		return fail(err, 400, "%s contains a control character", what);
	}
	memcpy(dst, v, len);
	dst[len] = '\0';
	return 0;
}

/*
 * A request_id is a credential (whoever repeats it gets the grant, or can
 * cancel it), so it must be too long to guess: REQ_RID_MIN..LC_REQUEST_ID_MAX
 * characters of [A-Za-z0-9_.~-] (a UUID, or 22 random base64url
 * characters).  Copies it into dst.
 */
static int
take_request_id(const char *v, size_t len, char *dst,
    struct request_error *err)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (!((v[i] >= 'a' && v[i] <= 'z') ||
		    (v[i] >= 'A' && v[i] <= 'Z') ||
		    (v[i] >= '0' && v[i] <= '9') || v[i] == '_' ||
		    v[i] == '.' || v[i] == '~' || v[i] == '-'))
			break;
	if (len < REQ_RID_MIN || len > LC_REQUEST_ID_MAX || i < len)
		return fail(err, 400, "request_id must be %d to %d characters "
		    "of A-Z a-z 0-9 _ . ~ - (a random id: it is a credential)",
		    REQ_RID_MIN, LC_REQUEST_ID_MAX);
	memcpy(dst, v, len);
	dst[len] = '\0';
	return 0;
}

/* Percent-decodes and validates the name segment into out->name. */
static int
take_name(struct span raw, struct request *out, struct request_error *err)
{
	char buf[NAME_RAW_MAX + 1];
	const char *end;
	size_t len;

	if (raw.len == 0)
		return fail(err, 400, "lock name is empty");
	if (raw.len > NAME_RAW_MAX)
		return fail(err, 400, "lock name is longer than %d bytes",
		    REQ_NAME_MAX);
	if (escapes_check(raw.p, raw.len) == ESC_MALFORMED)
		return fail(err, 400, "lock name has a malformed "
		    "percent-escape (expected %%XX with two hex digits)");
	memcpy(buf, raw.p, raw.len);
	buf[raw.len] = '\0';
	/*
	 * The returned end counts a decoded "%00" too, so an embedded NUL
	 * shows up below as a control character instead of cutting the name.
	 */
	end = uriUnescapeInPlaceExA(buf, URI_FALSE, URI_BR_DONT_TOUCH);
	len = (size_t)(end - buf);
	if (len > REQ_NAME_MAX)
		return fail(err, 400, "lock name is longer than %d bytes",
		    REQ_NAME_MAX);
	if (memchr(buf, '/', len) != NULL)
		return fail(err, 400, "'/' is not allowed in a lock name");
	/*
	 * Web servers resolve "." and ".." (also spelt "%2e%2e") as path
	 * segments before they apply their access rules, so such a name would
	 * be judged as another path than the one httplock serves.
	 */
	if ((len == 1 && buf[0] == '.') ||
	    (len == 2 && buf[0] == '.' && buf[1] == '.'))
		return fail(err, 400, "'.' and '..' are not lock names (web "
		    "servers resolve them as path segments)");
	return take_text("lock name", buf, len, 1, REQ_NAME_MAX, out->name,
	    err);
}

/* Dissects a query string or form body into *list (caller frees). */
static int
dissect(const char *what, const char *s, size_t len, UriQueryListA **list,
    struct request_error *err)
{
	int rc, n = 0;

	switch (escapes_check(s, len)) {
	case ESC_MALFORMED:
		return fail(err, 400, "the %s has a malformed percent-escape "
		    "(expected %%XX with two hex digits)", what);
	case ESC_NUL:
		return fail(err, 400, "the %s contains an encoded NUL byte "
		    "(%%00)", what);
	}
	if (len == 0)
		return 0;
	rc = uriDissectQueryMallocA(list, &n, s, s + len);
	/*
	 * On failure uriparser (0.9.7) has freed the items it made but may
	 * leave *list pointing at them; freeing it again would be a double
	 * free, so forget it.
	 */
	if (rc != URI_SUCCESS)
		*list = NULL;
	if (rc == URI_ERROR_MALLOC)
		return fail(err, 500, "out of memory");
	if (rc != URI_SUCCESS)
		return fail(err, 400, "the %s is malformed", what);
	return 0;
}

/* True if a parameter name can be quoted back to the client as it is. */
static bool
echoable(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (i == ECHO_MAX || s[i] < 0x21 || s[i] > 0x7e ||
		    s[i] == '\'' || s[i] == '"' || s[i] == '\\')
			return false;
	return true;
}

/* "unknown parameter 'x' (this endpoint takes: a, b)". */
static int
unknown_param(const char *key, const struct route_def *rd,
    struct request_error *err)
{
	char takes[128] = "no parameters";
	char quoted[ECHO_MAX + 4] = "";
	size_t used = 0;
	int i, n;

	for (i = 0; i < P_COUNT; i++) {
		if (!(rd->params & PB(i)))
			continue;
		n = snprintf(takes + used, sizeof(takes) - used, "%s%s",
		    used > 0 ? ", " : "", param_names[i]);
		if (n < 0 || (size_t)n >= sizeof(takes) - used)
			break;
		used += (size_t)n;
	}
	/* The name is the client's; quote it only if it is plain. */
	if (echoable(key))
		(void)snprintf(quoted, sizeof(quoted), " '%s'", key);
	return fail(err, 400, "unknown parameter%s (this endpoint takes %s)",
	    quoted, takes);
}

/* Adds the items of list to *pv, refusing unknown and repeated names. */
static int
collect(const UriQueryListA *list, const struct route_def *rd,
    struct params *pv, struct request_error *err)
{
	const UriQueryListA *it;
	int i;

	for (it = list; it != NULL; it = it->next) {
		/* uriparser drops the empty pairs of "a=1&&b=2" itself. */
		if (it->key == NULL || it->key[0] == '\0')
			return fail(err, 400, "a parameter has an empty name");
		for (i = 0; i < P_COUNT; i++)
			if (strcmp(it->key, param_names[i]) == 0)
				break;
		if (i == P_COUNT || !(rd->params & PB(i)))
			return unknown_param(it->key, rd, err);
		if (pv->val[i] != NULL)
			return fail(err, 400, "parameter '%s' is given more "
			    "than once", param_names[i]);
		/* "owner" without '=' is an empty value, as in HTML forms. */
		pv->val[i] = it->value != NULL ? it->value : "";
		pv->len[i] = strlen(pv->val[i]);
	}
	return 0;
}

static int
take_ttl(const struct params *pv, const struct request_limits *lim,
    struct request *out, struct request_error *err)
{
	char max[32];
	int64_t ms;

	if (pv->val[P_TTL] == NULL) {
		out->ttl_ms = lim->default_ttl_ms;
		return 0;
	}
	if (parse_seconds(pv->val[P_TTL], pv->len[P_TTL], SECONDS_ANY,
	    &ms) != 0)
		return fail(err, 400, "ttl must be a number of seconds");
	if (ms <= 0)
		return fail(err, 400, "ttl must be greater than 0 (at least "
		    "0.001 seconds)");
	/* Never shorten a lease silently: the holder would not know. */
	if (ms > lim->max_ttl_ms) {
		conf_fmt_seconds(max, sizeof(max), lim->max_ttl_ms);
		return fail(err, 400, "ttl exceeds the maximum of %s seconds",
		    max);
	}
	out->ttl_ms = ms;
	return 0;
}

static int
take_timeout(const struct params *pv, const struct request_limits *lim,
    struct request *out, struct request_error *err)
{
	int64_t ms;

	out->timeout_ms = lim->max_wait_ms;
	if (pv->val[P_TIMEOUT] == NULL)
		return 0;
	if (parse_seconds(pv->val[P_TIMEOUT], pv->len[P_TIMEOUT], SECONDS_ANY,
	    &ms) != 0)
		return fail(err, 400, "timeout must be a number of seconds");
	/* Waiting less than asked is visible to the client: cap it. */
	if (ms < lim->max_wait_ms)
		out->timeout_ms = ms;
	out->has_timeout = true;
	return 0;
}

/* Exactly LC_TOKEN_LEN hex digits into dst, lower-cased. */
static bool
token_parse(const char *s, size_t len, char *dst)
{
	size_t i;

	if (len != LC_TOKEN_LEN)
		return false;
	for (i = 0; i < len; i++) {
		if (!is_hex(s[i]))
			return false;
		dst[i] = s[i] >= 'A' && s[i] <= 'F' ?
		    (char)(s[i] - 'A' + 'a') : s[i];
	}
	dst[len] = '\0';
	return true;
}

/*
 * The token from the parameter or the Lock-Token header.  Messages never
 * include either value.  An empty header counts as absent.
 */
static int
take_token(const struct params *pv, const char *header, struct request *out,
    struct request_error *err)
{
	char hdr[LC_TOKEN_LEN + 1];
	bool has_hdr = header != NULL && header[0] != '\0';
	unsigned diff = 0;
	size_t i;

	if (has_hdr && !token_parse(header, strnlen(header, LC_TOKEN_LEN + 1),
	    hdr))
		return fail(err, 400, "the Lock-Token header must be %d "
		    "hexadecimal digits", LC_TOKEN_LEN);
	if (pv->val[P_TOKEN] == NULL) {
		if (!has_hdr)
			return fail(err, 400, "token is required (parameter "
			    "or Lock-Token header)");
		memcpy(out->token, hdr, sizeof(hdr));
		return 0;
	}
	if (!token_parse(pv->val[P_TOKEN], pv->len[P_TOKEN], out->token))
		return fail(err, 400, "token must be %d hexadecimal digits",
		    LC_TOKEN_LEN);
	if (has_hdr) {
		/* Both come from the client, but tokens are compared in
		 * constant time everywhere, so nobody has to ask why not. */
		for (i = 0; i < LC_TOKEN_LEN; i++)
			diff |= (unsigned)(out->token[i] ^ hdr[i]);
		if (diff != 0)
			return fail(err, 400, "the token parameter and the "
			    "Lock-Token header differ");
	}
	return 0;
}

/* limit: decimal digits only, 1..REQ_LIST_MAX. */
static int
take_limit(const struct params *pv, struct request *out,
    struct request_error *err)
{
	const char *s = pv->val[P_LIMIT];
	size_t i, len = pv->len[P_LIMIT];
	int n = 0;

	out->limit = REQ_LIST_DEFAULT;
	if (s == NULL)
		return 0;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			break;
		n = n * 10 + (s[i] - '0');
		if (n > REQ_LIST_MAX)
			break;
	}
	if (len == 0 || i != len || n < 1)
		return fail(err, 400, "limit must be an integer from 1 to %d",
		    REQ_LIST_MAX);
	out->limit = n;
	return 0;
}

/* Turns the collected parameters into out's fields for out->route. */
static int
take_params(const struct params *pv, const struct request_in *in,
    const struct request_limits *lim, struct request *out,
    struct request_error *err)
{
	switch (out->route) {
	case ROUTE_ACQUIRE:
		if (take_timeout(pv, lim, out, err) != 0 ||
		    take_ttl(pv, lim, out, err) != 0)
			return -1;
		if (pv->val[P_OWNER] != NULL && take_text("owner",
		    pv->val[P_OWNER], pv->len[P_OWNER], 0, LC_OWNER_MAX,
		    out->owner, err) != 0)
			return -1;
		if (pv->val[P_REQUEST_ID] != NULL && take_request_id(
		    pv->val[P_REQUEST_ID], pv->len[P_REQUEST_ID],
		    out->request_id, err) != 0)
			return -1;
		return 0;
	case ROUTE_RELEASE:
		return take_token(pv, in->lock_token, out, err);
	case ROUTE_RENEW:
		if (take_token(pv, in->lock_token, out, err) != 0)
			return -1;
		/* Without a ttl the grant's own lease: 0 says so. */
		if (pv->val[P_TTL] == NULL)
			return 0;
		return take_ttl(pv, lim, out, err);
	case ROUTE_CANCEL:
		if (pv->val[P_REQUEST_ID] == NULL)
			return fail(err, 400, "request_id is required");
		return take_request_id(pv->val[P_REQUEST_ID],
		    pv->len[P_REQUEST_ID], out->request_id, err);
	case ROUTE_LIST:
		if (pv->val[P_PREFIX] != NULL && take_text("prefix",
		    pv->val[P_PREFIX], pv->len[P_PREFIX], 0, REQ_NAME_MAX,
		    out->prefix, err) != 0)
			return -1;
		if (pv->val[P_AFTER] != NULL && take_text("after",
		    pv->val[P_AFTER], pv->len[P_AFTER], 0, REQ_NAME_MAX,
		    out->after, err) != 0)
			return -1;
		return take_limit(pv, out, err);
	case ROUTE_STATUS:
	case ROUTE_HEALTH:
	case ROUTE_NONE:
		break;
	}
	return 0;
}

/* A body needs the form content type and may not carry raw NUL bytes. */
static int
check_body(const struct request_in *in, struct request_error *err)
{
	if (in->body == NULL)
		return fail(err, 400, "request body is missing");
	if (in->content_type == NULL || in->content_type[0] == '\0')
		return fail(err, 400, "a request body needs Content-Type: %s",
		    FORM_TYPE);
	if (!content_type_is_form(in->content_type))
		return fail(err, 400, "unsupported Content-Type: the request "
		    "body must be form-encoded (%s)", FORM_TYPE);
	if (memchr(in->body, '\0', in->bodylen) != NULL)
		return fail(err, 400, "the request body contains a NUL byte");
	return 0;
}

int
request_parse(const struct request_in *in, const struct request_limits *lim,
    struct request *out, struct request_error *err)
{
	const struct route_def *rd = NULL;
	struct span path = { NULL, 0 }, query = { NULL, 0 }, name = { NULL, 0 };
	struct params pv;
	UriQueryListA *qlist = NULL, *blist = NULL;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	memset(err, 0, sizeof(*err));
	memset(&pv, 0, sizeof(pv));
	if (in == NULL || lim == NULL)
		return fail(err, 500, "no request");

	if (split_uri(in, &path, &query, err) != 0)
		goto out;
	if (in->bodylen > REQ_BODY_MAX) {
		fail(err, 413, "request body is larger than %d bytes",
		    REQ_BODY_MAX);
		goto out;
	}
	if (match_route(path, &rd, &name, err) != 0)
		goto out;
	out->route = rd->route;
	if (check_method(in->method, rd, &out->head, err) != 0)
		goto out;
	if (rd->named && take_name(name, out, err) != 0)
		goto out;
	if (check_server_path(in, err) != 0)
		goto out;
	if (in->bodylen > 0 && check_body(in, err) != 0)
		goto out;

	if (dissect("query string", query.p, query.len, &qlist, err) != 0 ||
	    collect(qlist, rd, &pv, err) != 0)
		goto out;
	if (in->bodylen > 0 &&
	    (dissect("request body", in->body, in->bodylen, &blist, err) != 0 ||
	    collect(blist, rd, &pv, err) != 0))
		goto out;
	if (take_params(&pv, in, lim, out, err) != 0)
		goto out;
	rc = 0;
out:
	uriFreeQueryListA(qlist);
	uriFreeQueryListA(blist);
	if (rc != 0) {
		/* Nothing half-parsed is left behind, but the route stays
		 * known (for logs): ROUTE_NONE when the path did not match. */
		enum route r = out->route;

		memset(out, 0, sizeof(*out));
		out->route = r;
	}
	return rc;
}

/* The FastCGI parameters as a whole. */

/* Length of `s`, or REQ_PARAMS_MAX + 1 if longer. */
static size_t
env_len(const char *s)
{
	return strnlen(s, REQ_PARAMS_MAX + 1);
}

/* The value of envp entry `s` if it is NAME=..., else NULL. */
static const char *
env_value(const char *s, const char *name)
{
	size_t n = strlen(name);

	return (strncmp(s, name, n) == 0 && s[n] == '=') ? s + n + 1 : NULL;
}

/* CONTENT_LENGTH: decimal digits (or empty, as 0), at most REQ_BODY_MAX. */
static int
check_content_length(const char *v, struct request_error *err)
{
	uint64_t n = 0;
	const char *p;

	for (p = v; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return fail(err, 400, "CONTENT_LENGTH is not a number");
		n = n * 10 + (uint64_t)(*p - '0');
		if (n > REQ_BODY_MAX)
			return fail(err, 413, "the request body is larger than "
			    "%d bytes", REQ_BODY_MAX);
	}
	return 0;
}

int
request_env_check(char *const *envp, struct request_error *err)
{
	size_t total = 0, count = 0, len;
	const char *v;

	memset(err, 0, sizeof(*err));
	if (envp == NULL)
		return 0;
	for (; *envp != NULL; envp++) {
		if (++count > REQ_PARAMS_NMAX)
			return fail(err, 413, "more than %d request parameters "
			    "(headers)", REQ_PARAMS_NMAX);
		len = env_len(*envp);
		total += len;
		if (total > REQ_PARAMS_MAX)
			return fail(err, 413, "the request headers are larger "
			    "than %d bytes", REQ_PARAMS_MAX);
		if (((v = env_value(*envp, "QUERY_STRING")) != NULL ||
		    (v = env_value(*envp, "REQUEST_URI")) != NULL) &&
		    strnlen(v, REQ_URI_MAX + 1) > REQ_URI_MAX)
			return fail(err, 413, "request URI is longer than %d "
			    "bytes", REQ_URI_MAX);
		if ((v = env_value(*envp, "CONTENT_LENGTH")) != NULL &&
		    check_content_length(v, err) != 0)
			return -1;
	}
	return 0;
}

/* Tenants. */

/* True for the bytes enc() writes as %XX. */
static bool
enc_needed(unsigned char c)
{
	return c == '%' || c == '/' || c < 0x20 || c == 0x7f;
}

int
request_tenant_key(const char *tenant, const char *name, char *key,
    size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t len = 0, i, nlen;

	if (cap == 0)
		return -1;
	key[0] = '\0';
	if (tenant != NULL && tenant[0] != '\0') {
		if (cap - len < 2)
			return -1;
		key[len++] = '/';
		for (i = 0; tenant[i] != '\0'; i++) {
			unsigned char c = (unsigned char)tenant[i];

			/* Room for "%XX", then "/" and the NUL. */
			if (cap - len < (enc_needed(c) ? 3u : 1u) + 2) {
				key[0] = '\0';
				return -1;
			}
			if (enc_needed(c)) {
				key[len++] = '%';
				key[len++] = hex[c >> 4];
				key[len++] = hex[c & 0x0f];
			} else
				key[len++] = (char)c;
		}
		key[len++] = '/';
	}
	nlen = strlen(name);
	if (cap - len <= nlen || len + nlen > INT32_MAX) {
		key[0] = '\0';
		return -1;
	}
	memcpy(key + len, name, nlen + 1);
	return (int)(len + nlen);
}

/* The tenant's name, checked: 1..REQ_TENANT_MAX bytes of UTF-8. */
static int
check_tenant(const char *user, struct request_error *err)
{
	size_t len = strnlen(user, REQ_TENANT_MAX + 1);

	if (len > REQ_TENANT_MAX)
		return fail(err, 400, "the authenticated user name "
		    "(REMOTE_USER) is longer than %d bytes", REQ_TENANT_MAX);
	if (utf8_check(user, len, true) != TEXT_OK)
		return fail(err, 400, "the authenticated user name "
		    "(REMOTE_USER) is not valid UTF-8");
	return 0;
}

int
request_scope(struct request *rq, const char *remote_user,
    bool anonymous_deny, struct request_error *err)
{
	const char *user = remote_user != NULL && remote_user[0] != '\0' ?
	    remote_user : NULL;
	char key[LC_KEY_MAX + 1], kp[LC_KEY_MAX + 1], ka[LC_KEY_MAX + 1];
	int ns;

	memset(err, 0, sizeof(*err));
	if (user == NULL && anonymous_deny && rq->route != ROUTE_HEALTH)
		return fail(err, 401, "this server serves only authenticated "
		    "users (anonymous = deny), and the web server did not "
		    "authenticate this request");
	if (user != NULL && check_tenant(user, err) != 0)
		return -1;
	/* The limits make every key fit (request.h): -1 would be a bug. */
	if ((ns = request_tenant_key(user, "", key, sizeof(key))) < 0)
		return fail(err, 500, "tenant namespace too long");
	key[0] = kp[0] = ka[0] = '\0';
	switch (rq->route) {
	case ROUTE_LIST:
		if (request_tenant_key(user, rq->prefix, kp, sizeof(kp)) < 0 ||
		    (rq->after[0] != '\0' && request_tenant_key(user,
		    rq->after, ka, sizeof(ka)) < 0))
			return fail(err, 500, "list key too long");
		break;
	case ROUTE_HEALTH:
	case ROUTE_NONE:
		break;
	default:
		if (request_tenant_key(user, rq->name, key, sizeof(key)) < 0)
			return fail(err, 500, "lock key too long");
		break;
	}
	rq->tenant = user != NULL;
	rq->nslen = (size_t)ns;
	memcpy(rq->key, key, sizeof(key));
	memcpy(rq->key_prefix, kp, sizeof(kp));
	memcpy(rq->key_after, ka, sizeof(ka));
	/*
	 * Tenants' keys start with '/', which no name does: the default
	 * namespace lists around them.
	 */
	rq->key_skip = rq->route == ROUTE_LIST && user == NULL ? "/" : NULL;
	return 0;
}
