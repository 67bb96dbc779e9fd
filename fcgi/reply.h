/*
 * reply: every answer the worker writes.  Answers are JSON; lockcore's
 * errors reach the client through one table (reply_lc_error).  An answer
 * goes to the FastCGI request a pool thread serves through libfcgi, or,
 * for a parked acquire whose libfcgi streams are gone, as FastCGI records
 * written on its connection directly (reply_fcgi).
 */
#ifndef HTTPLOCK_REPLY_H
#define HTTPLOCK_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <fcgiapp.h>
#include <json.h>

#include "lockcore.h"

/* Where an answer goes: the FastCGI request a thread serves, or, for a
 * parked acquire, its connection and FastCGI request id. */
struct reply {
	FCGX_Request *fr;          /* NULL: parked, answered on fd */
	int           fd;
	int           reqid;
};

/* The per-lock cap of waiters that a too_many_waiters answer names.
 * Call once, before the threads start. */
void reply_init(int max_waiters);

/*
 * Writes an answer: status, JSON content type, an optional extra header
 * (formatted "Name: value"), and the body unless `head`.  Consumes `body`.
 * 0, or -1 if the connection to the web server failed.
 */
int reply_json(struct reply *r, int status, const char *extra,
    json_object *body, bool head);
/* An error answer {"error": code, "message": msg}, with an Allow header
 * when `allow` is not NULL. */
void reply_error(struct reply *r, int status, const char *code,
    const char *msg, const char *allow, bool head);
/* Answers lockcore error rc with its status and code (the one table). */
void reply_lc_error(struct reply *r, int rc);
/* The API's error code of lockcore error rc, for log lines. */
const char *reply_lc_code(int rc);

/* Milliseconds as a JSON number of seconds with three decimals. */
json_object *reply_secs(int64_t ms);
/* A grant of lock `name` (as the client calls it; g->name is the key) as
 * JSON; ttl_ms is the lease it was given or renewed with. */
json_object *reply_grant(const struct lock_grant *g, const char *name,
    int64_t ttl_ms);

/*
 * Writes a whole response (hdr, then body and a newline unless body is
 * NULL) as FastCGI records on connection fd, for request reqid, and ends
 * the request.  Waits up to REPLY_WRITE_MS (monotonic) for a socket that
 * does not take it at once.  0, or -1 if the connection failed.
 */
#define REPLY_WRITE_MS 1000
int reply_fcgi(int fd, int reqid, const char *hdr, size_t hlen,
    const char *body, size_t blen);

#endif /* HTTPLOCK_REPLY_H */
