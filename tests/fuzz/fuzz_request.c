/*
 * libFuzzer harness for the request parser (fcgi/request.c).  The input is
 * split on NUL bytes into method, URI, script name, content type,
 * Lock-Token header and body, so the fuzzer reaches every field; the same
 * fields are then checked as raw FastCGI parameters (request_env_check).
 * Invariant: request_parse() either succeeds with a known route and a
 * valid name, or fails with a 4xx and an error code.  A parsed request is
 * then scoped (request_scope) twice: to the default namespace, and to the
 * Lock-Token field taken as REMOTE_USER; its key is the namespace followed
 * by the name, and only a tenant's starts with '/' (but a default-namespace
 * list's prefix may: its key_skip "/" then leaves every key out).
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_scope(struct request rq, const char *user)
{
	struct request_error err;
	const char *k;

	if (request_scope(&rq, user, false, &err) != 0) {
		assert(err.status == 400 && user != NULL && user[0] != '\0');
		return;
	}
	assert(rq.tenant == (user != NULL && user[0] != '\0'));
	assert(rq.nslen <= REQ_NS_MAX && rq.nslen != 1);
	k = rq.route == ROUTE_LIST ? rq.key_prefix : rq.key;
	assert(strlen(k) <= LC_KEY_MAX);
	if (rq.route == ROUTE_HEALTH)
		return;
	/*
	 * Only a tenant's keys start with '/'.  A list in the default
	 * namespace may still ask for a prefix starting with '/' (names
	 * never do): it answers an empty list, as its key_skip "/" leaves
	 * out every key the prefix could match.
	 */
	assert((k[0] == '/') == rq.tenant ||
	    (rq.route == ROUTE_LIST && !rq.tenant && rq.prefix[0] == '/'));
	if (rq.route == ROUTE_LIST) {
		assert(strcmp(k + rq.nslen, rq.prefix) == 0);
		assert((rq.key_skip != NULL) == !rq.tenant);
	} else
		assert(strcmp(k + rq.nslen, rq.name) == 0);
}

#define FIELDS 6

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct request_limits lim = { 30000, 3600000, 30000 };
	struct request_in in;
	struct request rq;
	struct request_error err;
	char *copy, *f[FIELDS] = { NULL }, *envp[FIELDS + 1];
	size_t i, start = 0, n = 0, bodylen = 0;

	if (size > 64 * 1024)
		return 0;
	if ((copy = malloc(size + 1)) == NULL)
		return 0;
	memcpy(copy, data, size);
	copy[size] = '\0';
	for (i = 0; i <= size && n < FIELDS; i++) {
		if (i == size || copy[i] == '\0') {
			f[n++] = copy + start;
			if (n == FIELDS)
				bodylen = size - start;
			start = i + 1;
		}
	}
	memset(&in, 0, sizeof(in));
	in.method = f[0];
	in.uri = f[1];
	in.script_name = f[2];
	in.content_type = f[3];
	in.lock_token = f[4];
	in.body = f[5];
	in.bodylen = f[5] != NULL ? bodylen : 0;

	if (request_parse(&in, &lim, &rq, &err) == 0) {
		assert(rq.route > ROUTE_NONE && rq.route <= ROUTE_HEALTH);
		if (rq.route != ROUTE_LIST && rq.route != ROUTE_HEALTH) {
			size_t len = strlen(rq.name);
			assert(len >= 1 && len <= REQ_NAME_MAX);
			assert(memchr(rq.name, '/', len) == NULL);
			assert(request_text_ok(rq.name, len));
		}
		if (rq.route == ROUTE_RELEASE || rq.route == ROUTE_RENEW)
			assert(strlen(rq.token) == LC_TOKEN_LEN);
		if (rq.route == ROUTE_ACQUIRE) {
			assert(rq.ttl_ms > 0 && rq.ttl_ms <= lim.max_ttl_ms);
			assert(rq.timeout_ms >= 0 &&
			    rq.timeout_ms <= lim.max_wait_ms);
		}
		check_scope(rq, NULL);
		check_scope(rq, f[4]);
	} else {
		assert(err.status >= 400 && err.status < 500);
		assert(err.code != NULL && err.code[0] != '\0');
		assert(memchr(err.message, '\0', sizeof(err.message)) != NULL);
	}
	/* The same fields as raw FastCGI parameters ("NAME=value"). */
	for (i = 0; i < n; i++)
		envp[i] = f[i];
	envp[n] = NULL;
	if (request_env_check(envp, &err) != 0) {
		assert(err.status == 400 || err.status == 413);
		assert(err.code != NULL && err.code[0] != '\0');
		assert(memchr(err.message, '\0', sizeof(err.message)) != NULL);
	}
	free(copy);
	return 0;
}
