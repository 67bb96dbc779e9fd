/*
 * log: one logging interface for the worker and the coordinator.  Messages
 * go to stderr (which lighttpd and Apache collect in their error logs)
 * until log_to_syslog() is called.  Never pass a token or a password here.
 */
#ifndef HTTPLOCK_LOG_H
#define HTTPLOCK_LOG_H

#include <stdnoreturn.h>

#define LOG_FMT(a, b) __attribute__((format(printf, a, b)))

/*
 * `ident` prefixes each line ("httplock-worker[1234]: ...").  Debug lines
 * are on if `debug` or if the environment has HTTPLOCK_DEBUG=1.
 */
void log_init(const char *ident, int debug);
/* Nonzero when log_debug() writes: to skip work done only for its lines. */
int log_debug_enabled(void);
void log_to_syslog(void);

void log_warn(const char *fmt, ...) LOG_FMT(1, 2);    /* appends strerror(errno) */
void log_warnx(const char *fmt, ...) LOG_FMT(1, 2);
void log_info(const char *fmt, ...) LOG_FMT(1, 2);
void log_debug(const char *fmt, ...) LOG_FMT(1, 2);
noreturn void fatal(const char *fmt, ...) LOG_FMT(1, 2);   /* exit(1) */
noreturn void fatalx(const char *fmt, ...) LOG_FMT(1, 2);

#endif /* HTTPLOCK_LOG_H */
