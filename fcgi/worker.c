/*
 * httplock-worker: the FastCGI application.  One process serves many
 * requests at once on a pool of threads, each blocked in FCGX_Accept_r,
 * because a blocked acquire holds its thread until it is granted or times
 * out.  The pool grows (up to max_threads) whenever the last idle thread
 * takes a request, so waiters can never starve the release that would
 * free them.
 *
 * The web server either spawns us with the listening socket on fd 0
 * (lighttpd's bin-path), or we open it ourselves with -s PATH.
 *
 * SIGTERM and SIGINT stop the process within a second: waiting requests
 * are withdrawn from their queues and answered 503, then we exit.  libfcgi
 * would otherwise swallow SIGTERM, so our handlers are installed after
 * FCGX_Init().  Unless -D is given we also die with our parent (the web
 * server), so a killed lighttpd leaves no orphaned workers.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "worker.h"

#define THREAD_STACK (256 * 1024)
#define STOP_GRACE_MS 800

struct worker W;
static int stop_wr = -1;

int64_t
now_ms(void)
{
	return lockcore_now_ms();
}

uint64_t
random_u64(void)
{
	uint64_t v = 0;

	while (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v)) {
		if (errno != EINTR)
			fatal("%s: getrandom", __func__);
	}
	return v;
}

static void
on_signal(int sig)
{
	int saved = errno;
	char c = (char)sig;

	/* Async-signal-safe: one write to the self-pipe, nothing formatted. */
	if (stop_wr >= 0 && write(stop_wr, &c, 1) < 0) {
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

/* Starts one more pool thread, unless the pool is at its cap. */
static void
spawn_thread(void)
{
	pthread_attr_t attr;
	pthread_t tid;
	int n, rc;

	n = atomic_fetch_add(&W.nthreads, 1);
	if (n >= W.conf.max_threads) {
		atomic_fetch_sub(&W.nthreads, 1);
		return;
	}
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, THREAD_STACK);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	atomic_fetch_add(&W.idle, 1);
	rc = pthread_create(&tid, &attr, thread_main, NULL);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		atomic_fetch_sub(&W.idle, 1);
		atomic_fetch_sub(&W.nthreads, 1);
		errno = rc;
		log_warn("%s: pthread_create", __func__);
	}
}

static void *
thread_main(void *arg)
{
	FCGX_Request fr;
	sigset_t set;

	(void)arg;
	/* Signals go to the main thread, which waits for them. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	if (FCGX_InitRequest(&fr, W.listen_fd, 0) != 0) {
		log_warnx("%s: FCGX_InitRequest failed", __func__);
		atomic_fetch_sub(&W.idle, 1);
		atomic_fetch_sub(&W.nthreads, 1);
		return NULL;
	}
	while (!atomic_load(&W.stopping)) {
		if (FCGX_Accept_r(&fr) < 0) {
			if (atomic_load(&W.stopping))
				break;
			log_warnx("%s: FCGX_Accept_r failed", __func__);
			/* Do not spin on a broken listening socket. */
			poll(NULL, 0, 100);
			continue;
		}
		atomic_fetch_add(&W.busy, 1);
		if (atomic_fetch_sub(&W.idle, 1) == 1)
			spawn_thread();
		handle_request(&fr);
		FCGX_Finish_r(&fr);
		atomic_fetch_add(&W.idle, 1);
		atomic_fetch_sub(&W.busy, 1);
	}
	FCGX_Free(&fr, 0);
	atomic_fetch_sub(&W.idle, 1);
	atomic_fetch_sub(&W.nthreads, 1);
	return NULL;
}

static void
usage(void)
{
	fprintf(stderr, "usage: httplock-worker [-dD] [-c config] [-s socket]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *confpath = NULL, *sockpath = NULL;
	char err[512];
	int ch, debug = 0, detached = 0, pfd[2], i;
	pid_t parent = getppid();

	while ((ch = getopt(argc, argv, "c:dDs:")) != -1) {
		switch (ch) {
		case 'c': confpath = optarg; break;
		case 'd': debug = 1; break;
		case 'D': detached = 1; break;
		case 's': sockpath = optarg; break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	log_init("httplock-worker", debug);

	if (confpath == NULL)
		confpath = conf_default_path();
	if (conf_load(&W.conf, confpath, err, sizeof(err)) != 0)
		fatalx("%s", err);
	W.limits.default_ttl_ms = W.conf.default_ttl_ms;
	W.limits.max_ttl_ms = W.conf.max_ttl_ms;
	W.limits.max_wait_ms = W.conf.max_wait_ms;

	if (!detached) {
		if (prctl(PR_SET_PDEATHSIG, SIGTERM) == -1)
			fatal("%s: prctl", __func__);
		if (getppid() != parent)
			fatalx("%s: parent exited during start-up", __func__);
	}

	if (pipe2(pfd, O_CLOEXEC | O_NONBLOCK) == -1)
		fatal("%s: pipe2", __func__);
	W.stop_rd = pfd[0];
	stop_wr = pfd[1];

	if (FCGX_Init() != 0)
		fatalx("%s: FCGX_Init failed", __func__);
	install_signals();

	if (sockpath != NULL) {
		mode_t old = umask(007);
		W.listen_fd = FCGX_OpenSocket(sockpath, 4096);
		umask(old);
		if (W.listen_fd < 0)
			fatal("%s: cannot listen on %s", __func__, sockpath);
	} else if (FCGX_IsCGI()) {
		fatalx("%s: fd 0 is not a FastCGI socket: run me from a web "
		    "server, or give -s PATH", __func__);
	} else
		W.listen_fd = 0;

	W.pid = getpid();
	W.pstart = lockcore_proc_start(W.pid);
	if (pthread_mutex_init(&W.db_mu, NULL) != 0)
		fatalx("%s: pthread_mutex_init failed", __func__);
	W.notifier = coord_notifier_new(W.conf.coord_socket);
	if (W.notifier == NULL)
		fatal("%s: coord_notifier_new", __func__);

	for (i = 0; i < W.conf.threads; i++)
		spawn_thread();
	log_debug("%s: serving with %d threads", __func__, W.conf.threads);

	/* Wait for a stop signal.  The byte stays in the pipe, so stop_rd
	 * stays readable for every waiting thread that polls it. */
	for (;;) {
		struct pollfd p = { .fd = W.stop_rd, .events = POLLIN };

		if (poll(&p, 1, -1) == 1)
			break;
	}
	atomic_store(&W.stopping, true);
	log_debug("%s: stopping", __func__);

	/* Waiting requests see stop_rd readable and answer 503; give them
	 * and any quick request in flight a moment, then go. */
	for (i = 0; i < STOP_GRACE_MS / 10 && atomic_load(&W.busy) > 0; i++)
		poll(NULL, 0, 10);

	/* Close the database only if no thread is inside SQLite (one may be
	 * in the busy handler for busy_timeout); WAL needs no clean close,
	 * so otherwise just go.  Threads still blocked in accept() and the
	 * notifier (which such a thread may be using) end with the process. */
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 100 * 1000 * 1000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	if (pthread_mutex_timedlock(&W.db_mu, &ts) == 0) {
		lockcore_close(W.db);
		W.db = NULL;
		exit(0);
	}
	_exit(0);
}
