/*
 * store_pg.c: the PostgreSQL store (store.h).
 */
#include <stdio.h>

#include "store.h"

int
store_pg_open(struct store **out, const char *conninfo,
    const struct lockcore_opts *opts, char *err, size_t errlen)
{
	(void)opts;
	*out = NULL;
	if (err != NULL && errlen > 0)
		(void)snprintf(err, errlen, "%s: the PostgreSQL store is not "
		    "built", conninfo);
	return LC_E_DB;
}
