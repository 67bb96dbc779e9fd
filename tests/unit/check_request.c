/*
 * check_request: the Check suite for fcgi/request.c.  Most cases are rows
 * of cases[] (one request in, the route or the error out, plus up to two
 * fields to compare), each reporting its index and source line on failure.
 * Sizes that are awkward as literals (long URIs, large or NUL-carrying
 * bodies) and a pseudo-random robustness run have their own tests.
 */
#include <check.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"

static const struct request_limits LIM = {
	.default_ttl_ms = 30000,
	.max_ttl_ms = 3600000,
	.max_wait_ms = 30000,
};

#define TOK "0123456789abcdef0123456789abcdef"
#define RID "Zm9vYmFyYmF6cXV4cXV1eA"           /* 22 base64url characters */
#define RID_RULE "request_id must be 16 to 128 characters"
#define TOK_UP "0123456789ABCDEF0123456789ABCDEF"
#define TOK2 "ffffffffffffffffffffffffffffffff"
#define FORM "application/x-www-form-urlencoded"

/* Repeated bytes for the length limits. */
#define X8 "xxxxxxxx"
#define X32 X8 X8 X8 X8
#define X128 X32 X32 X32 X32
#define X255 X128 X32 X32 X32 "xxxxxxxxxxxxxxx" "xxxxxxxxxxxxxxxx"
#define X256 X255 "x"
#define X129 X128 "x"
/* 85 x U+20AC (3 bytes each) = 255 bytes decoded from 765 raw. */
#define EU5 "%E2%82%AC%E2%82%AC%E2%82%AC%E2%82%AC%E2%82%AC"
#define EU85 EU5 EU5 EU5 EU5 EU5 EU5 EU5 EU5 EU5 EU5 EU5 EU5 EU5 EU5 EU5 \
	EU5 EU5
#define EU86 EU85 "%E2%82%AC"

struct rcase {
	int          line;
	const char  *method;
	const char  *uri;
	const char  *script_name;
	const char  *path_info;
	const char  *content_type;
	const char  *lock_token;
	const char  *body;
	int          status;     /* 0: request_parse succeeds */
	enum route   route;      /* also checked on error */
	const char  *code;       /* err->code */
	const char  *msg;        /* substring of err->message */
	const char  *notmsg;     /* must not be in err->message */
	const char  *field;      /* a field to compare, see field_str() */
	const char  *value;
	const char  *field2;
	const char  *value2;
};

#define C(m, u) .line = __LINE__, .method = (m), .uri = (u)
#define BAD .status = 400, .code = "bad_request"
#define NOTFOUND .status = 404, .code = "not_found"
#define NOTALLOWED .status = 405, .code = "method_not_allowed"
#define TOOBIG .status = 413, .code = "too_large"
#define F1(f, v) .field = (f), .value = (v)
#define F2(f, v) .field2 = (f), .value2 = (v)
#define NUMERIC "must be a number of seconds"
#define TIMEOUT_BAD(v) { C("POST", "/lock/a/acquire?timeout=" v), BAD, \
	.route = ROUTE_ACQUIRE, .msg = "timeout " NUMERIC }

static const struct rcase cases[] = {
	/* Routes, with and without the trailing slash. */
	{ C("POST", "/lock/a/acquire"), .route = ROUTE_ACQUIRE,
	  F1("name", "a"), F2("ttl_ms", "30000") },
	{ C("POST", "/lock/a/acquire/"), .route = ROUTE_ACQUIRE,
	  F1("timeout_ms", "30000"), F2("has_timeout", "0") },
	{ C("POST", "/lock/a/release"), .lock_token = TOK,
	  .route = ROUTE_RELEASE, F1("token", TOK) },
	{ C("POST", "/lock/a/release/?token=" TOK), .route = ROUTE_RELEASE,
	  F1("token", TOK) },
	/* A renew without a ttl keeps the grant's own lease: 0. */
	{ C("POST", "/lock/a/renew?token=" TOK), .route = ROUTE_RENEW,
	  F1("ttl_ms", "0"), F2("token", TOK) },
	{ C("POST", "/lock/a/renew?ttl=7&token=" TOK), .route = ROUTE_RENEW,
	  F1("ttl_ms", "7000"), F2("token", TOK) },
	{ C("POST", "/lock/a/cancel?request_id=" RID), .route = ROUTE_CANCEL,
	  F1("request_id", RID), F2("name", "a") },
	{ C("POST", "/lock/a/cancel/?request_id=" RID), .route = ROUTE_CANCEL },
	{ C("GET", "/lock/a"), .route = ROUTE_STATUS, F1("name", "a"),
	  F2("head", "0") },
	{ C("GET", "/lock/a/"), .route = ROUTE_STATUS, F1("name", "a") },
	{ C("HEAD", "/lock/a"), .route = ROUTE_STATUS, F1("head", "1") },
	{ C("GET", "/locks"), .route = ROUTE_LIST, F1("limit", "100"),
	  F2("prefix", "") },
	{ C("GET", "/locks/"), .route = ROUTE_LIST, F1("after", "") },
	{ C("HEAD", "/locks"), .route = ROUTE_LIST, F1("head", "1") },
	{ C("GET", "/healthz"), .route = ROUTE_HEALTH, F1("head", "0") },
	{ C("GET", "/healthz/"), .route = ROUTE_HEALTH },
	{ C("HEAD", "/healthz"), .route = ROUTE_HEALTH, F1("head", "1") },
	{ C("GET", "/healthz?"), .route = ROUTE_HEALTH },
	{ C("GET", "/lock/...?"), .route = ROUTE_STATUS, F1("name", "...") },
	{ C("GET", "/lock/.a"), .route = ROUTE_STATUS, F1("name", ".a") },

	/* Dot segments: web servers resolve them before their access rules. */
	{ C("GET", "/lock/..?"), BAD, .route = ROUTE_STATUS,
	  .msg = "'.' and '..' are not lock names" },
	{ C("GET", "/lock/."), BAD, .msg = "'.' and '..' are not lock names" },
	{ C("POST", "/lock/../acquire"), BAD, .route = ROUTE_ACQUIRE,
	  .msg = "'.' and '..' are not lock names" },
	{ C("POST", "/lock/%2e%2e/acquire"), BAD,
	  .msg = "'.' and '..' are not lock names" },
	{ C("POST", "/lock/%2E./acquire"), BAD,
	  .msg = "'.' and '..' are not lock names" },
	{ C("POST", "/lock/%2e/release"), BAD,
	  .msg = "'.' and '..' are not lock names" },

	/* Control bytes anywhere in the raw URI. */
	{ C("POST", "/lock/a\x01" "b/acquire"), BAD,
	  .msg = "control byte (0x01); encode it as %01" },
	{ C("GET", "/lock/a\x7f"), BAD, .msg = "control byte (0x7F)" },
	{ C("GET", "/locks?prefix=a\nb"), BAD, .msg = "control byte (0x0A)" },
	{ C("GET", "/healthz\x1f"), BAD, .msg = "control byte" },

	/* lighttpd's own view of the path (SCRIPT_NAME + PATH_INFO) must be
	 * REQUEST_URI's, decoded: a NUL in the request target cuts
	 * REQUEST_URI (libfcgi) but not what lighttpd judged. */
	{ C("POST", "/lock/a/acquire"), .path_info = "/lock/a/acquire",
	  .route = ROUTE_ACQUIRE, F1("name", "a") },
	{ C("POST", "/lock/a/acquire/?ttl=5"), .script_name = "",
	  .path_info = "/lock/a/acquire/", .route = ROUTE_ACQUIRE },
	{ C("POST", "/httplock/lock/a/acquire"), .script_name = "/httplock",
	  .path_info = "/lock/a/acquire", .route = ROUTE_ACQUIRE },
	{ C("GET", "/lock/s%C3%A9+x"), .path_info = "/lock/s\xc3\xa9+x",
	  .route = ROUTE_STATUS, F1("name", "s\xc3\xa9+x") },
	{ C("GET", "/healthz"), .script_name = "/httplock",
	  .path_info = "/healthz", BAD, .msg = "another path" },
	{ C("POST", "/lock/acct/acquire"), .path_info = "/x", BAD,
	  .route = ROUTE_ACQUIRE, .msg = "the web server saw another path" },
	{ C("POST", "/lock/acct/acquire"), .path_info = "/lock/acct/acquir",
	  BAD, .msg = "another path" },
	{ C("POST", "/lock/acct/acquire"), .path_info = "/lock/acct/acquire/",
	  BAD, .msg = "another path" },
	{ C("POST", "/lock/acct/acquire"), .path_info = "", BAD,
	  .msg = "another path" },

	/* Paths that are no endpoint: 404, and before any 405. */
	{ C("GET", NULL), BAD, .msg = "request URI is missing" },
	{ C("GET", "/"), NOTFOUND, .msg = "no such endpoint" },
	{ C("GET", ""), NOTFOUND, .msg = "must start with '/'" },
	{ C("GET", "locks"), NOTFOUND, .msg = "must start with '/'" },
	{ C("GET", "?limit=1"), NOTFOUND, .msg = "no such endpoint" },
	{ C("GET", "/lock"), NOTFOUND, .msg = "expected /lock/<name>" },
	{ C("GET", "/lock/"), NOTFOUND, .msg = "expected /lock/<name>" },
	{ C("POST", "/lock/a/acquire//"), NOTFOUND,
	  .msg = "too many segments" },
	{ C("POST", "/lock/a/grab"), NOTFOUND,
	  .msg = "action must be acquire, release, renew or cancel" },
	{ C("POST", "/lock/a/acquire/x"), NOTFOUND,
	  .msg = "too many segments" },
	{ C("POST", "/lock/a/%61cquire"), NOTFOUND, .msg = "action must be" },
	{ C("GET", "/locks/x"), NOTFOUND, .msg = "no such endpoint" },
	{ C("GET", "/locks//"), NOTFOUND, .msg = "no such endpoint" },
	{ C("GET", "/healthz/x"), NOTFOUND, .msg = "no such endpoint" },
	{ C("GET", "//locks"), NOTFOUND, .msg = "no such endpoint" },
	{ C("GET", "/LOCKS"), NOTFOUND, .msg = "no such endpoint" },
	{ C("GET", "/httplock/locks"), NOTFOUND, .msg = "no such endpoint" },
	{ C("PUT", "/nope"), NOTFOUND, .msg = "no such endpoint" },
	{ C(NULL, "/lock/a/b/c/d"), NOTFOUND, .msg = "too many segments" },

	/* Methods. */
	{ C("GET", "/lock/a/acquire"), NOTALLOWED, .route = ROUTE_ACQUIRE,
	  .msg = "use POST", F1("allow", "POST") },
	{ C("PUT", "/lock/a/release"), NOTALLOWED, .route = ROUTE_RELEASE,
	  F1("allow", "POST") },
	{ C("HEAD", "/lock/a/renew"), NOTALLOWED, .route = ROUTE_RENEW,
	  F1("allow", "POST") },
	{ C(NULL, "/lock/a/cancel"), NOTALLOWED, .route = ROUTE_CANCEL,
	  F1("allow", "POST") },
	{ C("post", "/lock/a/acquire"), NOTALLOWED, .route = ROUTE_ACQUIRE },
	{ C("POST", "/lock/a"), NOTALLOWED, .route = ROUTE_STATUS,
	  .msg = "use GET or HEAD", F1("allow", "GET, HEAD") },
	{ C("POST", "/locks"), NOTALLOWED, .route = ROUTE_LIST,
	  F1("allow", "GET, HEAD") },
	{ C("DELETE", "/healthz"), NOTALLOWED, .route = ROUTE_HEALTH,
	  F1("allow", "GET, HEAD") },
	{ C("get", "/healthz"), NOTALLOWED, .route = ROUTE_HEALTH },
	/* The method is wrong whatever the name: 405 before 400. */
	{ C("GET", "/lock//acquire"), NOTALLOWED, .route = ROUTE_ACQUIRE },

	/* Names: percent-decoding and validation. */
	{ C("POST", "/lock//acquire"), BAD, .route = ROUTE_ACQUIRE,
	  .msg = "lock name is empty" },
	{ C("GET", "/lock//"), BAD, .route = ROUTE_STATUS,
	  .msg = "lock name is empty" },
	{ C("POST", "/lock/a%20b/acquire"), .route = ROUTE_ACQUIRE,
	  F1("name", "a b") },
	{ C("POST", "/lock/a+b/acquire"), .route = ROUTE_ACQUIRE,
	  F1("name", "a+b") },
	{ C("POST", "/lock/%41%62%63/acquire"), .route = ROUTE_ACQUIRE,
	  F1("name", "Abc") },
	{ C("POST", "/lock/%c3%a9t%C3%A9/acquire"), .route = ROUTE_ACQUIRE,
	  F1("name", "\xc3\xa9t\xc3\xa9") },
	{ C("GET", "/lock/%E2%82%AC"), .route = ROUTE_STATUS,
	  F1("name", "\xe2\x82\xac") },
	{ C("GET", "/lock/%F0%9F%94%92"), .route = ROUTE_STATUS,
	  F1("name", "\xf0\x9f\x94\x92") },
	{ C("GET", "/lock/\xc3\xa9t\xc3\xa9"), .route = ROUTE_STATUS,
	  F1("name", "\xc3\xa9t\xc3\xa9") },
	{ C("GET", "/lock/%C2%A0"), .route = ROUTE_STATUS,
	  F1("name", "\xc2\xa0") },
	{ C("GET", "/lock/%F4%8F%BF%BF"), .route = ROUTE_STATUS,
	  F1("name", "\xf4\x8f\xbf\xbf") },
	{ C("GET", "/lock/a%2Fb"), BAD, .route = ROUTE_STATUS,
	  .msg = "'/' is not allowed in a lock name" },
	{ C("POST", "/lock/%2f/acquire"), BAD, .route = ROUTE_ACQUIRE,
	  .msg = "'/' is not allowed" },
	{ C("GET", "/lock/a%00b"), BAD, .route = ROUTE_STATUS,
	  .msg = "lock name contains a control character" },
	{ C("GET", "/lock/%00"), BAD, .msg = "control character" },
	{ C("GET", "/lock/a%0A"), BAD, .msg = "control character" },
	{ C("GET", "/lock/a%0d%0aX-Injected:%201"), BAD,
	  .msg = "control character" },
	{ C("GET", "/lock/a\tb"), BAD, .msg = "control byte (0x09)" },
	{ C("GET", "/lock/%7F"), BAD, .msg = "control character" },
	{ C("GET", "/lock/%C2%80"), BAD, .msg = "control character" },
	{ C("GET", "/lock/%C2%9F"), BAD, .msg = "control character" },
	{ C("GET", "/lock/%zz"), BAD, .route = ROUTE_STATUS,
	  .msg = "lock name has a malformed percent-escape" },
	{ C("GET", "/lock/a%4"), BAD, .msg = "malformed percent-escape" },
	{ C("GET", "/lock/a%"), BAD, .msg = "malformed percent-escape" },
	{ C("GET", "/lock/%4g"), BAD, .msg = "malformed percent-escape" },
	{ C("GET", "/lock/%C0%AF"), BAD,
	  .msg = "lock name is not valid UTF-8" },
	{ C("GET", "/lock/%C1%BF"), BAD, .msg = "not valid UTF-8" },
	{ C("GET", "/lock/%E0%80%AF"), BAD, .msg = "not valid UTF-8" },
	{ C("GET", "/lock/%F0%80%80%AF"), BAD, .msg = "not valid UTF-8" },
	{ C("GET", "/lock/%ED%A0%80"), BAD, .msg = "not valid UTF-8" },
	{ C("GET", "/lock/%ED%BF%BF"), BAD, .msg = "not valid UTF-8" },
	{ C("GET", "/lock/%F4%90%80%80"), BAD, .msg = "not valid UTF-8" },
	{ C("GET", "/lock/%F5%80%80%80"), BAD, .msg = "not valid UTF-8" },
	{ C("GET", "/lock/%C3"), BAD, .msg = "not valid UTF-8" },
	{ C("GET", "/lock/%E2%82"), BAD, .msg = "not valid UTF-8" },
	{ C("GET", "/lock/%E2%82x"), BAD, .msg = "not valid UTF-8" },
	{ C("GET", "/lock/%80"), BAD, .msg = "not valid UTF-8" },
	{ C("GET", "/lock/%FF"), BAD, .msg = "not valid UTF-8" },
	{ C("GET", "/lock/\xc0\xaf"), BAD, .msg = "not valid UTF-8" },
	{ C("GET", "/lock/" X255), .route = ROUTE_STATUS, F1("name", X255) },
	{ C("GET", "/lock/" X256), BAD, .route = ROUTE_STATUS,
	  .msg = "lock name is longer than 255 bytes" },
	{ C("GET", "/lock/" EU85), .route = ROUTE_STATUS,
	  F1("name_len", "255") },
	{ C("GET", "/lock/" EU86), BAD, .msg = "longer than 255 bytes" },
	{ C("GET", "/lock/" X255 "%41"), BAD, .msg = "longer than 255 bytes" },

	/* Mounted under a prefix. */
	{ C("POST", "/httplock/lock/x/acquire"), .script_name = "/httplock",
	  .route = ROUTE_ACQUIRE, F1("name", "x") },
	{ C("POST", "/httplock/lock/x/acquire"), .script_name = "/httplock/",
	  .route = ROUTE_ACQUIRE, F1("name", "x") },
	{ C("GET", "/a/b/locks?limit=5"), .script_name = "/a/b",
	  .route = ROUTE_LIST, F1("limit", "5") },
	{ C("GET", "/httplock"), .script_name = "/httplock", NOTFOUND },
	{ C("GET", "/httplock/"), .script_name = "/httplock", NOTFOUND },
	{ C("GET", "/httplockx/locks"), .script_name = "/httplock", NOTFOUND },
	{ C("GET", "/locks"), .script_name = "/", .route = ROUTE_LIST },
	{ C("GET", "/locks"), .script_name = "", .route = ROUTE_LIST },
	{ C("GET", "/locks"), .script_name = "/httplock", .route = ROUTE_LIST },
	{ C("GET", "/httplock/lock/httplock"), .script_name = "/httplock",
	  .route = ROUTE_STATUS, F1("name", "httplock") },

	/* timeout */
	{ C("POST", "/lock/a/acquire?timeout=5"), .route = ROUTE_ACQUIRE,
	  F1("timeout_ms", "5000"), F2("has_timeout", "1") },
	{ C("POST", "/lock/a/acquire?timeout=0"), .route = ROUTE_ACQUIRE,
	  F1("timeout_ms", "0"), F2("has_timeout", "1") },
	{ C("POST", "/lock/a/acquire?timeout=0.25"), .route = ROUTE_ACQUIRE,
	  F1("timeout_ms", "250") },
	{ C("POST", "/lock/a/acquire?timeout=1.0009"), .route = ROUTE_ACQUIRE,
	  F1("timeout_ms", "1000") },
	{ C("POST", "/lock/a/acquire?timeout=30"), .route = ROUTE_ACQUIRE,
	  F1("timeout_ms", "30000") },
	{ C("POST", "/lock/a/acquire?timeout=31"), .route = ROUTE_ACQUIRE,
	  F1("timeout_ms", "30000"), F2("has_timeout", "1") },
	{ C("POST", "/lock/a/acquire?timeout=999999999.999"),
	  .route = ROUTE_ACQUIRE, F1("timeout_ms", "30000") },
	{ C("POST", "/lock/a/acquire?timeout=1000000000"), BAD,
	  .route = ROUTE_ACQUIRE, .msg = "timeout " NUMERIC },
	TIMEOUT_BAD("abc"),
	TIMEOUT_BAD("-1"),
	TIMEOUT_BAD("%2B1"),
	TIMEOUT_BAD("1e3"),
	TIMEOUT_BAD(""),
	{ C("POST", "/lock/a/acquire?timeout"), BAD,
	  .msg = "timeout " NUMERIC },
	TIMEOUT_BAD("%201"),
	TIMEOUT_BAD("1+"),
	TIMEOUT_BAD("nan"),
	TIMEOUT_BAD("inf"),
	TIMEOUT_BAD("1."),
	TIMEOUT_BAD(".5"),
	TIMEOUT_BAD("0x10"),

	/* ttl */
	{ C("POST", "/lock/a/acquire?ttl=10"), .route = ROUTE_ACQUIRE,
	  F1("ttl_ms", "10000") },
	{ C("POST", "/lock/a/acquire?ttl=0.5"), .route = ROUTE_ACQUIRE,
	  F1("ttl_ms", "500") },
	{ C("POST", "/lock/a/acquire?ttl=0.001"), .route = ROUTE_ACQUIRE,
	  F1("ttl_ms", "1") },
	{ C("POST", "/lock/a/acquire?ttl=3600"), .route = ROUTE_ACQUIRE,
	  F1("ttl_ms", "3600000") },
	{ C("POST", "/lock/a/acquire?ttl=0"), BAD,
	  .msg = "ttl must be greater than 0" },
	{ C("POST", "/lock/a/acquire?ttl=0.0009"), BAD,
	  .msg = "ttl must be greater than 0" },
	{ C("POST", "/lock/a/acquire?ttl=3600.001"), BAD,
	  .msg = "ttl exceeds the maximum of 3600 seconds" },
	{ C("POST", "/lock/a/acquire?ttl=999999999"), BAD,
	  .msg = "ttl exceeds the maximum of 3600 seconds" },
	{ C("POST", "/lock/a/acquire?ttl=x"), BAD, .msg = "ttl " NUMERIC },
	{ C("POST", "/lock/a/acquire?ttl=-5"), BAD, .msg = "ttl " NUMERIC },
	{ C("POST", "/lock/a/renew?token=" TOK "&ttl=5"), .route = ROUTE_RENEW,
	  F1("ttl_ms", "5000"), F2("token", TOK) },
	{ C("POST", "/lock/a/renew?token=" TOK "&ttl=0"), BAD,
	  .route = ROUTE_RENEW, .msg = "ttl must be greater than 0" },
	{ C("POST", "/lock/a/renew?token=" TOK "&ttl=4000"), BAD,
	  .msg = "ttl exceeds the maximum" },

	/* owner */
	{ C("POST", "/lock/a/acquire?owner=alice"), .route = ROUTE_ACQUIRE,
	  F1("owner", "alice") },
	{ C("POST", "/lock/a/acquire?owner="), .route = ROUTE_ACQUIRE,
	  F1("owner", "") },
	{ C("POST", "/lock/a/acquire?owner"), .route = ROUTE_ACQUIRE,
	  F1("owner", "") },
	{ C("POST", "/lock/a/acquire?owner=a+b%2Bc"), .route = ROUTE_ACQUIRE,
	  F1("owner", "a b+c") },
	{ C("POST", "/lock/a/acquire?owner=host%3D1%26pid%3D2"),
	  .route = ROUTE_ACQUIRE, F1("owner", "host=1&pid=2") },
	{ C("POST", "/lock/a/acquire?owner=a=b"), .route = ROUTE_ACQUIRE,
	  F1("owner", "a=b") },
	{ C("POST", "/lock/a/acquire?owner=%E2%82%AC"), .route = ROUTE_ACQUIRE,
	  F1("owner", "\xe2\x82\xac") },
	{ C("POST", "/lock/a/acquire?owner=" X128), .route = ROUTE_ACQUIRE,
	  F1("owner", X128) },
	{ C("POST", "/lock/a/acquire?owner=" X129), BAD,
	  .msg = "owner is longer than 128 bytes" },
	{ C("POST", "/lock/a/acquire?owner=%01"), BAD,
	  .msg = "owner contains a control character" },
	{ C("POST", "/lock/a/acquire?owner=a%0Ab"), BAD,
	  .msg = "owner contains a control character" },
	{ C("POST", "/lock/a/acquire?owner=%C0%AF"), BAD,
	  .msg = "owner is not valid UTF-8" },
	{ C("POST", "/lock/a/acquire?owner=%ED%A0%80"), BAD,
	  .msg = "owner is not valid UTF-8" },

	/* request_id: a credential, 16 to 128 of [A-Za-z0-9_.~-]. */
	{ C("POST", "/lock/a/acquire?request_id=" RID), .route = ROUTE_ACQUIRE,
	  F1("request_id", RID) },
	{ C("POST", "/lock/a/acquire?request_id=123e4567-e89b-12d3-a456-"
	  "426614174000"), .route = ROUTE_ACQUIRE,
	  F1("request_id", "123e4567-e89b-12d3-a456-426614174000") },
	{ C("POST", "/lock/a/acquire?request_id=Ab09_.~-Ab09_.~-"),
	  .route = ROUTE_ACQUIRE, F1("request_id", "Ab09_.~-Ab09_.~-") },
	{ C("POST", "/lock/a/acquire"), .route = ROUTE_ACQUIRE,
	  F1("request_id", "") },
	{ C("POST", "/lock/a/acquire?request_id="), BAD, .msg = RID_RULE },
	{ C("POST", "/lock/a/acquire?request_id=req-81"), BAD,
	  .msg = RID_RULE },
	{ C("POST", "/lock/a/acquire?request_id=123456789012345"), BAD,
	  .msg = RID_RULE },
	{ C("POST", "/lock/a/acquire?request_id=" X128), .route = ROUTE_ACQUIRE,
	  F1("request_id", X128) },
	{ C("POST", "/lock/a/acquire?request_id=" X129), BAD, .msg = RID_RULE },
	{ C("POST", "/lock/a/acquire?request_id=%7F" RID), BAD,
	  .msg = RID_RULE },
	{ C("POST", "/lock/a/acquire?request_id=" RID "%20"), BAD,
	  .msg = RID_RULE },
	{ C("POST", "/lock/a/acquire?request_id=" RID "%2B"), BAD,
	  .msg = RID_RULE },
	{ C("POST", "/lock/a/acquire?request_id=%C3%A9" RID), BAD,
	  .msg = RID_RULE },
	{ C("POST", "/lock/a/cancel"), BAD, .route = ROUTE_CANCEL,
	  .msg = "request_id is required" },
	{ C("POST", "/lock/a/cancel?request_id="), BAD, .msg = RID_RULE },
	{ C("POST", "/lock/a/cancel?request_id=r1"), BAD, .msg = RID_RULE },
	{ C("POST", "/lock/a/cancel?request_id=" X129), BAD, .msg = RID_RULE },
	{ C("POST", "/lock/a/cancel?request_id=%FF" RID), BAD,
	  .msg = RID_RULE },
	{ C("POST", "/lock/a/cancel?request_id=" RID "&owner=x"), BAD,
	  .msg = "unknown parameter 'owner'" },

	/* Several parameters at once. */
	{ C("POST", "/lock/a/acquire?timeout=2&ttl=3&owner=o&request_id=" RID),
	  .route = ROUTE_ACQUIRE, F1("timeout_ms", "2000"),
	  F2("ttl_ms", "3000") },
	{ C("POST", "/lock/a/acquire?timeout=2&ttl=3&owner=o&request_id=" RID),
	  .route = ROUTE_ACQUIRE, F1("owner", "o"), F2("request_id", RID) },

	/* Unknown, repeated and empty parameters. */
	{ C("POST", "/lock/a/acquire?timout=5"), BAD,
	  .msg = "unknown parameter 'timout' (this endpoint takes timeout, "
	  "ttl, owner, request_id)" },
	{ C("POST", "/lock/a/acquire?token=" TOK), BAD,
	  .msg = "unknown parameter 'token'" },
	{ C("POST", "/lock/a/release?token=" TOK "&ttl=5"), BAD,
	  .msg = "unknown parameter 'ttl' (this endpoint takes token)" },
	{ C("GET", "/lock/a?x=1"), BAD, .route = ROUTE_STATUS,
	  .msg = "unknown parameter 'x' (this endpoint takes no parameters)" },
	{ C("GET", "/healthz?verbose"), BAD,
	  .msg = "unknown parameter 'verbose'" },
	{ C("GET", "/locks?owner=x"), BAD,
	  .msg = "unknown parameter 'owner' (this endpoint takes prefix, "
	  "after, limit)" },
	{ C("GET", "/locks?%01%02=1"), BAD,
	  .msg = "unknown parameter (this endpoint", .notmsg = "\x01" },
	{ C("GET", "/locks?a'b=1"), BAD, .msg = "unknown parameter (",
	  .notmsg = "'b" },
	{ C("GET", "/locks?" X128 "=1"), BAD, .msg = "unknown parameter (",
	  .notmsg = X8 },
	{ C("GET", "/locks?LIMIT=1"), BAD, .msg = "unknown parameter 'LIMIT'" },
	{ C("POST", "/lock/a/acquire?ttl=1&ttl=2"), BAD,
	  .msg = "parameter 'ttl' is given more than once" },
	{ C("POST", "/lock/a/acquire?ttl=1&%74tl=1"), BAD,
	  .msg = "parameter 'ttl' is given more than once" },
	{ C("POST", "/lock/a/acquire?owner&owner"), BAD,
	  .msg = "parameter 'owner' is given more than once" },
	{ C("POST", "/lock/a/acquire?%74tl=5"), .route = ROUTE_ACQUIRE,
	  F1("ttl_ms", "5000") },
	{ C("POST", "/lock/a/acquire?=x"), BAD,
	  .msg = "a parameter has an empty name" },
	{ C("POST", "/lock/a/acquire?="), BAD, .msg = "empty name" },
	{ C("POST", "/lock/a/acquire?ttl=1&=&owner=o"), BAD,
	  .msg = "empty name" },
	{ C("POST", "/lock/a/acquire?&&"), .route = ROUTE_ACQUIRE,
	  F1("ttl_ms", "30000") },
	{ C("POST", "/lock/a/acquire?&ttl=5&&owner=o&"), .route = ROUTE_ACQUIRE,
	  F1("ttl_ms", "5000"), F2("owner", "o") },
	{ C("POST", "/lock/a/acquire?ttl=5%zz"), BAD,
	  .msg = "the query string has a malformed percent-escape" },
	{ C("POST", "/lock/a/acquire?owner=a%4"), BAD,
	  .msg = "malformed percent-escape" },
	{ C("POST", "/lock/a/acquire?%=1"), BAD,
	  .msg = "malformed percent-escape" },
	{ C("POST", "/lock/a/acquire?owner=a%00b"), BAD,
	  .msg = "the query string contains an encoded NUL byte" },
	/* Only the first '?' splits; the rest belongs to the query. */
	{ C("POST", "/lock/a/acquire?owner=a?b"), .route = ROUTE_ACQUIRE,
	  F1("owner", "a?b") },
	/* ';' is not a separator. */
	{ C("POST", "/lock/a/acquire?ttl=1;owner=o"), BAD,
	  .msg = "ttl " NUMERIC },

	/* Tokens: parameter, Lock-Token header, both. */
	{ C("POST", "/lock/a/release?token=" TOK_UP), .route = ROUTE_RELEASE,
	  F1("token", TOK) },
	{ C("POST", "/lock/a/release"), .lock_token = TOK_UP,
	  .route = ROUTE_RELEASE, F1("token", TOK) },
	{ C("POST", "/lock/a/release?token=" TOK), .lock_token = TOK_UP,
	  .route = ROUTE_RELEASE, F1("token", TOK) },
	{ C("POST", "/lock/a/renew"), .lock_token = TOK, .route = ROUTE_RENEW,
	  F1("token", TOK), F2("ttl_ms", "0") },
	{ C("POST", "/lock/a/release?token=" TOK), .lock_token = TOK2, BAD,
	  .route = ROUTE_RELEASE,
	  .msg = "the token parameter and the Lock-Token header differ",
	  .notmsg = "0123" },
	{ C("POST", "/lock/a/release"), BAD,
	  .msg = "token is required (parameter or Lock-Token header)" },
	{ C("POST", "/lock/a/release"), .lock_token = "", BAD,
	  .msg = "token is required" },
	{ C("POST", "/lock/a/renew?ttl=5"), BAD, .route = ROUTE_RENEW,
	  .msg = "token is required" },
	{ C("POST", "/lock/a/release?token=deadbeef"), BAD,
	  .msg = "token must be 32 hexadecimal digits", .notmsg = "deadbeef" },
	{ C("POST", "/lock/a/release?token=" TOK "0"), BAD,
	  .msg = "token must be 32 hexadecimal digits", .notmsg = "0123" },
	{ C("POST", "/lock/a/release?token=0123456789abcdef0123456789abcdeg"),
	  BAD, .msg = "token must be 32 hexadecimal digits" },
	{ C("POST", "/lock/a/release?token="), BAD,
	  .msg = "token must be 32 hexadecimal digits" },
	{ C("POST", "/lock/a/release?token=+" TOK), BAD,
	  .msg = "token must be 32 hexadecimal digits" },
	{ C("POST", "/lock/a/release"), .lock_token = "deadbeef", BAD,
	  .msg = "the Lock-Token header must be 32 hexadecimal digits",
	  .notmsg = "deadbeef" },
	{ C("POST", "/lock/a/release"), .lock_token = " " TOK, BAD,
	  .msg = "Lock-Token header must be" },
	{ C("POST", "/lock/a/release"), .lock_token = TOK "00", BAD,
	  .msg = "Lock-Token header must be" },
	{ C("POST", "/lock/a/release?token=" TOK), .lock_token = "zz", BAD,
	  .msg = "Lock-Token header must be" },
	/* The header is not looked at where no token is taken. */
	{ C("POST", "/lock/a/acquire"), .lock_token = "junk",
	  .route = ROUTE_ACQUIRE },

	/* list */
	{ C("GET", "/locks?prefix=job-&after=job-5&limit=10"),
	  .route = ROUTE_LIST, F1("prefix", "job-"), F2("after", "job-5") },
	{ C("GET", "/locks?prefix=job-&after=job-5&limit=10"),
	  .route = ROUTE_LIST, F1("limit", "10") },
	{ C("GET", "/locks?limit=1"), .route = ROUTE_LIST, F1("limit", "1") },
	{ C("GET", "/locks?limit=1000"), .route = ROUTE_LIST,
	  F1("limit", "1000") },
	{ C("GET", "/locks?limit=0010"), .route = ROUTE_LIST,
	  F1("limit", "10") },
	{ C("GET", "/locks?limit=1001"), BAD,
	  .msg = "limit must be an integer from 1 to 1000" },
	{ C("GET", "/locks?limit=0"), BAD, .msg = "limit must be an integer" },
	{ C("GET", "/locks?limit=-1"), BAD, .msg = "limit must be an integer" },
	{ C("GET", "/locks?limit="), BAD, .msg = "limit must be an integer" },
	{ C("GET", "/locks?limit=1.5"), BAD, .msg = "limit must be" },
	{ C("GET", "/locks?limit=%2010"), BAD, .msg = "limit must be" },
	{ C("GET", "/locks?limit=abc"), BAD, .msg = "limit must be" },
	{ C("GET", "/locks?limit=99999999999999999999999"), BAD,
	  .msg = "limit must be an integer" },
	{ C("GET", "/locks?prefix=&after="), .route = ROUTE_LIST,
	  F1("prefix", ""), F2("after", "") },
	{ C("GET", "/locks?prefix=%C3%A9"), .route = ROUTE_LIST,
	  F1("prefix", "\xc3\xa9") },
	{ C("GET", "/locks?prefix=" X255), .route = ROUTE_LIST,
	  F1("prefix", X255) },
	{ C("GET", "/locks?prefix=" X256), BAD,
	  .msg = "prefix is longer than 255 bytes" },
	{ C("GET", "/locks?prefix=%C0%AF"), BAD,
	  .msg = "prefix is not valid UTF-8" },
	{ C("GET", "/locks?after=" X255), .route = ROUTE_LIST,
	  F1("after", X255) },
	{ C("GET", "/locks?after=" X256), BAD,
	  .msg = "after is longer than 255 bytes" },
	{ C("GET", "/locks?after=a%0A"), BAD,
	  .msg = "after contains a control character" },
	{ C("GET", "/locks?after=%ED%A0%80"), BAD,
	  .msg = "after is not valid UTF-8" },

	/* Bodies and their content types. */
	{ C("POST", "/lock/a/acquire"), .content_type = FORM, .body = "ttl=5",
	  .route = ROUTE_ACQUIRE, F1("ttl_ms", "5000") },
	{ C("POST", "/lock/a/acquire"),
	  .content_type = "Application/X-WWW-Form-URLencoded", .body = "ttl=5",
	  .route = ROUTE_ACQUIRE, F1("ttl_ms", "5000") },
	{ C("POST", "/lock/a/acquire"), .content_type = FORM "; charset=UTF-8",
	  .body = "ttl=5", .route = ROUTE_ACQUIRE, F1("ttl_ms", "5000") },
	{ C("POST", "/lock/a/acquire"), .content_type = FORM ";charset=utf-8",
	  .body = "ttl=5", .route = ROUTE_ACQUIRE, F1("ttl_ms", "5000") },
	{ C("POST", "/lock/a/acquire"), .content_type = FORM " ",
	  .body = "ttl=5", .route = ROUTE_ACQUIRE, F1("ttl_ms", "5000") },
	{ C("POST", "/lock/a/acquire"), .content_type = "application/json",
	  .body = "{\"ttl\":5}", BAD, .route = ROUTE_ACQUIRE,
	  .msg = "the request body must be form-encoded "
	  "(application/x-www-form-urlencoded)" },
	{ C("POST", "/lock/a/acquire"), .body = "ttl=5", BAD,
	  .msg = "a request body needs Content-Type: "
	  "application/x-www-form-urlencoded" },
	{ C("POST", "/lock/a/acquire"), .content_type = "", .body = "ttl=5",
	  BAD, .msg = "needs Content-Type" },
	{ C("POST", "/lock/a/acquire"), .content_type = FORM "x",
	  .body = "ttl=5", BAD, .msg = "must be form-encoded" },
	{ C("POST", "/lock/a/acquire"),
	  .content_type = "application/x-www-form", .body = "ttl=5", BAD,
	  .msg = "must be form-encoded" },
	{ C("POST", "/lock/a/acquire"), .content_type = "text/plain",
	  .body = "ttl=5", BAD, .msg = "must be form-encoded" },
	{ C("POST", "/lock/a/acquire"),
	  .content_type = "multipart/form-data; boundary=x", .body = "ttl=5",
	  BAD, .msg = "must be form-encoded" },
	/* Without a body the content type does not matter. */
	{ C("POST", "/lock/a/acquire"), .content_type = "application/json",
	  .body = "", .route = ROUTE_ACQUIRE },
	{ C("POST", "/lock/a/acquire?timeout=2"), .content_type = FORM,
	  .body = "ttl=1", .route = ROUTE_ACQUIRE, F1("timeout_ms", "2000"),
	  F2("ttl_ms", "1000") },
	{ C("POST", "/lock/a/acquire?ttl=2"), .content_type = FORM,
	  .body = "ttl=1", BAD,
	  .msg = "parameter 'ttl' is given more than once" },
	{ C("POST", "/lock/a/acquire"), .content_type = FORM,
	  .body = "ttl=1&ttl=1", BAD, .msg = "parameter 'ttl' is given more" },
	{ C("POST", "/lock/a/release?token=" TOK), .content_type = FORM,
	  .body = "token=" TOK, BAD, .msg = "parameter 'token' is given more" },
	{ C("POST", "/lock/a/release"), .content_type = FORM,
	  .body = "token=" TOK_UP, .route = ROUTE_RELEASE, F1("token", TOK) },
	{ C("POST", "/lock/a/acquire"), .content_type = FORM,
	  .body = "owner=a+b&request_id=" RID, .route = ROUTE_ACQUIRE,
	  F1("owner", "a b"), F2("request_id", RID) },
	{ C("POST", "/lock/a/acquire"), .content_type = FORM,
	  .body = "&&ttl=5&&", .route = ROUTE_ACQUIRE, F1("ttl_ms", "5000") },
	{ C("POST", "/lock/a/acquire"), .content_type = FORM,
	  .body = "ttl=5\r\n", BAD, .msg = "ttl " NUMERIC },
	{ C("POST", "/lock/a/acquire"), .content_type = FORM,
	  .body = "tl=5", BAD, .msg = "unknown parameter 'tl'" },
	{ C("POST", "/lock/a/acquire"), .content_type = FORM,
	  .body = "ttl=%5", BAD,
	  .msg = "the request body has a malformed percent-escape" },
	{ C("POST", "/lock/a/acquire"), .content_type = FORM,
	  .body = "owner=%00", BAD,
	  .msg = "the request body contains an encoded NUL byte" },
	{ C("POST", "/lock/a/acquire"), .content_type = FORM,
	  .body = "=5", BAD, .msg = "empty name" },
	{ C("GET", "/locks"), .content_type = FORM, .body = "limit=5",
	  .route = ROUTE_LIST, F1("limit", "5") },
	{ C("GET", "/healthz"), .content_type = FORM, .body = "x=1", BAD,
	  .msg = "unknown parameter 'x'" },
	/* 404 and 405 come before anything about the body. */
	{ C("POST", "/nope"), .content_type = "text/plain", .body = "x",
	  NOTFOUND },
	{ C("GET", "/lock/a/acquire"), .content_type = "text/plain",
	  .body = "x", NOTALLOWED },
};

#define NCASES ((int)(sizeof(cases) / sizeof(cases[0])))

/* The value of field `f` of *r or *e as a string, for comparing. */
static const char *
field_str(const char *f, const struct request *r,
    const struct request_error *e, char *buf, size_t len)
{
	if (strcmp(f, "name") == 0)
		return r->name;
	if (strcmp(f, "owner") == 0)
		return r->owner;
	if (strcmp(f, "request_id") == 0)
		return r->request_id;
	if (strcmp(f, "token") == 0)
		return r->token;
	if (strcmp(f, "prefix") == 0)
		return r->prefix;
	if (strcmp(f, "after") == 0)
		return r->after;
	if (strcmp(f, "allow") == 0)
		return e->allow != NULL ? e->allow : "(null)";
	if (strcmp(f, "name_len") == 0)
		snprintf(buf, len, "%zu", strlen(r->name));
	else if (strcmp(f, "timeout_ms") == 0)
		snprintf(buf, len, "%" PRId64, r->timeout_ms);
	else if (strcmp(f, "has_timeout") == 0)
		snprintf(buf, len, "%d", r->has_timeout ? 1 : 0);
	else if (strcmp(f, "ttl_ms") == 0)
		snprintf(buf, len, "%" PRId64, r->ttl_ms);
	else if (strcmp(f, "limit") == 0)
		snprintf(buf, len, "%d", r->limit);
	else if (strcmp(f, "head") == 0)
		snprintf(buf, len, "%d", r->head ? 1 : 0);
	else
		ck_abort_msg("test table names an unknown field '%s'", f);
	return buf;
}

static void
check_field(const struct rcase *c, int i, const char *f, const char *want,
    const struct request *r, const struct request_error *e)
{
	char buf[64];
	const char *got;

	if (f == NULL)
		return;
	got = field_str(f, r, e, buf, sizeof(buf));
	ck_assert_msg(strcmp(got, want) == 0,
	    "case %d (line %d) %s %s: %s is '%s', want '%s'", i, c->line,
	    c->method ? c->method : "(null)", c->uri ? c->uri : "(null)",
	    f, got, want);
}

START_TEST(test_cases)
{
	const struct rcase *c = &cases[_i];
	struct request_in in = {
		.method = c->method,
		.uri = c->uri,
		.script_name = c->script_name,
		.path_info = c->path_info,
		.content_type = c->content_type,
		.lock_token = c->lock_token,
		.body = c->body,
		.bodylen = c->body != NULL ? strlen(c->body) : 0,
	};
	struct request r;
	struct request_error e;
	const char *what = c->uri != NULL ? c->uri : "(null)";
	int rc;

	rc = request_parse(&in, &LIM, &r, &e);
	if (c->status == 0) {
		ck_assert_msg(rc == 0, "case %d (line %d) %s: failed with %d "
		    "%s: %s", _i, c->line, what, e.status,
		    e.code ? e.code : "(null)", e.message);
	} else {
		ck_assert_msg(rc == -1, "case %d (line %d) %s: succeeded, "
		    "want %d", _i, c->line, what, c->status);
		ck_assert_msg(e.status == c->status, "case %d (line %d) %s: "
		    "status %d (%s), want %d", _i, c->line, what, e.status,
		    e.message, c->status);
		ck_assert_msg(e.code != NULL && strcmp(e.code, c->code) == 0,
		    "case %d (line %d): code %s, want %s", _i, c->line,
		    e.code ? e.code : "(null)", c->code);
		ck_assert_msg(e.message[0] != '\0', "case %d (line %d): no "
		    "message", _i, c->line);
		ck_assert_msg(c->msg == NULL || strstr(e.message, c->msg),
		    "case %d (line %d) %s: message '%s' lacks '%s'", _i,
		    c->line, what, e.message, c->msg);
		ck_assert_msg(c->notmsg == NULL ||
		    !strstr(e.message, c->notmsg), "case %d (line %d): "
		    "message '%s' has '%s'", _i, c->line, e.message,
		    c->notmsg);
		ck_assert_msg((e.status == 405) == (e.allow != NULL),
		    "case %d (line %d): allow is %s with status %d", _i,
		    c->line, e.allow ? e.allow : "NULL", e.status);
	}
	/* Error rows name the route only where it matters. */
	if (c->status == 0 || c->status == 404 || c->route != ROUTE_NONE)
		ck_assert_msg(r.route == c->route, "case %d (line %d) %s: "
		    "route %d, want %d", _i, c->line, what, (int)r.route,
		    (int)c->route);
	check_field(c, _i, c->field, c->value, &r, &e);
	check_field(c, _i, c->field2, c->value2, &r, &e);
}
END_TEST

/* request_text_ok: the UTF-8 and control character rules, byte by byte. */
struct tcase_text {
	int         line;
	const char *s;
	size_t      len;         /* 0: strlen(s) */
	bool        ok;
};

#define T(s, ok) { __LINE__, (s), 0, (ok) }
#define TL(s, len, ok) { __LINE__, (s), (len), (ok) }

static const struct tcase_text texts[] = {
	T("", true),
	T("abc-_.:~ !@#$%^&*()", true),
	T("\t", false),              /* C0 */
	T("\x1f", false),
	T("\x7f", false),            /* DEL */
	T("\x7e", true),
	TL("a\0b", 3, false),        /* NUL inside */
	T("\xc2\x80", false),        /* U+0080: C1 */
	T("\xc2\x9f", false),        /* U+009F: C1 */
	T("\xc2\xa0", true),         /* U+00A0 */
	T("\xdf\xbf", true),         /* U+07FF */
	T("\xe0\xa0\x80", true),     /* U+0800 */
	T("\xe0\x9f\xbf", false),    /* overlong U+07FF */
	T("\xed\x9f\xbf", true),     /* U+D7FF */
	T("\xed\xa0\x80", false),    /* U+D800 */
	T("\xed\xbf\xbf", false),    /* U+DFFF */
	T("\xee\x80\x80", true),     /* U+E000 */
	T("\xef\xbf\xbf", true),     /* U+FFFF */
	T("\xf0\x90\x80\x80", true), /* U+10000 */
	T("\xf0\x8f\xbf\xbf", false),/* overlong U+FFFF */
	T("\xf4\x8f\xbf\xbf", true), /* U+10FFFF */
	T("\xf4\x90\x80\x80", false),/* U+110000 */
	T("\xf5\x80\x80\x80", false),
	T("\xf8\x88\x80\x80\x80", false),
	T("\xc0\x80", false),        /* overlong NUL */
	T("\xc0\xaf", false),        /* overlong '/' */
	T("\xc1\xbf", false),
	T("\xe0\x80\xaf", false),
	T("\x80", false),            /* lone continuation */
	T("\xbf", false),
	T("\xfe", false),
	T("\xff", false),
	T("\xc3", false),            /* truncated */
	T("\xe2\x82", false),
	T("\xf0\x9f\x94", false),
	T("\xe2\x28\xa1", false),    /* bad second byte */
	T("\xe2\x82\x28", false),    /* bad third byte */
	T("\xf0\x9f\x94\x28", false),
	T("ok\xc3\xa9ok\xe2\x82\xac\xf0\x9f\x94\x92", true),
	TL("\xc3\xa9", 1, false),    /* len cuts a sequence */
};

START_TEST(test_text_ok)
{
	const struct tcase_text *t = &texts[_i];
	size_t len = t->len != 0 ? t->len : strlen(t->s);

	ck_assert_msg(request_text_ok(t->s, len) == t->ok,
	    "text case %d (line %d): want %s", _i, t->line,
	    t->ok ? "ok" : "rejected");
}
END_TEST

START_TEST(test_text_ok_null)
{
	ck_assert(request_text_ok(NULL, 0));
	ck_assert(!request_text_ok(NULL, 1));
}
END_TEST

static int
parse_simple(const char *method, const char *uri, const char *body,
    size_t bodylen, struct request *r, struct request_error *e)
{
	struct request_in in = {
		.method = method,
		.uri = uri,
		.content_type = FORM,
		.body = body,
		.bodylen = bodylen,
	};

	return request_parse(&in, &LIM, r, e);
}

START_TEST(test_uri_size)
{
	char *uri = malloc(REQ_URI_MAX + 2);
	struct request r;
	struct request_error e;
	size_t n;

	ck_assert_ptr_nonnull(uri);
	/* "/locks?" then "&" up to exactly REQ_URI_MAX bytes: accepted. */
	n = strlen("/locks?");
	memcpy(uri, "/locks?", n);
	memset(uri + n, '&', REQ_URI_MAX - n);
	uri[REQ_URI_MAX] = '\0';
	ck_assert_int_eq(parse_simple("GET", uri, NULL, 0, &r, &e), 0);
	ck_assert_int_eq(r.route, ROUTE_LIST);

	uri[REQ_URI_MAX] = '&';
	uri[REQ_URI_MAX + 1] = '\0';
	ck_assert_int_eq(parse_simple("GET", uri, NULL, 0, &r, &e), -1);
	ck_assert_int_eq(e.status, 413);
	ck_assert_str_eq(e.code, "too_large");
	ck_assert_ptr_nonnull(strstr(e.message, "URI is longer than 8192"));
	free(uri);
}
END_TEST

START_TEST(test_body_size)
{
	char *body = malloc(REQ_BODY_MAX + 1);
	struct request r;
	struct request_error e;

	ck_assert_ptr_nonnull(body);
	memset(body, '&', REQ_BODY_MAX + 1);
	memcpy(body, "ttl=7&", 6);
	ck_assert_int_eq(parse_simple("POST", "/lock/a/acquire", body,
	    REQ_BODY_MAX, &r, &e), 0);
	ck_assert_int_eq(r.ttl_ms, 7000);

	ck_assert_int_eq(parse_simple("POST", "/lock/a/acquire", body,
	    REQ_BODY_MAX + 1, &r, &e), -1);
	ck_assert_int_eq(e.status, 413);
	ck_assert_str_eq(e.code, "too_large");
	ck_assert_ptr_nonnull(strstr(e.message, "body is larger than 16384"));
	/* Too large wins over a route that does not exist. */
	ck_assert_int_eq(parse_simple("POST", "/nope", body,
	    REQ_BODY_MAX + 1, &r, &e), -1);
	ck_assert_int_eq(e.status, 413);
	free(body);
}
END_TEST

START_TEST(test_body_nul)
{
	static const char body[] = "owner=a\0b";
	struct request r;
	struct request_error e;

	ck_assert_int_eq(parse_simple("POST", "/lock/a/acquire", body,
	    sizeof(body) - 1, &r, &e), -1);
	ck_assert_int_eq(e.status, 400);
	ck_assert_ptr_nonnull(strstr(e.message, "contains a NUL byte"));

	/* bodylen counts; the body need not be NUL-terminated. */
	ck_assert_int_eq(parse_simple("POST", "/lock/a/acquire", "ttl=12345",
	    6, &r, &e), 0);
	ck_assert_int_eq(r.ttl_ms, 12000);

	ck_assert_int_eq(parse_simple("POST", "/lock/a/acquire", NULL, 4,
	    &r, &e), -1);
	ck_assert_int_eq(e.status, 400);
}
END_TEST

START_TEST(test_out_cleared)
{
	struct request r;
	struct request_error e;
	struct request zero;

	memset(&zero, 0, sizeof(zero));
	memset(&r, 0xa5, sizeof(r));
	memset(&e, 0xa5, sizeof(e));
	/* The token parses before ttl fails: nothing of it may be left. */
	ck_assert_int_eq(parse_simple("POST",
	    "/lock/a/renew?token=" TOK "&ttl=0", NULL, 0, &r, &e), -1);
	ck_assert_int_eq(r.route, ROUTE_RENEW);
	zero.route = ROUTE_RENEW;
	ck_assert(memcmp(&r, &zero, sizeof(r)) == 0);
	ck_assert_int_eq(e.status, 400);
	ck_assert_ptr_null(e.allow);

	memset(&r, 0xa5, sizeof(r));
	ck_assert_int_eq(request_parse(NULL, &LIM, &r, &e), -1);
	ck_assert_int_eq(r.route, ROUTE_NONE);
	ck_assert_int_eq(e.status, 500);
	ck_assert_int_eq(parse_simple("GET", "/x", NULL, 0, &r, &e), -1);
	ck_assert_int_eq(r.route, ROUTE_NONE);
	{
		struct request_in in = { .method = "GET", .uri = "/healthz" };

		ck_assert_int_eq(request_parse(&in, NULL, &r, &e), -1);
	}
}
END_TEST

/* Other limits: a smaller max_wait and a max_ttl in fractions. */
START_TEST(test_limits)
{
	struct request_limits lim = { 1500, 2500, 250 };
	struct request_in in = { .method = "POST",
	    .uri = "/lock/a/acquire?timeout=1" };
	struct request r;
	struct request_error e;

	ck_assert_int_eq(request_parse(&in, &lim, &r, &e), 0);
	ck_assert_int_eq(r.timeout_ms, 250);
	ck_assert_int_eq(r.ttl_ms, 1500);
	in.uri = "/lock/a/acquire";
	ck_assert_int_eq(request_parse(&in, &lim, &r, &e), 0);
	ck_assert_int_eq(r.timeout_ms, 250);
	ck_assert(!r.has_timeout);
	in.uri = "/lock/a/acquire?ttl=2.501";
	ck_assert_int_eq(request_parse(&in, &lim, &r, &e), -1);
	ck_assert_str_eq(e.message, "ttl exceeds the maximum of 2.500 seconds");
}
END_TEST

/*
 * Robustness: requests glued from fragments that sit near the edges of
 * the rules, many times over.  Under AddressSanitizer this catches reads
 * past a buffer; everywhere it checks the result is one of the two
 * documented shapes.
 */
static const char *const frags[] = {
	"/", "//", "lock", "locks", "healthz", "acquire", "release", "renew",
	"cancel", "?", "&", "=", "%", "%2", "%2F", "%00", "%C0%AF", "%E2%82",
	"%F4%90%80%80", "%FF", "+", "ttl", "timeout", "owner", "token",
	"request_id", "prefix", "after", "limit", "1", "0.5", "999999999",
	".", "-", "x", "\xc3", "\xa9", "\x7f", "\x01", TOK, TOK_UP, X128,
	"httplock", "%41",
};

#define NFRAGS (sizeof(frags) / sizeof(frags[0]))

START_TEST(test_random)
{
	static const char *const methods[] = { "GET", "HEAD", "POST", NULL };
	static const char *const types[] = { FORM, "text/plain", NULL,
	    FORM "; charset=utf-8" };
	char uri[2048], body[1024];
	uint32_t seed = 12345;
	int iter;

	for (iter = 0; iter < 30000; iter++) {
		struct request_in in;
		struct request r;
		struct request_error e;
		size_t ulen = 0, blen = 0;
		int n, k, rc;

#define RND() (seed = seed * 1103515245u + 12345u, (seed >> 8))
		n = (int)(RND() % 12);
		for (k = 0; k < n; k++) {
			const char *f = frags[RND() % NFRAGS];
			size_t fl = strlen(f);

			if (ulen + fl < sizeof(uri)) {
				memcpy(uri + ulen, f, fl);
				ulen += fl;
			}
		}
		uri[ulen] = '\0';
		n = (int)(RND() % 6);
		for (k = 0; k < n; k++) {
			const char *f = frags[RND() % NFRAGS];
			size_t fl = strlen(f);

			if (blen + fl <= sizeof(body)) {
				memcpy(body + blen, f, fl);
				blen += fl;
			}
		}
		memset(&in, 0, sizeof(in));
		in.method = methods[RND() % 4];
		in.uri = uri;
		in.script_name = RND() % 4 == 0 ? "/httplock" : NULL;
		in.content_type = types[RND() % 4];
		in.lock_token = RND() % 3 == 0 ? TOK : NULL;
		/* A body exactly as long as it is: no NUL after it. */
		in.body = blen > 0 ? body : NULL;
		in.bodylen = blen;
		rc = request_parse(&in, &LIM, &r, &e);
		if (rc == 0) {
			ck_assert(r.route != ROUTE_NONE);
			ck_assert(strlen(r.name) <= REQ_NAME_MAX);
			ck_assert(request_text_ok(r.name, strlen(r.name)));
			ck_assert(request_text_ok(r.owner, strlen(r.owner)));
			ck_assert(r.ttl_ms >= 0 && r.ttl_ms <= LIM.max_ttl_ms);
			ck_assert(r.timeout_ms >= 0 &&
			    r.timeout_ms <= LIM.max_wait_ms);
		} else {
			ck_assert_msg(rc == -1, "rc %d", rc);
			ck_assert(e.status == 400 || e.status == 404 ||
			    e.status == 405 || e.status == 413);
			ck_assert_ptr_nonnull(e.code);
			ck_assert(strlen(e.message) > 0 &&
			    strlen(e.message) < sizeof(e.message));
			ck_assert(request_text_ok(e.message,
			    strlen(e.message)));
			ck_assert_ptr_null(strstr(e.message, TOK));
			ck_assert_ptr_null(strstr(e.message, "0123456789"));
		}
#undef RND
	}
}
END_TEST

/* ============================================================== tenants */

/* request_tenant_key: the mapping, byte by byte. */
static const struct key_case {
	int         line;
	const char *tenant;
	const char *name;
	size_t      cap;         /* 0: LC_KEY_MAX + 1 */
	int         len;         /* -1: does not fit */
	const char *key;
} key_cases[] = {
	{ __LINE__, NULL, "a", 0, 1, "a" },
	{ __LINE__, "", "session:42", 0, 10, "session:42" },
	{ __LINE__, NULL, "", 0, 0, "" },
	{ __LINE__, "alice", "a", 0, 8, "/alice/a" },
	{ __LINE__, "alice", "", 0, 7, "/alice/" },
	{ __LINE__, "a/b", "c", 0, 8, "/a%2Fb/c" },
	{ __LINE__, "a%2Fb", "c", 0, 10, "/a%252Fb/c" },
	{ __LINE__, "%", "x", 0, 6, "/%25/x" },
	{ __LINE__, "/", "x", 0, 6, "/%2F/x" },
	{ __LINE__, "t\x01\x1f\x7fu", "x", 0, 14, "/t%01%1F%7Fu/x" },
	{ __LINE__, "b\xc3\xa9", "x", 0, 6, "/b\xc3\xa9/x" },
	{ __LINE__, "x y@example.org", "n", 0, 18, "/x y@example.org/n" },
	/* The buffer must hold the key and its NUL. */
	{ __LINE__, "ab", "c", 6, 5, "/ab/c" },
	{ __LINE__, "ab", "c", 5, -1, "" },
	{ __LINE__, "ab", "", 5, 4, "/ab/" },
	{ __LINE__, "ab", "", 4, -1, "" },
	{ __LINE__, "/", "", 6, 5, "/%2F/" },
	{ __LINE__, "/", "", 5, -1, "" },
	{ __LINE__, NULL, "abc", 4, 3, "abc" },
	{ __LINE__, NULL, "abc", 3, -1, "" },
	{ __LINE__, "a", "b", 1, -1, "" },
};

START_TEST(test_tenant_key)
{
	const struct key_case *c = &key_cases[_i];
	char key[LC_KEY_MAX + 1];
	size_t cap = c->cap != 0 ? c->cap : sizeof(key);
	int len;

	memset(key, 'z', sizeof(key));
	len = request_tenant_key(c->tenant, c->name, key, cap);
	ck_assert_msg(len == c->len, "line %d: length %d, want %d", c->line,
	    len, c->len);
	ck_assert_msg(strcmp(key, c->key) == 0, "line %d: key '%s', want '%s'",
	    c->line, key, c->key);
}
END_TEST

/* No two (tenant, name) pairs share a key; none is a default name. */
START_TEST(test_tenant_key_distinct)
{
	static const char *const tenants[] = { NULL, "a", "a/b", "a%2Fb",
	    "a%252Fb", "a/", "/a", "%", "%25", "a\x01", "a%01", "A" };
	static const char *const names[] = { "b", "b/c", "2Fb", "%2Fb",
	    "a", "x" };
	char keys[12 * 6][LC_KEY_MAX + 1];
	size_t nt = sizeof(tenants) / sizeof(tenants[0]);
	size_t nn = sizeof(names) / sizeof(names[0]);
	size_t i, j, k = 0;

	ck_assert_uint_eq(nt * nn, sizeof(keys) / sizeof(keys[0]));
	for (i = 0; i < nt; i++) {
		for (j = 0; j < nn; j++) {
			ck_assert_int_ge(request_tenant_key(tenants[i],
			    names[j], keys[k], sizeof(keys[k])), 1);
			/* A name with '/' is never valid, so it is only
			 * here to prove that even it cannot collide. */
			ck_assert((tenants[i] != NULL) == (keys[k][0] == '/'));
			k++;
		}
	}
	for (i = 0; i < k; i++)
		for (j = i + 1; j < k; j++)
			ck_assert_msg(strcmp(keys[i], keys[j]) != 0,
			    "keys %zu and %zu are both '%s'", i, j, keys[i]);
}
END_TEST

/* request_scope: one parsed request, one REMOTE_USER, what comes out. */
static const struct scope_case {
	int         line;
	const char *method;
	const char *uri;
	const char *user;        /* REMOTE_USER */
	bool        deny;        /* anonymous = deny */
	int         status;      /* 0: success */
	const char *msg;         /* substring of the message on error */
	const char *key;         /* key, or key_prefix for a list */
	const char *after;       /* key_after */
	const char *skip;        /* key_skip, NULL for none */
	size_t      nslen;
} scope_cases[] = {
	/* The default namespace: keys are the names. */
	{ __LINE__, "POST", "/lock/a/acquire", NULL, false, 0, NULL,
	  "a", "", NULL, 0 },
	{ __LINE__, "POST", "/lock/a/release?token=" TOK, "", false, 0, NULL,
	  "a", "", NULL, 0 },
	{ __LINE__, "GET", "/lock/a%25b", NULL, false, 0, NULL,
	  "a%b", "", NULL, 0 },
	{ __LINE__, "GET", "/locks", NULL, false, 0, NULL, "", "", "/", 0 },
	{ __LINE__, "GET", "/locks?prefix=ab&after=abc", NULL, false, 0, NULL,
	  "ab", "abc", "/", 0 },
	{ __LINE__, "GET", "/locks?prefix=%2F", NULL, false, 0, NULL,
	  "/", "", "/", 0 },
	/* A tenant. */
	{ __LINE__, "POST", "/lock/a/acquire", "alice", false, 0, NULL,
	  "/alice/a", "", NULL, 7 },
	{ __LINE__, "POST", "/lock/a/renew?token=" TOK, "alice", true, 0,
	  NULL, "/alice/a", "", NULL, 7 },
	{ __LINE__, "POST", "/lock/a/cancel?request_id=" RID, "bob", false, 0,
	  NULL, "/bob/a", "", NULL, 5 },
	{ __LINE__, "HEAD", "/lock/%C3%A9", "a/b", false, 0, NULL,
	  "/a%2Fb/\xc3\xa9", "", NULL, 7 },
	{ __LINE__, "GET", "/locks", "alice", false, 0, NULL,
	  "/alice/", "", NULL, 7 },
	{ __LINE__, "GET", "/locks?prefix=s&after=s1", "alice", true, 0,
	  NULL, "/alice/s", "/alice/s1", NULL, 7 },
	{ __LINE__, "GET", "/locks?after=s1", "%", false, 0, NULL,
	  "/%25/", "/%25/s1", NULL, 5 },
	{ __LINE__, "GET", "/lock/x", "\x01", false, 0, NULL,
	  "/%01/x", "", NULL, 5 },
	{ __LINE__, "GET", "/lock/x", X128, false, 0, NULL,
	  "/" X128 "/x", "", NULL, 130 },
	/* Health is for everyone, and has no key. */
	{ __LINE__, "GET", "/healthz", NULL, true, 0, NULL, "", "", NULL, 0 },
	{ __LINE__, "GET", "/healthz", "alice", true, 0, NULL,
	  "", "", NULL, 7 },
	/* anonymous = deny */
	{ __LINE__, "POST", "/lock/a/acquire", NULL, true, 401,
	  "anonymous = deny", NULL, NULL, NULL, 0 },
	{ __LINE__, "POST", "/lock/a/acquire", "", true, 401,
	  "did not authenticate", NULL, NULL, NULL, 0 },
	{ __LINE__, "GET", "/locks", NULL, true, 401, NULL,
	  NULL, NULL, NULL, 0 },
	{ __LINE__, "GET", "/lock/a", NULL, true, 401, NULL,
	  NULL, NULL, NULL, 0 },
	/* Bad user names. */
	{ __LINE__, "GET", "/lock/x", X129, false, 400,
	  "REMOTE_USER) is longer than 128 bytes", NULL, NULL, NULL, 0 },
	{ __LINE__, "GET", "/lock/x", "a\xff", false, 400,
	  "not valid UTF-8", NULL, NULL, NULL, 0 },
	{ __LINE__, "GET", "/lock/x", "\xc3", true, 400,
	  "not valid UTF-8", NULL, NULL, NULL, 0 },
	{ __LINE__, "GET", "/healthz", X129, false, 400, NULL,
	  NULL, NULL, NULL, 0 },
};

START_TEST(test_scope)
{
	const struct scope_case *c = &scope_cases[_i];
	struct request_in in = { .method = c->method, .uri = c->uri };
	struct request r, before;
	struct request_error e;
	int rc;

	ck_assert_int_eq(request_parse(&in, &LIM, &r, &e), 0);
	before = r;
	rc = request_scope(&r, c->user, c->deny, &e);
	if (c->status != 0) {
		ck_assert_msg(rc == -1 && e.status == c->status, "line %d: rc "
		    "%d status %d, want %d", c->line, rc, e.status, c->status);
		ck_assert_str_eq(e.code, c->status == 401 ? "unauthorized" :
		    "bad_request");
		ck_assert_msg(c->msg == NULL || strstr(e.message, c->msg),
		    "line %d: message '%s' lacks '%s'", c->line, e.message,
		    c->msg);
		ck_assert_msg(memcmp(&r, &before, sizeof(r)) == 0,
		    "line %d: request changed on error", c->line);
		return;
	}
	ck_assert_msg(rc == 0, "line %d: %d %s", c->line, e.status,
	    e.message);
	ck_assert_msg(r.tenant == (c->user != NULL && c->user[0] != '\0'),
	    "line %d: tenant %d", c->line, r.tenant);
	ck_assert_msg(r.nslen == c->nslen, "line %d: nslen %zu, want %zu",
	    c->line, r.nslen, c->nslen);
	ck_assert_msg(strcmp(r.route == ROUTE_LIST ? r.key_prefix : r.key,
	    c->key) == 0, "line %d: key '%s' / '%s', want '%s'", c->line,
	    r.key, r.key_prefix, c->key);
	ck_assert_msg(strcmp(r.key_after, c->after) == 0, "line %d: after "
	    "'%s', want '%s'", c->line, r.key_after, c->after);
	ck_assert_msg((r.key_skip == NULL && c->skip == NULL) ||
	    (r.key_skip != NULL && c->skip != NULL &&
	    strcmp(r.key_skip, c->skip) == 0), "line %d: skip", c->line);
	/* What clients see is left as it was. */
	ck_assert_str_eq(r.name, before.name);
	ck_assert_str_eq(r.prefix, before.prefix);
	ck_assert_str_eq(r.after, before.after);
	if (r.route != ROUTE_LIST && r.route != ROUTE_HEALTH)
		ck_assert_str_eq(r.key + r.nslen, r.name);
}
END_TEST

/* The longest name of the longest, all-encoded tenant still fits. */
START_TEST(test_scope_longest)
{
	char uri[16 + REQ_NAME_MAX], user[REQ_TENANT_MAX + 1];
	struct request_in in = { .method = "GET", .uri = uri };
	struct request r;
	struct request_error e;

	snprintf(uri, sizeof(uri), "/lock/%s", X255);
	memset(user, '/', REQ_TENANT_MAX);
	user[REQ_TENANT_MAX] = '\0';
	ck_assert_int_eq(request_parse(&in, &LIM, &r, &e), 0);
	ck_assert_int_eq(request_scope(&r, user, false, &e), 0);
	ck_assert_uint_eq(r.nslen, REQ_NS_MAX);
	ck_assert_uint_eq(strlen(r.key), REQ_NS_MAX + REQ_NAME_MAX);
	ck_assert_str_eq(r.key + r.nslen, X255);
}
END_TEST

/* request_env_check: FastCGI parameter sets, small ones as table rows. */
static const struct env_case {
	int         line;
	const char *env[4];      /* NULL-terminated */
	int         status;      /* 0: accepted */
} env_cases[] = {
	{ __LINE__, { NULL }, 0 },
	{ __LINE__, { "REQUEST_METHOD=GET", "QUERY_STRING=", NULL }, 0 },
	{ __LINE__, { "CONTENT_LENGTH=16384", NULL }, 0 },
	{ __LINE__, { "CONTENT_LENGTH=", NULL }, 0 },
	{ __LINE__, { "CONTENT_LENGTH=0", NULL }, 0 },
	{ __LINE__, { "CONTENT_LENGTH=16385", NULL }, 413 },
	{ __LINE__, { "CONTENT_LENGTH=99999999999999999999999999", NULL }, 413 },
	{ __LINE__, { "CONTENT_LENGTH=-1", NULL }, 400 },
	{ __LINE__, { "CONTENT_LENGTH=12a", NULL }, 400 },
	{ __LINE__, { "CONTENT_LENGTH= 1", NULL }, 400 },
	/* Only the exact names count. */
	{ __LINE__, { "CONTENT_LENGTHX=abc", "XCONTENT_LENGTH=abc", NULL }, 0 },
	{ __LINE__, { "CONTENT_LENGTH", NULL }, 0 },
};

START_TEST(test_env_table)
{
	const struct env_case *c = &env_cases[_i];
	struct request_error e;
	int rc = request_env_check((char *const *)c->env, &e);

	if (c->status == 0)
		ck_assert_msg(rc == 0, "case at line %d: refused %d: %s",
		    c->line, e.status, e.message);
	else
		ck_assert_msg(rc == -1 && e.status == c->status &&
		    strcmp(e.code, c->status == 413 ? "too_large" :
		    "bad_request") == 0, "case at line %d: rc %d status %d, "
		    "expected %d", c->line, rc, e.status, c->status);
	ck_assert_int_eq(request_env_check(NULL, &e), 0);
}
END_TEST

/* Counts, total size and URI lengths at and just over each cap. */
START_TEST(test_env_caps)
{
	static char *env[REQ_PARAMS_NMAX + 2];
	static char big[REQ_PARAMS_MAX + 64];
	static char names[REQ_PARAMS_NMAX + 1][16];
	struct request_error e;
	size_t i;

	for (i = 0; i <= REQ_PARAMS_NMAX; i++) {
		snprintf(names[i], sizeof(names[i]), "H%zu=v", i);
		env[i] = names[i];
	}
	env[REQ_PARAMS_NMAX] = NULL;
	ck_assert_int_eq(request_env_check(env, &e), 0);
	env[REQ_PARAMS_NMAX] = names[REQ_PARAMS_NMAX];
	env[REQ_PARAMS_NMAX + 1] = NULL;
	ck_assert_int_eq(request_env_check(env, &e), -1);
	ck_assert_int_eq(e.status, 413);

	/* QUERY_STRING and REQUEST_URI: REQ_URI_MAX bytes pass. */
	memcpy(big, "QUERY_STRING=", 13);
	memset(big + 13, 'q', REQ_URI_MAX);
	big[13 + REQ_URI_MAX] = '\0';
	env[0] = big;
	env[1] = NULL;
	ck_assert_int_eq(request_env_check(env, &e), 0);
	big[13 + REQ_URI_MAX] = 'q';
	big[14 + REQ_URI_MAX] = '\0';
	ck_assert_int_eq(request_env_check(env, &e), -1);
	ck_assert_int_eq(e.status, 413);
	memcpy(big, "REQUEST_URI=/", 13);
	ck_assert_int_eq(request_env_check(env, &e), -1);
	ck_assert_int_eq(e.status, 413);

	/* One parameter over the total. */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "HTTP_X=", 7);
	ck_assert_int_eq(request_env_check(env, &e), -1);
	ck_assert_int_eq(e.status, 413);
	big[REQ_PARAMS_MAX] = '\0';
	ck_assert_int_eq(request_env_check(env, &e), 0);
}
END_TEST

static Suite *
request_suite(void)
{
	Suite *s = suite_create("request");
	TCase *tc;

	tc = tcase_create("table");
	tcase_add_loop_test(tc, test_cases, 0, NCASES);
	suite_add_tcase(s, tc);

	tc = tcase_create("text");
	tcase_add_loop_test(tc, test_text_ok, 0,
	    (int)(sizeof(texts) / sizeof(texts[0])));
	tcase_add_test(tc, test_text_ok_null);
	suite_add_tcase(s, tc);

	tc = tcase_create("edges");
	tcase_add_test(tc, test_uri_size);
	tcase_add_test(tc, test_body_size);
	tcase_add_test(tc, test_body_nul);
	tcase_add_test(tc, test_out_cleared);
	tcase_add_test(tc, test_limits);
	suite_add_tcase(s, tc);

	tc = tcase_create("fastcgi params");
	tcase_add_loop_test(tc, test_env_table, 0,
	    (int)(sizeof(env_cases) / sizeof(env_cases[0])));
	tcase_add_test(tc, test_env_caps);
	suite_add_tcase(s, tc);

	tc = tcase_create("tenants");
	tcase_add_loop_test(tc, test_tenant_key, 0,
	    (int)(sizeof(key_cases) / sizeof(key_cases[0])));
	tcase_add_test(tc, test_tenant_key_distinct);
	tcase_add_loop_test(tc, test_scope, 0,
	    (int)(sizeof(scope_cases) / sizeof(scope_cases[0])));
	tcase_add_test(tc, test_scope_longest);
	suite_add_tcase(s, tc);

	tc = tcase_create("random");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_random);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(request_suite());
	int failed;

	/* Fork mode, unless CK_FORK=no asks for one process (a debugger,
	 * or LeakSanitizer seeing every test). */
	srunner_set_fork_status(sr, getenv("CK_FORK") != NULL ?
	    CK_FORK_GETENV : CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
