/*
 * notify: the payload of the NOTIFY that lockcore's PostgreSQL store sends
 * on the channel httplock when a transaction frees room for another
 * host's waiter (lockcore/store_pg.c, "Waking across hosts"; the SQL is
 * pgschema.c's S_PUBLISH): "<host id> <waiter id> <lock key in hex>", two
 * decimal numbers and lower-case hex, one space apart.  Anyone who may
 * connect to the database can NOTIFY on that channel, so the coordinator
 * (pglisten.c) reads it as untrusted input.
 */
#ifndef HTTPLOCK_NOTIFY_H
#define HTTPLOCK_NOTIFY_H

#include <stddef.h>
#include <stdint.h>

/*
 * Parses payload (NUL-terminated) into *host, *kick and the key's bytes
 * in name[size] (not NUL-terminated), their number in *namelen: 0, or -1
 * if it is not such a payload (a number out of range, not hex, a key
 * empty or longer than size).
 */
int notify_parse(const char *payload, int64_t *host, uint64_t *kick,
    char *name, size_t size, size_t *namelen);

#endif /* HTTPLOCK_NOTIFY_H */
