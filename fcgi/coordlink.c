/*
 * coordlink.c: notifications to the coordinator and what the worker last
 * saw of it (coordlink.h).
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <string.h>

#include "coordlink.h"
#include "log.h"
#include "proto.h"

_Static_assert(LC_KEY_MAX <= PROTO_NAME_MAX,
    "the coordinator must carry every lock key");

static struct {
	const char            *socket;
	int64_t                poll_ms;
	pid_t                  pid;
	struct coord_notifier *notifier;
	atomic_bool            down;    /* the last registration or
	                                   notification failed */
} cl;

void
coordlink_init(const char *socket, int64_t poll_ms, pid_t pid)
{
	cl.socket = socket;
	cl.poll_ms = poll_ms;
	cl.pid = pid;
	atomic_store(&cl.down, false);
	if ((cl.notifier = coord_notifier_new(socket)) == NULL)
		fatal("%s: coord_notifier_new", __func__);
}

void
coordlink_seen(bool up)
{
	if (up) {
		if (atomic_load(&cl.down) && atomic_exchange(&cl.down, false))
			log_info("coordinator at %s is back: waiters are "
			    "woken again", cl.socket);
	} else if (!atomic_load(&cl.down) && !atomic_exchange(&cl.down, true))
		log_warnx("coordinator at %s unreachable: waiters poll the "
		    "database every %" PRId64 " ms until it is back",
		    cl.socket, cl.poll_ms);
}

void
coordlink_notify(const char *key, bool wake_first, int64_t kick,
    int64_t expires)
{
	coordlink_seen(coord_notify(cl.notifier, key, wake_first, kick,
	    expires) == COORDC_OK);
}

bool
coordlink_ping(struct coord_stats *cs)
{
	return coord_ping(cl.socket, cs, COORD_ACK_MS) == COORDC_OK;
}

void
coordlink_handoff_init(struct lock_handoff *ho)
{
	memset(ho, 0, sizeof(*ho));
	ho->only_pid = atomic_load(&cl.down) ? cl.pid : 0;
}
