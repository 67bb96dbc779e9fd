/*
 * check_proto: unit tests for the coordinator's wire protocol (proto.c),
 * for the worker's client side (coordc.c), and for the coordinator daemon
 * itself, which the daemon cases start from the build directory
 * ($HTTPLOCK_BUILDDIR/coord/httplock-coord, else ./coord/httplock-coord)
 * on a socket in a fresh temporary directory.
 *
 * Table-driven cases carry their __LINE__ so a failure names its row.
 * Negative checks ("this waiter was not woken") are made only after a
 * synchronisation point (another waiter's WAKE from the same NOTIFY, or a
 * PONG showing the expected counts), never after a blind sleep.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "coordc.h"
#include "proto.h"

#define ANY UINT32_MAX           /* wait_stats: do not compare this count */

/* Frames are written out byte by byte: ours, and an older peer's. */
#define V      PROTO_VERSION
#define OLD_V  (PROTO_VERSION - 1)
#define BE16(n) (uint8_t)((n) >> 8), (uint8_t)((n) & 0xff)

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
nap_ms(long ms)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = ms * 1000000L };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* A name of PROTO_NAME_MAX 'n's, for the longest frames. */
static const char *
long_name(void)
{
	static char name[PROTO_NAME_MAX + 1];

	if (name[0] == '\0')
		memset(name, 'n', PROTO_NAME_MAX);
	return name;
}

/* ================================================================ proto */

/*
 * Round-trip rows.  `longname` substitutes long_name() for `name`; fields
 * a type does not carry stay 0, as decode leaves them.
 */
struct rt_case {
	int         line;
	uint8_t     type;
	uint8_t     flags;
	uint64_t    waiter_id;
	int64_t     expires;
	const char *name;
	bool        longname;
	uint32_t    peers, waiters, locks;
	size_t      size;        /* the encoded frame's size */
};

static const struct rt_case rt_cases[] = {
	{ __LINE__, PROTO_WAIT, 0, 1, 0, "a", false, 0, 0, 0, 8 + 18 + 1 },
	{ __LINE__, PROTO_WAIT, 0, UINT64_MAX, INT64_MIN, NULL, true,
	  0, 0, 0, 8 + 18 + PROTO_NAME_MAX },
	{ __LINE__, PROTO_WAIT, 0, 0x0102030405060708ull, -1, "jobs/nightly x",
	  false, 0, 0, 0, 8 + 18 + 14 },
	{ __LINE__, PROTO_WAIT, 0, 300, 1700000000123, "\x01\xff\x80", false,
	  0, 0, 0, 8 + 18 + 3 },
	{ __LINE__, PROTO_ACK, 0, 0, 0, NULL, false, 0, 0, 0, 8 },
	{ __LINE__, PROTO_WAKE, 0, 0x8877665544332211ull, 0, NULL, false,
	  0, 0, 0, 16 },
	{ __LINE__, PROTO_WAKE, 0, 0, 0, NULL, false, 0, 0, 0, 16 },
	{ __LINE__, PROTO_NOTIFY, PROTO_NOTIFY_WAKE, 0, 1700000000000, "lock",
	  false, 0, 0, 0, 8 + 19 + 4 },
	{ __LINE__, PROTO_NOTIFY, 0, 42, 0, NULL, true, 0, 0, 0,
	  8 + 19 + PROTO_NAME_MAX },
	{ __LINE__, PROTO_NOTIFY, PROTO_NOTIFY_WAKE, UINT64_MAX, INT64_MAX, "z",
	  false, 0, 0, 0, 8 + 19 + 1 },
	{ __LINE__, PROTO_PING, 0, 0, 0, NULL, false, 0, 0, 0, 8 },
	{ __LINE__, PROTO_UNWAIT, 0, 0, 0, NULL, false, 0, 0, 0, 8 },
	{ __LINE__, PROTO_PONG, 0, 0, 0, NULL, false, 1, 2, 3, 20 },
	{ __LINE__, PROTO_PONG, 0, 0, 0, NULL, false,
	  UINT32_MAX, 0x80000000u, 0x01020304u, 20 },
	{ __LINE__, PROTO_ERROR, 0, 0, 0, NULL, false, 0, 0, 0, 9 },
};
#define N_RT (sizeof(rt_cases) / sizeof(rt_cases[0]))

static void
rt_msg(const struct rt_case *c, struct proto_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->type = c->type;
	m->flags = c->flags;
	m->waiter_id = c->waiter_id;
	m->expires = c->expires;
	m->name = c->longname ? long_name() : c->name;
	m->namelen = m->name != NULL ? strlen(m->name) : 0;
	m->peers = c->peers;
	m->waiters = c->waiters;
	m->locks = c->locks;
}

/* Encodes row `c` into a fresh heap buffer of exactly its size. */
static uint8_t *
rt_encode(const struct rt_case *c)
{
	uint8_t tmp[PROTO_FRAME_MAX], *buf;
	struct proto_msg m;
	int n;

	rt_msg(c, &m);
	n = proto_encode(&m, tmp, sizeof(tmp));
	ck_assert_msg(n == (int)c->size, "line %d: encode gave %d, want %zu",
	    c->line, n, c->size);
	buf = malloc(c->size);
	ck_assert_ptr_nonnull(buf);
	memcpy(buf, tmp, c->size);
	return buf;
}

START_TEST(test_roundtrip)
{
	const struct rt_case *c = &rt_cases[_i];
	struct proto_msg want, got;
	uint8_t *buf = rt_encode(c);
	size_t used = 0;
	int rc;

	rt_msg(c, &want);
	rc = proto_decode(buf, c->size, &got, &used);
	ck_assert_msg(rc == PROTO_OK, "line %d: decode gave %d", c->line, rc);
	ck_assert_msg(used == c->size, "line %d: used %zu", c->line, used);
	ck_assert_msg(got.version == PROTO_VERSION, "line %d", c->line);
	ck_assert_msg(got.type == want.type, "line %d", c->line);
	ck_assert_msg(got.flags == want.flags, "line %d", c->line);
	ck_assert_msg(got.waiter_id == want.waiter_id, "line %d", c->line);
	ck_assert_msg(got.expires == want.expires, "line %d", c->line);
	ck_assert_msg(got.namelen == want.namelen, "line %d", c->line);
	if (want.namelen > 0)
		ck_assert_msg(memcmp(got.name, want.name, want.namelen) == 0,
		    "line %d", c->line);
	else
		ck_assert_msg(got.name == NULL, "line %d", c->line);
	ck_assert_msg(got.peers == want.peers && got.waiters == want.waiters &&
	    got.locks == want.locks, "line %d", c->line);
	free(buf);
}
END_TEST

/* Every proper prefix of a valid frame is PROTO_E_SHORT. */
START_TEST(test_truncated)
{
	const struct rt_case *c = &rt_cases[_i];
	uint8_t *buf = rt_encode(c);
	size_t k;

	for (k = 0; k < c->size; k++) {
		/* An exact-size copy, so ASan sees any read past its end. */
		uint8_t *part = malloc(k > 0 ? k : 1);
		struct proto_msg m;
		size_t used = 99;
		int rc;

		ck_assert_ptr_nonnull(part);
		memcpy(part, buf, k);
		rc = proto_decode(part, k, &m, &used);
		ck_assert_msg(rc == PROTO_E_SHORT,
		    "line %d: prefix %zu gave %d", c->line, k, rc);
		ck_assert_msg(used == 0, "line %d", c->line);
		free(part);
	}
	free(buf);
}
END_TEST

/* Encoding into any buffer smaller than the frame is PROTO_E_SPACE. */
START_TEST(test_encode_space)
{
	const struct rt_case *c = &rt_cases[_i];
	struct proto_msg m;
	size_t cap;

	rt_msg(c, &m);
	for (cap = 0; cap < c->size; cap++) {
		uint8_t *out = malloc(cap > 0 ? cap : 1);
		int rc;

		ck_assert_ptr_nonnull(out);
		rc = proto_encode(&m, out, cap);
		ck_assert_msg(rc == PROTO_E_SPACE, "line %d: cap %zu gave %d",
		    c->line, cap, rc);
		free(out);
	}
}
END_TEST

/* The byte layout, pinned: network order everywhere. */
START_TEST(test_golden)
{
	static const uint8_t wait_frame[] = {
		V, 1, 0, 0, 0, 0, 0, 20,
		0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
		0, 2, 'h', 'i'
	};
	static const uint8_t notify_frame[] = {
		V, 4, 0, 0, 0, 0, 0, 20,
		1,
		0, 0, 0, 0, 0, 0, 0x01, 0x2c,
		0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00,
		0, 1, 'x'
	};
	static const uint8_t pong_frame[] = {
		V, 6, 0, 0, 0, 0, 0, 12,
		0, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0
	};
	uint8_t out[64];
	struct proto_msg m;

	memset(&m, 0, sizeof(m));
	m.type = PROTO_WAIT;
	m.waiter_id = 0x0102030405060708ull;
	m.expires = -2;
	m.name = "hi";
	m.namelen = 2;
	ck_assert_int_eq(proto_encode(&m, out, sizeof(out)),
	    (int)sizeof(wait_frame));
	ck_assert(memcmp(out, wait_frame, sizeof(wait_frame)) == 0);

	memset(&m, 0, sizeof(m));
	m.type = PROTO_NOTIFY;
	m.flags = PROTO_NOTIFY_WAKE;
	m.waiter_id = 300;
	m.expires = 1700000000000;
	m.name = "x";
	m.namelen = 1;
	ck_assert_int_eq(proto_encode(&m, out, sizeof(out)),
	    (int)sizeof(notify_frame));
	ck_assert(memcmp(out, notify_frame, sizeof(notify_frame)) == 0);

	memset(&m, 0, sizeof(m));
	m.type = PROTO_PONG;
	m.peers = 1;
	m.waiters = 256;
	m.locks = 65536;
	ck_assert_int_eq(proto_encode(&m, out, sizeof(out)),
	    (int)sizeof(pong_frame));
	ck_assert(memcmp(out, pong_frame, sizeof(pong_frame)) == 0);
}
END_TEST

/* Several frames back to back decode one by one, each with its size. */
START_TEST(test_stream)
{
	uint8_t stream[N_RT * PROTO_FRAME_MAX];
	size_t i, off = 0;

	for (i = 0; i < N_RT; i++) {
		uint8_t *f = rt_encode(&rt_cases[i]);

		memcpy(stream + off, f, rt_cases[i].size);
		off += rt_cases[i].size;
		free(f);
	}
	for (i = 0, off = 0; i < N_RT; i++) {
		struct proto_msg m;
		size_t used;
		int rc = proto_decode(stream + off, sizeof(stream) - off, &m,
		    &used);

		ck_assert_msg(rc == PROTO_OK, "frame %zu: %d", i, rc);
		ck_assert_msg(m.type == rt_cases[i].type, "frame %zu", i);
		ck_assert_msg(used == rt_cases[i].size, "frame %zu", i);
		off += used;
	}
}
END_TEST

/* Frames that must be refused, spelled out byte by byte. */
struct bad_case {
	int     line;
	size_t  len;
	uint8_t bytes[40];
	int     want;
};

#define WAIT_HDR(n)   V, PROTO_WAIT, 0, 0, 0, 0, 0, (n)
#define NOTIFY_HDR(n) V, PROTO_NOTIFY, 0, 0, 0, 0, 0, (n)
#define E_MAL         PROTO_E_MALFORMED
#define E_VER         PROTO_E_VERSION
#define Z16           0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0

static const struct bad_case bad_cases[] = {
	/* version, judged from the first byte alone */
	{ __LINE__, 1, { 0 }, E_VER },
	{ __LINE__, 1, { OLD_V }, E_VER },
	{ __LINE__, 1, { V + 1 }, E_VER },
	{ __LINE__, 8, { 0xff, PROTO_PING, 0, 0, 0, 0, 0, 0 }, E_VER },
	{ __LINE__, 8, { OLD_V, PROTO_PING, 0, 0, 0, 0, 0, 0 }, E_VER },
	/* lengths, refused from the header alone */
	{ __LINE__, 8, { V, PROTO_WAIT, 0, 0, 0xff, 0xff, 0xff, 0xff }, E_MAL },
	{ __LINE__, 8, { V, PROTO_WAIT, 0, 0, 0x80, 0, 0, 0 }, E_MAL },
	{ __LINE__, 8,
	  { V, PROTO_PING, 0, 0, 0, 0, BE16(PROTO_PAYLOAD_MAX + 1) }, E_MAL },
	{ __LINE__, 8, { WAIT_HDR(10) }, E_MAL },
	{ __LINE__, 8, { WAIT_HDR(18) }, E_MAL },                  /* no name */
	/* room for a name of PROTO_NAME_MAX + 1 */
	{ __LINE__, 8, { V, PROTO_WAIT, 0, 0, 0, 0,
	  BE16(16 + 2 + PROTO_NAME_MAX + 1) }, E_MAL },
	{ __LINE__, 8, { NOTIFY_HDR(19) }, E_MAL },
	{ __LINE__, 8, { V, PROTO_ACK, 0, 0, 0, 0, 0, 1 }, E_MAL },
	{ __LINE__, 8, { V, PROTO_PING, 0, 0, 0, 0, 0, 4 }, E_MAL },
	{ __LINE__, 8, { V, PROTO_WAKE, 0, 0, 0, 0, 0, 7 }, E_MAL },
	{ __LINE__, 8, { V, PROTO_WAKE, 0, 0, 0, 0, 0, 9 }, E_MAL },
	{ __LINE__, 8, { V, PROTO_PONG, 0, 0, 0, 0, 0, 11 }, E_MAL },
	{ __LINE__, 8, { V, PROTO_ERROR, 0, 0, 0, 0, 0, 0 }, E_MAL },
	{ __LINE__, 8, { V, PROTO_ERROR, 0, 0, 0, 0, 0, 2 }, E_MAL },
	/* reserved bits */
	{ __LINE__, 8, { V, PROTO_PING, 0, 1, 0, 0, 0, 0 }, E_MAL },
	{ __LINE__, 8, { V, PROTO_PING, 0x80, 0, 0, 0, 0, 0 }, E_MAL },
	/* types */
	{ __LINE__, 8, { V, 0, 0, 0, 0, 0, 0, 0 }, E_MAL },
	{ __LINE__, 8, { V, 9, 0, 0, 0, 0, 0, 0 }, E_MAL },
	{ __LINE__, 8, { V, PROTO_UNWAIT, 0, 0, 0, 0, 0, 1 }, E_MAL },
	{ __LINE__, 8, { V, 0xff, 0, 0, 0, 0, 0, 0 }, E_MAL },
	/* names whose length disagrees with the payload, or is 0 */
	{ __LINE__, 27, { WAIT_HDR(19), Z16, 0, 2, 'a' }, E_MAL },
	{ __LINE__, 28, { WAIT_HDR(20), Z16, 0, 1, 'a', 'b' }, E_MAL },
	{ __LINE__, 27, { WAIT_HDR(19), Z16, 0, 0, 'a' }, E_MAL },
	{ __LINE__, 27, { WAIT_HDR(19), Z16, 0x80, 1, 'a' }, E_MAL },
	{ __LINE__, 28, { NOTIFY_HDR(20), 0, Z16, 0, 3, 'a', 'b' }, E_MAL },
	/* NOTIFY flags beyond PROTO_NOTIFY_WAKE */
	{ __LINE__, 28, { NOTIFY_HDR(20), 2, Z16, 0, 1, 'a' }, E_MAL },
	{ __LINE__, 28, { NOTIFY_HDR(20), 0x81, Z16, 0, 1, 'a' }, E_MAL },
	/* and two good ones, so the table's layout is known to be right */
	{ __LINE__, 27, { WAIT_HDR(19), Z16, 0, 1, 'a' }, PROTO_OK },
	{ __LINE__, 28, { NOTIFY_HDR(20), 1, Z16, 0, 1, 'a' }, PROTO_OK },
};
#define N_BAD (sizeof(bad_cases) / sizeof(bad_cases[0]))

START_TEST(test_bad)
{
	const struct bad_case *c = &bad_cases[_i];
	uint8_t *buf = malloc(c->len);
	struct proto_msg m;
	size_t used = 99;
	int rc;

	ck_assert_ptr_nonnull(buf);
	memcpy(buf, c->bytes, c->len);
	rc = proto_decode(buf, c->len, &m, &used);
	ck_assert_msg(rc == c->want, "line %d: got %d, want %d", c->line, rc,
	    c->want);
	if (rc == PROTO_E_VERSION)
		ck_assert_msg(m.version == c->bytes[0], "line %d", c->line);
	if (rc != PROTO_OK)
		ck_assert_msg(used == 0, "line %d", c->line);
	else
		ck_assert_msg(used == c->len, "line %d", c->line);
	free(buf);
}
END_TEST

/* A name of PROTO_NAME_MAX + 1 bytes in a frame whose lengths all agree. */
START_TEST(test_name_too_long)
{
	uint8_t buf[8 + 16 + 2 + PROTO_NAME_MAX + 1];
	struct proto_msg m;
	size_t used;

	memset(buf, 'n', sizeof(buf));
	memcpy(buf, (const uint8_t[]){ V, PROTO_WAIT, 0, 0, 0, 0,
	    BE16(16 + 2 + PROTO_NAME_MAX + 1) }, 8);
	memset(buf + 8, 0, 16);
	buf[24] = (PROTO_NAME_MAX + 1) >> 8;     /* namelen */
	buf[25] = (PROTO_NAME_MAX + 1) & 0xff;
	ck_assert_int_eq(proto_decode(buf, sizeof(buf), &m, &used),
	    PROTO_E_MALFORMED);
}
END_TEST

START_TEST(test_encode_invalid)
{
	static const struct {
		int line;
		uint8_t type, flags;
		const char *name;
		size_t namelen;
	} cases[] = {
		{ __LINE__, 0, 0, NULL, 0 },
		{ __LINE__, 9, 0, NULL, 0 },
		{ __LINE__, 0xff, 0, "a", 1 },
		{ __LINE__, PROTO_WAIT, 0, "a", 0 },
		{ __LINE__, PROTO_WAIT, 0, NULL, 1 },
		{ __LINE__, PROTO_WAIT, 0, NULL, PROTO_NAME_MAX + 1 },
		{ __LINE__, PROTO_NOTIFY, 0, "", 0 },
		{ __LINE__, PROTO_NOTIFY, 2, "a", 1 },
		{ __LINE__, PROTO_NOTIFY, 0x80, "a", 1 },
	};
	char big[PROTO_NAME_MAX + 2];
	uint8_t out[PROTO_FRAME_MAX * 2];
	size_t i;

	memset(big, 'b', sizeof(big));
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct proto_msg m;
		int rc;

		memset(&m, 0, sizeof(m));
		m.type = cases[i].type;
		m.flags = cases[i].flags;
		m.name = cases[i].name;
		m.namelen = cases[i].namelen;
		if (m.name == NULL && m.namelen > PROTO_NAME_MAX)
			m.name = big;
		rc = proto_encode(&m, out, sizeof(out));
		ck_assert_msg(rc == PROTO_E_MALFORMED, "line %d: got %d",
		    cases[i].line, rc);
	}
}
END_TEST

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t
rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 32);
}

/*
 * A small in-process fuzz: random, mostly almost-valid input never makes
 * decode read out of bounds (ASan watches the exact-size buffer), and
 * whatever decodes re-encodes to the very same bytes (one spelling per
 * frame, so peers cannot smuggle anything past the decoder).
 */
START_TEST(test_random)
{
	int iter;

	for (iter = 0; iter < 200000; iter++) {
		size_t len = rng() % 48, i, used;
		uint8_t *buf = malloc(len > 0 ? len : 1), out[PROTO_FRAME_MAX];
		struct proto_msg m;
		int rc;

		ck_assert_ptr_nonnull(buf);
		for (i = 0; i < len; i++)
			buf[i] = (uint8_t)rng();
		/* Mostly our version, a known type, no reserved bits, a
		 * length that fits, so the payload checks get exercised. */
		if (len > 0 && rng() % 8 != 0)
			buf[0] = PROTO_VERSION;
		if (len > 1 && rng() % 8 != 0)
			buf[1] = (uint8_t)(1 + rng() % 7);
		if (len > 3 && rng() % 8 != 0)
			buf[2] = buf[3] = 0;
		if (len > 7 && rng() % 8 != 0) {
			buf[4] = buf[5] = buf[6] = 0;
			buf[7] = (uint8_t)(rng() % (len - 7));
		}
		if (len > 25 && rng() % 2 != 0) {
			size_t at = (buf[1] == PROTO_NOTIFY ? 25 : 24);

			buf[at] = 0;
			if (at + 1 < len)
				buf[at + 1] = (uint8_t)(rng() % 8);
		}
		if (len > 8 && buf[1] == PROTO_NOTIFY && rng() % 2 != 0)
			buf[8] &= PROTO_NOTIFY_WAKE;

		rc = proto_decode(buf, len, &m, &used);
		ck_assert(rc == PROTO_OK || rc == PROTO_E_SHORT ||
		    rc == PROTO_E_VERSION || rc == PROTO_E_MALFORMED);
		if (rc == PROTO_OK) {
			int n;

			ck_assert(used >= PROTO_HDR_LEN && used <= len);
			if (m.name != NULL)
				ck_assert((const uint8_t *)m.name >= buf &&
				    (const uint8_t *)m.name + m.namelen <=
				    buf + used);
			n = proto_encode(&m, out, sizeof(out));
			ck_assert_int_eq(n, (int)used);
			if (m.type != PROTO_ERROR || m.version == PROTO_VERSION)
				ck_assert(memcmp(out, buf, used) == 0);
		} else {
			ck_assert(used == 0);
		}
		free(buf);
	}
}
END_TEST

/* =========================================================== fixtures */

static char basedir[64];         /* made by main, removed by main */
static char tmpdir[96];          /* one per test, inside basedir */
static char sockpath[128];
static char confpath[128];
static pid_t coord_pid;          /* the fixture's daemon, 0 if none */

static void
path_in_tmp(char *buf, size_t len, const char *leaf)
{
	int n = snprintf(buf, len, "%s/%s", tmpdir, leaf);

	ck_assert(n > 0 && (size_t)n < len);
}

static void
coord_bin(char *buf, size_t len)
{
	const char *dir = getenv("HTTPLOCK_BUILDDIR");
	int n;

	if (dir != NULL && dir[0] != '\0')
		n = snprintf(buf, len, "%s/coord/httplock-coord", dir);
	else
		n = snprintf(buf, len, "./coord/httplock-coord");
	ck_assert(n > 0 && (size_t)n < len);
}

/*
 * Starts httplock-coord with our config, and "-s sock" if sock is not
 * NULL.  A failed ck_assert ends the test process at once, teardown
 * unrun; the daemon then gets SIGTERM from the kernel (PDEATHSIG), so
 * nothing is left running, and main removes what is left on disk.
 */
static pid_t
spawn_coord(const char *sock)
{
	char bin[PATH_MAX];
	pid_t parent = getpid(), pid;

	coord_bin(bin, sizeof(bin));
	ck_assert_msg(access(bin, X_OK) == 0, "%s: %s (build it first, or "
	    "set HTTPLOCK_BUILDDIR)", bin, strerror(errno));
	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGTERM) == -1 ||
		    getppid() != parent)
			_exit(127);
		if (sock != NULL)
			execl(bin, "httplock-coord", "-c", confpath, "-s", sock,
			    (char *)NULL);
		else
			execl(bin, "httplock-coord", "-c", confpath,
			    (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Waits up to `ms` for `pid` to exit.  Returns its status, or -1. */
static int
wait_exit(pid_t pid, int ms)
{
	int64_t deadline = mono_ms() + ms;
	int status;

	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return status;
		if (r == -1 && errno != EINTR)
			return -1;
		if (mono_ms() >= deadline)
			return -1;
		nap_ms(5);
	}
}

/* Pings `path` until the coordinator answers (up to 5 s). */
static void
wait_ready(pid_t pid, const char *path)
{
	int64_t deadline = mono_ms() + 5000;
	struct coord_stats st;
	int status;

	while (coord_ping(path, &st, 200) != COORDC_OK) {
		ck_assert_msg(waitpid(pid, &status, WNOHANG) == 0,
		    "httplock-coord exited during start-up (status %#x)",
		    status);
		ck_assert_msg(mono_ms() < deadline,
		    "httplock-coord did not answer on %s", path);
		nap_ms(10);
	}
}

/* SIGTERM, and the exit status (or -1 if it took over 2 s). */
static int
stop_coord(pid_t pid, int sig)
{
	int status;

	if (kill(pid, sig) == -1)
		return -1;
	status = wait_exit(pid, 2000);
	if (status == -1) {
		kill(pid, SIGKILL);
		(void)wait_exit(pid, 2000);
	}
	return status;
}

static void
cleanup(void)
{
	char p[160];

	if (coord_pid > 0) {
		(void)stop_coord(coord_pid, SIGTERM);
		coord_pid = 0;
	}
	if (tmpdir[0] == '\0')
		return;
	unlink(sockpath);
	snprintf(p, sizeof(p), "%s.lock", sockpath);
	unlink(p);
	unlink(confpath);
	rmdir(tmpdir);
	tmpdir[0] = '\0';
}

static void
make_tmpdir(void)
{
	FILE *f;
	int n;

	n = snprintf(tmpdir, sizeof(tmpdir), "%s/t.XXXXXX", basedir);
	ck_assert(n > 0 && (size_t)n < sizeof(tmpdir));
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	path_in_tmp(sockpath, sizeof(sockpath), "coord.sock");
	path_in_tmp(confpath, sizeof(confpath), "httplock.conf");
	f = fopen(confpath, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "# written by check_proto\ncoord_socket = %s\n", sockpath);
	ck_assert_int_eq(fclose(f), 0);
}

static void
setup_tmp(void)
{
	make_tmpdir();
}

/* A daemon on sockpath, started from the config file (no -s). */
static void
setup_coord(void)
{
	make_tmpdir();
	coord_pid = spawn_coord(NULL);
	wait_ready(coord_pid, sockpath);
}

/* Also checks that the daemon shuts down cleanly (under ASan: without
 * leaks, which would make its exit status non-zero). */
static void
teardown_coord(void)
{
	int status = 0;

	if (coord_pid > 0) {
		status = stop_coord(coord_pid, SIGTERM);
		coord_pid = 0;
	}
	cleanup();
	ck_assert_msg(status == 0, "httplock-coord: exit status %#x", status);
}

/* ============================================================ helpers */

static struct coord_waiter *
waiter(const char *name, int64_t id, int64_t holder_expires)
{
	struct coord_waiter *w = coord_waiter_open(sockpath);
	int rc;

	ck_assert_msg(w != NULL, "coord_waiter_open: %s", strerror(errno));
	rc = coord_waiter_register(w, name, id, holder_expires, 2000);
	ck_assert_msg(rc == COORDC_OK, "register %s/%lld: %d", name,
	    (long long)id, rc);
	return w;
}

/* Polls `w` for up to `ms`; the first non-OK result of coord_waiter_read,
 * or COORDC_E_TIMEOUT. */
static int
wait_woken(struct coord_waiter *w, int ms)
{
	int64_t deadline = mono_ms() + ms;

	for (;;) {
		struct pollfd pfd = { .fd = coord_waiter_fd(w),
		    .events = POLLIN };
		int64_t left = deadline - mono_ms();
		int rc;

		if (left <= 0)
			return COORDC_E_TIMEOUT;
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		if ((rc = coord_waiter_read(w)) != COORDC_OK)
			return rc;
	}
}

static bool
readable(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	return poll(&pfd, 1, 0) == 1;
}

/* Pings until the counts match (ANY matches anything), up to 3 s. */
static void
wait_stats(uint32_t peers, uint32_t waiters, uint32_t locks)
{
	int64_t deadline = mono_ms() + 3000;
	struct coord_stats st = { 0, 0, 0 };

	for (;;) {
		int rc = coord_ping(sockpath, &st, 1000);

		ck_assert_int_eq(rc, COORDC_OK);
		/* This ping's own connection is one of the peers. */
		if ((peers == ANY || st.peers == peers) &&
		    (waiters == ANY || st.waiters == waiters) &&
		    (locks == ANY || st.locks == locks))
			return;
		ck_assert_msg(mono_ms() < deadline, "stats: peers %u waiters "
		    "%u locks %u; want %d %d %d", st.peers, st.waiters,
		    st.locks, (int)peers, (int)waiters, (int)locks);
		nap_ms(5);
	}
}

static int
raw_connect(const char *path)
{
	struct sockaddr_un sun;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ne(fd, -1);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	ck_assert(strlen(path) < sizeof(sun.sun_path));
	memcpy(sun.sun_path, path, strlen(path) + 1);
	ck_assert_msg(connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0,
	    "connect %s: %s", path, strerror(errno));
	return fd;
}

static int
raw_listen(const char *path)
{
	struct sockaddr_un sun;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ne(fd, -1);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	ck_assert_int_eq(listen(fd, 16), 0);
	return fd;
}

static void
raw_send(int fd, const void *buf, size_t len)
{
	ck_assert_int_eq(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

/*
 * Reads from `fd` until EOF (or a reset) for up to 2 s, keeping the
 * first bytes in buf[0..cap).  Returns the number kept, or -1 if the
 * peer is still open at the deadline.
 */
static ssize_t
read_to_eof(int fd, uint8_t *buf, size_t cap)
{
	int64_t deadline = mono_ms() + 2000;
	size_t kept = 0;

	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		uint8_t tmp[4096];
		int64_t left = deadline - mono_ms();
		ssize_t n;

		if (left <= 0)
			return -1;
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		n = recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT);
		if (n == 0 || (n == -1 && errno == ECONNRESET))
			return (ssize_t)kept;
		if (n == -1)
			continue;
		if (kept < cap) {
			size_t k = cap - kept;

			if ((size_t)n < k)
				k = (size_t)n;

			memcpy(buf + kept, tmp, k);
			kept += k;
		}
	}
}

/* Reads one frame from the blocking `fd` (test side of a fake server). */
static void
read_frame(int fd, struct proto_msg *m, uint8_t *buf, size_t cap)
{
	size_t len = 0, used;
	int rc;

	while ((rc = proto_decode(buf, len, m, &used)) == PROTO_E_SHORT) {
		ssize_t n;

		ck_assert(len < cap);
		n = recv(fd, buf + len, 1, 0);
		ck_assert_msg(n == 1, "read_frame: %zd", n);
		len++;
	}
	ck_assert_int_eq(rc, PROTO_OK);
}

/* ====================================================== daemon cases */

START_TEST(test_wake_order)
{
	struct coord_waiter *w5 = waiter("lk", 5, 0);
	struct coord_waiter *w3 = waiter("lk", 3, 0);
	struct coord_notifier *n = coord_notifier_new(sockpath);

	ck_assert_ptr_nonnull(n);
	wait_stats(3, 2, 1);
	ck_assert_int_eq(coord_notify(n, "lk", true, 0, 0), COORDC_OK);
	ck_assert_int_eq(wait_woken(w3, 2000), COORDC_WOKEN);
	/* The coordinator wrote every WAKE of that NOTIFY before w3 got one. */
	ck_assert(!readable(coord_waiter_fd(w5)));
	ck_assert_int_eq(coord_notify(n, "lk", true, 0, 0), COORDC_OK);
	ck_assert_int_eq(wait_woken(w5, 2000), COORDC_WOKEN);
	ck_assert(!readable(coord_waiter_fd(w3)));
	wait_stats(ANY, 0, 0);
	coord_waiter_free(w3);
	coord_waiter_free(w5);
	coord_notifier_free(n);
}
END_TEST

/* Registrations sharing the lowest waiter_id are woken together. */
START_TEST(test_same_id)
{
	struct coord_waiter *a = waiter("s", 7, 0);
	struct coord_waiter *b = waiter("s", 9, 0);
	struct coord_waiter *c = waiter("s", 7, 0);
	struct coord_notifier *n = coord_notifier_new(sockpath);

	ck_assert_int_eq(coord_notify(n, "s", true, 0, 0), COORDC_OK);
	ck_assert_int_eq(wait_woken(a, 2000), COORDC_WOKEN);
	ck_assert_int_eq(wait_woken(c, 2000), COORDC_WOKEN);
	ck_assert(!readable(coord_waiter_fd(b)));
	wait_stats(ANY, 1, 1);
	coord_waiter_free(a);
	coord_waiter_free(b);
	coord_waiter_free(c);
	coord_notifier_free(n);
}
END_TEST

START_TEST(test_kick)
{
	struct coord_waiter *w1 = waiter("k", 1, 0);
	struct coord_waiter *w2 = waiter("k", 2, 0);
	struct coord_waiter *w3 = waiter("k", 3, 0);
	struct coord_notifier *n = coord_notifier_new(sockpath);

	ck_assert_int_eq(coord_notify(n, "k", false, 2, 0), COORDC_OK);
	ck_assert_int_eq(wait_woken(w2, 2000), COORDC_WOKEN);
	ck_assert(!readable(coord_waiter_fd(w1)));
	ck_assert(!readable(coord_waiter_fd(w3)));
	/* A kick of a waiter on another lock, or of nobody, wakes no one. */
	ck_assert_int_eq(coord_notify(n, "other", false, 1, 0), COORDC_OK);
	ck_assert_int_eq(coord_notify(n, "k", false, 99, 0), COORDC_OK);
	/* Wake-first and a kick together. */
	ck_assert_int_eq(coord_notify(n, "k", true, 3, 0), COORDC_OK);
	ck_assert_int_eq(wait_woken(w1, 2000), COORDC_WOKEN);
	ck_assert_int_eq(wait_woken(w3, 2000), COORDC_WOKEN);
	wait_stats(ANY, 0, 0);
	coord_waiter_free(w1);
	coord_waiter_free(w2);
	coord_waiter_free(w3);
	coord_notifier_free(n);
}
END_TEST

/* A second WAIT on a connection replaces its registration. */
START_TEST(test_reregister)
{
	struct coord_waiter *a = waiter("ra", 1, 0);
	struct coord_waiter *b = waiter("ra", 2, 0);
	struct coord_notifier *n = coord_notifier_new(sockpath);

	ck_assert_int_eq(coord_waiter_register(a, "rb", 1, 0, 2000), COORDC_OK);
	wait_stats(3, 2, 2);     /* a, b, ping (n connects lazily) */
	ck_assert_int_eq(coord_notify(n, "ra", true, 0, 0), COORDC_OK);
	ck_assert_int_eq(wait_woken(b, 2000), COORDC_WOKEN);
	ck_assert(!readable(coord_waiter_fd(a)));
	/* After a WAKE, the same connection registers again. */
	ck_assert_int_eq(coord_waiter_register(b, "rb", 0, 0, 2000), COORDC_OK);
	ck_assert_int_eq(coord_notify(n, "rb", true, 0, 0), COORDC_OK);
	ck_assert_int_eq(wait_woken(b, 2000), COORDC_WOKEN);
	ck_assert(!readable(coord_waiter_fd(a)));
	wait_stats(ANY, 1, 1);
	coord_waiter_free(a);
	coord_waiter_free(b);
	coord_notifier_free(n);
}
END_TEST

/* UNWAIT withdraws a connection's registration without passing the turn
 * on, and the connection serves the next wait (the worker's pool). */
START_TEST(test_unwait)
{
	struct coord_waiter *a = waiter("ua", 1, 0);
	struct coord_waiter *b = waiter("ua", 2, 0);
	struct coord_notifier *n = coord_notifier_new(sockpath);

	ck_assert_int_eq(coord_waiter_unwait(a, 1000), COORDC_OK);
	wait_stats(3, 1, 1);
	/* The first waiter left quietly: a release wakes the next. */
	ck_assert_int_eq(coord_notify(n, "ua", true, 0, 0), COORDC_OK);
	ck_assert_int_eq(wait_woken(b, 2000), COORDC_WOKEN);
	ck_assert(!readable(coord_waiter_fd(a)));
	/* Unwaiting what is not registered is harmless. */
	ck_assert_int_eq(coord_waiter_unwait(b, 1000), COORDC_OK);
	/* Both connections wait again, on another lock; the first leaves by
	 * UNWAIT and closes: its turn is not passed on. */
	ck_assert_int_eq(coord_waiter_register(a, "ub", 3, 0, 2000), COORDC_OK);
	ck_assert_int_eq(coord_waiter_register(b, "ub", 4, 0, 2000), COORDC_OK);
	wait_stats(ANY, 2, 1);
	ck_assert_int_eq(coord_waiter_unwait(a, 1000), COORDC_OK);
	coord_waiter_free(a);
	wait_stats(ANY, 1, 1);
	nap_ms(100);
	ck_assert(!readable(coord_waiter_fd(b)));
	coord_waiter_free(b);
	coord_notifier_free(n);
}
END_TEST

START_TEST(test_expiry)
{
	struct coord_notifier *n = coord_notifier_new(sockpath);
	struct coord_waiter *w, *w2, *w3;
	int64_t t0, el;

	/* The holder's lease, reported at WAIT. */
	t0 = mono_ms();
	w = waiter("ex", 1, wall_ms() + 200);
	w2 = waiter("ex", 2, 0);
	ck_assert_int_eq(wait_woken(w, 3000), COORDC_WOKEN);
	el = mono_ms() - t0;
	printf("check_proto: expiry timer (WAIT, +200 ms) woke the waiter "
	    "after %lld ms\n", (long long)el);
	ck_assert_int_le(el, 2000);
	ck_assert_int_ge(el, 150);
	ck_assert(!readable(coord_waiter_fd(w2)));
	coord_waiter_free(w2);

	/* The latest report wins: NOTIFY moves a far timer near. */
	w3 = waiter("ex3", 1, wall_ms() + 3600 * 1000);
	t0 = mono_ms();
	ck_assert_int_eq(coord_notify(n, "ex3", false, 0, wall_ms() + 100),
	    COORDC_OK);
	ck_assert_int_eq(wait_woken(w3, 3000), COORDC_WOKEN);
	el = mono_ms() - t0;
	printf("check_proto: expiry timer (NOTIFY, +100 ms) woke the waiter "
	    "after %lld ms\n", (long long)el);
	ck_assert_int_le(el, 2000);
	ck_assert_int_ge(el, 50);

	/* A timer in the past fires at once; a timer alone keeps a lock
	 * entry until it fires. */
	ck_assert_int_eq(coord_waiter_register(w3, "ex4", 1, wall_ms() - 5,
	    2000), COORDC_OK);
	ck_assert_int_eq(wait_woken(w3, 2000), COORDC_WOKEN);
	ck_assert_int_eq(coord_notify(n, "ex5", false, 0, wall_ms() + 1000),
	    COORDC_OK);
	wait_stats(ANY, 0, 1);
	wait_stats(ANY, 0, 0);
	coord_waiter_free(w);
	coord_waiter_free(w3);
	coord_notifier_free(n);
}
END_TEST

/*
 * A peer's expiry is any int64: the extremes in the past fire at once,
 * INT64_MAX is pulled in to the horizon (max_ttl + a minute) instead of
 * firing or overflowing, and the daemon goes on serving.
 */
START_TEST(test_expiry_extremes)
{
	struct coord_waiter *w;

	w = waiter("xe1", 1, INT64_MIN);
	ck_assert_int_eq(wait_woken(w, 2000), COORDC_WOKEN);
	coord_waiter_free(w);
	w = waiter("xe2", 1, -1);
	ck_assert_int_eq(wait_woken(w, 2000), COORDC_WOKEN);
	coord_waiter_free(w);
	w = waiter("xe3", 1, INT64_MAX);
	ck_assert_int_eq(wait_woken(w, 300), COORDC_E_TIMEOUT);
	coord_waiter_free(w);
	w = waiter("xe4", 1, wall_ms() - 5);
	ck_assert_int_eq(wait_woken(w, 2000), COORDC_WOKEN);
	coord_waiter_free(w);
}
END_TEST

START_TEST(test_peer_close)
{
	struct coord_waiter *w1 = waiter("pc", 1, 0);
	struct coord_waiter *w2 = waiter("pc", 2, 0);
	struct coord_waiter *w3 = waiter("pc", 3, 0);

	/* One from the middle leaves: nobody is woken. */
	coord_waiter_free(w2);
	wait_stats(3, 2, 1);
	ck_assert(!readable(coord_waiter_fd(w1)));
	ck_assert(!readable(coord_waiter_fd(w3)));
	/* The first leaves: the next one gets its turn. */
	coord_waiter_free(w1);
	ck_assert_int_eq(wait_woken(w3, 2000), COORDC_WOKEN);
	wait_stats(2, 0, 0);
	coord_waiter_free(w3);
}
END_TEST

/* Garbage of every kind gets the talker dropped, and nobody else. */
START_TEST(test_garbage)
{
	static const uint8_t wrongver[] = { OLD_V, PROTO_PING, 0, 0, 0, 0, 0,
	    0 };
	static const uint8_t huge[] = { V, PROTO_WAIT, 0, 0, 0x7f, 0xff, 0xff,
	    0xff };
	static const uint8_t reserved[] = { V, PROTO_PING, 0, 1, 0, 0, 0, 0 };
	static const uint8_t ack[] = { V, PROTO_ACK, 0, 0, 0, 0, 0, 0 };
	static const uint8_t partial[] = { V, PROTO_WAIT, 0, 0, 0, 0, 0, 19,
	    0, 0, 0 };
	struct coord_waiter *w = waiter("g", 1, 0);
	struct coord_notifier *n = coord_notifier_new(sockpath);
	uint8_t junk[4096], got[64];
	struct proto_msg m;
	size_t used, i;
	ssize_t k;
	int fd, lazy;

	/* Random bytes. */
	for (i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)rng();
	junk[0] = 0x5a;
	fd = raw_connect(sockpath);
	(void)send(fd, junk, sizeof(junk), MSG_NOSIGNAL);
	ck_assert_int_ge(read_to_eof(fd, got, sizeof(got)), 0);
	close(fd);

	/* Another version: answered with ERROR, then dropped. */
	fd = raw_connect(sockpath);
	raw_send(fd, wrongver, sizeof(wrongver));
	k = read_to_eof(fd, got, sizeof(got));
	ck_assert_int_eq(k, 9);
	ck_assert_int_eq(proto_decode(got, (size_t)k, &m, &used), PROTO_OK);
	ck_assert_int_eq(m.type, PROTO_ERROR);
	ck_assert_int_eq(m.version, PROTO_VERSION);
	close(fd);

	/* A huge length, reserved bits, a frame only we may send. */
	fd = raw_connect(sockpath);
	raw_send(fd, huge, sizeof(huge));
	ck_assert_int_eq(read_to_eof(fd, got, sizeof(got)), 0);
	close(fd);
	fd = raw_connect(sockpath);
	raw_send(fd, reserved, sizeof(reserved));
	ck_assert_int_eq(read_to_eof(fd, got, sizeof(got)), 0);
	close(fd);
	fd = raw_connect(sockpath);
	raw_send(fd, ack, sizeof(ack));
	ck_assert_int_eq(read_to_eof(fd, got, sizeof(got)), 0);
	close(fd);

	/* A peer that never reads what it asks for is dropped once its
	 * output passes the cap. */
	fd = raw_connect(sockpath);
	{
		uint8_t pings[PROTO_HDR_LEN * 512];
		struct proto_msg pm;
		int j, sent_all = 1;

		memset(&pm, 0, sizeof(pm));
		pm.type = PROTO_PING;
		for (j = 0; j < 512; j++)
			ck_assert_int_eq(proto_encode(&pm, pings + j * 8, 8),
			    8);
		for (j = 0; j < 100 && sent_all; j++)
			sent_all = (send(fd, pings, sizeof(pings),
			    MSG_NOSIGNAL) == (ssize_t)sizeof(pings));
		ck_assert_int_ge(read_to_eof(fd, got, sizeof(got)), 0);
	}
	close(fd);

	/* A half-sent frame just waits; it blocks nobody. */
	lazy = raw_connect(sockpath);
	raw_send(lazy, partial, sizeof(partial));

	wait_stats(3, 1, 1);     /* w, lazy, ping (n connects lazily) */
	ck_assert_int_eq(coord_notify(n, "g", true, 0, 0), COORDC_OK);
	ck_assert_int_eq(wait_woken(w, 2000), COORDC_WOKEN);
	wait_stats(4, 0, 0);     /* w, n, lazy, ping */
	close(lazy);
	coord_waiter_free(w);
	coord_notifier_free(n);
}
END_TEST

START_TEST(test_pong_counts)
{
	struct coord_waiter *w1, *w2, *w3;
	struct coord_notifier *n;
	struct coord_stats st;

	ck_assert_int_eq(coord_ping(sockpath, &st, 1000), COORDC_OK);
	ck_assert_uint_eq(st.peers, 1);
	ck_assert_uint_eq(st.waiters, 0);
	ck_assert_uint_eq(st.locks, 0);
	w1 = waiter("a", 1, 0);
	w2 = waiter("a", 2, 0);
	w3 = waiter("b", 1, 0);
	ck_assert_int_eq(coord_ping(sockpath, &st, 1000), COORDC_OK);
	ck_assert_uint_eq(st.peers, 4);
	ck_assert_uint_eq(st.waiters, 3);
	ck_assert_uint_eq(st.locks, 2);
	n = coord_notifier_new(sockpath);
	ck_assert_int_eq(coord_notify(n, "c", false, 0, wall_ms() + 60000),
	    COORDC_OK);
	wait_stats(5, 3, 3);
	coord_waiter_free(w3);
	wait_stats(4, 2, 2);
	coord_waiter_free(w1);
	coord_waiter_free(w2);
	coord_notifier_free(n);
	wait_stats(1, 0, 1);     /* "c" keeps its timer */
}
END_TEST

/* SIGTERM and SIGINT: a clean exit with status 0 within 2 s. */
START_TEST(test_signal)
{
	static const int sigs[] = { SIGTERM, SIGINT };
	struct coord_waiter *w1 = waiter("t", 1, wall_ms() + 60000);
	struct coord_waiter *w2 = waiter("t", 2, 0);
	struct coord_notifier *n = coord_notifier_new(sockpath);
	int64_t t0;
	int status;

	ck_assert_int_eq(coord_notify(n, "u", false, 0, wall_ms() + 60000),
	    COORDC_OK);
	wait_stats(4, 2, 2);
	t0 = mono_ms();
	ck_assert_int_eq(kill(coord_pid, sigs[_i]), 0);
	status = wait_exit(coord_pid, 2000);
	ck_assert_msg(status != -1, "httplock-coord still running after 2 s");
	coord_pid = 0;
	printf("check_proto: httplock-coord exited %lld ms after signal %d\n",
	    (long long)(mono_ms() - t0), sigs[_i]);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "status %#x", status);
	ck_assert_msg(access(sockpath, F_OK) == -1 && errno == ENOENT,
	    "the socket is still there");
	/* The waiters see the coordinator go. */
	ck_assert_int_eq(wait_woken(w1, 2000), COORDC_E_DOWN);
	ck_assert_int_eq(wait_woken(w2, 2000), COORDC_E_DOWN);
	coord_waiter_free(w1);
	coord_waiter_free(w2);
	coord_notifier_free(n);
}
END_TEST

START_TEST(test_second_instance)
{
	struct coord_stats st;
	pid_t pid = spawn_coord(sockpath);
	int status = wait_exit(pid, 2000);

	if (status == -1) {
		kill(pid, SIGKILL);
		(void)wait_exit(pid, 2000);
	}
	ck_assert_msg(status != -1, "the second instance kept running");
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) != 0,
	    "status %#x", status);
	/* The first one is unharmed, its socket still in place. */
	ck_assert_int_eq(coord_ping(sockpath, &st, 1000), COORDC_OK);
}
END_TEST

/* A socket file left by a dead coordinator is replaced; a file that is
 * not a socket is left alone. */
START_TEST(test_stale_socket)
{
	char stale[128], plain[128], lockp[160];
	struct coord_stats st;
	struct stat sb;
	pid_t pid;
	int fd, status;

	path_in_tmp(stale, sizeof(stale), "stale.sock");
	fd = raw_listen(stale);
	close(fd);                       /* the file stays, nobody answers */
	pid = spawn_coord(stale);
	wait_ready(pid, stale);
	ck_assert_int_eq(coord_ping(stale, &st, 1000), COORDC_OK);
	ck_assert_int_eq(stop_coord(pid, SIGTERM), 0);
	snprintf(lockp, sizeof(lockp), "%s.lock", stale);
	unlink(lockp);

	path_in_tmp(plain, sizeof(plain), "plain.sock");
	fd = open(plain, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	ck_assert_int_ne(fd, -1);
	close(fd);
	pid = spawn_coord(plain);
	status = wait_exit(pid, 2000);
	ck_assert_msg(status != -1 && WIFEXITED(status) &&
	    WEXITSTATUS(status) != 0, "status %#x", status);
	ck_assert_int_eq(stat(plain, &sb), 0);
	ck_assert(S_ISREG(sb.st_mode));
	unlink(plain);
	snprintf(lockp, sizeof(lockp), "%s.lock", plain);
	unlink(lockp);
}
END_TEST

/* The notifier outlives a coordinator restart. */
START_TEST(test_notifier_restart)
{
	struct coord_notifier *n1 = coord_notifier_new(sockpath);
	struct coord_notifier *n2 = coord_notifier_new(sockpath);
	struct coord_waiter *w;

	ck_assert_int_eq(coord_notify(n1, "r", true, 0, 0), COORDC_OK);
	ck_assert_int_eq(coord_notify(n2, "r", true, 0, 0), COORDC_OK);
	ck_assert_int_eq(stop_coord(coord_pid, SIGTERM), 0);
	coord_pid = 0;
	ck_assert_int_eq(coord_notify(n1, "r", true, 0, 0), COORDC_E_DOWN);

	coord_pid = spawn_coord(NULL);
	wait_ready(coord_pid, sockpath);
	w = waiter("r", 1, 0);
	/* n2's old connection is dead; the call must notice and reconnect. */
	ck_assert_int_eq(coord_notify(n2, "r", true, 0, 0), COORDC_OK);
	ck_assert_int_eq(wait_woken(w, 2000), COORDC_WOKEN);
	ck_assert_int_eq(coord_waiter_register(w, "r", 2, 0, 2000), COORDC_OK);
	ck_assert_int_eq(coord_notify(n1, "r", true, 0, 0), COORDC_OK);
	ck_assert_int_eq(wait_woken(w, 2000), COORDC_WOKEN);
	coord_waiter_free(w);
	coord_notifier_free(n1);
	coord_notifier_free(n2);
}
END_TEST

/*
 * 10,000 waiters over 1,000 locks (fewer if the descriptor limit is
 * lower): timers wake exactly the first waiter of every lock, then one
 * NOTIFY per lock exactly the second.
 */
START_TEST(test_scale)
{
	enum { NLOCKS = 1000, WANT = 10000 };
	struct coord_waiter **w;
	struct coord_notifier *n = coord_notifier_new(sockpath);
	struct pollfd *pfd;
	struct rlimit rl;
	bool *woken;
	char name[32];
	int64_t now = 0, t0;
	int nw, i, round;

	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	rl.rlim_cur = rl.rlim_max;
	(void)setrlimit(RLIMIT_NOFILE, &rl);
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	nw = WANT;
	if (rl.rlim_cur < (rlim_t)WANT + 100)
		nw = (int)rl.rlim_cur - 100;
	nw -= nw % NLOCKS;
	ck_assert_int_ge(nw, 2 * NLOCKS);
	if (nw != WANT)
		printf("check_proto: descriptor limit %llu: %d waiters only\n",
		    (unsigned long long)rl.rlim_cur, nw);

	w = calloc((size_t)nw, sizeof(*w));
	pfd = calloc((size_t)nw, sizeof(*pfd));
	woken = calloc((size_t)nw, sizeof(*woken));
	ck_assert(w != NULL && pfd != NULL && woken != NULL);
	/*
	 * The first waiter of each lock registers last, so its timer runs
	 * from then (and its registration goes in at the head of the list).
	 * Different expiries, 300..790 ms out.
	 */
	t0 = mono_ms();
	for (i = nw - 1; i >= 0; i--) {
		int lock = i % NLOCKS;
		int64_t id = i / NLOCKS + 1, exp = 0;

		if (id == 1 && i == NLOCKS - 1)
			now = wall_ms();
		if (id == 1)
			exp = now + 300 + (lock % 50) * 10;
		snprintf(name, sizeof(name), "scale-%d", lock);
		w[i] = waiter(name, id, exp);
		pfd[i].fd = coord_waiter_fd(w[i]);
		pfd[i].events = POLLIN;
	}
	printf("check_proto: registered %d waiters in %lld ms\n", nw,
	    (long long)(mono_ms() - t0));
	wait_stats(ANY, ANY, NLOCKS);

	for (round = 1; round <= 2; round++) {
		int64_t deadline = mono_ms() + 10000;
		int got = 0;

		if (round == 2)
			for (i = 0; i < NLOCKS; i++) {
				snprintf(name, sizeof(name), "scale-%d", i);
				ck_assert_int_eq(coord_notify(n, name, true, 0,
				    0), COORDC_OK);
			}
		while (got < NLOCKS) {
			int left = (int)(deadline - mono_ms()), r;

			ck_assert_msg(left > 0, "round %d: %d of %d woken",
			    round, got, NLOCKS);
			r = poll(pfd, (nfds_t)nw, left);
			ck_assert_int_ge(r, 0);
			for (i = 0; i < nw && r > 0; i++) {
				if (pfd[i].revents == 0)
					continue;
				r--;
				ck_assert_msg(!woken[i], "waiter %d woken "
				    "twice", i);
				ck_assert_int_eq(coord_waiter_read(w[i]),
				    COORDC_WOKEN);
				ck_assert_msg(i / NLOCKS + 1 == round,
				    "round %d woke waiter id %d", round,
				    i / NLOCKS + 1);
				woken[i] = true;
				pfd[i].fd = -1;
				got++;
			}
		}
		printf("check_proto: round %d: %d wakes after %lld ms\n", round,
		    got, (long long)(mono_ms() - t0));
		wait_stats(ANY, (uint32_t)(nw - round * NLOCKS), NLOCKS);
	}
	/* Nobody else was woken. */
	ck_assert_int_eq(poll(pfd, (nfds_t)nw, 0), 0);
	for (i = 0; i < nw; i++)
		coord_waiter_free(w[i]);
	wait_stats(ANY, 0, 0);
	free(w);
	free(pfd);
	free(woken);
	coord_notifier_free(n);
}
END_TEST

/* ======================================================= client cases */

START_TEST(test_client_down)
{
	char longpath[200], nothere[128];
	struct coord_notifier *n;
	struct coord_stats st;

	path_in_tmp(nothere, sizeof(nothere), "nothere.sock");
	errno = 0;
	ck_assert_ptr_null(coord_waiter_open(nothere));
	ck_assert_int_eq(errno, ENOENT);
	memset(longpath, 'x', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	errno = 0;
	ck_assert_ptr_null(coord_waiter_open(longpath));
	ck_assert_int_eq(errno, ENAMETOOLONG);
	ck_assert_int_eq(coord_ping(nothere, &st, 100), COORDC_E_DOWN);
	ck_assert_int_eq(coord_ping(longpath, &st, 100), COORDC_E_DOWN);

	n = coord_notifier_new(nothere);
	ck_assert_ptr_nonnull(n);
	ck_assert_int_eq(coord_notify(n, "x", true, 0, 0), COORDC_E_DOWN);
	ck_assert_int_eq(coord_notify(n, "x", true, 0, 0), COORDC_E_DOWN);
	coord_notifier_free(n);
	n = coord_notifier_new(longpath);
	ck_assert_ptr_nonnull(n);
	ck_assert_int_eq(coord_notify(n, "x", true, 0, 0), COORDC_E_DOWN);
	coord_notifier_free(n);
	coord_notifier_free(NULL);
	coord_waiter_free(NULL);
}
END_TEST

/* A coordinator that never answers: every call gives up in time. */
START_TEST(test_client_timeout)
{
	struct coord_waiter *w;
	struct coord_stats st;
	int64_t t0, el;
	int lfd = raw_listen(sockpath);  /* listens, never accepts */

	t0 = mono_ms();
	ck_assert_int_eq(coord_ping(sockpath, &st, 200), COORDC_E_TIMEOUT);
	el = mono_ms() - t0;
	ck_assert_int_ge(el, 150);
	ck_assert_int_le(el, 1500);

	w = coord_waiter_open(sockpath);
	ck_assert_ptr_nonnull(w);
	t0 = mono_ms();
	ck_assert_int_eq(coord_waiter_register(w, "x", 1, 0, 200),
	    COORDC_E_TIMEOUT);
	el = mono_ms() - t0;
	ck_assert_int_ge(el, 150);
	ck_assert_int_le(el, 1500);
	/* After a failure the waiter is spent. */
	ck_assert_int_eq(coord_waiter_register(w, "x", 1, 0, 200),
	    COORDC_E_DOWN);
	ck_assert_int_eq(coord_waiter_read(w), COORDC_E_DOWN);
	coord_waiter_free(w);
	close(lfd);
}
END_TEST

/*
 * A hand-driven coordinator: checks what the client sends, and how it
 * takes frames that arrive early, late, split, or from another version.
 */
START_TEST(test_client_frames)
{
	static const uint8_t ack[] = { V, PROTO_ACK, 0, 0, 0, 0, 0, 0 };
	static const uint8_t wake[] = { V, PROTO_WAKE, 0, 0, 0, 0, 0, 8,
	    0, 0, 0, 0, 0, 0, 0, 9 };
	static const uint8_t pong[] = { V, PROTO_PONG, 0, 0, 0, 0, 0, 12,
	    0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3 };
	static const uint8_t err_old[] = { OLD_V, PROTO_ERROR, 0, 0, 0, 0, 0, 1,
	    OLD_V };
	static const uint8_t err_ours[] = { V, PROTO_ERROR, 0, 0, 0, 0, 0, 1,
	    V };
	uint8_t buf[PROTO_FRAME_MAX];
	struct coord_waiter *w;
	struct proto_msg m;
	int lfd = raw_listen(sockpath), s;

	/* A stale WAKE before the ACK is dropped; one after it is kept. */
	w = coord_waiter_open(sockpath);
	ck_assert_ptr_nonnull(w);
	s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	ck_assert_int_ne(s, -1);
	raw_send(s, wake, sizeof(wake));
	raw_send(s, ack, sizeof(ack));
	raw_send(s, wake, sizeof(wake));
	ck_assert_int_eq(coord_waiter_register(w, "name", 77, -5, 1000),
	    COORDC_OK);
	read_frame(s, &m, buf, sizeof(buf));
	ck_assert_int_eq(m.type, PROTO_WAIT);
	ck_assert(m.waiter_id == 77 && m.expires == -5);
	ck_assert(m.namelen == 4 && memcmp(m.name, "name", 4) == 0);
	ck_assert(readable(coord_waiter_fd(w)));
	ck_assert_int_eq(coord_waiter_read(w), COORDC_WOKEN);
	ck_assert_int_eq(coord_waiter_read(w), COORDC_OK);

	/* Names that cannot be sent, before anything goes out. */
	ck_assert_int_eq(coord_waiter_register(w, "", 1, 0, 1000),
	    COORDC_E_PROTO);
	{
		char big[PROTO_NAME_MAX + 2];

		memset(big, 'b', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		ck_assert_int_eq(coord_waiter_register(w, big, 1, 0, 1000),
		    COORDC_E_PROTO);
		big[PROTO_NAME_MAX] = '\0';      /* the longest: fine */
		raw_send(s, ack, sizeof(ack));
		ck_assert_int_eq(coord_waiter_register(w, big, 1, 0, 1000),
		    COORDC_OK);
		read_frame(s, &m, buf, sizeof(buf));
		ck_assert_uint_eq(m.namelen, PROTO_NAME_MAX);
	}

	/* A WAKE in pieces; a late ACK and a PONG are ignored. */
	raw_send(s, ack, sizeof(ack));
	raw_send(s, pong, sizeof(pong));
	raw_send(s, wake, 5);
	ck_assert_int_eq(coord_waiter_read(w), COORDC_OK);
	raw_send(s, wake + 5, 6);
	ck_assert_int_eq(coord_waiter_read(w), COORDC_OK);
	raw_send(s, wake + 11, sizeof(wake) - 11);
	ck_assert_int_eq(coord_waiter_read(w), COORDC_WOKEN);

	/* The coordinator leaves. */
	close(s);
	ck_assert_int_eq(coord_waiter_read(w), COORDC_E_DOWN);
	coord_waiter_free(w);

	/* ERROR, from another version or from ours. */
	w = coord_waiter_open(sockpath);
	s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	raw_send(s, err_old, sizeof(err_old));
	ck_assert_int_eq(coord_waiter_register(w, "x", 1, 0, 1000),
	    COORDC_E_PROTO);
	coord_waiter_free(w);
	close(s);
	w = coord_waiter_open(sockpath);
	s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	raw_send(s, ack, sizeof(ack));
	ck_assert_int_eq(coord_waiter_register(w, "x", 1, 0, 1000), COORDC_OK);
	raw_send(s, err_ours, sizeof(err_ours));
	ck_assert_int_eq(coord_waiter_read(w), COORDC_E_PROTO);
	coord_waiter_free(w);
	close(s);

	/* Garbage after the ACK. */
	w = coord_waiter_open(sockpath);
	s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	raw_send(s, ack, sizeof(ack));
	ck_assert_int_eq(coord_waiter_register(w, "x", 1, 0, 1000), COORDC_OK);
	raw_send(s, "\x01\x63\x00\x00\x00\x00\x00\x00", 8);
	ck_assert_int_eq(coord_waiter_read(w), COORDC_E_PROTO);
	coord_waiter_free(w);
	close(s);
	close(lfd);
}
END_TEST

/* The notifier's frames, and its reconnect when the peer hung up. */
START_TEST(test_client_notifier)
{
	struct coord_notifier *n;
	uint8_t buf[PROTO_FRAME_MAX];
	struct proto_msg m;
	int lfd = raw_listen(sockpath), s;

	n = coord_notifier_new(sockpath);
	ck_assert_ptr_nonnull(n);
	ck_assert_int_eq(coord_notify(n, "lock/1", true, 12, 345), COORDC_OK);
	s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	ck_assert_int_ne(s, -1);
	read_frame(s, &m, buf, sizeof(buf));
	ck_assert_int_eq(m.type, PROTO_NOTIFY);
	ck_assert_int_eq(m.flags, PROTO_NOTIFY_WAKE);
	ck_assert(m.waiter_id == 12 && m.expires == 345);
	ck_assert(m.namelen == 6 && memcmp(m.name, "lock/1", 6) == 0);
	/* Replies are read and thrown away. */
	raw_send(s, "\x01\x02\x00\x00\x00\x00\x00\x00", 8);
	ck_assert_int_eq(coord_notify(n, "b", false, 0, 0), COORDC_OK);
	read_frame(s, &m, buf, sizeof(buf));
	ck_assert_int_eq(m.flags, 0);
	ck_assert(m.namelen == 1 && m.name[0] == 'b');

	/* The coordinator hangs up: the next call reconnects. */
	close(s);
	ck_assert_int_eq(coord_notify(n, "c", true, 0, 0), COORDC_OK);
	s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	ck_assert_int_ne(s, -1);
	read_frame(s, &m, buf, sizeof(buf));
	ck_assert(m.namelen == 1 && m.name[0] == 'c');
	close(s);
	ck_assert_int_eq(coord_notify(n, "", true, 0, 0), COORDC_E_PROTO);
	coord_notifier_free(n);
	close(lfd);
}
END_TEST

/* A coordinator that stops reading costs one short timeout, no more. */
START_TEST(test_client_notifier_hung)
{
	struct coord_notifier *n;
	int64_t t0, el = 0;
	int lfd = raw_listen(sockpath), i, rc = COORDC_OK, s;

	n = coord_notifier_new(sockpath);
	ck_assert_ptr_nonnull(n);
	for (i = 0; i < 200000 && rc == COORDC_OK; i++) {
		t0 = mono_ms();
		rc = coord_notify(n, "hung", true, 0, 0);
		el = mono_ms() - t0;
	}
	ck_assert_int_eq(rc, COORDC_E_DOWN);
	printf("check_proto: notifier gave up after %d sends, the last took "
	    "%lld ms\n", i, (long long)el);
	ck_assert_int_le(el, 1000);
	/* Right after, calls fail fast instead of waiting again. */
	t0 = mono_ms();
	ck_assert_int_eq(coord_notify(n, "hung", true, 0, 0), COORDC_E_DOWN);
	ck_assert_int_le(mono_ms() - t0, 50);
	coord_notifier_free(n);
	s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (s != -1)
		close(s);
	close(lfd);
}
END_TEST

/* PING against hand-driven coordinators. */
struct fake {
	int            lfd;
	const uint8_t *reply;
	size_t         replylen;
};

static void *
fake_serve(void *arg)
{
	struct fake *f = arg;
	uint8_t buf[PROTO_HDR_LEN];
	size_t got = 0;
	int s = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);

	if (s == -1)
		return NULL;
	while (got < sizeof(buf)) {
		ssize_t n = recv(s, buf + got, sizeof(buf) - got, 0);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	if (got == sizeof(buf))
		(void)send(s, f->reply, f->replylen, MSG_NOSIGNAL);
	close(s);
	return NULL;
}

static int
fake_ping(const uint8_t *reply, size_t len, struct coord_stats *st)
{
	struct fake f = { raw_listen(sockpath), reply, len };
	pthread_t t;
	int rc;

	ck_assert_int_eq(pthread_create(&t, NULL, fake_serve, &f), 0);
	rc = coord_ping(sockpath, st, 2000);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	close(f.lfd);
	unlink(sockpath);
	return rc;
}

START_TEST(test_client_ping)
{
	static const uint8_t pong[] = { V, PROTO_PONG, 0, 0, 0, 0, 0, 12,
	    0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3 };
	static const uint8_t err_old[] = { OLD_V, PROTO_ERROR, 0, 0, 0, 0, 0, 1,
	    OLD_V };
	static const uint8_t ack[] = { V, PROTO_ACK, 0, 0, 0, 0, 0, 0 };
	struct coord_stats st = { 0, 0, 0 };

	ck_assert_int_eq(fake_ping(pong, sizeof(pong), &st), COORDC_OK);
	ck_assert(st.peers == 1 && st.waiters == 2 && st.locks == 3);
	ck_assert_int_eq(fake_ping(err_old, sizeof(err_old), &st),
	    COORDC_E_PROTO);
	ck_assert_int_eq(fake_ping(ack, sizeof(ack), &st), COORDC_E_PROTO);
	ck_assert_int_eq(fake_ping(pong, 10, &st), COORDC_E_DOWN);
}
END_TEST

/* ================================================================ main */

static Suite *
proto_suite(void)
{
	Suite *s = suite_create("proto");
	TCase *tc;

	tc = tcase_create("proto");
	tcase_add_loop_test(tc, test_roundtrip, 0, (int)N_RT);
	tcase_add_loop_test(tc, test_truncated, 0, (int)N_RT);
	tcase_add_loop_test(tc, test_encode_space, 0, (int)N_RT);
	tcase_add_test(tc, test_golden);
	tcase_add_test(tc, test_stream);
	tcase_add_loop_test(tc, test_bad, 0, (int)N_BAD);
	tcase_add_test(tc, test_name_too_long);
	tcase_add_test(tc, test_encode_invalid);
	tcase_add_test(tc, test_random);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);

	tc = tcase_create("coordc");
	tcase_add_checked_fixture(tc, setup_tmp, teardown_coord);
	tcase_add_test(tc, test_client_down);
	tcase_add_test(tc, test_client_timeout);
	tcase_add_test(tc, test_client_frames);
	tcase_add_test(tc, test_client_notifier);
	tcase_add_test(tc, test_client_notifier_hung);
	tcase_add_test(tc, test_client_ping);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);

	tc = tcase_create("coord");
	tcase_add_checked_fixture(tc, setup_coord, teardown_coord);
	tcase_add_test(tc, test_wake_order);
	tcase_add_test(tc, test_same_id);
	tcase_add_test(tc, test_kick);
	tcase_add_test(tc, test_reregister);
	tcase_add_test(tc, test_unwait);
	tcase_add_test(tc, test_expiry);
	tcase_add_test(tc, test_expiry_extremes);
	tcase_add_test(tc, test_peer_close);
	tcase_add_test(tc, test_garbage);
	tcase_add_test(tc, test_pong_counts);
	tcase_add_loop_test(tc, test_signal, 0, 2);
	tcase_add_test(tc, test_second_instance);
	tcase_add_test(tc, test_stale_socket);
	tcase_add_test(tc, test_notifier_restart);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);

	tc = tcase_create("coord_scale");
	tcase_add_checked_fixture(tc, setup_coord, teardown_coord);
	tcase_add_test(tc, test_scale);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);
	return s;
}

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	(void)remove(path);
	return 0;
}

int
main(void)
{
	SRunner *sr;
	int failed;

	/* A write to a closed test socket must fail, not kill the test. */
	signal(SIGPIPE, SIG_IGN);
	snprintf(basedir, sizeof(basedir), "/tmp/check_proto.XXXXXX");
	if (mkdtemp(basedir) == NULL) {
		perror("check_proto: mkdtemp");
		return EXIT_FAILURE;
	}
	sr = srunner_create(proto_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	/* Whatever failed tests left behind goes too. */
	(void)nftw(basedir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
