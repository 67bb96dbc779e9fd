/*
 * cli.h: the private header of the httplock command, "flock(1) for the
 * network", built on libhttplock.  httplock.1 is the reference for its
 * options and exit statuses, and the code must agree with it.
 *
 * The files and the direction of their calls:
 *
 *   main.c      start-up: parse, open the handle, run the command
 *   args.c      the command line: the command table, options, --help
 *   commands.c  acquire, release, renew, cancel, status, ls
 *   run.c       run: the command under a lease, its signals and its end
 *   lease.c     run's lease, renewed on a thread of its own
 *   spawn.c     starting run's command with only the descriptors it inherits
 *   acquire.c   an acquire that a signal cancels (acquire and run)
 *   signals.c   the signals acquire and run read from a signalfd
 *   output.c    everything the user sees: results, errors, exit statuses
 *
 *   main -> {args, spawn};  args -> {commands, run} (the command table);
 *   commands -> acquire;  run -> {commands, acquire, lease, spawn};
 *   acquire, commands, run -> signals;  all but spawn and signals -> output;
 *   and below them all libhttplock (httplock.h), hlclock.h and reqid.h.
 *
 * The library prints nothing; everything the user sees is printed here:
 * results on stdout, and at most one line per error on stderr, of the form
 * "httplock: <what>: <server code>: <message>".  A token is only ever
 * written to stdout (acquire) or to the environment of the command that
 * `run` starts, never to stderr.
 *
 * Threads.  acquire and run block SIGINT, SIGTERM, SIGHUP (and SIGCHLD)
 * before they start any thread and read them from a signalfd in the main
 * thread.  The acquire itself runs on a thread, so that a signal during a
 * long wait can cancel the queued request by its request_id (from a third
 * thread) instead of leaving it to be granted to nobody.  run renews the
 * lease on another thread while the main thread waits for the command, the
 * signals and the lease's deadline: the deadline is kept by the main
 * thread, so a renewal stuck in a server that does not answer still ends
 * the command in time.  libcurl's implicit global initialisation is
 * thread-safe since 7.84 (the "threadsafe" feature), so we do not call
 * curl_global_init() ourselves and need not link libcurl directly.
 */
#ifndef HTTPLOCK_CLI_H
#define HTTPLOCK_CLI_H

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/types.h>

#include "httplock.h"

/* Exit statuses: httplock.1, EXIT STATUS, is the reference. */
enum {
	XS_OK = 0,
	XS_HELD = 1,             /* the lock stayed held (run: -E CODE) */
	XS_USAGE = 2,
	XS_REFUSED = 3,          /* the server refused the request (4xx) */
	XS_NOT_HELD = 4,         /* the token does not hold the lock */
	XS_UNAVAILABLE = 5,      /* unreachable, 5xx, not httplock, local failure */
	XS_LOST = 6,             /* run: the lease was lost, the command stopped */
	XS_NOEXEC = 7,           /* run: the command could not be started */
	XS_SIGNAL = 128          /* + N: ended by signal N, as shells report it */
};

/* Options, one bit each, so that a command can say which ones it takes. */
enum {
	OPT_WAIT = 1 << 0,
	OPT_NOWAIT = 1 << 1,
	OPT_TTL = 1 << 2,
	OPT_OWNER = 1 << 3,
	OPT_REQID = 1 << 4,
	OPT_JSON = 1 << 5,
	OPT_PREFIX = 1 << 6,
	OPT_CONFLICT = 1 << 7,
	OPT_GRACE = 1 << 8
};

struct args;

/* A subcommand: what it takes and the function that carries it out. */
struct cmd {
	const char *name;
	int         nargs;           /* positional arguments after the name */
	const char *arg2;            /* the second one's name, for messages */
	unsigned    opts;            /* OPT_* it accepts */
	int         command;         /* 1: followed by COMMAND [ARGS...] */
	int       (*fn)(struct httplock *, const struct args *);
};

/* The parsed command line. */
struct args {
	const struct cmd *cmd;
	const char *pos[2];          /* NAME, TOKEN or REQUEST_ID */
	int         npos;
	char      **command;         /* run: argv of the command */
	const char *url;
	const char *user;            /* USER:PASS or NULL */
	const char *netrc_file;
	double      wait;            /* < 0: the server's max_wait */
	double      ttl;             /* 0: the server's default */
	double      grace;
	const char *owner;
	const char *request_id;
	const char *prefix;
	int         json;
	int         conflict_exit;
	unsigned    seen;            /* OPT_* given */
};

/* args.c */
/* Parses the command line into *a.  Returns 0, 1 to exit 0 (help,
 * version: printed), or -1 on a usage error (printed). */
int	args_parse(int, char **, struct args *);

/* commands.c: each returns the exit status httplock.1 documents. */
int	cmd_acquire(struct httplock *, const struct args *);
int	cmd_release(struct httplock *, const struct args *);
int	cmd_renew(struct httplock *, const struct args *);
int	cmd_cancel(struct httplock *, const struct args *);
int	cmd_status(struct httplock *, const struct args *);
int	cmd_ls(struct httplock *, const struct args *);
int	commands_release(struct httplock *, const char *, const char *);

/* run.c */
int	cmd_run(struct httplock *, const struct args *);

/* acquire.c */
enum httplock_code acquire_interruptible(struct httplock *,
	    const struct args *, int, struct httplock_grant *,
	    struct httplock_error *, int *);
int	acquire_interrupted(const char *, int);

/* lease.c */
/*
 * The lease that run keeps alive.  The renew thread renews it and moves
 * `deadline` on; the main thread reads `deadline` and `not_held` through
 * lease_lost().  All fields after `mu` are under mu.
 */
struct lease {
	struct httplock       *h;
	const char            *name;
	const char            *token;
	double                 ttl;
	int                    wake[2];  /* a pipe, written to on not_held and on exit */
	pthread_t              tid;
	int                    started;  /* tid runs the renew thread */

	pthread_mutex_t        mu;
	pthread_cond_t         cv;       /* broadcast when stop or done is set */
	double                 base;     /* monotonic: deadline was counted from here */
	double                 deadline; /* monotonic: the lease lasts at least till here */
	enum httplock_code     last;     /* the last failed renewal, or OK */
	struct httplock_error  err;      /* its error */
	int                    not_held; /* the server said the lease is gone */
	int                    stop;     /* the main thread is done with us */
	int                    done;     /* the thread is about to return */
};
double	lease_first_deadline(const struct httplock_grant *, double, double,
	    double, double);
int	lease_init(struct lease *, struct httplock *, const char *,
	    const struct httplock_grant *, double, double, double);
int	lease_start(struct lease *);
int	lease_lost(struct lease *, double, int, double *);
void	lease_halt(struct lease *);
int	lease_stop(struct lease *, double);

/* spawn.c */
void	spawn_init(void);
pid_t	spawn(char **, const sigset_t *, int);

/* signals.c */
void	signals_set(sigset_t *, int);
int	signals_take(const sigset_t *, sigset_t *);
int	signals_read(int);
const char *signals_name(int);

/* output.c */
#define OUT_LINE_MAX 512        /* longest error text we format */
void	out_credentials_given(int);
void	out_json_str(FILE *, const char *);
void	out_text_str(FILE *, const char *);
void	out_grant_json(const struct httplock_grant *);
void	out_format_error(char *, size_t, enum httplock_code,
	    const struct httplock_error *, const char *);
int	out_fail(const char *, const char *, enum httplock_code,
	    const struct httplock_error *, const char *);
int	out_flush(const char *);
void	out_usage_error(const char *, ...)
	    __attribute__((format(printf, 1, 2)));

#endif /* HTTPLOCK_CLI_H */
