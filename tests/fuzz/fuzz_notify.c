/*
 * libFuzzer harness for notify_parse() (coord/notify.c), which reads the
 * payload of a NOTIFY that anyone who may connect to the database can
 * send.  The input, made a C string, is parsed into a buffer of its exact
 * size (so ASan sees a byte written past it).  Invariants: on success the
 * key is 1..PROTO_NAME_MAX bytes and printing host, kick and key back in
 * the payload's form gives an input that parses to the same; on failure
 * nothing more is asserted than that the call returned.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notify.h"
#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in, *name, *again, *name2;
	int64_t host, host2;
	uint64_t kick, kick2;
	size_t len, len2, i, n;

	if (size > 4 * PROTO_NAME_MAX)
		return 0;
	if ((in = malloc(size + 1)) == NULL ||
	    (name = malloc(PROTO_NAME_MAX)) == NULL)
		abort();
	memcpy(in, data, size);
	in[size] = '\0';
	if (notify_parse(in, &host, &kick, name, PROTO_NAME_MAX, &len) == 0) {
		assert(len >= 1 && len <= PROTO_NAME_MAX);
		assert(host >= 0);
		n = 2 * 21 + 2 * len + 3;
		if ((again = malloc(n)) == NULL ||
		    (name2 = malloc(PROTO_NAME_MAX)) == NULL)
			abort();
		i = (size_t)snprintf(again, n, "%" PRId64 " %" PRIu64 " ",
		    host, kick);
		for (size_t k = 0; k < len; k++)
			i += (size_t)snprintf(again + i, n - i, "%02x",
			    (unsigned char)name[k]);
		assert(notify_parse(again, &host2, &kick2, name2,
		    PROTO_NAME_MAX, &len2) == 0);
		assert(host2 == host && kick2 == kick && len2 == len &&
		    memcmp(name, name2, len) == 0);
		free(again);
		free(name2);
	}
	free(name);
	free(in);
	return 0;
}
