/*
 * reqid: random request_ids, for libhttplock (when the caller gives none)
 * and for the httplock command (which must know the id to cancel by it).
 */
#ifndef HTTPLOCK_REQID_H
#define HTTPLOCK_REQID_H

#include <stddef.h>

/*
 * Writes `prefix` and 32 random hexadecimal digits (16 bytes from
 * getrandom(2)) into buf[size], NUL-terminated.  Returns 0, or -1 if buf
 * is too small or getrandom fails; buf is then undefined.
 */
int reqid_make(char *buf, size_t size, const char *prefix);

#endif /* HTTPLOCK_REQID_H */
