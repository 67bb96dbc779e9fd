/*
 * notify.c: the payload of the store's NOTIFY (notify.h).
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "notify.h"

/* A decimal number of 1-19 digits (no sign, no blanks), then `end`. */
static bool
number(const char **p, char end, uint64_t *v)
{
	const char *s = *p;
	int n = 0;

	*v = 0;
	while (*s >= '0' && *s <= '9' && n < 19) {
		*v = *v * 10 + (uint64_t)(*s++ - '0');
		n++;
	}
	if (n == 0 || *s != end)
		return false;
	*p = s + 1;
	return true;
}

static int
hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' :
	    c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int
notify_parse(const char *payload, int64_t *host, uint64_t *kick, char *name,
    size_t size, size_t *namelen)
{
	const char *p = payload;
	uint64_t h;
	size_t n, i;
	int hi, lo;

	if (!number(&p, ' ', &h) || h > INT64_MAX || !number(&p, ' ', kick))
		return -1;
	n = strlen(p);
	if (n == 0 || n % 2 != 0 || n / 2 > size)
		return -1;
	for (i = 0; i < n / 2; i++) {
		if ((hi = hexval(p[2 * i])) < 0 ||
		    (lo = hexval(p[2 * i + 1])) < 0)
			return -1;
		name[i] = (char)(hi << 4 | lo);
	}
	*host = (int64_t)h;
	*namelen = n / 2;
	return 0;
}
