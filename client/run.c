/*
 * run: `httplock run NAME COMMAND...` acquires the lock, starts the
 * command with the lock's name, token and fence in its environment, keeps
 * the lease alive while it runs (lease.c), passes our signals on to its
 * process group, and releases the lock when it exits.  If the lease is
 * lost, the command's group gets SIGTERM, then SIGKILL after the grace
 * period.  We are the subreaper of the command's descendants, so that
 * their ends wake us too.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "hlclock.h"

#define REAP_WAIT    1.0        /* after SIGKILL: seconds for the group to be reaped */
#define STOP_WAIT    2.0        /* seconds for the renew thread to finish a request */
#define LOST_WAIT    0.2        /* the same when the server may be gone */
#define TTL_UNKNOWN  1.0        /* the lease if the server gave no ttl: renew often */
#define STATUS_OTHER 1          /* a wait status neither exited nor signalled */

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
	int status = 0, s, exited = 0, watch;
	char buf[64];

	pfd[0].fd = sfd;
	pfd[0].events = POLLIN;
	pfd[1].fd = l->wake[0];
	pfd[1].events = POLLIN;
	for (;;) {
		now = hlclock_mono();
		watch = !*lost && !exited;
		if (lease_lost(l, now, watch, &deadline) && watch) {
			*lost = 1;
			(void)kill(-pid, SIGTERM);
			kill_at = now + grace;
		}
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
		if (poll(pfd, 2, hlclock_poll_ms(until)) == -1 && errno != EINTR)
			kill_at = 0;    /* cannot happen; do not spin on it */
		if (pfd[1].revents & POLLIN)
			while (read(l->wake[0], buf, sizeof(buf)) > 0)
				;
		if (!(pfd[0].revents & POLLIN))
			continue;
		while ((s = signals_read(sfd)) != 0) {
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

/* The exit status for the command's wait status. */
static int
command_status(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return XS_SIGNAL + WTERMSIG(status);
	return STATUS_OTHER;
}

/*
 * run: acquire, start the command, renew until it exits, release.  Returns
 * the exit status httplock.1 documents; may _exit() instead when a request
 * to a server that does not answer is still running.
 */
int
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

	signals_set(&set, 1);
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
	t_send = hlclock_mono();
	rc = acquire_interruptible(h, a, sfd, &g, &err, &sig);
	t_recv = hlclock_mono();
	if (sig != 0) {
		close(sfd);
		return acquire_interrupted(a->pos[0], sig);
	}
	if (rc != HTTPLOCK_OK) {
		xs = out_fail("acquire", a->pos[0], rc, &err, NULL);
		close(sfd);
		return xs == XS_HELD ? a->conflict_exit : xs;
	}

	/* The server always says; if not, renew often. */
	ttl = g.ttl > 0 ? g.ttl : a->ttl > 0 ? a->ttl : TTL_UNKNOWN;
	if (run_env(a, &g) == -1 || lease_init(&l, h, a->pos[0], &g, ttl,
	    t_recv, lease_first_deadline(&g, ttl, t_send, t_recv,
	    hlclock_wall())) == -1) {
		fprintf(stderr, "httplock: run %s: %s\n", a->pos[0], strerror(errno));
		(void)commands_release(h, a->pos[0], g.token);
		close(sfd);
		return XS_NOEXEC;
	}
	if (lease_start(&l) == -1) {
		fprintf(stderr, "httplock: run %s: cannot start renewing: %s\n",
		    a->pos[0], strerror(errno));
		(void)commands_release(h, a->pos[0], g.token);
		xs = XS_NOEXEC;
		goto out;
	}
	/* The command gets the terminal if we have it now. */
	tty = isatty(STDIN_FILENO) && tcgetpgrp(STDIN_FILENO) == getpgrp();
	if ((pid = spawn(a->command, &old, tty)) == -1) {
		fprintf(stderr, "httplock: run %s: cannot run %s: %s\n", a->pos[0],
		    a->command[0], strerror(errno));
		(void)commands_release(h, a->pos[0], g.token);
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
	xs = command_status(status);
	lease_halt(&l);
	/* Not held: the lease ended before the command did.  Any other
	 * failure: the lease was valid when the command ended and will expire
	 * by itself; the command's status stands. */
	if (commands_release(h, a->pos[0], g.token) == XS_NOT_HELD)
		xs = XS_LOST;
out:
	if (!lease_stop(&l, lost ? LOST_WAIT : STOP_WAIT)) {
		fflush(stdout);
		_exit(xs);
	}
	close(sfd);
	return xs;
}
