/*
 * libFuzzer harness for the coordinator's wire protocol (coord/proto.c).
 * Decodes frames back to back as a peer's stream would deliver them.
 * Invariants: a decoded frame stays within the input, re-encodes to the
 * same bytes, and a malformed one is reported, never read past.
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t out[PROTO_FRAME_MAX];
	struct proto_msg m;
	size_t off = 0, used;
	int rc, n;

	while (off < size) {
		memset(&m, 0, sizeof(m));
		used = 0;
		rc = proto_decode(data + off, size - off, &m, &used);
		if (rc != PROTO_OK)
			break;
		assert(used >= PROTO_HDR_LEN && used <= size - off);
		assert(used <= PROTO_FRAME_MAX);
		if (m.name != NULL) {
			assert((const uint8_t *)m.name >= data + off);
			assert((const uint8_t *)m.name + m.namelen <=
			    data + off + used);
		}
		n = proto_encode(&m, out, sizeof(out));
		assert(n > 0);
		assert((size_t)n == used);
		/* ERROR carries the sender's version, which encode always
		 * writes as ours: compare its header only. */
		assert(memcmp(out, data + off, m.type == PROTO_ERROR ?
		    PROTO_HDR_LEN : used) == 0);
		off += used;
	}
	return 0;
}
