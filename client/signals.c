/*
 * signals: the signals that acquire and run take over.  They are blocked
 * before any thread starts (so no thread but the main one sees them) and
 * read from a signalfd in the main thread's poll loop; nothing runs in a
 * signal handler.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cli.h"

/* The signals acquire and run take over; `chld` adds SIGCHLD. */
void
signals_set(sigset_t *set, int chld)
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
int
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
int
signals_read(int sfd)
{
	struct signalfd_siginfo si;
	ssize_t n;

	n = read(sfd, &si, sizeof(si));
	if (n != (ssize_t)sizeof(si))
		return 0;
	return (int)si.ssi_signo;
}

/* The name of a signal that acquire and run catch. */
const char *
signals_name(int sig)
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
