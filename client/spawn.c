/*
 * spawn: starts run's command.  The command inherits the descriptors that
 * were open when httplock started, and none of ours (libcurl's sockets,
 * our pipes and signalfd), and the signal mask and SIGPIPE disposition we
 * were given.  It runs in a process group of its own, which is what run
 * signals; the group becomes the terminal's foreground group if we had
 * the terminal.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>

#include "cli.h"

#define FDS_MAX         1024    /* inherited descriptors we remember */
#define FD_LIMIT_GUESS  1024    /* highest descriptor + 1 when sysconf cannot say */
#define EXEC_FAILED     127     /* the child's status when exec fails, as sh's */

/*
 * The ranges of descriptor numbers that were free at start: descriptors
 * in them are ours, made close-on-exec in the child.
 */
static struct {
	unsigned lo, hi;
} ours[FDS_MAX + 1];
static int nours = -1;                   /* -1: unknown, mark nothing */
static long fd_limit;                    /* highest descriptor + 1, for a fallback */
static struct sigaction orig_sigpipe;    /* restored in the command */

static int
cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return (x > y) - (x < y);
}

/* Fills `ours` from the descriptors open now. */
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
		fd_limit = FD_LIMIT_GUESS;
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

/*
 * Remembers what the command is to inherit: the descriptors open now and
 * the SIGPIPE disposition.  Call it first in main(), before anything opens
 * a descriptor or changes SIGPIPE.
 */
void
spawn_init(void)
{
	remember_fds();
	(void)sigaction(SIGPIPE, NULL, &orig_sigpipe);
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
pid_t
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
		_exit(EXEC_FAILED);
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
