/*
 * commands: the subcommands that make one request and print its answer:
 * acquire, release, renew, cancel, status and ls.  Each returns the exit
 * status httplock.1 documents for it.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "hlclock.h"

int
cmd_acquire(struct httplock *h, const struct args *a)
{
	struct httplock_grant g;
	struct httplock_error err;
	enum httplock_code rc;
	sigset_t set, old;
	int sfd, sig, xs;

	signals_set(&set, 0);
	if ((sfd = signals_take(&set, &old)) == -1)
		return XS_UNAVAILABLE;
	memset(&err, 0, sizeof(err));
	rc = acquire_interruptible(h, a, sfd, &g, &err, &sig);
	close(sfd);
	if (sig != 0)
		return acquire_interrupted(a->pos[0], sig);
	if (rc != HTTPLOCK_OK)
		return out_fail("acquire", a->pos[0], rc, &err, NULL);
	if (a->json)
		out_grant_json(&g);
	else
		printf("%s\n", g.token);
	if ((xs = out_flush("acquire")) != XS_OK) {
		/* Nobody can know the token now: give the lock back. */
		(void)httplock_release(h, a->pos[0], g.token, &err);
	}
	return xs;
}

/* Releases the lock `name` that `token` holds, printing any error.
 * Returns the exit status (XS_NOT_HELD: the token did not hold it). */
int
commands_release(struct httplock *h, const char *name, const char *token)
{
	struct httplock_error err;
	enum httplock_code rc;

	memset(&err, 0, sizeof(err));
	rc = httplock_release(h, name, token, &err);
	if (rc != HTTPLOCK_OK)
		return out_fail("release", name, rc, &err, token);
	return XS_OK;
}

int
cmd_release(struct httplock *h, const struct args *a)
{
	return commands_release(h, a->pos[0], a->pos[1]);
}

int
cmd_renew(struct httplock *h, const struct args *a)
{
	struct httplock_grant g;
	struct httplock_error err;
	enum httplock_code rc;

	memset(&g, 0, sizeof(g));
	memset(&err, 0, sizeof(err));
	rc = httplock_renew(h, a->pos[0], a->pos[1], a->ttl, &g, &err);
	if (rc != HTTPLOCK_OK)
		return out_fail("renew", a->pos[0], rc, &err, a->pos[1]);
	if (a->json)
		out_grant_json(&g);
	else
		printf("%.3f\n", g.expires_at);
	return out_flush("renew");
}

int
cmd_cancel(struct httplock *h, const struct args *a)
{
	struct httplock_error err;
	enum httplock_code rc;
	int was_held = 0;

	memset(&err, 0, sizeof(err));
	rc = httplock_cancel(h, a->pos[0], a->pos[1], &was_held, &err);
	if (rc != HTTPLOCK_OK)
		return out_fail("cancel", a->pos[0], rc, &err, a->pos[1]);
	if (a->json) {
		fputs("{\"lock\":", stdout);
		out_json_str(stdout, a->pos[0]);
		printf(",\"cancelled\":true,\"was\":\"%s\"}\n",
		    was_held ? "held" : "waiting");
	} else
		puts(was_held ? "held" : "waiting");
	return out_flush("cancel");
}

int
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
		return out_fail("status", a->pos[0], rc, &err, NULL);
	n = st.nholders < HTTPLOCK_HOLDERS_MAX ? st.nholders : HTTPLOCK_HOLDERS_MAX;
	if (a->json) {
		fputs("{\"lock\":", stdout);
		out_json_str(stdout, a->pos[0]);
		printf(",\"held\":%s,\"holders\":[", st.held ? "true" : "false");
		for (i = 0; i < n; i++) {
			ho = &st.holders[i];
			fputs(i > 0 ? ",{\"owner\":" : "{\"owner\":", stdout);
			out_json_str(stdout, ho->owner);
			printf(",\"fence\":%" PRId64 ",\"acquired_at\":%.3f,"
			    "\"expires_at\":%.3f}", ho->fence, ho->acquired_at,
			    ho->expires_at);
		}
		printf("],\"waiters\":%ld}\n", st.waiters);
		return out_flush("status");
	}
	now = hlclock_wall();
	fputs("lock:    ", stdout);
	out_text_str(stdout, a->pos[0]);
	printf("\nheld:    %s\n", st.held ? "yes" : "no");
	for (i = 0; i < n; i++) {
		ho = &st.holders[i];
		fputs("holder:  ", stdout);
		out_text_str(stdout, ho->owner[0] != '\0' ? ho->owner : "-");
		printf(" (fence %" PRId64 ", acquired %.1f s ago, expires in "
		    "%.1f s)\n", ho->fence, now - ho->acquired_at,
		    ho->expires_at - now);
	}
	printf("waiters: %ld\n", st.waiters);
	return out_flush("status");
}

/* httplock_list's callback: prints one lock; 1 (stop) once stdout fails. */
static int
ls_one(const struct httplock_lock_info *info, void *arg)
{
	const struct args *a = arg;

	if (a->json) {
		fputs("{\"lock\":", stdout);
		out_json_str(stdout, info->lock);
		printf(",\"holders\":%ld,\"waiters\":%ld}\n", info->holders,
		    info->waiters);
	} else {
		out_text_str(stdout, info->lock);
		printf("\t%ld\t%ld\n", info->holders, info->waiters);
	}
	return ferror(stdout) ? 1 : 0;
}

int
cmd_ls(struct httplock *h, const struct args *a)
{
	struct httplock_error err;
	enum httplock_code rc;

	memset(&err, 0, sizeof(err));
	rc = httplock_list(h, a->prefix, ls_one, (void *)(uintptr_t)a, &err);
	if (rc != HTTPLOCK_OK) {
		fflush(stdout);
		return out_fail("ls", a->prefix, rc, &err, NULL);
	}
	return out_flush("ls");
}
