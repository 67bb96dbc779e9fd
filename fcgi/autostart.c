/*
 * autostart: starts httplock-coord from a worker, for hosts where the web
 * server spawns our workers but nobody may run a daemon of their own
 * (docs/shared-hosting.md).
 *
 * A thread whose waiter cannot reach the coordinator calls
 * autostart_coord().  Three things keep a herd of workers from starting a
 * herd of coordinators: each process tries at most once every
 * AUTOSTART_RETRY_MS; a try needs a non-blocking flock on
 * "<coord_socket>.spawn"; and that lock's open file is handed to the new
 * coordinator (as fd 3), so it stays held while the coordinator starts and
 * for as long as it runs.  The coordinator's own flock on
 * "<coord_socket>.lock" is what guarantees a single instance; the spawn lock
 * only spares the losers a fork and exec.
 *
 * The coordinator is started with the double fork: the intermediate child
 * calls setsid(), forks the coordinator and exits at once, so the thread
 * waits only for that exit, and the coordinator, reparented to init (or a
 * subreaper), never becomes our zombie.  It does not die with us (no
 * PR_SET_PDEATHSIG: fork clears it) and exits by itself after
 * coord_idle_exit of idleness (-i).  Between fork and exec the children
 * call only async-signal-safe functions: we are multi-threaded.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include "autostart.h"
#include "clock.h"
#include "log.h"

#define AUTOSTART_RETRY_MS 3000  /* per process, between two tries */
#define SPAWN_LOCK_FD      3     /* where the coordinator finds the lock */
#define FD_HIGH            10    /* fds are moved above this first */

static struct {
	bool     on;
	char     bin[PATH_MAX];              /* the httplock-coord to exec */
	char     conf[PATH_MAX];             /* absolute: it runs in "/" */
	char     spawn_lock[PATH_MAX];       /* "<coord_socket>.spawn" */
	char     log[CONF_PATH_MAX];         /* "" for /dev/null */
	char     idle[32];                   /* -i argument, seconds */
	_Atomic int64_t last_try;            /* monotonic ms; 0: never */
} as;

/* The httplock-coord next to our own binary, into buf.  0 or -1. */
static int
sibling_binary(char *buf, size_t len)
{
	char self[PATH_MAX];
	ssize_t n;
	char *slash;
	int r;

	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0) {
		log_warn("%s: readlink /proc/self/exe", __func__);
		return -1;
	}
	self[n] = '\0';
	if ((slash = strrchr(self, '/')) == NULL)
		return -1;
	*slash = '\0';
	r = snprintf(buf, len, "%s/httplock-coord", self);
	return r < 0 || (size_t)r >= len ? -1 : 0;
}

void
autostart_init(const struct hl_conf *c, const char *confpath)
{
	int n;

	as.on = false;
	if (!c->coord_autostart)
		return;
	if (c->coord_binary[0] != '\0') {
		if (strlen(c->coord_binary) >= sizeof(as.bin)) {
			log_warnx("%s: coord_binary too long", __func__);
			return;
		}
		memcpy(as.bin, c->coord_binary, strlen(c->coord_binary) + 1);
	} else if (sibling_binary(as.bin, sizeof(as.bin)) != 0) {
		log_warnx("%s: cannot tell where httplock-coord is; set "
		    "coord_binary", __func__);
		return;
	}
	if (access(as.bin, X_OK) != 0) {
		log_warn("%s: coord_autostart is off: %s", __func__, as.bin);
		return;
	}
	if (realpath(confpath, as.conf) == NULL) {
		log_warn("%s: coord_autostart is off: %s", __func__, confpath);
		return;
	}
	n = snprintf(as.spawn_lock, sizeof(as.spawn_lock), "%s.spawn",
	    c->coord_socket);
	if (n < 0 || (size_t)n >= sizeof(as.spawn_lock)) {
		log_warnx("%s: coord_socket too long", __func__);
		return;
	}
	memcpy(as.log, c->coord_log, sizeof(as.log));
	n = snprintf(as.idle, sizeof(as.idle), "%lld.%03lld",
	    (long long)(c->coord_idle_exit_ms / 1000),
	    (long long)(c->coord_idle_exit_ms % 1000));
	if (n < 0 || (size_t)n >= sizeof(as.idle))
		return;
	as.on = true;
	log_debug("%s: will start %s when no coordinator answers", __func__,
	    as.bin);
}

/*
 * In the coordinator-to-be, after the second fork: stdio from fds in and
 * out, the spawn lock as SPAWN_LOCK_FD, nothing else open, no signal
 * blocked, then exec.  Async-signal-safe only; never returns.
 */
static void
exec_coord(int lockfd, int in, int out, char *const argv[])
{
	sigset_t none;

	/* Move the three above 0-3 first, so no dup2 below overwrites one. */
	if ((lockfd = fcntl(lockfd, F_DUPFD, FD_HIGH)) == -1 ||
	    (in = fcntl(in, F_DUPFD, FD_HIGH)) == -1 ||
	    (out = fcntl(out, F_DUPFD, FD_HIGH)) == -1)
		_exit(126);
	if (dup2(in, 0) == -1 || dup2(out, 1) == -1 || dup2(out, 2) == -1 ||
	    dup2(lockfd, SPAWN_LOCK_FD) == -1)
		_exit(126);
	/* The FastCGI socket, the database, clients: none is its business. */
	if (close_range(SPAWN_LOCK_FD + 1, ~0U, 0) == -1)
		_exit(126);
	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
	if (chdir("/") == -1)
		_exit(126);
	execv(argv[0], argv);
	_exit(127);
}

/* Forks the intermediate child, which forks the coordinator. */
static void
spawn(int lockfd)
{
	static char opt_c[] = "-c", opt_i[] = "-i";
	char *argv[] = { as.bin, opt_c, as.conf, opt_i, as.idle, NULL };
	int in = -1, out = -1, status;
	pid_t pid;

	if ((in = open("/dev/null", O_RDWR | O_CLOEXEC)) == -1) {
		log_warn("%s: open /dev/null", __func__);
		goto out;
	}
	if (as.log[0] == '\0')
		out = dup(in);
	else
		out = open(as.log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC |
		    O_NOCTTY, 0640);
	if (out == -1) {
		log_warn("%s: open %s", __func__, as.log[0] ? as.log : "stdio");
		goto out;
	}
	pid = fork();
	if (pid == -1) {
		log_warn("%s: fork", __func__);
		goto out;
	}
	if (pid == 0) {
		if (setsid() == -1)
			_exit(1);
		pid = fork();
		if (pid == 0)
			exec_coord(lockfd, in, out, argv);
		_exit(pid == -1 ? 1 : 0);
	}
	while (waitpid(pid, &status, 0) == -1) {
		if (errno != EINTR) {
			log_warn("%s: waitpid", __func__);
			goto out;
		}
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		log_warnx("%s: could not start %s", __func__, as.bin);
	else
		log_info("%s: started %s -c %s -i %s", __func__, as.bin,
		    as.conf, as.idle);
out:
	if (in != -1)
		close(in);
	if (out != -1)
		close(out);
}

void
autostart_coord(int connect_errno)
{
	int64_t now, last;
	int lockfd;

	if (!as.on || (connect_errno != ENOENT && connect_errno != ECONNREFUSED))
		return;
	now = clock_mono_ms();
	last = atomic_load(&as.last_try);
	if (last != 0 && now - last < AUTOSTART_RETRY_MS)
		return;
	/* One thread of this process wins the try. */
	if (!atomic_compare_exchange_strong(&as.last_try, &last, now))
		return;

	lockfd = open(as.spawn_lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
	    0660);
	if (lockfd == -1) {
		log_warn("%s: open %s", __func__, as.spawn_lock);
		return;
	}
	/* Held: another worker is starting one, or one runs (or hangs). */
	if (flock(lockfd, LOCK_EX | LOCK_NB) == 0)
		spawn(lockfd);
	else if (errno != EWOULDBLOCK)
		log_warn("%s: flock %s", __func__, as.spawn_lock);
	close(lockfd);
}
