/*
 * reply.c: the worker's answers (reply.h).  Errors map to HTTP statuses in
 * one table (lc_errors) and one function (reply_lc_error).  A parked
 * request is answered with FastCGI records written here, since libfcgi
 * cannot answer a request whose streams it freed.
 */
#include <sys/socket.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fastcgi.h>

#include "clock.h"
#include "db.h"
#include "reply.h"

/*
 * FastCGI records are written as libfcgi writes them: content padded to a
 * multiple of FCGI_ALIGN bytes, at most FCGI_CHUNK bytes of content per
 * record (the longest aligned length a record's 16-bit length can hold).
 */
#define FCGI_ALIGN 8
#define FCGI_CHUNK (FCGI_MAX_LENGTH & ~(FCGI_ALIGN - 1))

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

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static int max_waiters;         /* named in too_many_waiters answers */

void
reply_init(int max)
{
	max_waiters = max;
}

static const char *
status_text(int status)
{
	size_t i;

	for (i = 0; i < NELEM(status_texts); i++)
		if (status_texts[i].status == status)
			return status_texts[i].text;
	return "Unknown";
}

int
reply_json(struct reply *r, int status, const char *extra, json_object *body,
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
		rc = reply_fcgi(r->fd, r->reqid, hdr, (size_t)n,
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

json_object *
reply_secs(int64_t ms)
{
	char buf[32];
	int64_t abs_ms = ms < 0 ? -ms : ms;

	snprintf(buf, sizeof(buf), "%s%" PRId64 ".%03" PRId64,
	    ms < 0 ? "-" : "", abs_ms / 1000, abs_ms % 1000);
	return json_object_new_double_s((double)ms / 1000.0, buf);
}

json_object *
reply_grant(const struct lock_grant *g, const char *name, int64_t ttl_ms)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "lock", json_object_new_string(name));
	json_object_object_add(o, "token", json_object_new_string(g->token));
	json_object_object_add(o, "fence", json_object_new_int64(g->fence));
	json_object_object_add(o, "ttl", reply_secs(ttl_ms));
	json_object_object_add(o, "acquired_at", reply_secs(g->acquired_at));
	json_object_object_add(o, "expires_at", reply_secs(g->expires_at));
	json_object_object_add(o, "owner", json_object_new_string(g->owner));
	return o;
}

void
reply_error(struct reply *r, int status, const char *code, const char *msg,
    const char *allow, bool head)
{
	json_object *o = json_object_new_object();
	char extra[64];

	json_object_object_add(o, "error", json_object_new_string(code));
	json_object_object_add(o, "message", json_object_new_string(msg));
	if (allow != NULL)
		snprintf(extra, sizeof(extra), "Allow: %s", allow);
	(void)reply_json(r, status, allow != NULL ? extra : NULL, o, head);
}

/*
 * 503 while lockcore's grace after an unclean shutdown runs: says until
 * when (wall clock), as Retry-After (whole seconds, rounded up) and in the
 * body.
 */
static void
reply_recovering(struct reply *r, const char *message)
{
	json_object *o = json_object_new_object();
	int64_t until = db_grace_until();
	int64_t left = until - clock_wall_ms();
	char extra[64];

	if (left < 0)
		left = 0;
	json_object_object_add(o, "error", json_object_new_string("unavailable"));
	json_object_object_add(o, "message", json_object_new_string(message));
	json_object_object_add(o, "recovering_until", reply_secs(until));
	json_object_object_add(o, "retry_after", reply_secs(left));
	snprintf(extra, sizeof(extra), "Retry-After: %" PRId64,
	    (left + 999) / 1000);
	(void)reply_json(r, 503, extra, o, false);
}

void
reply_lc_error(struct reply *r, int rc)
{
	const struct lc_error *e = NULL;
	char msg[512];
	size_t i;

	for (i = 0; i < NELEM(lc_errors) && e == NULL; i++)
		if (lc_errors[i].rc == rc)
			e = &lc_errors[i];
	if (e == NULL) {
		reply_error(r, 500, "internal", "unexpected internal error",
		    NULL, false);
		return;
	}
	if (rc == LC_E_RECOVERING) {
		reply_recovering(r, e->message);
		return;
	}
	if (rc == LC_E_TOO_MANY) {
		snprintf(msg, sizeof(msg), "%s: max_waiters is %d", e->message,
		    max_waiters);
		reply_error(r, e->status, e->code, msg, NULL, false);
	} else
		reply_error(r, e->status, e->code, e->message, NULL, false);
}

const char *
reply_lc_code(int rc)
{
	size_t i;

	for (i = 0; i < NELEM(lc_errors); i++)
		if (lc_errors[i].rc == rc)
			return lc_errors[i].code;
	return "internal";
}

/* A FastCGI record header of `type` for request `reqid`. */
static FCGI_Header
fcgi_header(int type, int reqid, size_t clen, size_t pad)
{
	FCGI_Header h;

	memset(&h, 0, sizeof(h));
	h.version = FCGI_VERSION_1;
	h.type = (unsigned char)type;
	h.requestIdB1 = (unsigned char)((reqid >> 8) & 0xff);
	h.requestIdB0 = (unsigned char)(reqid & 0xff);
	h.contentLengthB1 = (unsigned char)((clen >> 8) & 0xff);
	h.contentLengthB0 = (unsigned char)(clen & 0xff);
	h.paddingLength = (unsigned char)pad;
	return h;
}

/* Sends buf[0..len) on a non-blocking write, polling until `deadline`
 * (monotonic ms).  0, or -1. */
static int
send_all(int fd, const uint8_t *buf, size_t len, int64_t deadline)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = send(fd, buf + off, len - off,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		int left;

		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK) ||
		    (left = clock_ms_left(deadline, clock_mono_ms())) == 0 ||
		    poll(&p, 1, left) <= 0)
			return -1;
	}
	return 0;
}

/*
 * The content (hdr, then body and a newline unless body is NULL) goes in
 * FCGI_STDOUT records padded to FCGI_ALIGN, then the empty record that
 * ends FCGI_STDOUT, then FCGI_END_REQUEST: all in one buffer, one send.
 */
int
reply_fcgi(int fd, int reqid, const char *hdr, size_t hlen, const char *body,
    size_t blen)
{
	size_t clen = hlen + (body != NULL ? blen + 1 : 0);
	size_t cap, len = 0, sent;
	int64_t deadline = clock_mono_ms() + REPLY_WRITE_MS;
	FCGI_EndRequestRecord end;
	FCGI_Header h;
	uint8_t *buf, *content;
	int rc;

	/* The content first, at the end of the buffer; the records are
	 * built in front of it, never overtaking what they copy. */
	cap = 2 * clen + (clen / FCGI_CHUNK + 1) * (FCGI_HEADER_LEN +
	    FCGI_ALIGN) + FCGI_HEADER_LEN + sizeof(end);
	if ((buf = malloc(cap)) == NULL)
		return -1;
	content = buf + cap - clen;
	memcpy(content, hdr, hlen);
	if (body != NULL) {
		memcpy(content + hlen, body, blen);
		content[hlen + blen] = '\n';
	}
	for (sent = 0; sent < clen; ) {
		size_t n = clen - sent > FCGI_CHUNK ? FCGI_CHUNK : clen - sent;
		size_t pad = (FCGI_ALIGN - n % FCGI_ALIGN) % FCGI_ALIGN;

		h = fcgi_header(FCGI_STDOUT, reqid, n, pad);
		memcpy(buf + len, &h, sizeof(h));
		len += sizeof(h);
		memmove(buf + len, content + sent, n);
		len += n;
		memset(buf + len, 0, pad);
		len += pad;
		sent += n;
	}
	h = fcgi_header(FCGI_STDOUT, reqid, 0, 0);
	memcpy(buf + len, &h, sizeof(h));
	len += sizeof(h);
	memset(&end, 0, sizeof(end));
	end.header = fcgi_header(FCGI_END_REQUEST, reqid, sizeof(end.body), 0);
	end.body.protocolStatus = FCGI_REQUEST_COMPLETE;
	memcpy(buf + len, &end, sizeof(end));
	len += sizeof(end);

	rc = send_all(fd, buf, len, deadline);
	free(buf);
	return rc;
}
