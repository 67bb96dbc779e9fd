/*
 * autostart: a worker starts the coordinator when none answers
 * (coord_autostart = yes, for shared hosting where nobody else can run it).
 */
#ifndef HTTPLOCK_AUTOSTART_H
#define HTTPLOCK_AUTOSTART_H

#include "conf.h"

/*
 * Prepares autostart from the configuration and the path it was read
 * from (made absolute here).  Call once, before the threads start.  With
 * coord_autostart = no it does nothing; when the coordinator binary cannot
 * be found it logs why and autostart stays off.  The worker runs either way.
 */
void autostart_init(const struct hl_conf *c, const char *confpath);

/*
 * Called by a thread that could not connect to the coordinator, with the
 * connect's errno.  When nobody listens (ENOENT, ECONNREFUSED), starts a
 * detached httplock-coord, unless this process tried less than
 * AUTOSTART_RETRY_MS ago or another worker is starting one.  It does not
 * wait for the coordinator: the caller polls as usual and registers once
 * the coordinator is up.  Thread-safe; errors are logged and otherwise
 * ignored.
 */
void autostart_coord(int connect_errno);

#endif /* HTTPLOCK_AUTOSTART_H */
