/*
 * httplock-worker: the FastCGI application.  One process serves many
 * requests at once on a pool of threads, each blocked in FCGX_Accept_r;
 * the pool grows (up to max_threads) whenever the last idle thread takes a
 * request.  An acquire that has to wait gives its thread back: it is
 * parked (wait.c) with the connection, and one thread watches all of them.
 *
 * The web server either spawns us with the listening socket on fd 0
 * (lighttpd's bin-path), or we open it ourselves with -s PATH.  With -s
 * PATH -n N we are a pool (for Apache's mod_proxy_fcgi, which spawns
 * nothing): a supervisor opens the socket, forks N worker processes that
 * share it, restarts one that dies, passes SIGTERM/SIGINT on and exits
 * once they have; the workers die with it (PR_SET_PDEATHSIG).  The pool
 * lives here, not in a file of its own, because it is main()'s other half:
 * each child returns from it to the same serve().
 *
 * SIGTERM and SIGINT stop the process within a second: a worker on a
 * socket lighttpd made for it (fd 0) refuses new connections at once, waiting
 * requests are withdrawn from their queues and answered 503, then we exit.
 * libfcgi would otherwise swallow SIGTERM, so our handlers are installed
 * after FCGX_Init().  Unless -D is given we also die with our parent (the web
 * server), so a killed lighttpd leaves no orphaned workers.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <stdnoreturn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "autostart.h"
#include "clock.h"
#include "conf.h"
#include "coordlink.h"
#include "db.h"
#include "deliver.h"
#include "handlers.h"
#include "log.h"
#include "proc.h"
#include "reply.h"
#include "wait.h"

#define THREAD_STACK (256 * 1024)
#define STOP_GRACE_MS 800
#define STOP_POLL_MS 10         /* how often the stop looks for requests */
#define ACCEPT_RETRY_MS 100     /* after a failed accept */
#define DB_CLOSE_WAIT_MS 100    /* for a thread inside SQLite, at exit */
#define LISTEN_BACKLOG 4096

/*
 * The pool: at most POOL_MAX processes.  A dead one is restarted after
 * RESTART_MIN_MS, doubled up to RESTART_MAX_MS while it keeps dying within
 * RESTART_QUICK_MS of its start.  On a stop, workers get POOL_STOP_MS to
 * exit before they are killed.
 */
#define POOL_MAX 256
#define RESTART_MIN_MS 100
#define RESTART_MAX_MS 5000
#define RESTART_QUICK_MS 1000
#define POOL_STOP_MS 950
#define POOL_STOP_POLL_MS 10

/* The process: its configuration, listener and pool threads. */
static struct {
	struct hl_conf conf;
	int            listen_fd;
	bool           own_listener;  /* fd 0 from lighttpd: ours alone */
	bool           unix_listener; /* listen_fd is AF_UNIX */
	int            stop_rd;       /* readable once we are stopping */
	int            stop_wr;       /* the signal handler writes here */
	atomic_bool    stopping;
	atomic_int     nthreads;
	atomic_int     idle;          /* threads waiting in accept */
	atomic_int     busy;          /* requests on a thread */
} wk = { .stop_rd = -1, .stop_wr = -1 };

static void
on_signal(int sig)
{
	int saved = errno;
	char c = (char)sig;

	/* Async-signal-safe: one write to the self-pipe, nothing formatted. */
	if (wk.stop_wr >= 0 && write(wk.stop_wr, &c, 1) < 0) {
		/* The pipe is full: a stop is pending already. */
	}
	errno = saved;
}

static void
install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL) == -1 ||
	    sigaction(SIGINT, &sa, NULL) == -1 ||
	    sigaction(SIGUSR1, &sa, NULL) == -1)
		fatal("%s: sigaction", __func__);
	sa.sa_handler = SIG_IGN;
	if (sigaction(SIGPIPE, &sa, NULL) == -1)
		fatal("%s: sigaction", __func__);
}

static void *thread_main(void *arg);

/* Blocks the stop signals in the calling thread, and in the threads it
 * starts from now on; *old gets the mask before.  Signals go to the main
 * thread, which waits for them. */
static void
block_signals(sigset_t *old)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, old);
}

/* Starts one more pool thread, unless the pool is at its cap. */
static void
spawn_thread(void)
{
	pthread_attr_t attr;
	pthread_t tid;
	int n, rc;

	n = atomic_fetch_add(&wk.nthreads, 1);
	if (n >= wk.conf.max_threads) {
		atomic_fetch_sub(&wk.nthreads, 1);
		return;
	}
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, THREAD_STACK);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	atomic_fetch_add(&wk.idle, 1);
	rc = pthread_create(&tid, &attr, thread_main, NULL);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		atomic_fetch_sub(&wk.idle, 1);
		atomic_fetch_sub(&wk.nthreads, 1);
		errno = rc;
		log_warn("%s: pthread_create", __func__);
	}
}

/*
 * Ends a request served on a pool thread.  libfcgi would close its
 * connection with shutdown() and then read until the web server closes
 * its end (up to 2 s): that keeps a TCP peer's unread response from being
 * lost to a reset.  A Unix socket delivers what we wrote however we close
 * it, and read_body() has read the request to its end: close at once,
 * which saves the thread three system calls and a wait for the web
 * server.  (Unless the web server asked to keep the connection.)
 */
static void
finish_request(FCGX_Request *fr)
{
	bool own_close = wk.unix_listener && fr->ipcFd >= 0 &&
	    fr->in != NULL && !fr->keepConnection &&
	    FCGX_HasSeenEOF(fr->in) == EOF;

	if (own_close)
		fr->keepConnection = 1;         /* libfcgi leaves it open */
	FCGX_Finish_r(fr);
	if (own_close && fr->ipcFd >= 0) {
		(void)close(fr->ipcFd);
		fr->ipcFd = -1;
	}
}

static void *
thread_main(void *arg)
{
	FCGX_Request fr;

	(void)arg;
	block_signals(NULL);

	if (FCGX_InitRequest(&fr, wk.listen_fd, 0) != 0) {
		log_warnx("%s: FCGX_InitRequest failed", __func__);
		atomic_fetch_sub(&wk.idle, 1);
		atomic_fetch_sub(&wk.nthreads, 1);
		return NULL;
	}
	while (!atomic_load(&wk.stopping)) {
		if (FCGX_Accept_r(&fr) < 0) {
			if (atomic_load(&wk.stopping))
				break;
			log_warnx("%s: FCGX_Accept_r failed", __func__);
			/* Do not spin on a broken listening socket. */
			poll(NULL, 0, ACCEPT_RETRY_MS);
			continue;
		}
		atomic_fetch_add(&wk.busy, 1);
		if (atomic_fetch_sub(&wk.idle, 1) == 1)
			spawn_thread();
		handle_request(&fr);
		finish_request(&fr);
		atomic_fetch_add(&wk.idle, 1);
		atomic_fetch_sub(&wk.busy, 1);
	}
	FCGX_Free(&fr, 0);
	atomic_fetch_sub(&wk.idle, 1);
	atomic_fetch_sub(&wk.nthreads, 1);
	return NULL;
}

/*
 * Opens the listening Unix socket at path with the given permissions (and
 * group, unless gid is (gid_t)-1), replacing a stale socket left there.
 * Returns the descriptor; exits on error.
 */
static int
listen_unix(const char *path, mode_t mode, gid_t gid)
{
	struct sockaddr_un sun;
	struct stat st;
	mode_t old;
	size_t len = strlen(path);
	int fd, rc;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (len >= sizeof(sun.sun_path))
		fatalx("%s: socket path too long: %s", __func__, path);
	memcpy(sun.sun_path, path, len + 1);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			fatalx("%s: %s exists and is not a socket", __func__, path);
		if (unlink(path) == -1)
			fatal("%s: unlink %s", __func__, path);
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) == -1)
		fatal("%s: socket", __func__);
	/* Nobody may connect before the permissions are final. */
	old = umask(0177);
	rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (rc == -1)
		fatal("%s: bind %s", __func__, path);
	if (gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) == -1)
		fatal("%s: chown %s", __func__, path);
	if (chmod(path, mode) == -1)
		fatal("%s: chmod %s", __func__, path);
	if (listen(fd, LISTEN_BACKLOG) == -1)
		fatal("%s: listen %s", __func__, path);
	return fd;
}

/* One process of the pool. */
struct pool_proc {
	pid_t    pid;         /* 0 while it is not running */
	int64_t  started;     /* its last start, monotonic ms */
	int64_t  due;         /* when dead: restart it then (monotonic) */
	int64_t  delay;       /* its next restart delay, ms */
};

/*
 * Forks one pool worker.  Returns 0 in the child (which then serves), the
 * child's pid in the supervisor, or -1 when fork failed (retried after the
 * process's restart delay).
 */
static pid_t
pool_fork(struct pool_proc *p, const sigset_t *oldmask)
{
	pid_t sup = getpid(), pid;

	pid = fork();
	if (pid == -1) {
		log_warn("%s: fork", __func__);
		p->due = clock_mono_ms() + p->delay;
		return -1;
	}
	if (pid == 0) {
		/* Die with the supervisor, also when it is killed. */
		if (prctl(PR_SET_PDEATHSIG, SIGTERM) == -1)
			fatal("%s: prctl", __func__);
		if (getppid() != sup)
			_exit(1);
		if (sigprocmask(SIG_SETMASK, oldmask, NULL) == -1)
			fatal("%s: sigprocmask", __func__);
		return 0;
	}
	p->pid = pid;
	p->started = clock_mono_ms();
	p->due = 0;
	return pid;
}

/* Reaps dead workers and, unless stopping, schedules their restarts. */
static void
pool_reap(struct pool_proc *procs, int n, bool stopping)
{
	int status, i;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (i = 0; i < n && procs[i].pid != pid; i++)
			;
		if (i == n)
			continue;
		procs[i].pid = 0;
		if (stopping)
			continue;
		if (WIFSIGNALED(status))
			log_warnx("%s: worker %d killed by signal %d", __func__,
			    (int)pid, WTERMSIG(status));
		else
			log_warnx("%s: worker %d exited with status %d",
			    __func__, (int)pid, WEXITSTATUS(status));
		/* One that keeps dying at start waits longer each time. */
		if (clock_mono_ms() - procs[i].started >= RESTART_QUICK_MS)
			procs[i].delay = RESTART_MIN_MS;
		procs[i].due = clock_mono_ms() + procs[i].delay;
		procs[i].delay = procs[i].delay * 2 > RESTART_MAX_MS ?
		    RESTART_MAX_MS : procs[i].delay * 2;
	}
}

/*
 * Sends SIGTERM to every worker, waits up to POOL_STOP_MS for them (they
 * answer their waiting requests and exit within STOP_GRACE_MS), kills what
 * is left, removes the socket and exits.
 */
static noreturn void
pool_stop(struct pool_proc *procs, int n, const sigset_t *set,
    const char *path)
{
	int64_t deadline = clock_mono_ms() + POOL_STOP_MS;
	struct timespec ts = { .tv_sec = 0,
	    .tv_nsec = POOL_STOP_POLL_MS * 1000 * 1000 };
	int i, live;

	log_debug("%s: stopping", __func__);
	for (i = 0; i < n; i++)
		if (procs[i].pid > 0)
			(void)kill(procs[i].pid, SIGTERM);
	for (;;) {
		pool_reap(procs, n, true);
		for (i = 0, live = 0; i < n; i++)
			live += procs[i].pid > 0;
		if (live == 0 || clock_mono_ms() >= deadline)
			break;
		(void)sigtimedwait(set, NULL, &ts);
	}
	for (i = 0; i < n; i++) {
		if (procs[i].pid > 0) {
			log_warnx("%s: worker %d did not stop; killing it",
			    __func__, (int)procs[i].pid);
			(void)kill(procs[i].pid, SIGKILL);
			(void)waitpid(procs[i].pid, NULL, 0);
		}
	}
	(void)unlink(path);
	exit(0);
}

/*
 * The pool supervisor: forks n workers (which inherit the listening
 * socket) and keeps them running.  Returns only in a child, which then
 * serves; the supervisor exits from pool_stop() on SIGTERM or SIGINT.
 * It is single-threaded and waits for signals with sigtimedwait(), so no
 * handler runs in it.
 */
static void
pool_supervise(int n, const char *path)
{
	static struct pool_proc procs[POOL_MAX];
	sigset_t set, oldmask;
	struct timespec ts;
	int64_t now, next;
	int i, sig;

	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, &oldmask) == -1)
		fatal("%s: sigprocmask", __func__);
	for (i = 0; i < n; i++) {
		procs[i].delay = RESTART_MIN_MS;
		if (pool_fork(&procs[i], &oldmask) == 0)
			return;
	}
	log_debug("%s: %d workers on %s", __func__, n, path);
	for (;;) {
		now = clock_mono_ms();
		next = -1;
		for (i = 0; i < n; i++) {
			if (procs[i].pid != 0)
				continue;
			if (procs[i].due <= now) {
				if (pool_fork(&procs[i], &oldmask) == 0)
					return;
			} else if (next == -1 || procs[i].due < next)
				next = procs[i].due;
		}
		if (next == -1)
			sig = sigwaitinfo(&set, NULL);
		else {
			ts.tv_sec = (time_t)((next - now) / 1000);
			ts.tv_nsec = (long)((next - now) % 1000) * 1000000;
			sig = sigtimedwait(&set, NULL, &ts);
		}
		if (sig == SIGTERM || sig == SIGINT)
			pool_stop(procs, n, &set, path);
		if (sig == SIGCHLD)
			pool_reap(procs, n, false);
	}
}

/* Parses a number in [0, max] in base; -1 when it is not one. */
static long
parse_num(const char *s, int base, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, base);
	if (errno != 0 || end == s || *end != '\0' || v < 0 || v > max)
		return -1;
	return v;
}

/*
 * True if process `pid` is lighttpd, which spawns each FastCGI process on
 * a socket of its own (socket + "-" + n): only then is fd 0 ours alone to
 * shut down when we stop.  Others that hand a listening fd 0 to several
 * processes (mod_fastcgi, supervisord's fcgi-program, spawn-fcgi -F,
 * systemd socket units) would lose the socket for all of them.
 */
static bool
is_lighttpd(pid_t pid)
{
	char path[64], comm[32];
	FILE *f;
	bool yes = false;

	snprintf(path, sizeof(path), "/proc/%ld/comm", (long)pid);
	if ((f = fopen(path, "re")) == NULL)
		return false;
	if (fgets(comm, sizeof(comm), f) != NULL)
		yes = strcmp(comm, "lighttpd\n") == 0;
	fclose(f);
	return yes;
}

/* The gid of a group name or number; exits when there is none. */
static gid_t
parse_group(const char *name)
{
	struct group *gr;
	long v;

	if ((gr = getgrnam(name)) != NULL)
		return gr->gr_gid;
	if ((v = parse_num(name, 10, INT_MAX)) < 0)
		fatalx("%s: no such group: %s", __func__, name);
	return (gid_t)v;
}

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

static const char usage_text[] =
"usage: httplock-worker [-dD] [-c config] [-s socket [-n procs] [-m mode] [-g group]]\n"
"\n"
"The httplock FastCGI application.  Without -s it serves the listening\n"
"socket on fd 0 that a web server (lighttpd's bin-path) or systemd hands it.\n"
"\n"
"  -c FILE    configuration (default: $HTTPLOCK_CONF, else " SYSCONFDIR "/httplock.conf)\n"
"  -s PATH    create and serve the Unix socket PATH (a path, not HOST:PORT)\n"
"  -n PROCS   with -s: a pool of PROCS worker processes (1-256) sharing it\n"
"  -m MODE    with -s: the socket's mode, octal, no bits for others (default 0660)\n"
"  -g GROUP   with -s: the socket's group (the web server's)\n"
"  -d         debug logging\n"
"  -D         detached: do not exit with the parent process\n"
"  -h, --help     this text\n"
"  -V, --version  the version\n"
"\n"
"See httplock-worker(8).\n";

/* Prints the usage to stderr and exits 2. */
static noreturn void
usage(void)
{
	fputs(usage_text, stderr);
	exit(2);
}

/*
 * Refuses to serve FastCGI on a socket anyone may reach: libfcgi trusts
 * its peer (CVE-2025-23016; and even with Debian's fix, a name/value
 * length pair over 2 GiB makes it abort the whole process), so only the
 * web server may connect.  A Unix socket is fine (its file mode decides:
 * -m refuses "others" bits); a TCP socket only on a loopback address.
 * Notes in wk.unix_listener which it is.
 */
static void
check_listener(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	bool loopback;

	if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
		fatal("%s: getsockname", __func__);
	if (ss.ss_family == AF_INET)
		loopback = (ntohl(((const struct sockaddr_in *)&ss)->
		    sin_addr.s_addr) >> 24) == 127;
	else if (ss.ss_family == AF_INET6)
		loopback = IN6_IS_ADDR_LOOPBACK(
		    &((const struct sockaddr_in6 *)&ss)->sin6_addr);
	else {
		/* A Unix socket: its file mode decides. */
		wk.unix_listener = ss.ss_family == AF_UNIX;
		return;
	}
	if (!loopback)
		fatalx("%s: the FastCGI socket is TCP on a non-loopback "
		    "address: anyone could reach it; use a Unix socket",
		    __func__);
	log_warnx("%s: the FastCGI socket is TCP on loopback: every local "
	    "user can reach it; a Unix socket is safer", __func__);
}

/*
 * Hands each module its part of the configuration.  Exits on failure.
 */
static void
init_modules(pid_t pid)
{
	struct db_conf dc;

	db_conf_from(&dc, &wk.conf);
	if (db_init(&dc) != 0)
		fatalx("%s: cannot set up the database gate", __func__);
	reply_init(wk.conf.max_waiters);
	coordlink_init(wk.conf.coord_socket, wk.conf.poll_ms, pid);
	deliver_init(pid);
	handlers_init(&(struct handlers_conf){
		.limits = {
			.default_ttl_ms = wk.conf.default_ttl_ms,
			.max_ttl_ms = wk.conf.max_ttl_ms,
			.max_wait_ms = wk.conf.max_wait_ms,
		},
		.anonymous_deny = wk.conf.anonymous_deny != 0,
		.max_waiters = wk.conf.max_waiters,
		.tenant_max_held = wk.conf.tenant_max_held,
		.tenant_max_waiting = wk.conf.tenant_max_waiting,
		.pid = pid,
		.pstart = proc_start(pid),
		.nthreads = &wk.nthreads,
	});
}

/*
 * Serves FastCGI requests on listen_fd (-1: fd 0, from the web server)
 * until SIGTERM or SIGINT, then exits.
 */
static noreturn void
serve(int listen_fd)
{
	sigset_t old;
	int pfd[2], i;

	if (pipe2(pfd, O_CLOEXEC | O_NONBLOCK) == -1)
		fatal("%s: pipe2", __func__);
	wk.stop_rd = pfd[0];
	wk.stop_wr = pfd[1];

	if (FCGX_Init() != 0)
		fatalx("%s: FCGX_Init failed", __func__);
	install_signals();

	if (listen_fd >= 0)
		wk.listen_fd = listen_fd;
	else if (FCGX_IsCGI()) {
		fatalx("%s: fd 0 is not a FastCGI socket: run me from a web "
		    "server, or give -s PATH", __func__);
	} else
		wk.listen_fd = 0;
	check_listener(wk.listen_fd);

	init_modules(getpid());
	/* The parking thread and the pool threads inherit the mask. */
	block_signals(&old);
	wait_init(&(struct wait_conf){
		.poll_ms = wk.conf.poll_ms,
		.max_waiting = wk.conf.max_waiting,
		.max_waiting_per_client = wk.conf.max_waiting_per_client,
		.max_threads = wk.conf.max_threads,
		.coord_socket = wk.conf.coord_socket,
		.stop_rd = wk.stop_rd,
		.stopping = &wk.stopping,
	});
	for (i = 0; i < wk.conf.threads; i++)
		spawn_thread();
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	log_debug("%s: serving with %d threads", __func__, wk.conf.threads);

	/* Wait for a stop signal.  The byte stays in the pipe, so stop_rd
	 * stays readable for every waiting thread that polls it. */
	for (;;) {
		struct pollfd p = { .fd = wk.stop_rd, .events = POLLIN };

		if (poll(&p, 1, -1) == 1)
			break;
	}
	atomic_store(&wk.stopping, true);
	log_debug("%s: stopping", __func__);

	/* Take no new connection from here on: a lighttpd restarted while
	 * we finish (lighttpd killed, our PR_SET_PDEATHSIG stop) would find
	 * our socket still accepting, use us as a backend it did not spawn
	 * and never respawn one once we are gone.  Refused, it unlinks the
	 * socket and spawns its own.  Threads blocked in accept() get
	 * EINVAL.  Only on a socket of ours alone (see is_lighttpd()). */
	if (wk.own_listener && shutdown(wk.listen_fd, SHUT_RDWR) == -1)
		log_warn("%s: shutdown of the FastCGI socket", __func__);

	/* The parking thread sees stop_rd readable and answers its waiting
	 * requests 503; give it and any quick request in flight a moment,
	 * then go. */
	for (i = 0; i < STOP_GRACE_MS / STOP_POLL_MS &&
	    (atomic_load(&wk.busy) > 0 || wait_count() > 0); i++)
		poll(NULL, 0, STOP_POLL_MS);

	/* Close the database only if no thread is inside SQLite (one may be
	 * in the busy handler for busy_timeout); WAL needs no clean close,
	 * so otherwise just go.  Threads still blocked in accept() and the
	 * notifier (which such a thread may be using) end with the process. */
	if (db_close(DB_CLOSE_WAIT_MS) == 0)
		exit(0);
	_exit(0);
}

int
main(int argc, char **argv)
{
	const char *confpath = NULL, *sockpath = NULL;
	char err[512];
	int ch, debug = 0, detached = 0, listen_fd = -1;
	long nprocs = 0, mode = 0660;
	gid_t gid = (gid_t)-1;
	pid_t parent = getppid();
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};

	while ((ch = getopt_long(argc, argv, "c:dDg:hm:n:s:V", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'c': confpath = optarg; break;
		case 'd': debug = 1; break;
		case 'D': detached = 1; break;
		case 'h':
			fputs(usage_text, stdout);
			exit(fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1);
		case 'V':
			printf("httplock-worker %s\n", PACKAGE_VERSION);
			exit(fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1);
		case 'g': gid = parse_group(optarg); break;
		case 'm':
			/* Owner and group only: see check_listener(). */
			if ((mode = parse_num(optarg, 8, 0777)) < 0)
				usage();
			if (mode & 0007)
				fatalx("%s: -m %s: others may not connect to "
				    "the FastCGI socket (give the web "
				    "server's group with -g)", __func__, optarg);
			break;
		case 'n':
			if ((nprocs = parse_num(optarg, 10, POOL_MAX)) < 1)
				usage();
			break;
		case 's': sockpath = optarg; break;
		default: usage();
		}
	}
	if (optind != argc || (nprocs > 0 && sockpath == NULL))
		usage();
	log_init("httplock-worker", debug);
	if (sockpath != NULL &&
	    conf_check_sockpath(sockpath, err, sizeof(err)) != 0)
		fatalx("%s: -s %s; for TCP, let the web server or systemd hand "
		    "the worker a listening socket on fd 0 (loopback only)",
		    __func__, err);

	if (!detached) {
		if (prctl(PR_SET_PDEATHSIG, SIGTERM) == -1)
			fatal("%s: prctl", __func__);
		if (getppid() != parent) {
			/* Refuse at once what a restarted web server would
			 * otherwise hand to a process on its way out. */
			if (sockpath == NULL && is_lighttpd(parent))
				(void)shutdown(0, SHUT_RDWR);
			fatalx("%s: parent exited during start-up", __func__);
		}
	}

	if (confpath == NULL)
		confpath = conf_default_path();
	if (conf_load(&wk.conf, confpath, err, sizeof(err)) != 0)
		fatalx("%s", err);
	autostart_init(&wk.conf, confpath);

	if (sockpath != NULL) {
		listen_fd = listen_unix(sockpath, (mode_t)mode, gid);
		if (nprocs > 0)
			pool_supervise((int)nprocs, sockpath);
	}
	/* fd 0 from lighttpd is ours alone: see is_lighttpd(). */
	wk.own_listener = !detached && sockpath == NULL && is_lighttpd(parent);
	serve(listen_fd);
}
