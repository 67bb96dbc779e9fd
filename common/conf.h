/*
 * conf: httplock's one configuration file, `key = value` lines.
 *
 * The file is found at $HTTPLOCK_CONF, else SYSCONFDIR/httplock.conf.
 * Blank lines and lines starting with '#' are ignored; a value runs to the
 * end of the line with surrounding blanks removed.  Every key is checked:
 * an unknown key, a duplicate, or a value out of range is an error naming
 * the file, the line and the key.  Keys not in the file keep their defaults.
 */
#ifndef HTTPLOCK_CONF_H
#define HTTPLOCK_CONF_H

#include <stddef.h>
#include <stdint.h>

#define CONF_PATH_MAX 4096
#define CONF_SOCK_MAX 108        /* sizeof(sun_path) */
#define CONF_FILE_MAX (64 * 1024)

struct hl_conf {
	char    database[CONF_PATH_MAX];     /* database = /var/lib/httplock/httplock.db */
	char    store[CONF_PATH_MAX];        /* store = (empty: SQLite at
	                                        `database`) or a PostgreSQL
	                                        connection URI shared by hosts */
	char    coord_socket[CONF_SOCK_MAX]; /* coord_socket = /run/httplock/coord.sock */
	int64_t default_ttl_ms;              /* default_ttl = 30 (seconds) */
	int64_t max_ttl_ms;                  /* max_ttl = 3600 */
	int64_t max_wait_ms;                 /* max_wait = 30 */
	int64_t poll_ms;                     /* poll_interval = 0.1 */
	int64_t busy_timeout_ms;             /* busy_timeout = 5 */
	int     max_waiters;                 /* max_waiters = 1000 (per lock) */
	int64_t idle_reclaim_ms;             /* idle_reclaim = 300: a lock not
	                                        held, awaited or granted this
	                                        long loses its row */
	int     tenant_max_held;             /* tenant_max_held = 0 (no quota):
	                                        live grants per tenant */
	int     tenant_max_waiting;          /* tenant_max_waiting = 0: live
	                                        waiters per tenant */
	int     max_waiting;                 /* max_waiting = 1000 (per worker
	                                        process, all locks; never more
	                                        than its descriptors allow) */
	int     max_waiting_per_client;      /* max_waiting_per_client = 256
	                                        (per worker process and client
	                                        address, REMOTE_ADDR) */
	int     threads;                     /* threads = 8 (per worker, at start) */
	int     max_threads;                 /* max_threads = 512 (per worker) */
	int     synchronous_full;            /* synchronous = normal | full */
	int     crash_grace;                 /* crash_grace = yes | no: refuse
	                                        new grants after an unclean
	                                        shutdown until lost leases
	                                        have expired */
	int     anonymous_deny;              /* anonymous = allow | deny: may a
	                                        request without REMOTE_USER
	                                        use the default namespace */
	int     coord_autostart;             /* coord_autostart = no | yes: a
	                                        worker that finds no coordinator
	                                        starts one (shared hosting) */
	int64_t coord_idle_exit_ms;          /* coord_idle_exit = 300; 0: never */
	char    coord_binary[CONF_PATH_MAX]; /* coord_binary = (empty: the
	                                        httplock-coord next to the worker) */
	char    coord_log[CONF_PATH_MAX];    /* coord_log = (empty: /dev/null) */
};

/* Fills *c with the defaults above. */
void conf_defaults(struct hl_conf *c);

/*
 * Parses text[0..len) (not necessarily NUL-terminated) over the values in
 * *c.  `file` names the source in messages.  Returns 0, or -1 with a
 * message "FILE:LINE: KEY: what is wrong" in err[0..errlen).
 * On error *c may be partly updated.
 */
int conf_parse(struct hl_conf *c, const char *text, size_t len,
    const char *file, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* conf_defaults, then reads and parses the file at `path`. */
int conf_load(struct hl_conf *c, const char *path, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Writes ms as seconds, as the configuration file gives them: "30",
 * "0.250" (whole seconds, or three decimals). */
void conf_fmt_seconds(char *buf, size_t len, int64_t ms);

/* $HTTPLOCK_CONF if set and non-empty, else the compiled-in default. */
const char *conf_default_path(void);

/*
 * Checks the argument of a program's -s SOCKET, which names a Unix socket
 * to create.  Refuses what looks like a TCP address rather than a path:
 * no '/' and a ':' in it ("127.0.0.1:9000", "localhost:9000", "[::1]:9000")
 * or only digits ("9000"); "./name:1" and "/run/x:y.sock" are paths.  Also
 * refuses an empty path and one too long for sun_path.  Returns 0, or -1
 * with what is wrong in err[0..errlen).
 */
int conf_check_sockpath(const char *path, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * Parses a decimal number of seconds ("30", "0.25", "1.5"): 1 to 9 digits,
 * then optionally '.' and at least one digit, nothing else (no sign, no
 * blanks, no exponent; "1." and ".5" are invalid).  Digits past the
 * millisecond are dropped, so "0.0009" is 0.  Returns 0 and *ms, or -1
 * (and *ms untouched) if the syntax is bad or the value exceeds `max_ms`.
 * Callers that treat "too big" differently from "not a number" pass
 * INT64_C(999999999999) (the largest value it can return) and compare.
 */
int parse_seconds(const char *s, size_t len, int64_t max_ms, int64_t *ms)
    __attribute__((warn_unused_result));

#endif /* HTTPLOCK_CONF_H */
