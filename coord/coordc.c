/*
 * coordc: the worker's side of the coordinator protocol (coordc.h).
 *
 * Waiter connections are nonblocking and read no further than the end of
 * the frame at hand, so that whatever the coordinator sent next stays in
 * the kernel and keeps coord_waiter_fd() readable for the caller's poll().
 * The notifier is one blocking connection with a short send timeout behind
 * a mutex; after a timeout it stays closed for a moment, so that a hung
 * coordinator costs the worker's threads one timeout, not one each.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "coordc.h"
#include "proto.h"

#define CONNECT_MS      500      /* waiter connect, if the backlog is full */
#define NOTIFY_SEND_MS  100      /* notifier connect and send timeout */
#define NOTIFY_PAUSE_MS 1000     /* no new attempt this long after a timeout */

struct coord_waiter {
	int      fd;
	bool     broken;                 /* a call failed; only free is left */
	size_t   inlen;
	uint8_t  in[PROTO_FRAME_MAX];    /* the frame being read */
};

struct coord_notifier {
	pthread_mutex_t mu;
	int      fd;                     /* -1: not connected */
	int64_t  pause_until;            /* monotonic ms; 0: none */
	char     path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

/* Milliseconds left until `deadline` (monotonic), at least 0. */
static int
ms_left(int64_t deadline)
{
	return clock_ms_left(deadline, clock_mono_ms());
}

static int
set_timeout(int fd, int opt, int ms)
{
	struct timeval tv;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	return setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof(tv));
}

/*
 * Connects a new stream socket to `path`.  A Unix-domain connect either
 * completes at once or, when the listener's backlog is full, sleeps; the
 * send timeout bounds that sleep (connect then fails with EAGAIN).
 * Returns the blocking descriptor, or -1 with errno.
 */
static int
unix_connect(const char *path, int timeout_ms)
{
	struct sockaddr_un sun;
	size_t len = strlen(path);
	int fd, saved;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (len == 0 || len >= sizeof(sun.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sun.sun_path, path, len + 1);

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	if (set_timeout(fd, SO_SNDTIMEO, timeout_ms) == -1)
		goto fail;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		int err = 0;
		socklen_t elen = sizeof(err);

		/* Interrupted, the connect goes on; wait for its outcome. */
		if (errno != EINTR)
			goto fail;
		if (poll(&pfd, 1, timeout_ms) != 1) {
			errno = ETIMEDOUT;
			goto fail;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == -1)
			goto fail;
		if (err != 0) {
			errno = err;
			goto fail;
		}
	}
	return fd;
fail:
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

static int
set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl == -1)
		return -1;
	return fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/*
 * Writes buf[0..len) to the nonblocking `fd` by `deadline`.
 * Returns COORDC_OK, COORDC_E_TIMEOUT or COORDC_E_DOWN.
 */
static int
send_all(int fd, const uint8_t *buf, size_t len, int64_t deadline)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };
			int left = ms_left(deadline);

			if (left == 0)
				return COORDC_E_TIMEOUT;
			if (poll(&pfd, 1, left) == -1 && errno != EINTR)
				return COORDC_E_DOWN;
			continue;
		}
		return COORDC_E_DOWN;
	}
	return COORDC_OK;
}

/*
 * Reads, without blocking, toward the end of the frame at in[0..*inlen)
 * and decodes it once complete; never reads past that frame.  Returns
 * COORDC_OK with either *m filled (m->name points into `in`; *inlen is
 * reset for the next frame) or *again set when nothing more is readable
 * yet; COORDC_E_DOWN on EOF or a socket error; COORDC_E_PROTO on a frame
 * that does not decode (another version, ERROR from another version).
 */
static int
read_frame(int fd, uint8_t *in, size_t *inlen, struct proto_msg *m,
    bool *again)
{
	*again = false;
	for (;;) {
		size_t used, want;
		ssize_t n;
		int rc;

		rc = proto_decode(in, *inlen, m, &used);
		if (rc == PROTO_OK) {
			*inlen = 0;  /* `m` points into `in` until next read */
			return COORDC_OK;
		}
		if (rc != PROTO_E_SHORT)
			return COORDC_E_PROTO;
		/*
		 * Short: either the header is incomplete, or it is complete
		 * and valid (decode checks it first) and states the length.
		 */
		if (*inlen < PROTO_HDR_LEN)
			want = PROTO_HDR_LEN - *inlen;
		else
			want = PROTO_HDR_LEN + ((size_t)in[4] << 24 |
			    (size_t)in[5] << 16 | (size_t)in[6] << 8 |
			    (size_t)in[7]) - *inlen;
		n = recv(fd, in + *inlen, want, MSG_DONTWAIT);
		if (n > 0) {
			*inlen += (size_t)n;
			continue;
		}
		if (n == 0)
			return COORDC_E_DOWN;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			*again = true;
			return COORDC_OK;
		}
		return COORDC_E_DOWN;
	}
}

struct coord_waiter *
coord_waiter_open(const char *path)
{
	struct coord_waiter *w;
	int saved;

	if ((w = calloc(1, sizeof(*w))) == NULL)
		return NULL;
	if ((w->fd = unix_connect(path, CONNECT_MS)) == -1)
		goto fail;
	if (set_nonblock(w->fd) == -1)
		goto fail;
	return w;
fail:
	saved = errno;
	coord_waiter_free(w);
	errno = saved;
	return NULL;
}

void
coord_waiter_free(struct coord_waiter *w)
{
	if (w == NULL)
		return;
	if (w->fd != -1)
		close(w->fd);
	free(w);
}

int
coord_waiter_fd(const struct coord_waiter *w)
{
	return w->fd;
}

/*
 * Frames read before the ACK belong to an earlier registration on this
 * connection (a WAKE the caller did not collect) and are dropped: the
 * caller re-checks the database after the ACK anyway.  Frames after the
 * ACK stay unread in the socket for coord_waiter_read().  Any failure,
 * including a timeout, leaves the connection in an unknown state, so it
 * is marked broken and every later call returns COORDC_E_DOWN.
 */
int
coord_waiter_register(struct coord_waiter *w, const char *name,
    int64_t waiter_id, int64_t holder_expires, int timeout_ms)
{
	uint8_t frame[PROTO_FRAME_MAX];
	struct proto_msg m;
	int64_t deadline = clock_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	int n, rc;

	if (w->broken)
		return COORDC_E_DOWN;
	memset(&m, 0, sizeof(m));
	m.type = PROTO_WAIT;
	m.waiter_id = (uint64_t)waiter_id;
	m.expires = holder_expires;
	m.name = name;
	m.namelen = strnlen(name, PROTO_NAME_MAX + 1);
	if ((n = proto_encode(&m, frame, sizeof(frame))) < 0)
		return COORDC_E_PROTO;      /* empty or over-long name */

	rc = send_all(w->fd, frame, (size_t)n, deadline);
	while (rc == COORDC_OK) {
		struct pollfd pfd = { .fd = w->fd, .events = POLLIN };
		bool again;
		int left;

		rc = read_frame(w->fd, w->in, &w->inlen, &m, &again);
		if (rc != COORDC_OK)
			break;
		if (!again) {
			if (m.type == PROTO_ACK)
				return COORDC_OK;
			if (m.type == PROTO_ERROR)
				rc = COORDC_E_PROTO;
			continue;           /* a stale WAKE: drop it */
		}
		if ((left = ms_left(deadline)) == 0) {
			rc = COORDC_E_TIMEOUT;
			break;
		}
		if (poll(&pfd, 1, left) == -1 && errno != EINTR)
			rc = COORDC_E_DOWN;
	}
	w->broken = true;
	return rc;
}

int
coord_waiter_unwait(struct coord_waiter *w, int timeout_ms)
{
	uint8_t frame[PROTO_HDR_LEN];
	struct proto_msg m;
	int n, rc;

	if (w->broken)
		return COORDC_E_DOWN;
	memset(&m, 0, sizeof(m));
	m.type = PROTO_UNWAIT;
	if ((n = proto_encode(&m, frame, sizeof(frame))) < 0)
		return COORDC_E_PROTO;
	rc = send_all(w->fd, frame, (size_t)n,
	    clock_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0));
	if (rc != COORDC_OK)
		w->broken = true;
	return rc;
}

int
coord_waiter_read(struct coord_waiter *w)
{
	struct proto_msg m;
	bool again;
	int rc;

	if (w->broken)
		return COORDC_E_DOWN;
	for (;;) {
		rc = read_frame(w->fd, w->in, &w->inlen, &m, &again);
		if (rc != COORDC_OK)
			break;
		if (again)
			return COORDC_OK;
		if (m.type == PROTO_WAKE)
			return COORDC_WOKEN;
		if (m.type == PROTO_ERROR) {
			rc = COORDC_E_PROTO;
			break;
		}
		/* Anything else (a late ACK, a PONG) is not for us. */
	}
	w->broken = true;
	return rc;
}

struct coord_notifier *
coord_notifier_new(const char *path)
{
	struct coord_notifier *n;
	size_t len = strlen(path);

	if ((n = calloc(1, sizeof(*n))) == NULL)
		return NULL;
	/* An unusable path is found out at the first send, as a down coord. */
	if (len < sizeof(n->path))
		memcpy(n->path, path, len + 1);
	n->fd = -1;
	if (pthread_mutex_init(&n->mu, NULL) != 0) {
		free(n);
		errno = ENOMEM;
		return NULL;
	}
	return n;
}

void
coord_notifier_free(struct coord_notifier *n)
{
	if (n == NULL)
		return;
	if (n->fd != -1)
		close(n->fd);
	pthread_mutex_destroy(&n->mu);
	free(n);
}

/*
 * Reads and drops whatever the coordinator sent on the notifier
 * connection (it never answers a NOTIFY; it may have sent ERROR before
 * closing).  Returns false if the connection has ended.
 */
static bool
notifier_drain(int fd)
{
	uint8_t buf[256];

	for (;;) {
		ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (r > 0)
			continue;
		if (r == -1 && errno == EINTR)
			continue;
		return r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK);
	}
}

/*
 * One attempt to send frame[0..len) on n's connection, connecting first
 * if needed.  Returns COORDC_OK, or COORDC_E_DOWN with the connection
 * closed and *timedout set if the coordinator was too slow.
 */
static int
notifier_send(struct coord_notifier *n, const uint8_t *frame, size_t len,
    bool *timedout)
{
	size_t off = 0;

	*timedout = false;
	if (n->fd == -1) {
		n->fd = unix_connect(n->path, NOTIFY_SEND_MS);
		if (n->fd == -1) {
			*timedout = (errno == EAGAIN || errno == ETIMEDOUT);
			return COORDC_E_DOWN;
		}
	}
	while (off < len) {
		ssize_t r = send(n->fd, frame + off, len - off, MSG_NOSIGNAL);

		if (r > 0) {
			off += (size_t)r;
			continue;
		}
		if (r == -1 && errno == EINTR)
			continue;
		*timedout = (r == -1 &&
		    (errno == EAGAIN || errno == EWOULDBLOCK));
		close(n->fd);
		n->fd = -1;
		return COORDC_E_DOWN;
	}
	return COORDC_OK;
}

int
coord_notify(struct coord_notifier *n, const char *name, bool wake_first,
    int64_t kick_id, int64_t expires)
{
	uint8_t frame[PROTO_FRAME_MAX];
	struct proto_msg m;
	bool timedout, fresh;
	int len, rc;

	memset(&m, 0, sizeof(m));
	m.type = PROTO_NOTIFY;
	m.flags = wake_first ? PROTO_NOTIFY_WAKE : 0;
	m.waiter_id = (uint64_t)kick_id;
	m.expires = expires;
	m.name = name;
	m.namelen = strnlen(name, PROTO_NAME_MAX + 1);
	if ((len = proto_encode(&m, frame, sizeof(frame))) < 0)
		return COORDC_E_PROTO;

	if (pthread_mutex_lock(&n->mu) != 0)
		return COORDC_E_DOWN;
	if (n->pause_until != 0 && clock_mono_ms() < n->pause_until) {
		rc = COORDC_E_DOWN;
		goto out;
	}
	n->pause_until = 0;
	/*
	 * A connection the coordinator has closed (it restarted) would
	 * fail the send; notice that first and reconnect, and if the send
	 * still fails on an old connection, try once more on a new one.
	 */
	if (n->fd != -1 && !notifier_drain(n->fd)) {
		close(n->fd);
		n->fd = -1;
	}
	fresh = (n->fd == -1);
	rc = notifier_send(n, frame, (size_t)len, &timedout);
	if (rc != COORDC_OK && !fresh && !timedout)
		rc = notifier_send(n, frame, (size_t)len, &timedout);
	if (rc != COORDC_OK && timedout)
		n->pause_until = clock_mono_ms() + NOTIFY_PAUSE_MS;
out:
	pthread_mutex_unlock(&n->mu);
	return rc;
}

int
coord_ping(const char *path, struct coord_stats *st, int timeout_ms)
{
	uint8_t frame[PROTO_HDR_LEN], in[PROTO_FRAME_MAX];
	struct proto_msg m;
	size_t inlen = 0;
	int64_t deadline;
	int fd, n, rc;

	if (timeout_ms < 0)
		timeout_ms = 0;
	deadline = clock_mono_ms() + timeout_ms;
	if ((fd = unix_connect(path, timeout_ms > 0 ? timeout_ms : 1)) == -1)
		return errno == EAGAIN ? COORDC_E_TIMEOUT : COORDC_E_DOWN;
	if (set_nonblock(fd) == -1) {
		rc = COORDC_E_DOWN;
		goto out;
	}
	memset(&m, 0, sizeof(m));
	m.type = PROTO_PING;
	if ((n = proto_encode(&m, frame, sizeof(frame))) < 0) {
		rc = COORDC_E_PROTO;
		goto out;
	}
	rc = send_all(fd, frame, (size_t)n, deadline);
	while (rc == COORDC_OK) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		bool again;
		int left;

		rc = read_frame(fd, in, &inlen, &m, &again);
		if (rc != COORDC_OK)
			break;
		if (!again) {
			if (m.type == PROTO_PONG) {
				st->peers = m.peers;
				st->waiters = m.waiters;
				st->locks = m.locks;
				break;
			}
			rc = COORDC_E_PROTO;
			break;
		}
		if ((left = ms_left(deadline)) == 0) {
			rc = COORDC_E_TIMEOUT;
			break;
		}
		if (poll(&pfd, 1, left) == -1 && errno != EINTR)
			rc = COORDC_E_DOWN;
	}
out:
	close(fd);
	return rc;
}
