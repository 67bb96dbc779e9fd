/*
 * libFuzzer harness for the configuration parser (common/conf.c).
 * Invariants: conf_parse() never crashes, and on failure says where.
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hl_conf c;
	char err[512];

	if (size > CONF_FILE_MAX)
		return 0;
	conf_defaults(&c);
	err[0] = '\0';
	if (conf_parse(&c, (const char *)data, size, "fuzz.conf", err,
	    sizeof(err)) != 0) {
		assert(strncmp(err, "fuzz.conf", 9) == 0);
	} else {
		assert(c.max_ttl_ms > 0 && c.default_ttl_ms > 0);
		assert(c.default_ttl_ms <= c.max_ttl_ms);
		assert(c.threads >= 1 && c.threads <= c.max_threads);
		assert(memchr(c.database, '\0', sizeof(c.database)) != NULL);
		assert(memchr(c.coord_socket, '\0',
		    sizeof(c.coord_socket)) != NULL);
	}
	return 0;
}
