/*
 * reqid: random request_ids (reqid.h).
 */
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "reqid.h"

#define REQID_RANDOM 16         /* random bytes in an id */

int
reqid_make(char *buf, size_t size, const char *prefix)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char r[REQID_RANDOM];
	size_t got = 0, i, plen = strlen(prefix);
	ssize_t n;

	if (size < plen + 2 * sizeof(r) + 1)
		return -1;
	while (got < sizeof(r)) {
		n = getrandom(r + got, sizeof(r) - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	memcpy(buf, prefix, plen);
	for (i = 0; i < sizeof(r); i++) {
		buf[plen + 2 * i] = hex[r[i] >> 4];
		buf[plen + 2 * i + 1] = hex[r[i] & 0xf];
	}
	buf[plen + 2 * sizeof(r)] = '\0';
	return 0;
}
