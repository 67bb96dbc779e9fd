/*
 * loadgen: httplock's load generator (bench/run drives it).
 *
 * HTTP/1.1 keep-alive over plain non-blocking sockets, all clients in one
 * thread on epoll (so 10,000 clients are 10,000 sockets, not threads), no
 * process spawned per request.  Every latency is taken with CLOCK_MONOTONIC
 * in nanoseconds into per-client arrays; a run prints a human summary on
 * stderr and ONE machine-readable line on stdout:
 *
 *   RESULT mode=... key=value ...
 *
 * Modes (-m):
 *   cycle    W1: C clients, client i on its own lock, acquire -> release.
 *            W5 variants: -F takes a fresh lock name (PREFIX-<k>, k counting
 *            up) for every cycle, so every acquire creates a lock row;
 *            -R N picks every cycle a random one of the N existing names
 *            PREFIX-0 .. PREFIX-<N-1> (client i only k = i mod C, so
 *            clients never collide).
 *   contend  W2: C clients on one lock, blocking acquire -> release; checks
 *            that no two clients hold at once and that fences only grow.
 *   handoff  W3: a holder releases while one client waits; time from the
 *            release response to the waiter's 200.
 *   expiry   W6: a grant with a short ttl, a waiter waits; time from the
 *            grant's expires_at to the waiter's 200 (wall clock).
 *   waiters  W4: N clients queued at once over K locks, enqueued one by one
 *            (each confirmed by the lock's status); RSS and fds of the
 *            server while they wait; then all are served and the grant
 *            order is checked against the queue order.
 *
 * -E speaks etcd's v3 JSON gateway instead (cycle and contend only):
 * /v3/lease/grant once per client, then /v3/lock/lock and /v3/lock/unlock.
 *
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror bench/loadgen.c -o loadgen
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define INBUF	16384
#define OUTBUF	2048

struct lat {
	int64_t *v;
	size_t n, cap;
};

struct conn;
typedef void (*resp_cb)(struct conn *);

struct conn {
	int fd;
	int id;
	/* request being sent */
	char out[OUTBUF];
	size_t outlen, outoff;
	bool want_out;
	/* response being read */
	char in[INBUF];
	size_t inlen;
	char body[INBUF];
	size_t bodylen;
	int status;
	bool busy;		/* a request is outstanding */
	bool close_after;	/* the response said Connection: close */
	long reconnects;
	bool done;		/* its response is complete */
	bool resent;		/* the request was sent again after an EOF */
	int64_t t_send, t_done;		/* monotonic ns */
	int64_t rt_done;		/* realtime ns at t_done */
	resp_cb cb;
	/* client state */
	int state;
	int lock;		/* index of its lock */
	bool stop;
	char token[128];
	char lease[40];
	long long count;	/* grants in the measuring window */
	struct lat acq, rel;
};

static struct {
	const char *host;
	int port;
	int ports[8], nports;	/* -p P1,P2,...: client i uses ports[i % n] */
	int ep;
	int mode_etcd;
	const char *prefix;
	int64_t t_start, t_warm, t_stop;
	bool stopping;
	int active;
	long long errors;
	char lasterr[256];
	/* W2 checks */
	bool held;
	long long overlaps, fence_regress, last_fence, grants;
	long long total;	/* responses, whole run */
	/* W4 */
	long long *next_pos;	/* per lock: grants so far */
	long long fifo_bad, granted;
	int nlocks;
	int pick_fresh;		/* -F */
	long pick_n;		/* -R N */
	int nclients;
	long long fresh_next;
	double ttl;
	double timeout;
} G = { .host = "127.0.0.1", .prefix = "bench", .ttl = 30, .timeout = 10 };

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t
real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "loadgen: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(1);
}

static void
lat_add(struct lat *l, int64_t v)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 1024;
		l->v = realloc(l->v, l->cap * sizeof(*l->v));
		if (l->v == NULL)
			die("out of memory");
	}
	l->v[l->n++] = v;
}

static int
cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* Merges per-client arrays into one sorted array. */
static struct lat
lat_merge(struct conn *cs, int n, int which)
{
	struct lat m = { 0 };
	int i;
	size_t j;

	for (i = 0; i < n; i++) {
		struct lat *l = which ? &cs[i].rel : &cs[i].acq;
		for (j = 0; j < l->n; j++)
			lat_add(&m, l->v[j]);
	}
	if (m.n)
		qsort(m.v, m.n, sizeof(*m.v), cmp64);
	return m;
}

static double
pct_ms(const struct lat *l, double p)
{
	size_t i;

	if (l->n == 0)
		return NAN;
	i = (size_t)(p / 100.0 * (double)l->n);
	if ((double)i < p / 100.0 * (double)l->n)
		i++;	/* ceil */
	if (i > 0)
		i--;
	if (i >= l->n)
		i = l->n - 1;
	return (double)l->v[i] / 1e6;
}

static void
err(struct conn *c, const char *what)
{
	G.errors++;
	snprintf(G.lasterr, sizeof(G.lasterr), "client %d: %s (status %d: %.120s)",
	    c->id, what, c->status, c->body);
}

/* ------------------------------------------------------------------------
 * Connections and HTTP. */

static void
ep_set(struct conn *c, bool out)
{
	struct epoll_event ev = { .events = EPOLLIN | (out ? EPOLLOUT : 0),
	    .data.ptr = c };

	if (out == c->want_out)
		return;
	c->want_out = out;
	if (epoll_ctl(G.ep, EPOLL_CTL_MOD, c->fd, &ev) == -1)
		die("epoll_ctl: %s", strerror(errno));
}

static void
conn_open(struct conn *c)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
	    .sin_port = htons(G.ports[c->id % G.nports]) };
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
	int one = 1;

	inet_pton(AF_INET, G.host, &sa.sin_addr);
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd == -1)
		die("socket: %s (raise ulimit -n)", strerror(errno));
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 &&
	    errno != EINPROGRESS)
		die("connect: %s", strerror(errno));
	c->want_out = true;
	if (epoll_ctl(G.ep, EPOLL_CTL_ADD, c->fd, &ev) == -1)
		die("epoll_ctl: %s", strerror(errno));
}

static void
try_send(struct conn *c)
{
	while (c->outoff < c->outlen) {
		ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff,
		    MSG_NOSIGNAL);
		if (n > 0) {
			c->outoff += (size_t)n;
			continue;
		}
		if (n == -1 && (errno == EAGAIN || errno == EINTR || errno == ENOTCONN))
			break;
		die("client %d: send: %s", c->id, strerror(errno));
	}
	ep_set(c, c->outoff < c->outlen);
}

/* Sends one request; the response calls cb (may be NULL) with c->done set. */
static void
request(struct conn *c, const char *method, const char *path,
    const char *ctype, const char *body, resp_cb cb)
{
	size_t blen = body ? strlen(body) : 0;
	int n;

	if (c->busy)
		die("client %d: request while busy", c->id);
	n = snprintf(c->out, sizeof(c->out), "%s %s HTTP/1.1\r\nHost: %s\r\n"
	    "%s%s%s"
	    "Content-Length: %zu\r\n\r\n%s", method, path, G.host,
	    ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "",
	    blen, body ? body : "");
	if (n < 0 || (size_t)n >= sizeof(c->out))
		die("request too long");
	if (strcmp(method, "GET") == 0 && !body) {
		/* no body: drop the Content-Length header */
		n = snprintf(c->out, sizeof(c->out), "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n",
		    path, G.host);
	}
	c->outlen = (size_t)n;
	c->outoff = 0;
	c->busy = true;
	c->resent = false;
	c->done = false;
	c->status = 0;
	c->cb = cb;
	c->t_send = now_ns();
	try_send(c);
}

static const char FORM[] = "application/x-www-form-urlencoded";
static const char JSONT[] = "application/json";

/* Parses a complete response out of c->in; 1 when one is complete. */
static int
parse_response(struct conn *c)
{
	char *hend, *p, *q;
	size_t hlen, clen = 0, need;
	bool chunked = false, has_len = false;

	if (c->inlen == 0)
		return 0;
	c->in[c->inlen < INBUF ? c->inlen : INBUF - 1] = '\0';
	hend = memmem(c->in, c->inlen, "\r\n\r\n", 4);
	if (hend == NULL) {
		if (c->inlen >= INBUF - 1)
			die("client %d: response header too large", c->id);
		return 0;
	}
	hlen = (size_t)(hend - c->in) + 4;
	if (strncmp(c->in, "HTTP/1.", 7) != 0)
		die("client %d: not HTTP: %.40s", c->id, c->in);
	c->status = atoi(c->in + 9);
	for (p = strstr(c->in, "\r\n"); p && p < hend; p = strstr(p + 2, "\r\n")) {
		q = p + 2;
		if (strncasecmp(q, "Content-Length:", 15) == 0) {
			clen = strtoul(q + 15, NULL, 10);
			has_len = true;
		} else if (strncasecmp(q, "Connection:", 11) == 0 &&
		    strcasestr(q, "close") && strcasestr(q, "close") < strstr(q, "\r\n"))
			c->close_after = true;
		else if (strncasecmp(q, "Transfer-Encoding:", 18) == 0 &&
		    strstr(q, "chunked") && strstr(q, "chunked") < strstr(q, "\r\n"))
			chunked = true;
	}
	if (chunked) {
		size_t off = hlen, bl = 0;
		for (;;) {
			char *eol = memmem(c->in + off, c->inlen - off, "\r\n", 2);
			size_t sz;
			if (eol == NULL)
				return 0;
			sz = strtoul(c->in + off, NULL, 16);
			off = (size_t)(eol - c->in) + 2;
			if (sz == 0) {
				if (c->inlen - off < 2)
					return 0;
				/* no trailers expected */
				off += 2;
				break;
			}
			if (c->inlen - off < sz + 2)
				return 0;
			if (bl + sz >= INBUF)
				die("client %d: body too large", c->id);
			memcpy(c->body + bl, c->in + off, sz);
			bl += sz;
			off += sz + 2;
		}
		c->bodylen = bl;
		c->body[bl] = '\0';
		need = off;
	} else {
		if (!has_len)
			die("client %d: response without length", c->id);
		need = hlen + clen;
		if (need >= INBUF)
			die("client %d: response too large", c->id);
		if (c->inlen < need)
			return 0;
		memcpy(c->body, c->in + hlen, clen);
		c->bodylen = clen;
		c->body[clen] = '\0';
	}
	memmove(c->in, c->in + need, c->inlen - need);
	c->inlen -= need;
	return 1;
}

static long reconnects, resent;

/* The server closes keep-alive connections (lighttpd after
 * server.max-keep-alive-requests, 1000 by default): open a new one. */
static void
reconnect(struct conn *c)
{
	close(c->fd);
	c->inlen = 0;
	c->close_after = false;
	c->want_out = false;
	c->reconnects++;
	reconnects++;
	conn_open(c);
}

static void
on_readable(struct conn *c)
{
	bool eof = false;

	for (;;) {
		ssize_t n = recv(c->fd, c->in + c->inlen, INBUF - 1 - c->inlen, 0);
		if (n > 0) {
			c->inlen += (size_t)n;
			if (c->inlen >= INBUF - 1)
				break;
			continue;
		}
		if (n == 0) {
			eof = true;
			break;
		}
		if (errno == EAGAIN || errno == EINTR)
			break;
		die("client %d: recv: %s", c->id, strerror(errno));
	}
	while (parse_response(c)) {
		if (!c->busy)
			die("client %d: response without request", c->id);
		c->t_done = now_ns();
		c->rt_done = real_ns();
		c->busy = false;
		c->done = true;
		G.total++;
		if (c->close_after || eof) {
			if (c->inlen)
				die("client %d: data after a closing response", c->id);
			reconnect(c);
			if (c->cb)
				c->cb(c);
			return;
		}
		if (c->cb)
			c->cb(c);
	}
	if (eof) {
		if (c->busy && c->inlen == 0 && !c->resent) {
			/* lighttpd closes keep-alive connections idle for
			 * server.max-keep-alive-idle (5 s) seconds: a request
			 * sent just as it did so was never read.  Send it
			 * again on a new connection, once. */
			reconnect(c);
			c->outoff = 0;
			c->resent = true;
			resent++;
			try_send(c);
			return;
		}
		if (c->busy || c->inlen)
			die("client %d: server closed the connection%s", c->id,
			    c->busy ? " with a request outstanding" : "");
		reconnect(c);
	}
}

/* One round of the event loop. */
static void
pump(int timeout_ms)
{
	struct epoll_event evs[256];
	int i, n;

	n = epoll_wait(G.ep, evs, 256, timeout_ms);
	if (n == -1 && errno != EINTR)
		die("epoll_wait: %s", strerror(errno));
	for (i = 0; i < n; i++) {
		struct conn *c = evs[i].data.ptr;
		if (evs[i].events & EPOLLOUT)
			try_send(c);
		if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
			on_readable(c);
	}
}

static void
wait_done(struct conn *c, int64_t limit_ns)
{
	int64_t end = now_ns() + limit_ns;

	while (!c->done) {
		if (now_ns() > end)
			die("client %d: no response within %.1f s", c->id, limit_ns / 1e9);
		pump(50);
	}
}

/* ------------------------------------------------------------------------
 * JSON by string search (the responses are flat and machine-made). */

static int
json_str(const char *body, const char *key, char *out, size_t outsz)
{
	char pat[64];
	const char *p, *e;

	snprintf(pat, sizeof(pat), "\"%s\":\"", key);
	p = strstr(body, pat);
	if (p == NULL)
		return -1;
	p += strlen(pat);
	e = strchr(p, '"');
	if (e == NULL || (size_t)(e - p) >= outsz)
		return -1;
	memcpy(out, p, (size_t)(e - p));
	out[e - p] = '\0';
	return 0;
}

static int
json_num(const char *body, const char *key, double *v)
{
	char pat[64];
	const char *p;
	char *end;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(body, pat);
	if (p == NULL)
		return -1;
	p += strlen(pat);
	if (*p == '"')
		p++;
	*v = strtod(p, &end);
	return end == p ? -1 : 0;
}

static void
b64(const char *in, char *out)
{
	static const char T[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t n = strlen(in), i;
	const unsigned char *s = (const unsigned char *)in;

	for (i = 0; i + 2 < n; i += 3) {
		*out++ = T[s[i] >> 2];
		*out++ = T[((s[i] & 3) << 4) | (s[i + 1] >> 4)];
		*out++ = T[((s[i + 1] & 15) << 2) | (s[i + 2] >> 6)];
		*out++ = T[s[i + 2] & 63];
	}
	if (n - i == 1) {
		*out++ = T[s[i] >> 2];
		*out++ = T[(s[i] & 3) << 4];
		*out++ = '=';
		*out++ = '=';
	} else if (n - i == 2) {
		*out++ = T[s[i] >> 2];
		*out++ = T[((s[i] & 3) << 4) | (s[i + 1] >> 4)];
		*out++ = T[(s[i + 1] & 15) << 2];
		*out++ = '=';
	}
	*out = '\0';
}

/* ------------------------------------------------------------------------
 * Lock operations (httplock or etcd). */

/* W5: the lock of the next cycle (-F, -R). */
static void
pick_lock(struct conn *c, int nclients)
{
	long per;

	if (G.pick_fresh)
		c->lock = (int)G.fresh_next++;
	else if (G.pick_n > 0) {
		per = (G.pick_n - c->id + nclients - 1) / nclients;
		if (per < 1)
			die("-R %ld: fewer names than clients", G.pick_n);
		c->lock = c->id + nclients * (int)(random() % per);
	}
}

static void
lock_name(struct conn *c, char *out, size_t n)
{
	if (G.nlocks <= 1 && !G.pick_fresh && G.pick_n == 0)
		snprintf(out, n, "%s", G.prefix);
	else
		snprintf(out, n, "%s-%d", G.prefix, c->lock);
}

static void
send_acquire(struct conn *c, resp_cb cb, const char *extra)
{
	char name[128], path[256], body[512];

	lock_name(c, name, sizeof(name));
	if (G.mode_etcd) {
		char b[256];
		b64(name, b);
		snprintf(body, sizeof(body), "{\"name\":\"%s\",\"lease\":\"%s\"}",
		    b, c->lease);
		request(c, "POST", "/v3/lock/lock", JSONT, body, cb);
		return;
	}
	snprintf(path, sizeof(path), "/lock/%s/acquire", name);
	snprintf(body, sizeof(body), "ttl=%g&timeout=%g%s", G.ttl, G.timeout,
	    extra ? extra : "");
	request(c, "POST", path, FORM, body, cb);
}

static void
send_release(struct conn *c, resp_cb cb)
{
	char name[128], path[256], body[512];

	if (G.mode_etcd) {
		snprintf(body, sizeof(body), "{\"key\":\"%s\"}", c->token);
		request(c, "POST", "/v3/lock/unlock", JSONT, body, cb);
		return;
	}
	lock_name(c, name, sizeof(name));
	snprintf(path, sizeof(path), "/lock/%s/release", name);
	snprintf(body, sizeof(body), "token=%s", c->token);
	request(c, "POST", path, FORM, body, cb);
}

/* Takes the token (httplock) or key (etcd) of a grant; -1 if none. */
static int
take_token(struct conn *c)
{
	if (c->status != 200)
		return -1;
	return json_str(c->body, G.mode_etcd ? "key" : "token", c->token,
	    sizeof(c->token));
}

static int
get_waiters(struct conn *c, const char *name)
{
	char path[256];
	double w;

	snprintf(path, sizeof(path), "/lock/%s", name);
	request(c, "GET", path, NULL, NULL, NULL);
	wait_done(c, 10LL * 1000000000);
	if (c->status != 200 || json_num(c->body, "waiters", &w) != 0)
		die("status of %s: %d %s", name, c->status, c->body);
	return (int)w;
}

/* etcd: one lease per client, before its loop. */
static void
etcd_leases(struct conn *cs, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		request(&cs[i], "POST", "/v3/lease/grant", JSONT, "{\"TTL\":600}", NULL);
		wait_done(&cs[i], 10LL * 1000000000);
		if (cs[i].status != 200 ||
		    json_str(cs[i].body, "ID", cs[i].lease, sizeof(cs[i].lease)) != 0)
			die("etcd lease grant: %d %s", cs[i].status, cs[i].body);
	}
}

/* ------------------------------------------------------------------------
 * W1 cycle and W2 contend: acquire -> release loops. */

static bool
in_window(int64_t t)
{
	return t >= G.t_warm && t < G.t_stop;
}

static void loop_acquired(struct conn *c);
static struct conn **pending;
static int npending;

static void
loop_released(struct conn *c)
{
	if (c->status != 200)
		err(c, "release failed");
	if (in_window(c->t_done))
		lat_add(&c->rel, c->t_done - c->t_send);
	if (G.stopping || c->t_done >= G.t_stop) {
		c->stop = true;
		G.active--;
		return;
	}
	pick_lock(c, G.nclients);
	send_acquire(c, loop_acquired, NULL);
}

static void
loop_acquired(struct conn *c)
{
	double fence;

	if (take_token(c) != 0) {
		err(c, "acquire failed");
		if (c->t_done >= G.t_stop || G.errors > 100) {
			c->stop = true;
			G.active--;
			return;
		}
		send_acquire(c, loop_acquired, NULL);
		return;
	}
	if (in_window(c->t_done)) {
		lat_add(&c->acq, c->t_done - c->t_send);
		c->count++;
	}
	if (G.nlocks <= 1) {
		/* one lock: the holder flag and the fence order */
		if (G.held)
			G.overlaps++;
		G.held = true;
		G.grants++;
		if (!G.mode_etcd && json_num(c->body, "fence", &fence) == 0) {
			if ((long long)fence <= G.last_fence)
				G.fence_regress++;
			G.last_fence = (long long)fence;
		}
		/* The release waits for one more round of the event loop, so
		 * that a grant arriving meanwhile finds the flag set. */
		pending[npending++] = c;
		return;
	}
	send_release(c, loop_released);
}

static void
flush_pending(void)
{
	int i, n;

	if (npending == 0)
		return;
	pump(0);
	n = npending;
	npending = 0;
	G.held = false;		/* cleared before the release is sent */
	for (i = 0; i < n; i++)
		send_release(pending[i], loop_released);
}

static void
run_loop(struct conn *cs, int n, double secs, double warm)
{
	int i;
	int64_t hard;

	G.active = n;
	G.t_start = now_ns();
	G.t_warm = G.t_start + (int64_t)(warm * 1e9);
	G.t_stop = G.t_warm + (int64_t)(secs * 1e9);
	hard = G.t_stop + (int64_t)((G.timeout + 15) * 1e9);
	if ((pending = calloc((size_t)n, sizeof(*pending))) == NULL)
		die("out of memory");
	G.nclients = n;
	for (i = 0; i < n; i++) {
		pick_lock(&cs[i], n);
		send_acquire(&cs[i], loop_acquired, NULL);
	}
	while (G.active > 0) {
		pump(100);
		while (npending)
			flush_pending();
		if (now_ns() > hard)
			die("clients still busy %.0f s after the end", (hard - G.t_stop) / 1e9);
	}
}

static void
connect_all(struct conn *cs, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		cs[i].id = i;
		conn_open(&cs[i]);
	}
}

static void
summary_lat(const char *tag, struct lat *l)
{
	printf(" %s_p50=%.3f %s_p99=%.3f %s_max=%.3f", tag, pct_ms(l, 50), tag,
	    pct_ms(l, 99), tag, l->n ? (double)l->v[l->n - 1] / 1e6 : NAN);
}

static int ppid_of(int pid);

/* CPU seconds (user + system) of a process, all its threads. */
static double
cpu_s(int pid)
{
	char path[64], buf[1024], *p;
	FILE *f;
	unsigned long ut = 0, st = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')) != NULL)
		sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
		    &ut, &st);
	fclose(f);
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

struct cpu {
	double lt, wk, co, db, self;
};

static int cpu_lt, cpu_co, cpu_db;	/* -l, -o, -D */

static struct cpu
cpu_now(void)
{
	struct cpu c = { 0 };
	struct timespec ts;
	DIR *d;
	struct dirent *e;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	c.self = ts.tv_sec + ts.tv_nsec / 1e9;
	if (cpu_lt <= 0)
		return c;
	c.lt = cpu_s(cpu_lt);
	if (cpu_co > 0)
		c.co = cpu_s(cpu_co);
	if ((d = opendir("/proc")) == NULL)
		return c;
	if (cpu_db > 0)
		c.db = cpu_s(cpu_db);
	while ((e = readdir(d)) != NULL) {
		int pid = atoi(e->d_name), pp;
		if (pid <= 0)
			continue;
		pp = ppid_of(pid);
		if (pp == cpu_lt)
			c.wk += cpu_s(pid);
		else if (cpu_db > 0 && pp == cpu_db)
			c.db += cpu_s(pid);
	}
	closedir(d);
	return c;
}

static void
mode_loop(int n, double secs, double warm, bool contend)
{
	struct cpu c0, c1;
	long long total;
	struct conn *cs = calloc((size_t)n, sizeof(*cs));
	struct lat a, r, all = { 0 };
	long long cycles = 0, mn = -1, mx = 0;
	double sum = 0, sum2 = 0, jain, window;
	int i;
	size_t j;

	if (cs == NULL)
		die("out of memory");
	G.nlocks = contend ? 1 : n;
	for (i = 0; i < n; i++)
		cs[i].lock = i;
	connect_all(cs, n);
	if (G.mode_etcd)
		etcd_leases(cs, n);
	c0 = cpu_now();
	G.total = 0;
	run_loop(cs, n, secs, warm);
	c1 = cpu_now();
	total = G.total;
	window = (G.t_stop - G.t_warm) / 1e9;
	a = lat_merge(cs, n, 0);
	r = lat_merge(cs, n, 1);
	for (j = 0; j < a.n; j++)
		lat_add(&all, a.v[j]);
	for (j = 0; j < r.n; j++)
		lat_add(&all, r.v[j]);
	if (all.n)
		qsort(all.v, all.n, sizeof(*all.v), cmp64);
	cycles = (long long)r.n;
	for (i = 0; i < n; i++) {
		long long k = cs[i].count;
		sum += (double)k;
		sum2 += (double)k * (double)k;
		if (mn < 0 || k < mn)
			mn = k;
		if (k > mx)
			mx = k;
	}
	jain = sum2 > 0 ? sum * sum / (n * sum2) : NAN;
	printf("RESULT mode=%s etcd=%d clients=%d secs=%.2f", contend ? "contend" : "cycle",
	    G.mode_etcd, n, window);
	if (contend) {
		printf(" handoffs=%lld handoffs_s=%.0f", (long long)a.n, a.n / window);
		summary_lat("wait", &a);
		summary_lat("rel", &r);
		printf(" count_min=%lld count_max=%lld jain=%.5f overlaps=%lld fence_regress=%lld",
		    mn, mx, jain, G.overlaps, G.fence_regress);
	} else {
		printf(" cycles=%lld cycles_s=%.0f req_s=%.0f", cycles, cycles / window,
		    (double)(a.n + r.n) / window);
		summary_lat("req", &all);
		summary_lat("acq", &a);
		summary_lat("rel", &r);
	}
	/* CPU per request over the whole run (warm-up and drain included) */
	if (total > 0)
		printf(" cpu_us_req=%.1f cpu_lighttpd_us=%.1f cpu_workers_us=%.1f cpu_coord_us=%.1f"
		    " cpu_loadgen_us=%.1f",
		    ((c1.lt - c0.lt) + (c1.wk - c0.wk) + (c1.co - c0.co)) * 1e6 / total,
		    (c1.lt - c0.lt) * 1e6 / total, (c1.wk - c0.wk) * 1e6 / total,
		    (c1.co - c0.co) * 1e6 / total, (c1.self - c0.self) * 1e6 / total);
	if (total > 0 && cpu_db > 0)
		printf(" cpu_db_us=%.1f", (c1.db - c0.db) * 1e6 / total);
	printf(" reconnects=%ld errors=%lld\n", reconnects, G.errors);
	if (G.errors)
		fprintf(stderr, "loadgen: %lld errors; last: %s\n", G.errors, G.lasterr);
}

/* ------------------------------------------------------------------------
 * W3 handoff latency. */

static void
mode_handoff(int rounds)
{
	struct conn cs[2] = { 0 };
	struct lat after_resp = { 0 }, after_send = { 0 };
	int i, k, tries, neg = 0;

	G.nlocks = 1;
	connect_all(cs, 2);
	for (i = 0; i < rounds; i++) {
		struct conn *h = &cs[i & 1], *w = &cs[!(i & 1)];
		int64_t t_rel_send, t_rel_done;

		if (i == 0) {
			send_acquire(h, NULL, NULL);
			wait_done(h, 10LL * 1000000000);
			if (take_token(h) != 0)
				die("first acquire: %d %s", h->status, h->body);
		}
		/* h holds; w queues behind it */
		send_acquire(w, NULL, NULL);
		for (tries = 0; ; tries++) {
			k = get_waiters(h, G.prefix);
			if (k == 1)
				break;
			if (w->done)
				die("waiter answered while the lock was held: %d %s", w->status, w->body);
			if (tries > 2000)
				die("waiter never showed up in the queue");
		}
		t_rel_send = now_ns();
		send_release(h, NULL);
		while (!(h->done && w->done))
			pump(100);
		t_rel_done = h->t_done;
		if (h->status != 200)
			die("release: %d %s", h->status, h->body);
		if (take_token(w) != 0)
			die("waiter: %d %s", w->status, w->body);
		lat_add(&after_resp, w->t_done - t_rel_done);
		lat_add(&after_send, w->t_done - t_rel_send);
		if (w->t_done < t_rel_done)
			neg++;
		/* w now holds; next round it is the holder */
	}
	/* the last holder lets go */
	send_release(&cs[rounds & 1], NULL);
	wait_done(&cs[rounds & 1], 10LL * 1000000000);
	qsort(after_resp.v, after_resp.n, sizeof(int64_t), cmp64);
	qsort(after_send.v, after_send.n, sizeof(int64_t), cmp64);
	printf("RESULT mode=handoff rounds=%d", rounds);
	summary_lat("h", &after_resp);
	summary_lat("hs", &after_send);
	printf(" before_release_resp=%d errors=%lld\n", neg, G.errors);
}

/* ------------------------------------------------------------------------
 * W6 expiry promptness. */

static void
mode_expiry(int rounds, double ttl)
{
	struct conn cs[2] = { 0 };
	struct lat late = { 0 };
	int i;
	double exp_at;

	G.nlocks = 1;
	connect_all(cs, 2);
	for (i = 0; i < rounds; i++) {
		struct conn *h = &cs[0], *w = &cs[1];
		double save = G.ttl;

		G.ttl = ttl;
		send_acquire(h, NULL, NULL);
		wait_done(h, 10LL * 1000000000);
		G.ttl = save;
		if (take_token(h) != 0 || json_num(h->body, "expires_at", &exp_at) != 0)
			die("holder: %d %s", h->status, h->body);
		send_acquire(w, NULL, NULL);
		wait_done(w, 20LL * 1000000000);
		if (take_token(w) != 0)
			die("waiter: %d %s", w->status, w->body);
		lat_add(&late, w->rt_done - (int64_t)(exp_at * 1e9 + 0.5));
		send_release(w, NULL);
		wait_done(w, 10LL * 1000000000);
	}
	qsort(late.v, late.n, sizeof(int64_t), cmp64);
	printf("RESULT mode=expiry rounds=%d ttl=%g", rounds, ttl);
	summary_lat("late", &late);
	printf(" min=%.3f errors=%lld\n", late.n ? late.v[0] / 1e6 : NAN, G.errors);
}

/* ------------------------------------------------------------------------
 * W4 many waiters. */

static long
rss_kb(int pid)
{
	char path[64], line[256];
	FILE *f;
	long kb = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "VmRSS:", 6) == 0)
			kb = atol(line + 6);
	fclose(f);
	return kb;
}

static int
nfds(int pid)
{
	char path[64];
	DIR *d;
	struct dirent *e;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", pid);
	if ((d = opendir(path)) == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static int
nthreads(int pid)
{
	char path[64], line[256];
	FILE *f;
	int n = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "Threads:", 8) == 0)
			n = atoi(line + 8);
	fclose(f);
	return n;
}

static int
ppid_of(int pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	int pp = -1;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')) != NULL)
		sscanf(p + 2, "%*c %d", &pp);
	fclose(f);
	return pp;
}

struct usage {
	long rss_lt, rss_wk, rss_co;
	int fd_lt, fd_wk, fd_co, thr_wk, nworkers;
};

static int lt_pids[8], nlt;	/* -l PID1,PID2,...: several front ends */

static struct usage
measure(int co_pid)
{
	struct usage u = { 0 };
	DIR *d = opendir("/proc");
	struct dirent *e;
	int i;

	for (i = 0; i < nlt; i++) {
		u.rss_lt += rss_kb(lt_pids[i]);
		u.fd_lt += nfds(lt_pids[i]);
	}
	u.rss_co = rss_kb(co_pid);
	u.fd_co = nfds(co_pid);
	while (d && (e = readdir(d)) != NULL) {
		int pid = atoi(e->d_name), pp;
		if (pid <= 0)
			continue;
		pp = ppid_of(pid);
		for (i = 0; i < nlt; i++)
			if (pp == lt_pids[i])
				break;
		if (i < nlt) {
			u.nworkers++;
			u.rss_wk += rss_kb(pid);
			u.fd_wk += nfds(pid);
			u.thr_wk += nthreads(pid);
		}
	}
	if (d)
		closedir(d);
	return u;
}

static void
print_usage(const char *tag, struct usage *u)
{
	printf(" %s_rss_mb=%.1f %s_rss_lighttpd_mb=%.1f %s_rss_workers_mb=%.1f"
	    " %s_rss_coord_mb=%.1f %s_fds=%d %s_worker_threads=%d", tag,
	    (u->rss_lt + u->rss_wk + u->rss_co) / 1024.0, tag, u->rss_lt / 1024.0,
	    tag, u->rss_wk / 1024.0, tag, u->rss_co / 1024.0, tag,
	    u->fd_lt + u->fd_wk + u->fd_co, tag, u->thr_wk);
}

static long long *w4_order;	/* per client: queue position on its lock */

static void
w4_granted(struct conn *c)
{
	if (take_token(c) != 0) {
		err(c, "waiter not granted");
		c->state = 1;
		return;
	}
	if (w4_order[c->id] != G.next_pos[c->lock])
		G.fifo_bad++;
	G.next_pos[c->lock]++;
	G.granted++;
	lat_add(&c->acq, c->t_done - c->t_send);
	c->state = 1;
	send_release(c, NULL);
	c->cb = NULL;
}

static void
mode_waiters(int n, int nlocks, int lt_pid, int co_pid, double hold)
{
	struct conn *cs = calloc((size_t)n + (size_t)nlocks, sizeof(*cs));
	struct conn *hs;
	struct usage idle, busy;
	char name[128];
	int i, k, tries;
	int64_t t0, t_enq, t_rel, t_end, hard;

	if (cs == NULL || (G.next_pos = calloc((size_t)nlocks, sizeof(long long))) == NULL ||
	    (w4_order = calloc((size_t)n, sizeof(long long))) == NULL)
		die("out of memory");
	G.nlocks = nlocks;
	hs = cs + n;
	for (i = 0; i < n; i++)
		cs[i].lock = i % nlocks;
	for (k = 0; k < nlocks; k++)
		hs[k].lock = k;
	for (k = 0; k < nlocks; k++) {
		hs[k].id = n + k;
		conn_open(&hs[k]);
	}
	(void)lt_pid;
	idle = measure(co_pid);
	/* the holders: their leases must outlast the enqueueing and the
	 * hold (10,000 waiters on one lock take ~30 s to queue), or the
	 * waiters are granted before the measurement */
	if (G.ttl < G.timeout + hold + 60)
		G.ttl = G.timeout + hold + 60;
	for (k = 0; k < nlocks; k++) {
		send_acquire(&hs[k], NULL, NULL);
		wait_done(&hs[k], 10LL * 1000000000);
		if (take_token(&hs[k]) != 0)
			die("holder %d: %d %s", k, hs[k].status, hs[k].body);
	}
	connect_all(cs, n);
	/* let the connects finish */
	t0 = now_ns();
	while (now_ns() - t0 < 200000000LL)
		pump(10);
	/* enqueue one by one; each confirmed by its lock's waiter count */
	t0 = now_ns();
	for (i = 0; i < n; i++) {
		struct conn *c = &cs[i];
		struct conn *h = &hs[c->lock];
		int want = i / nlocks + 1;

		w4_order[i] = i / nlocks;
		send_acquire(c, w4_granted, NULL);
		if (nlocks > 1)
			snprintf(name, sizeof(name), "%s-%d", G.prefix, c->lock);
		else
			snprintf(name, sizeof(name), "%s", G.prefix);
		for (tries = 0; ; tries++) {
			k = get_waiters(h, name);
			if (k == want)
				break;
			if (k > want)
				die("lock %s: %d waiters, expected %d", name, k, want);
			if (c->done)
				die("waiter %d answered early: %d %s", i, c->status, c->body);
			if (tries > 5000)
				die("waiter %d never showed up in the queue (%d of %d);"
				    " %lld errors, last: %s", i, k, want, G.errors, G.lasterr);
		}
	}
	t_enq = now_ns();
	fprintf(stderr, "loadgen: %d waiters queued in %.2f s\n", n, (t_enq - t0) / 1e9);
	/* hold them a moment, then measure */
	while (now_ns() - t_enq < (int64_t)(hold * 1e9))
		pump(50);
	busy = measure(co_pid);
	/* release every lock; each waiter releases as soon as it is granted */
	G.active = n;
	t_rel = now_ns();
	for (k = 0; k < nlocks; k++)
		send_release(&hs[k], NULL);
	hard = t_rel + (int64_t)((G.timeout + 30) * 1e9);
	for (;;) {
		int left = 0;
		for (i = 0; i < n; i++)
			if (cs[i].busy || cs[i].state == 0)
				left++;
		if (left == 0)
			break;
		if (now_ns() > hard)
			die("%d waiters never finished", left);
		pump(100);
	}
	t_end = now_ns();
	printf("RESULT mode=waiters waiters=%d locks=%d enqueue_s=%.2f", n, nlocks,
	    (t_enq - t0) / 1e9);
	print_usage("idle", &idle);
	print_usage("busy", &busy);
	printf(" workers=%d granted=%lld lost=%lld fifo_bad=%lld drain_s=%.3f drain_handoffs_s=%.0f"
	    " resent=%ld errors=%lld\n", busy.nworkers, G.granted, n - G.granted, G.fifo_bad,
	    (t_end - t_rel) / 1e9, G.granted / ((t_end - t_rel) / 1e9), resent, G.errors);
}

/* ------------------------------------------------------------------------ */

static void
usage(void)
{
	fprintf(stderr,
	    "usage: loadgen -p PORT -m cycle|contend|handoff|expiry|waiters [options]\n"
	    "  -c N        clients (cycle, contend, waiters)\n"
	    "  -d SECS     measuring time (cycle, contend); -w SECS warm-up before it\n"
	    "  -n N        rounds (handoff, expiry)\n"
	    "  -L N        locks (waiters)\n"
	    "  -t SECS     ttl of grants (expiry: the short ttl)\n"
	    "  -T SECS     acquire timeout\n"
	    "  -P NAME     lock name prefix\n"
	    "  -F          cycle: a fresh lock name every cycle (W5)\n"
	    "  -R N        cycle: a random one of N names PREFIX-0.. every cycle (W5)\n"
	    "  -E          etcd v3 JSON gateway (cycle, contend)\n"
	    "  -l PID -o PID  lighttpd and coordinator pids (waiters: RSS, fds)\n"
	    "  -D PID      a database server whose CPU (with its children's: a\n"
	    "              PostgreSQL postmaster and its backends) is reported\n"
	    "  -p P1,P2 -l PID1,PID2  several front ends (lighttpds) of one\n"
	    "              database and coordinator: client i uses the (i mod n)th\n"
	    "  -H SECS     waiters: hold the queue this long before measuring\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *mode = NULL;
	int ch, clients = 8, rounds = 1000, nlocks = 1, lt_pid = 0, co_pid = 0;
	double secs = 5, warm = 0.5, ttl = -1, hold = 1;
	struct rlimit rl;

	while ((ch = getopt(argc, argv, "c:d:D:EFh:H:l:L:m:n:o:p:P:R:t:T:w:")) != -1) {
		switch (ch) {
		case 'c': clients = atoi(optarg); break;
		case 'd': secs = atof(optarg); break;
		case 'D': cpu_db = atoi(optarg); break;
		case 'E': G.mode_etcd = 1; break;
		case 'F': G.pick_fresh = 1; break;
		case 'R': G.pick_n = atol(optarg); break;
		case 'h': G.host = optarg; break;
		case 'H': hold = atof(optarg); break;
		case 'l': {
			char *t, *sv = NULL, *dup = strdup(optarg);
			for (t = strtok_r(dup, ",", &sv); t && nlt < 8;
			    t = strtok_r(NULL, ",", &sv))
				lt_pids[nlt++] = atoi(t);
			lt_pid = nlt ? lt_pids[0] : 0;
			free(dup);
			break;
		}
		case 'L': nlocks = atoi(optarg); break;
		case 'm': mode = optarg; break;
		case 'n': rounds = atoi(optarg); break;
		case 'o': co_pid = atoi(optarg); break;
		case 'p': {
			char *t, *sv = NULL, *dup = strdup(optarg);
			for (t = strtok_r(dup, ",", &sv); t && G.nports < 8;
			    t = strtok_r(NULL, ",", &sv))
				G.ports[G.nports++] = atoi(t);
			G.port = G.nports ? G.ports[0] : 0;
			free(dup);
			break;
		}
		case 'P': G.prefix = optarg; break;
		case 't': ttl = atof(optarg); break;
		case 'T': G.timeout = atof(optarg); break;
		case 'w': warm = atof(optarg); break;
		default: usage();
		}
	}
	if (mode == NULL || G.port <= 0 || clients < 1 || rounds < 1 || nlocks < 1)
		usage();
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if ((G.ep = epoll_create1(EPOLL_CLOEXEC)) == -1)
		die("epoll_create1: %s", strerror(errno));
	cpu_lt = lt_pid;
	cpu_co = co_pid;
	if (strcmp(mode, "cycle") == 0)
		mode_loop(clients, secs, warm, false);
	else if (strcmp(mode, "contend") == 0)
		mode_loop(clients, secs, warm, true);
	else if (strcmp(mode, "handoff") == 0)
		mode_handoff(rounds);
	else if (strcmp(mode, "expiry") == 0)
		mode_expiry(rounds, ttl > 0 ? ttl : 0.05);
	else if (strcmp(mode, "waiters") == 0) {
		if (lt_pid <= 0 || co_pid <= 0)
			usage();
		mode_waiters(clients, nlocks, lt_pid, co_pid, hold);
	} else
		usage();
	fflush(stdout);
	return G.errors ? 3 : 0;
}
