/*
 * httplock: the command-line client, "flock(1) for the network".  One
 * program with subcommands (acquire, release, renew, cancel, status, ls,
 * run) on
 * top of libhttplock; httplock.1 is the reference for the options and the
 * exit statuses, and this file must agree with it.
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
 * thread, cancel_main) instead of leaving it to be granted to nobody.  run
 * renews the lease on another thread while the main thread waits for the
 * command, the signals and the lease's deadline: the deadline is kept by
 * the main thread, so a renewal stuck in a server that does not answer
 * still ends the command in time.  The command runs in a process group of
 * its own (the terminal's foreground group if we had the terminal), which
 * is what run signals, and we are the subreaper of its descendants, so
 * that their ends wake us too.  libcurl's implicit global initialisation is
 * thread-safe since 7.84 (the "threadsafe" feature), so we do not call
 * curl_global_init() ourselves and need not link libcurl directly.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "httplock.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

#define DEFAULT_URL     "http://127.0.0.1:8080/"
#define DEFAULT_GRACE   5.0          /* seconds between SIGTERM and SIGKILL */
#define SECS_MAX        1e9          /* any time argument */
#define CANCEL_RETRY    0.2          /* seconds between cancels of an interrupted acquire */
#define RETRY_MIN       0.05         /* seconds between failed renewals, at least */
#define RETRY_MAX       1.0          /* and at most */
#define FDS_MAX         1024         /* inherited descriptors we remember */

/* Exit statuses: httplock.1, EXIT STATUS, is the reference. */
enum {
	XS_OK = 0,
	XS_HELD = 1,             /* the lock stayed held (run: -E CODE) */
	XS_USAGE = 2,
	XS_REFUSED = 3,          /* the server refused the request (4xx) */
	XS_NOT_HELD = 4,         /* the token does not hold the lock */
	XS_UNAVAILABLE = 5,      /* unreachable, 5xx, not httplock, local failure */
	XS_LOST = 6,             /* run: the lease was lost, the command stopped */
	XS_NOEXEC = 7            /* run: the command could not be started */
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

/* getopt_long values of the long-only options. */
enum {
	LO_TTL = 256, LO_OWNER, LO_REQID, LO_JSON, LO_PREFIX, LO_GRACE,
	LO_URL, LO_NETRC_FILE
};

struct args;
struct cmd {
	const char *name;
	int         nargs;           /* positional arguments after the name */
	const char *arg2;            /* the second one's name, for messages */
	unsigned    opts;            /* OPT_* it accepts */
	int         command;         /* 1: followed by COMMAND [ARGS...] */
	int       (*fn)(struct httplock *, const struct args *);
};

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

static int cmd_acquire(struct httplock *, const struct args *);
static int cmd_release(struct httplock *, const struct args *);
static int cmd_renew(struct httplock *, const struct args *);
static int cmd_cancel(struct httplock *, const struct args *);
static int cmd_status(struct httplock *, const struct args *);
static int cmd_ls(struct httplock *, const struct args *);
static int cmd_run(struct httplock *, const struct args *);

static const struct cmd cmds[] = {
	{ "acquire", 1, NULL, OPT_WAIT | OPT_NOWAIT | OPT_TTL | OPT_OWNER |
	    OPT_REQID | OPT_JSON, 0, cmd_acquire },
	{ "release", 2, "TOKEN", 0, 0, cmd_release },
	{ "renew", 2, "TOKEN", OPT_TTL | OPT_JSON, 0, cmd_renew },
	{ "cancel", 2, "REQUEST_ID", OPT_JSON, 0, cmd_cancel },
	{ "status", 1, NULL, OPT_JSON, 0, cmd_status },
	{ "ls", 0, NULL, OPT_PREFIX | OPT_JSON, 0, cmd_ls },
	{ "run", 1, NULL, OPT_WAIT | OPT_NOWAIT | OPT_TTL | OPT_OWNER |
	    OPT_CONFLICT | OPT_GRACE, 1, cmd_run },
};

static const struct option longopts[] = {
	{ "url", required_argument, NULL, LO_URL },
	{ "user", required_argument, NULL, 'u' },
	{ "netrc-file", required_argument, NULL, LO_NETRC_FILE },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ "wait", required_argument, NULL, 'w' },
	{ "timeout", required_argument, NULL, 'w' },
	{ "nonblock", no_argument, NULL, 'n' },
	{ "no-wait", no_argument, NULL, 'n' },
	{ "conflict-exit-code", required_argument, NULL, 'E' },
	{ "ttl", required_argument, NULL, LO_TTL },
	{ "owner", required_argument, NULL, LO_OWNER },
	{ "request-id", required_argument, NULL, LO_REQID },
	{ "json", no_argument, NULL, LO_JSON },
	{ "prefix", required_argument, NULL, LO_PREFIX },
	{ "grace", required_argument, NULL, LO_GRACE },
	{ NULL, 0, NULL, 0 }
};

static const char usage_text[] =
"usage: httplock [--url URL] [-u USER:PASS] [--netrc-file FILE] COMMAND ...\n"
"\n"
"  acquire NAME [-w SECS | -n] [--ttl SECS] [--owner TEXT] [--request-id ID] [--json]\n"
"                   take the lock; print its token\n"
"  release NAME TOKEN\n"
"                   give the lock back\n"
"  renew NAME TOKEN [--ttl SECS] [--json]\n"
"                   extend the lease; print the new expiry (Unix time)\n"
"  cancel NAME REQUEST_ID [--json]\n"
"                   withdraw the acquire with that id from the queue, or\n"
"                   release its grant; print \"waiting\" or \"held\"\n"
"  status NAME [--json]\n"
"                   who holds the lock and how many wait\n"
"  ls [--prefix P] [--json]\n"
"                   held or awaited locks: name, holders, waiters\n"
"  run NAME [-w SECS | -n] [--ttl SECS] [--owner TEXT] [-E CODE] [--grace SECS]\n"
"      [--] COMMAND [ARGS...]\n"
"                   run COMMAND holding the lock, renewing its lease\n"
"\n"
"  --url URL        the server (default: $HTTPLOCK_URL, else " DEFAULT_URL ")\n"
"  -u, --user USER:PASS\n"
"                   web-server credentials (default: $HTTPLOCK_USER, else ~/.netrc)\n"
"  --netrc-file FILE\n"
"                   take credentials from FILE instead of ~/.netrc\n"
"  -w, --wait SECS  wait at most SECS for the lock (capped by the server's max_wait)\n"
"  -n, --nonblock   do not wait if the lock is held\n"
"  --ttl SECS       lease length (default: the server's default_ttl)\n"
"  --owner TEXT     a label shown by status\n"
"  --request-id ID  the acquire's id for safe retries (default: a random one)\n"
"  -E, --conflict-exit-code CODE\n"
"                   run: exit status when the lock stays held (default 1)\n"
"  --grace SECS     run: SIGTERM to SIGKILL when the lease is lost (default 5)\n"
"  --json           print JSON\n"
"  -h, --help       this text;  -V, --version  the version\n"
"\n"
"exit status:\n"
"  0  success; run: the command's status (128+N if signal N killed it)\n"
"  1  the lock stayed held: timeout or queue full (run: -E CODE)\n"
"  2  usage error\n"
"  3  the server refused the request (4xx, e.g. bad_request, auth)\n"
"  4  not held: the token does not hold the lock (expired, released, wrong),\n"
"     or cancel found no acquire with that id waiting or holding it\n"
"  5  the server is unreachable or unavailable (5xx), or a local failure\n"
"  6  run: the lease was lost; the command was terminated\n"
"  7  run: the command could not be started\n"
"\n"
"See httplock(1).\n";

/*
 * A command that run starts inherits the descriptors that were open when
 * we started, and none of ours (libcurl's sockets included): `ours` holds
 * the ranges of descriptor numbers that were free then, made close-on-exec
 * in the child.
 */
static struct {
	unsigned lo, hi;
} ours[FDS_MAX + 1];
static int nours = -1;               /* -1: unknown, mark nothing */
static long fd_limit;                /* highest descriptor + 1, for a fallback */

/* ---------------------------------------------------------------- helpers */

static double
mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Milliseconds until `deadline` (monotonic) for poll(2), rounded up;
 * -1 for no deadline. */
static int
poll_ms(double deadline)
{
	double ms;

	if (deadline <= 0)
		return -1;
	ms = ceil((deadline - mono_now()) * 1000.0);
	if (ms < 0)
		return 0;
	if (ms > INT_MAX)
		return INT_MAX;
	return (int)ms;
}

static struct timespec
mono_timespec(double t)
{
	struct timespec ts;

	ts.tv_sec = (time_t)t;
	ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

static void text_str(FILE *, const char *);
static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One line on stderr; the caller exits with XS_USAGE. */
static void
usage_error(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fputs("httplock: ", stderr);
	text_str(stderr, buf);                 /* arguments may hold newlines */
	fputs(" (see httplock --help)\n", stderr);
}

/*
 * Parses a number of seconds: a decimal >= 0 (> 0 if `positive`), at most
 * SECS_MAX.  Returns 0, or -1 with *errstr saying why.
 */
static int
parse_secs(const char *s, int positive, double *out, const char **errstr)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || *end != '\0' || s[0] == ' ' || s[0] == '\t' ||
	    isnan(v)) {
		*errstr = "not a number";
		return -1;
	}
	if (errno == ERANGE || !isfinite(v) || v > SECS_MAX) {
		*errstr = "out of range";
		return -1;
	}
	if (v < 0 || (positive && v <= 0)) {
		*errstr = positive ? "must be > 0" : "must be >= 0";
		return -1;
	}
	*out = v;
	return 0;
}

/* Parses an exit status, 0 to 255.  Returns 0, or -1. */
static int
parse_status(const char *s, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (end == s || *end != '\0' || errno != 0 || v < 0 || v > 255)
		return -1;
	*out = (int)v;
	return 0;
}

/* Writes `s` as a JSON string. */
static void
json_str(FILE *f, const char *s)
{
	const unsigned char *p;

	putc('"', f);
	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(f, "\\u%04x", *p);
		else
			putc(*p, f);
	}
	putc('"', f);
}

/* Writes `s` for a terminal: control characters become '?'. */
static void
text_str(FILE *f, const char *s)
{
	const unsigned char *p;

	for (p = (const unsigned char *)s; *p != '\0'; p++)
		putc(*p < 0x20 || *p == 0x7f ? '?' : *p, f);
}

/* Exit status for a library result; httplock.1 lists the same mapping. */
static int
exit_status(enum httplock_code code)
{
	switch (code) {
	case HTTPLOCK_OK:
		return XS_OK;
	case HTTPLOCK_TIMEOUT:
	case HTTPLOCK_TOO_MANY_WAITERS:
		return XS_HELD;
	case HTTPLOCK_NOT_HELD:
		return XS_NOT_HELD;
	case HTTPLOCK_CANCELLED:
	case HTTPLOCK_SUPERSEDED:
	case HTTPLOCK_BAD_REQUEST:
	case HTTPLOCK_AUTH:
		return XS_REFUSED;
	case HTTPLOCK_INVALID:
		return XS_USAGE;
	case HTTPLOCK_UNAVAILABLE:
	case HTTPLOCK_CONNECT:
	case HTTPLOCK_PROTOCOL:
	case HTTPLOCK_NOMEM:
	default:
		return XS_UNAVAILABLE;
	}
}

/*
 * Formats "<server code>: <message>" of an error into buf: the server's
 * code, or the library's name for the failure when there was no answer;
 * the message on one line, with `secret` (a token, may be NULL) cut out.
 */
static void
format_error(char *buf, size_t len, enum httplock_code code,
    const struct httplock_error *err, const char *secret)
{
	char msg[sizeof(err->message)];
	const char *what;
	size_t i, n, slen;
	char *p;

	what = err->server_code[0] != '\0' ? err->server_code :
	    httplock_strerror(code);
	n = strnlen(err->message, sizeof(err->message) - 1);
	memcpy(msg, err->message, n);
	msg[n] = '\0';
	for (i = 0; i < n; i++)
		if ((unsigned char)msg[i] < 0x20 || msg[i] == 0x7f)
			msg[i] = ' ';
	while (n > 0 && msg[n - 1] == ' ')
		msg[--n] = '\0';
	if (secret != NULL && (slen = strlen(secret)) > 0) {
		while ((p = strstr(msg, secret)) != NULL)
			memset(p, '*', slen);
	}
	if (n == 0 || strcmp(msg, what) == 0)
		snprintf(buf, len, "%s", what);
	else
		snprintf(buf, len, "%s: %s", what, msg);
}

static int user_given;                   /* -u or $HTTPLOCK_USER was given */

/* What to add to a 401's message: where credentials come from. */
static const char *
auth_hint(void)
{
	return user_given ?
	    "; the server refused the credentials of -u or $HTTPLOCK_USER" :
	    "; the server asks for credentials: give them with -u USER:PASS, "
	    "$HTTPLOCK_USER or ~/.netrc";
}

/* Prints "httplock: <verb> <name>: <code>: <message>" (and, after a 401,
 * where credentials come from) and returns the exit status for `code`. */
static int
fail(const char *verb, const char *name, enum httplock_code code,
    const struct httplock_error *err, const char *secret)
{
	char buf[512];

	format_error(buf, sizeof(buf), code, err, secret);
	fprintf(stderr, "httplock: %s", verb);
	if (name != NULL) {
		putc(' ', stderr);
		text_str(stderr, name);        /* still one line */
	}
	fprintf(stderr, ": %s%s\n", buf, code == HTTPLOCK_AUTH &&
	    err->http_status == 401 ? auth_hint() : "");
	return exit_status(code);
}

/* Flushes stdout; on failure says so and returns XS_UNAVAILABLE. */
static int
flush_stdout(const char *what)
{
	if (fflush(stdout) == 0 && !ferror(stdout))
		return XS_OK;
	fprintf(stderr, "httplock: %s: cannot write the output: %s\n", what,
	    strerror(errno));
	return XS_UNAVAILABLE;
}

/* A random request_id: 32 hex digits.  Returns 0, or -1. */
static int
make_request_id(char *buf, size_t len)
{
	unsigned char r[16];
	size_t i;

	if (len < 2 * sizeof(r) + 1 ||
	    getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		return -1;
	for (i = 0; i < sizeof(r); i++)
		snprintf(buf + 2 * i, 3, "%02x", r[i]);
	return 0;
}

static void
print_grant_json(const struct httplock_grant *g)
{
	fputs("{\"lock\":", stdout);
	json_str(stdout, g->lock);
	fputs(",\"token\":", stdout);
	json_str(stdout, g->token);
	printf(",\"fence\":%" PRId64 ",\"ttl\":%.3f,\"acquired_at\":%.3f,"
	    "\"expires_at\":%.3f,\"owner\":", g->fence, g->ttl, g->acquired_at,
	    g->expires_at);
	json_str(stdout, g->owner);
	fputs(",\"request_id\":", stdout);
	json_str(stdout, g->request_id);
	fputs("}\n", stdout);
}

/* ------------------------------------------------------------ signals */

/* The signals acquire and run take over; `chld` adds SIGCHLD. */
static void
signal_set(sigset_t *set, int chld)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
	if (chld)
		sigaddset(set, SIGCHLD);
}

/*
 * Blocks the signals of `set` (in this, the only thread) and returns a
 * signalfd for them, or -1 with a message printed.  *old gets the mask to
 * restore in a child.
 */
static int
signals_take(const sigset_t *set, sigset_t *old)
{
	int fd;

	if (sigprocmask(SIG_BLOCK, set, old) == -1 ||
	    (fd = signalfd(-1, set, SFD_CLOEXEC | SFD_NONBLOCK)) == -1) {
		fprintf(stderr, "httplock: signalfd: %s\n", strerror(errno));
		return -1;
	}
	return fd;
}

/* Reads one pending signal: its number, or 0 if none is pending. */
static int
signal_read(int sfd)
{
	struct signalfd_siginfo si;
	ssize_t n;

	n = read(sfd, &si, sizeof(si));
	if (n != (ssize_t)sizeof(si))
		return 0;
	return (int)si.ssi_signo;
}

/* The name of a signal that acquire and run catch. */
static const char *
signame(int sig)
{
	switch (sig) {
	case SIGINT:
		return "SIGINT";
	case SIGTERM:
		return "SIGTERM";
	case SIGHUP:
		return "SIGHUP";
	default:
		return "a signal";
	}
}

/* ------------------------------------------------------------ acquire */

/*
 * An acquire on its own thread, so that the main thread stays free to read
 * signals; after a signal, a third thread cancels it.  Fields after `mu`
 * are under mu.
 */
struct acq_job {
	struct httplock             *h;
	const char                  *name;
	struct httplock_acquire_opts ao;
	int                          donefd;   /* written to when done */
	struct httplock_grant        grant;    /* OUT */
	struct httplock_error        err;      /* OUT */
	enum httplock_code           rc;       /* OUT */

	pthread_mutex_t              mu;
	pthread_cond_t               cv;       /* broadcast when done is set */
	int                          done;     /* the acquire has returned */
};

static void *
acq_main(void *arg)
{
	struct acq_job *j = arg;

	j->rc = httplock_acquire(j->h, j->name, &j->ao, &j->grant, &j->err);
	pthread_mutex_lock(&j->mu);
	j->done = 1;
	pthread_cond_broadcast(&j->cv);
	pthread_mutex_unlock(&j->mu);
	if (write(j->donefd, "", 1) == -1) {
		/* The reader polls the pipe; it cannot be full after one byte. */
	}
	return NULL;
}

/* Cancels the job's request by its request_id until the acquire returns:
 * the request may not have reached the server at the first try. */
static void *
cancel_main(void *arg)
{
	struct acq_job *j = arg;
	struct httplock_error err;
	struct timespec ts;

	pthread_mutex_lock(&j->mu);
	while (!j->done) {
		pthread_mutex_unlock(&j->mu);
		(void)httplock_cancel(j->h, j->name, j->ao.request_id, NULL, &err);
		pthread_mutex_lock(&j->mu);
		ts = mono_timespec(mono_now() + CANCEL_RETRY);
		while (!j->done &&
		    pthread_cond_timedwait(&j->cv, &j->mu, &ts) == 0)
			;
	}
	pthread_mutex_unlock(&j->mu);
	return NULL;
}

/* Fills *err for a local failure and returns its code. */
static enum httplock_code
local_error(struct httplock_error *err, const char *what)
{
	memset(err, 0, sizeof(*err));
	err->code = HTTPLOCK_NOMEM;
	snprintf(err->message, sizeof(err->message), "%s: %s", what,
	    strerror(errno));
	return HTTPLOCK_NOMEM;
}

/*
 * Acquires `name` as the options in `a` say, reading signals from `sfd`
 * meanwhile.  The first SIGINT, SIGTERM or SIGHUP cancels the request by
 * its request_id; a grant that arrives anyway is released.  Returns the
 * library's code with *g and *err filled, and *sig the signal that
 * interrupted it (0 if none).  A second signal exits at once with 128 plus
 * its number.
 */
static enum httplock_code
acquire_interruptible(struct httplock *h, const struct args *a, int sfd,
    struct httplock_grant *g, struct httplock_error *err, int *sig)
{
	struct acq_job j;
	char reqid[HTTPLOCK_REQUEST_ID_MAX + 1];
	struct pollfd pfd[2];
	struct httplock_error rerr;
	pthread_condattr_t ca;
	pthread_t tid, ctid;
	int p[2], s, cancelling = 0;
	char c;

	memset(&j, 0, sizeof(j));
	*sig = 0;
	j.h = h;
	j.name = a->pos[0];
	j.ao.timeout = a->wait;
	j.ao.ttl = a->ttl;
	j.ao.owner = a->owner;
	j.ao.request_id = a->request_id;
	if (j.ao.request_id == NULL) {
		if (make_request_id(reqid, sizeof(reqid)) == -1)
			return local_error(err, "getrandom");
		j.ao.request_id = reqid;
	}
	if (pipe2(p, O_CLOEXEC) == -1)
		return local_error(err, "pipe");
	j.donefd = p[1];
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&j.cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&j.mu, NULL);
	if (pthread_create(&tid, NULL, acq_main, &j) != 0) {
		/* No thread: wait in this one, uninterruptibly. */
		j.rc = httplock_acquire(h, j.name, &j.ao, &j.grant, &j.err);
		goto out;
	}
	pfd[0].fd = p[0];
	pfd[0].events = POLLIN;
	pfd[1].fd = sfd;
	pfd[1].events = POLLIN;
	for (;;) {
		if (poll(pfd, 2, -1) == -1 && errno != EINTR)
			break;          /* cannot happen: then just wait */
		if ((pfd[0].revents & POLLIN) && read(p[0], &c, 1) == 1)
			break;
		if (!(pfd[1].revents & POLLIN) || (s = signal_read(sfd)) == 0)
			continue;
		if (*sig != 0) {
			/* Insisted: leave at once, maybe still queued. */
			fprintf(stderr, "httplock: acquire %s: interrupted by %s\n",
			    j.name, signame(s));
			_exit(128 + s);
		}
		*sig = s;
		if (pthread_create(&ctid, NULL, cancel_main, &j) == 0)
			cancelling = 1;
	}
	pthread_join(tid, NULL);
	if (cancelling)
		pthread_join(ctid, NULL);
out:
	pthread_cond_destroy(&j.cv);
	pthread_mutex_destroy(&j.mu);
	close(p[0]);
	close(p[1]);
	if (*sig != 0 && j.rc == HTTPLOCK_OK)
		(void)httplock_release(h, j.name, j.grant.token, &rerr);
	*g = j.grant;
	*err = j.err;
	return j.rc;
}

/* ------------------------------------------------------ simple commands */

static int
cmd_acquire(struct httplock *h, const struct args *a)
{
	struct httplock_grant g;
	struct httplock_error err;
	enum httplock_code rc;
	sigset_t set, old;
	int sfd, sig, xs;

	signal_set(&set, 0);
	if ((sfd = signals_take(&set, &old)) == -1)
		return XS_UNAVAILABLE;
	memset(&err, 0, sizeof(err));
	rc = acquire_interruptible(h, a, sfd, &g, &err, &sig);
	close(sfd);
	if (sig != 0) {
		fprintf(stderr, "httplock: acquire %s: interrupted by %s\n",
		    a->pos[0], signame(sig));
		return 128 + sig;
	}
	if (rc != HTTPLOCK_OK)
		return fail("acquire", a->pos[0], rc, &err, NULL);
	if (a->json)
		print_grant_json(&g);
	else
		printf("%s\n", g.token);
	if ((xs = flush_stdout("acquire")) != XS_OK) {
		/* Nobody can know the token now: give the lock back. */
		(void)httplock_release(h, a->pos[0], g.token, &err);
	}
	return xs;
}

static int
cmd_release(struct httplock *h, const struct args *a)
{
	struct httplock_error err;
	enum httplock_code rc;

	memset(&err, 0, sizeof(err));
	rc = httplock_release(h, a->pos[0], a->pos[1], &err);
	if (rc != HTTPLOCK_OK)
		return fail("release", a->pos[0], rc, &err, a->pos[1]);
	return XS_OK;
}

static int
cmd_renew(struct httplock *h, const struct args *a)
{
	struct httplock_grant g;
	struct httplock_error err;
	enum httplock_code rc;

	memset(&g, 0, sizeof(g));
	memset(&err, 0, sizeof(err));
	rc = httplock_renew(h, a->pos[0], a->pos[1], a->ttl, &g, &err);
	if (rc != HTTPLOCK_OK)
		return fail("renew", a->pos[0], rc, &err, a->pos[1]);
	if (a->json)
		print_grant_json(&g);
	else
		printf("%.3f\n", g.expires_at);
	return flush_stdout("renew");
}

static int
cmd_cancel(struct httplock *h, const struct args *a)
{
	struct httplock_error err;
	enum httplock_code rc;
	int was_held = 0;

	memset(&err, 0, sizeof(err));
	rc = httplock_cancel(h, a->pos[0], a->pos[1], &was_held, &err);
	if (rc != HTTPLOCK_OK)
		return fail("cancel", a->pos[0], rc, &err, a->pos[1]);
	if (a->json) {
		fputs("{\"lock\":", stdout);
		json_str(stdout, a->pos[0]);
		printf(",\"cancelled\":true,\"was\":\"%s\"}\n",
		    was_held ? "held" : "waiting");
	} else
		puts(was_held ? "held" : "waiting");
	return flush_stdout("cancel");
}

static int
cmd_status(struct httplock *h, const struct args *a)
{
	struct httplock_status st;
	struct httplock_error err;
	const struct httplock_holder *ho;
	enum httplock_code rc;
	double now;
	int i, n;

	memset(&err, 0, sizeof(err));
	rc = httplock_status(h, a->pos[0], &st, &err);
	if (rc != HTTPLOCK_OK)
		return fail("status", a->pos[0], rc, &err, NULL);
	n = st.nholders < HTTPLOCK_HOLDERS_MAX ? st.nholders : HTTPLOCK_HOLDERS_MAX;
	if (a->json) {
		fputs("{\"lock\":", stdout);
		json_str(stdout, a->pos[0]);
		printf(",\"held\":%s,\"holders\":[", st.held ? "true" : "false");
		for (i = 0; i < n; i++) {
			ho = &st.holders[i];
			fputs(i > 0 ? ",{\"owner\":" : "{\"owner\":", stdout);
			json_str(stdout, ho->owner);
			printf(",\"fence\":%" PRId64 ",\"acquired_at\":%.3f,"
			    "\"expires_at\":%.3f}", ho->fence, ho->acquired_at,
			    ho->expires_at);
		}
		printf("],\"waiters\":%ld}\n", st.waiters);
		return flush_stdout("status");
	}
	now = wall_now();
	fputs("lock:    ", stdout);
	text_str(stdout, a->pos[0]);
	printf("\nheld:    %s\n", st.held ? "yes" : "no");
	for (i = 0; i < n; i++) {
		ho = &st.holders[i];
		fputs("holder:  ", stdout);
		text_str(stdout, ho->owner[0] != '\0' ? ho->owner : "-");
		printf(" (fence %" PRId64 ", acquired %.1f s ago, expires in "
		    "%.1f s)\n", ho->fence, now - ho->acquired_at,
		    ho->expires_at - now);
	}
	printf("waiters: %ld\n", st.waiters);
	return flush_stdout("status");
}

static int
ls_one(const struct httplock_lock_info *info, void *arg)
{
	const struct args *a = arg;

	if (a->json) {
		fputs("{\"lock\":", stdout);
		json_str(stdout, info->lock);
		printf(",\"holders\":%ld,\"waiters\":%ld}\n", info->holders,
		    info->waiters);
	} else {
		text_str(stdout, info->lock);
		printf("\t%ld\t%ld\n", info->holders, info->waiters);
	}
	return ferror(stdout) ? 1 : 0;
}

static int
cmd_ls(struct httplock *h, const struct args *a)
{
	struct httplock_error err;
	enum httplock_code rc;

	memset(&err, 0, sizeof(err));
	rc = httplock_list(h, a->prefix, ls_one, (void *)(uintptr_t)a, &err);
	if (rc != HTTPLOCK_OK) {
		fflush(stdout);
		return fail("ls", a->prefix, rc, &err, NULL);
	}
	return flush_stdout("ls");
}

/* ---------------------------------------------------------------- run */

/*
 * The lease that run keeps alive.  The renew thread renews it every ttl/3
 * and moves `deadline` on; the main thread reads `deadline` and `not_held`
 * and stops the command when the lease is gone.  All fields after `mu` are
 * under mu.
 */
struct lease {
	struct httplock       *h;
	const char            *name;
	const char            *token;
	double                 ttl;
	int                    wake[2];  /* a pipe, written to on not_held and on exit */
	pthread_t              tid;
	int                    started;  /* tid runs renew_main() */

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

static void *
renew_main(void *arg)
{
	struct lease *l = arg;
	struct httplock_grant g;
	struct httplock_error err;
	enum httplock_code rc;
	struct timespec ts;
	double next, sent, retry;

	retry = l->ttl / 10;
	retry = retry < RETRY_MIN ? RETRY_MIN : retry > RETRY_MAX ? RETRY_MAX : retry;
	pthread_mutex_lock(&l->mu);
	next = l->base + (l->deadline - l->base) / 3;
	while (!l->stop) {
		if (mono_now() < next) {
			ts = mono_timespec(next);
			(void)pthread_cond_timedwait(&l->cv, &l->mu, &ts);
			continue;
		}
		if (mono_now() >= l->deadline)
			break;                  /* the main thread stops the command */
		pthread_mutex_unlock(&l->mu);
		memset(&err, 0, sizeof(err));
		sent = mono_now();
		rc = httplock_renew(l->h, l->name, l->token, l->ttl, &g, &err);
		pthread_mutex_lock(&l->mu);
		if (l->stop)
			break;
		if (rc == HTTPLOCK_OK) {
			l->last = HTTPLOCK_OK;
			if (sent + l->ttl > l->deadline) {
				l->base = sent;
				l->deadline = sent + l->ttl;
			}
			next = sent + l->ttl / 3;
		} else {
			l->last = rc;
			l->err = err;
			if (rc == HTTPLOCK_NOT_HELD) {
				l->not_held = 1;
				break;
			}
			/* Unreachable or refused: try again until the deadline. */
			next = mono_now() + retry;
		}
	}
	l->done = 1;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	if (write(l->wake[1], "", 1) == -1) {
		/* Nonblocking pipe, full: the main thread wakes anyway. */
	}
	return NULL;
}

/*
 * Sets up *l for the grant `g` (deadline: see first_deadline()).  Returns
 * 0, or -1 with errno set and nothing to undo.
 */
static int
lease_init(struct lease *l, struct httplock *h, const char *name,
    const struct httplock_grant *g, double ttl, double base, double deadline)
{
	pthread_condattr_t ca;
	int e;

	memset(l, 0, sizeof(*l));
	l->h = h;
	l->name = name;
	l->token = g->token;
	l->ttl = ttl;
	l->base = base;
	l->deadline = deadline;
	l->last = HTTPLOCK_OK;
	if (pipe2(l->wake, O_CLOEXEC | O_NONBLOCK) == -1)
		return -1;
	if ((e = pthread_condattr_init(&ca)) != 0)
		goto fail;
	if ((e = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC)) != 0 ||
	    (e = pthread_cond_init(&l->cv, &ca)) != 0) {
		pthread_condattr_destroy(&ca);
		goto fail;
	}
	pthread_condattr_destroy(&ca);
	if ((e = pthread_mutex_init(&l->mu, NULL)) != 0) {
		pthread_cond_destroy(&l->cv);
		goto fail;
	}
	return 0;
fail:
	close(l->wake[0]);
	close(l->wake[1]);
	errno = e;
	return -1;
}

/*
 * Stops the renew thread, waiting at most `wait` seconds for it to leave
 * the request it may be in.  Returns 1 once it has ended (or never ran) and
 * *l is freed; 0 if it is still inside a request to a server that does not
 * answer: then the process must leave with _exit(), freeing nothing.
 */
static int
lease_stop(struct lease *l, double wait)
{
	struct timespec ts;
	int done;

	pthread_mutex_lock(&l->mu);
	l->stop = 1;
	pthread_cond_broadcast(&l->cv);
	ts = mono_timespec(mono_now() + wait);
	while (l->started && !l->done &&
	    pthread_cond_timedwait(&l->cv, &l->mu, &ts) == 0)
		;
	done = !l->started || l->done;
	pthread_mutex_unlock(&l->mu);
	if (!done)
		return 0;
	if (l->started)
		pthread_join(l->tid, NULL);
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->mu);
	close(l->wake[0]);
	close(l->wake[1]);
	return 1;
}

static int
cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return (x > y) - (x < y);
}

/* Fills `ours` from the descriptors open now, at start. */
static void
remember_fds(void)
{
	static int open_fds[FDS_MAX];
	struct dirent *de;
	DIR *d;
	long fd;
	char *end;
	int i, n = 0, prev = -1;

	if ((fd_limit = sysconf(_SC_OPEN_MAX)) < 0 || fd_limit > INT_MAX)
		fd_limit = 1024;
	if ((d = opendir("/proc/self/fd")) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		fd = strtol(de->d_name, &end, 10);
		if (*end != '\0' || end == de->d_name || fd == dirfd(d))
			continue;
		if (n == FDS_MAX || fd < 0 || fd > INT_MAX) {
			closedir(d);
			return;         /* too many to tell: mark nothing */
		}
		open_fds[n++] = (int)fd;
	}
	closedir(d);
	qsort(open_fds, (size_t)n, sizeof(open_fds[0]), cmp_int);
	nours = 0;
	for (i = 0; i < n; i++) {
		if (open_fds[i] > prev + 1) {
			ours[nours].lo = (unsigned)(prev + 1);
			ours[nours++].hi = (unsigned)(open_fds[i] - 1);
		}
		prev = open_fds[i];
	}
	ours[nours].lo = (unsigned)(prev + 1);
	ours[nours++].hi = ~0U;
}

/* In the child: makes our descriptors close-on-exec.  Async-signal-safe. */
static void
mark_ours_cloexec(void)
{
	unsigned fd;
	int i;

	for (i = 0; i < nours; i++) {
		if (close_range(ours[i].lo, ours[i].hi, CLOSE_RANGE_CLOEXEC) == 0)
			continue;
		/* A kernel before 5.11. */
		for (fd = ours[i].lo; fd <= ours[i].hi && fd < (unsigned)fd_limit;
		    fd++)
			(void)fcntl((int)fd, F_SETFD, FD_CLOEXEC);
	}
}

static struct sigaction orig_sigpipe;    /* restored in the command */

/*
 * Starts argv in a process group of its own, with the signal mask `mask`;
 * if `tty` is set, that group becomes the foreground group of the terminal
 * on standard input.  Both sides call setpgid() and tcsetpgrp(), so that
 * neither the exec nor our first signal to the group can come first.  The
 * caller blocks SIGTTOU, which tcsetpgrp() from the new background group
 * would raise.  Returns the pid (which is also the group's id), or -1 with
 * errno set, the exec's own errno if it was the exec that failed (the
 * child is then reaped and the terminal taken back).
 */
static pid_t
spawn(char **argv, const sigset_t *mask, int tty)
{
	pid_t pid;
	ssize_t n;
	int p[2], e;

	if (pipe2(p, O_CLOEXEC) == -1)
		return -1;
	if ((pid = fork()) == -1) {
		e = errno;
		close(p[0]);
		close(p[1]);
		errno = e;
		return -1;
	}
	if (pid == 0) {
		/* Only async-signal-safe calls from here on. */
		close(p[0]);
		(void)setpgid(0, 0);
		if (tty)
			(void)tcsetpgrp(STDIN_FILENO, getpid());
		mark_ours_cloexec();
		(void)sigaction(SIGPIPE, &orig_sigpipe, NULL);
		(void)sigprocmask(SIG_SETMASK, mask, NULL);
		execvp(argv[0], argv);
		e = errno;
		if (write(p[1], &e, sizeof(e)) == -1) {
			/* Nothing left to tell it with. */
		}
		_exit(127);
	}
	close(p[1]);
	/* EACCES: the child has exec'd, after its own setpgid(). */
	(void)setpgid(pid, pid);
	if (tty)
		(void)tcsetpgrp(STDIN_FILENO, pid);
	do
		n = read(p[0], &e, sizeof(e));
	while (n == -1 && errno == EINTR);
	close(p[0]);
	if (n == (ssize_t)sizeof(e)) {
		while (waitpid(pid, NULL, 0) == -1 && errno == EINTR)
			;
		if (tty)
			(void)tcsetpgrp(STDIN_FILENO, getpgrp());
		errno = e;
		return -1;
	}
	return pid;
}

/* Says why the lease is lost (one line); *l is locked by the caller. */
static void
report_lost(const struct lease *l)
{
	char buf[512];

	if (l->not_held) {
		format_error(buf, sizeof(buf), l->last, &l->err, l->token);
		fprintf(stderr, "httplock: run %s: lease lost: %s; stopping the "
		    "command\n", l->name, buf);
	} else if (l->last != HTTPLOCK_OK) {
		format_error(buf, sizeof(buf), l->last, &l->err, l->token);
		fprintf(stderr, "httplock: run %s: lease lost: not renewed before "
		    "it expired (last error: %s); stopping the command\n",
		    l->name, buf);
	} else {
		fprintf(stderr, "httplock: run %s: lease lost: the server did not "
		    "answer before it expired; stopping the command\n", l->name);
	}
}

#define REAP_WAIT 1.0   /* after SIGKILL: seconds for the group to be reaped */

/* Reaps every child that has ended (we are the subreaper of the command's
 * descendants).  Returns 1 with *status set if `pid` is among them (or, with
 * `stops`, has stopped), else 0. */
static int
reap(pid_t pid, int stops, int *status)
{
	pid_t r;
	int st, found = 0;

	while ((r = waitpid(-1, &st, WNOHANG | (stops ? WUNTRACED : 0))) > 0) {
		if (r == pid) {
			*status = st;
			found = 1;
		}
	}
	return found;
}

/* 1 while any process of the group `pgid` remains (zombies included). */
static int
group_alive(pid_t pgid)
{
	return kill(-pgid, 0) == 0 || errno != ESRCH;
}

/*
 * The command was stopped (Ctrl-Z at the terminal it has): take the
 * terminal back and stop ourselves, so that the shell sees the job stopped.
 * Once continued, hand the terminal on again if the shell gave it to us
 * (fg, not bg), and continue the command.
 */
static void
job_stopped(pid_t pgid)
{
	if (tcgetpgrp(STDIN_FILENO) == pgid)
		(void)tcsetpgrp(STDIN_FILENO, getpgrp());
	(void)raise(SIGTSTP);
	if (tcgetpgrp(STDIN_FILENO) == getpgrp())
		(void)tcsetpgrp(STDIN_FILENO, pgid);
	(void)kill(-pgid, SIGCONT);
}

/*
 * Waits for the command `pid` (the leader of its own process group) while
 * passing on signals to its group and watching the lease.  `tty`: the
 * command's group is the terminal's foreground group.  When the lease is
 * lost, sets *lost and sends the group SIGTERM, then SIGKILL `grace`
 * seconds later if any of it is left; returns once the command has exited
 * and the group is gone (or REAP_WAIT after the SIGKILL).  Otherwise
 * returns when the command itself exits.  Returns the command's wait
 * status.
 */
static int
supervise(struct lease *l, pid_t pid, int sfd, int tty, double grace,
    int *lost)
{
	struct pollfd pfd[2];
	double deadline, kill_at = 0, give_up = 0, now, until;
	int status = 0, s, gone, exited = 0;
	char buf[64];

	pfd[0].fd = sfd;
	pfd[0].events = POLLIN;
	pfd[1].fd = l->wake[0];
	pfd[1].events = POLLIN;
	for (;;) {
		pthread_mutex_lock(&l->mu);
		deadline = l->deadline;
		gone = l->not_held;
		now = mono_now();
		if (!*lost && !exited && (gone || now >= deadline)) {
			*lost = 1;
			report_lost(l);
			(void)kill(-pid, SIGTERM);
			kill_at = now + grace;
		}
		pthread_mutex_unlock(&l->mu);
		/* Before any signal: once the group is gone, its id may be
		 * reused. */
		if (exited && (!*lost || !group_alive(pid) ||
		    (give_up > 0 && now >= give_up)))
			return status;
		if (*lost && kill_at > 0 && now >= kill_at) {
			(void)kill(-pid, SIGKILL);
			kill_at = 0;
			give_up = now + REAP_WAIT;
		}
		until = !*lost ? deadline : kill_at > 0 ? kill_at : give_up;
		if (poll(pfd, 2, poll_ms(until)) == -1 && errno != EINTR)
			kill_at = 0;    /* cannot happen; do not spin on it */
		if (pfd[1].revents & POLLIN)
			while (read(l->wake[0], buf, sizeof(buf)) > 0)
				;
		if (!(pfd[0].revents & POLLIN))
			continue;
		while ((s = signal_read(sfd)) != 0) {
			if (s != SIGCHLD) {
				/* kill(1) to us, or the terminal's signal
				 * when the command does not have it. */
				(void)kill(-pid, s);
				continue;
			}
			if (!reap(pid, tty && !exited, &status))
				continue;
			if (WIFSTOPPED(status))
				job_stopped(pid);
			else
				exited = 1;
		}
	}
}

/*
 * Sets the command's environment.  Returns 0, or -1 with errno set.
 */
static int
run_env(const struct args *a, const struct httplock_grant *g)
{
	char fence[32];

	snprintf(fence, sizeof(fence), "%" PRId64, g->fence);
	if (setenv("HTTPLOCK_NAME", a->pos[0], 1) == -1 ||
	    setenv("HTTPLOCK_TOKEN", g->token, 1) == -1 ||
	    setenv("HTTPLOCK_FENCE", fence, 1) == -1 ||
	    setenv("HTTPLOCK_URL", a->url, 1) == -1)
		return -1;
	return 0;
}

/*
 * The lease's first deadline.  Counted from when we sent the acquire, the
 * lease surely lasts until t_send + ttl; after a long wait that is too
 * early, and we count from the server's expires_at instead (assuming the
 * clocks agree), but never past t_recv + ttl nor below t_recv + ttl/3.
 */
static double
first_deadline(const struct httplock_grant *g, double ttl, double t_send,
    double t_recv, double w_recv)
{
	double est = g->expires_at - w_recv;

	if (est > ttl)
		est = ttl;
	if (est < ttl / 3)
		est = ttl / 3;
	if (t_send + ttl > t_recv + est)
		return t_send + ttl;
	return t_recv + est;
}

/* Releases the grant of a command that did not run, printing any error. */
static void
release_report(struct httplock *h, const char *name, const char *token)
{
	struct httplock_error err;
	enum httplock_code rc;

	memset(&err, 0, sizeof(err));
	if ((rc = httplock_release(h, name, token, &err)) != HTTPLOCK_OK)
		(void)fail("release", name, rc, &err, token);
}

#define STOP_WAIT 2.0   /* seconds for the renew thread to finish a request */
#define LOST_WAIT 0.2   /* the same when the server may be gone */

/*
 * run: acquire, start the command, renew until it exits, release.  Returns
 * the exit status httplock.1 documents; may _exit() instead when a request
 * to a server that does not answer is still running.
 */
static int
cmd_run(struct httplock *h, const struct args *a)
{
	struct httplock_grant g;
	struct httplock_error err;
	enum httplock_code rc;
	struct lease l;
	sigset_t set, old, ttou;
	double t_send, t_recv, ttl;
	int sfd, sig, status, lost = 0, xs, tty;
	pid_t pid;

	signal_set(&set, 1);
	if ((sfd = signals_take(&set, &old)) == -1)
		return XS_UNAVAILABLE;
	/* While the command has the terminal we are in the background: our
	 * messages and taking the terminal back must not stop us. */
	sigemptyset(&ttou);
	sigaddset(&ttou, SIGTTOU);
	(void)sigprocmask(SIG_BLOCK, &ttou, NULL);
	/* Orphans of the command become our children: their ends wake us. */
	(void)prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	memset(&err, 0, sizeof(err));
	t_send = mono_now();
	rc = acquire_interruptible(h, a, sfd, &g, &err, &sig);
	t_recv = mono_now();
	if (sig != 0) {
		fprintf(stderr, "httplock: acquire %s: interrupted by %s\n",
		    a->pos[0], signame(sig));
		close(sfd);
		return 128 + sig;
	}
	if (rc != HTTPLOCK_OK) {
		xs = fail("acquire", a->pos[0], rc, &err, NULL);
		close(sfd);
		return xs == XS_HELD ? a->conflict_exit : xs;
	}

	/* The server always says; if not, renew often. */
	ttl = g.ttl > 0 ? g.ttl : a->ttl > 0 ? a->ttl : 1.0;
	if (run_env(a, &g) == -1 || lease_init(&l, h, a->pos[0], &g, ttl,
	    t_recv, first_deadline(&g, ttl, t_send, t_recv, wall_now())) == -1) {
		fprintf(stderr, "httplock: run %s: %s\n", a->pos[0], strerror(errno));
		release_report(h, a->pos[0], g.token);
		close(sfd);
		return XS_NOEXEC;
	}
	if ((errno = pthread_create(&l.tid, NULL, renew_main, &l)) != 0) {
		fprintf(stderr, "httplock: run %s: cannot start renewing: %s\n",
		    a->pos[0], strerror(errno));
		release_report(h, a->pos[0], g.token);
		xs = XS_NOEXEC;
		goto out;
	}
	l.started = 1;
	/* The command gets the terminal if we have it now. */
	tty = isatty(STDIN_FILENO) && tcgetpgrp(STDIN_FILENO) == getpgrp();
	if ((pid = spawn(a->command, &old, tty)) == -1) {
		fprintf(stderr, "httplock: run %s: cannot run %s: %s\n", a->pos[0],
		    a->command[0], strerror(errno));
		release_report(h, a->pos[0], g.token);
		xs = XS_NOEXEC;
		goto out;
	}

	status = supervise(&l, pid, sfd, tty, a->grace, &lost);
	if (tty && tcgetpgrp(STDIN_FILENO) == pid)
		(void)tcsetpgrp(STDIN_FILENO, getpgrp());

	if (lost) {
		/* Gone, or about to expire on a server we cannot reach. */
		xs = XS_LOST;
		goto out;
	}
	xs = WIFEXITED(status) ? WEXITSTATUS(status) :
	    WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
	/* No renewal after this point; lease_stop() waits for it below. */
	pthread_mutex_lock(&l.mu);
	l.stop = 1;
	pthread_cond_broadcast(&l.cv);
	pthread_mutex_unlock(&l.mu);
	memset(&err, 0, sizeof(err));
	rc = httplock_release(h, a->pos[0], g.token, &err);
	if (rc == HTTPLOCK_NOT_HELD) {
		/* The lease ended before the command did. */
		(void)fail("release", a->pos[0], rc, &err, g.token);
		xs = XS_LOST;
	} else if (rc != HTTPLOCK_OK) {
		/* The lease was valid when the command ended and will expire
		 * by itself; the command's status stands. */
		(void)fail("release", a->pos[0], rc, &err, g.token);
	}
out:
	if (!lease_stop(&l, lost ? LOST_WAIT : STOP_WAIT)) {
		fflush(stdout);
		_exit(xs);
	}
	close(sfd);
	return xs;
}

/* ------------------------------------------------------------ arguments */

static const struct {
	unsigned    bit;
	const char *name;
} optnames[] = {
	{ OPT_WAIT, "-w" }, { OPT_NOWAIT, "-n" }, { OPT_TTL, "--ttl" },
	{ OPT_OWNER, "--owner" }, { OPT_REQID, "--request-id" },
	{ OPT_JSON, "--json" }, { OPT_PREFIX, "--prefix" },
	{ OPT_CONFLICT, "-E" }, { OPT_GRACE, "--grace" },
};

static const struct cmd *
find_cmd(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(cmds[i].name, name) == 0)
			return &cmds[i];
	return NULL;
}

/*
 * Takes the next argument that is not an option: the command's name first,
 * then its arguments.  Returns 1 if taken, 0 if it starts run's COMMAND,
 * -1 on a usage error (printed).
 */
static int
take_arg(struct args *a, const char *arg)
{
	if (a->cmd == NULL) {
		if ((a->cmd = find_cmd(arg)) == NULL) {
			usage_error("unknown command '%s'", arg);
			return -1;
		}
		return 1;
	}
	if (a->npos < a->cmd->nargs) {
		a->pos[a->npos++] = arg;
		return 1;
	}
	if (a->cmd->command)
		return 0;
	/* Not echoed: it may be a token. */
	usage_error("%s: too many arguments", a->cmd->name);
	return -1;
}

/* Handles one option.  Returns 0, 1 to exit 0 (help, version), -1 on a
 * usage error (printed). */
static int
take_opt(struct args *a, int c, const char *arg)
{
	const char *errstr;

	switch (c) {
	case 'h':
		fputs(usage_text, stdout);
		return 1;
	case 'V':
		printf("httplock %s\n", PACKAGE_VERSION);
		return 1;
	case LO_URL:
		a->url = arg;
		return 0;
	case 'u':
		a->user = arg;
		return 0;
	case LO_NETRC_FILE:
		a->netrc_file = arg;
		return 0;
	case 'w':
		a->seen |= OPT_WAIT;
		if (parse_secs(arg, 0, &a->wait, &errstr) == -1) {
			usage_error("-w %s: %s", arg, errstr);
			return -1;
		}
		return 0;
	case 'n':
		a->seen |= OPT_NOWAIT;
		a->wait = 0;
		return 0;
	case 'E':
		a->seen |= OPT_CONFLICT;
		if (parse_status(arg, &a->conflict_exit) == -1) {
			usage_error("-E %s: not an exit status (0-255)", arg);
			return -1;
		}
		return 0;
	case LO_TTL:
		a->seen |= OPT_TTL;
		if (parse_secs(arg, 1, &a->ttl, &errstr) == -1) {
			usage_error("--ttl %s: %s", arg, errstr);
			return -1;
		}
		return 0;
	case LO_GRACE:
		a->seen |= OPT_GRACE;
		if (parse_secs(arg, 0, &a->grace, &errstr) == -1) {
			usage_error("--grace %s: %s", arg, errstr);
			return -1;
		}
		return 0;
	case LO_OWNER:
		a->seen |= OPT_OWNER;
		a->owner = arg;
		return 0;
	case LO_REQID:
		a->seen |= OPT_REQID;
		a->request_id = arg;
		return 0;
	case LO_PREFIX:
		a->seen |= OPT_PREFIX;
		a->prefix = arg;
		return 0;
	case LO_JSON:
		a->seen |= OPT_JSON;
		a->json = 1;
		return 0;
	default:
		usage_error("unexpected option");
		return -1;
	}
}

/*
 * Parses the command line into *a: options anywhere before run's COMMAND,
 * the first other argument names the command.  Returns 0, 1 to exit 0
 * (help, version), or -1 on a usage error (printed).
 */
static int
parse_args(int argc, char **argv, struct args *a)
{
	const char *env;
	size_t i;
	int c, r;

	memset(a, 0, sizeof(*a));
	opterr = 0;
	a->url = (env = getenv("HTTPLOCK_URL")) != NULL && *env != '\0' ?
	    env : DEFAULT_URL;
	a->user = (env = getenv("HTTPLOCK_USER")) != NULL && *env != '\0' ?
	    env : NULL;
	a->wait = -1;
	a->grace = DEFAULT_GRACE;
	a->conflict_exit = XS_HELD;

	for (;;) {
		/* Arguments are taken here, options by getopt_long ("+":
		 * it stops at each argument and at "--"). */
		if (optind < argc && (argv[optind][0] != '-' ||
		    argv[optind][1] == '\0')) {
			if ((r = take_arg(a, argv[optind])) == -1)
				return -1;
			if (r == 0)
				break;
			optind++;
			continue;
		}
		if ((c = getopt_long(argc, argv, "+:hVu:w:nE:", longopts,
		    NULL)) == -1)
			break;
		if (c == '?' || c == ':') {
			/* Our own message: getopt's names argv[0], which
			 * may be libtool's .libs/ path. */
			if (optopt != 0 && optopt < 256)
				usage_error("option -%c %s", optopt, c == '?' ?
				    "is unknown" : "needs an argument");
			else
				usage_error("option %s %s", argv[optind - 1],
				    c == '?' ? "is unknown" : "needs an argument");
			return -1;
		}
		if ((r = take_opt(a, c, optarg)) != 0)
			return r;
	}
	/* After "--" everything is an argument. */
	while (optind < argc && (r = take_arg(a, argv[optind])) == 1)
		optind++;
	if (optind < argc && r == -1)
		return -1;

	if (a->cmd == NULL) {
		usage_error("no command given");
		return -1;
	}
	for (i = 0; i < sizeof(optnames) / sizeof(optnames[0]); i++) {
		if ((a->seen & optnames[i].bit) && !(a->cmd->opts & optnames[i].bit)) {
			usage_error("%s does not take %s", a->cmd->name,
			    optnames[i].name);
			return -1;
		}
	}
	if ((a->seen & OPT_WAIT) && (a->seen & OPT_NOWAIT)) {
		usage_error("%s: -w and -n exclude each other", a->cmd->name);
		return -1;
	}
	if (a->npos < a->cmd->nargs) {
		usage_error("%s: missing %s", a->cmd->name,
		    a->npos == 0 ? "NAME" : a->cmd->arg2);
		return -1;
	}
	if (a->cmd->command) {
		if (optind >= argc) {
			usage_error("%s: missing COMMAND", a->cmd->name);
			return -1;
		}
		a->command = argv + optind;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	struct args a;
	struct httplock_opts ho;
	struct httplock *h;
	struct sigaction sa;
	int xs;

	remember_fds();
	/* A closed stdout or socket is an error to report, not a death. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigemptyset(&sa.sa_mask);
	(void)sigaction(SIGPIPE, &sa, &orig_sigpipe);

	switch (parse_args(argc, argv, &a)) {
	case -1:
		return XS_USAGE;
	case 1:
		return flush_stdout("--help") == XS_OK ? XS_OK : XS_USAGE;
	}
	memset(&ho, 0, sizeof(ho));
	user_given = a.user != NULL;
	ho.user = a.user;
	ho.netrc = a.user == NULL;        /* optional, as curl --netrc-optional */
	ho.netrc_file = a.netrc_file;
	if ((h = httplock_new(a.url, &ho)) == NULL) {
		/* The URL is not echoed: it may hold a password. */
		fprintf(stderr, "httplock: the server URL is not http:// or "
		    "https:// (or out of memory)\n");
		return XS_USAGE;
	}
	xs = a.cmd->fn(h, &a);
	httplock_free(h);
	return xs;
}
