/*
 * proto: encoding and decoding of the coordinator's wire frames (proto.h).
 * Both directions are pure functions over caller-owned buffers: nothing is
 * allocated, nothing is logged, and decode never looks past buf+len, since
 * its input comes straight from a socket (and from the fuzzer).
 *
 * Decoding checks the header as soon as it is complete, before the payload
 * arrives, so a peer announcing a huge or otherwise impossible frame is
 * rejected at once instead of being waited for.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proto.h"

/*
 * Payload sizes.  A name is a u16 length and the bytes; the fixed part of
 * WAIT is waiter_id + holder_expires, that of NOTIFY flags + kick_id +
 * expires.
 */
#define WAIT_FIXED   16
#define NOTIFY_FIXED 17
#define NAMELEN_LEN  2
#define WAKE_LEN     8
#define PONG_LEN     12
#define ERROR_LEN    1

static uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | (unsigned)p[1]);
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint64_t
get64(const uint8_t *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static void
put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void
put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

/*
 * The payload length of a frame of `type` whose name is `namelen` bytes
 * (ignored for types without a name), or 0 with *ok = 0 for an unknown
 * type.
 */
static size_t
payload_len(uint8_t type, size_t namelen, int *ok)
{
	*ok = 1;
	switch (type) {
	case PROTO_WAIT:
		return WAIT_FIXED + NAMELEN_LEN + namelen;
	case PROTO_NOTIFY:
		return NOTIFY_FIXED + NAMELEN_LEN + namelen;
	case PROTO_ACK:
	case PROTO_PING:
	case PROTO_UNWAIT:
		return 0;
	case PROTO_WAKE:
		return WAKE_LEN;
	case PROTO_PONG:
		return PONG_LEN;
	case PROTO_ERROR:
		return ERROR_LEN;
	default:
		*ok = 0;
		return 0;
	}
}

static int
has_name(uint8_t type)
{
	return type == PROTO_WAIT || type == PROTO_NOTIFY;
}

/*
 * Decodes the name at p[0..len): a u16 length that must account for
 * exactly the rest of the payload, and 1..PROTO_NAME_MAX bytes.
 */
static int
decode_name(const uint8_t *p, size_t len, struct proto_msg *m)
{
	size_t namelen;

	if (len < NAMELEN_LEN)
		return PROTO_E_MALFORMED;
	namelen = get16(p);
	if (namelen == 0 || namelen > PROTO_NAME_MAX ||
	    namelen != len - NAMELEN_LEN)
		return PROTO_E_MALFORMED;
	m->name = (const char *)(p + NAMELEN_LEN);
	m->namelen = namelen;
	return PROTO_OK;
}

int
proto_decode(const uint8_t *buf, size_t len, struct proto_msg *m,
    size_t *used)
{
	const uint8_t *p;
	uint32_t plen;
	uint8_t type;

	memset(m, 0, sizeof(*m));
	*used = 0;
	/*
	 * The version byte is judged alone, so that a peer of another
	 * version is answered even if its header has another size.
	 */
	if (len < 1)
		return PROTO_E_SHORT;
	m->version = buf[0];
	if (buf[0] != PROTO_VERSION)
		return PROTO_E_VERSION;
	if (len < PROTO_HDR_LEN)
		return PROTO_E_SHORT;

	type = buf[1];
	plen = get32(buf + 4);
	if (get16(buf + 2) != 0 || plen > PROTO_PAYLOAD_MAX)
		return PROTO_E_MALFORMED;
	if (!has_name(type)) {
		int ok;
		size_t want = payload_len(type, 0, &ok);

		if (!ok || plen != want)
			return PROTO_E_MALFORMED;
	} else {
		size_t fixed = (type == PROTO_WAIT ? WAIT_FIXED : NOTIFY_FIXED);

		if (plen < fixed + NAMELEN_LEN + 1 ||
		    plen > fixed + NAMELEN_LEN + PROTO_NAME_MAX)
			return PROTO_E_MALFORMED;
	}
	if (len - PROTO_HDR_LEN < plen)
		return PROTO_E_SHORT;

	m->type = type;
	p = buf + PROTO_HDR_LEN;
	switch (type) {
	case PROTO_WAIT:
		m->waiter_id = get64(p);
		m->expires = (int64_t)get64(p + 8);
		if (decode_name(p + WAIT_FIXED, plen - WAIT_FIXED, m) != 0)
			return PROTO_E_MALFORMED;
		break;
	case PROTO_NOTIFY:
		m->flags = p[0];
		if ((m->flags & ~PROTO_NOTIFY_WAKE) != 0)
			return PROTO_E_MALFORMED;
		m->waiter_id = get64(p + 1);
		m->expires = (int64_t)get64(p + 9);
		if (decode_name(p + NOTIFY_FIXED, plen - NOTIFY_FIXED, m) != 0)
			return PROTO_E_MALFORMED;
		break;
	case PROTO_WAKE:
		m->waiter_id = get64(p);
		break;
	case PROTO_PONG:
		m->peers = get32(p);
		m->waiters = get32(p + 4);
		m->locks = get32(p + 8);
		break;
	case PROTO_ERROR:
		/*
		 * The header's version is ours (checked above); what the
		 * frame reports is the version its sender speaks.
		 */
		m->version = p[0];
		break;
	default:                 /* ACK, PING, UNWAIT: empty */
		break;
	}
	*used = PROTO_HDR_LEN + (size_t)plen;
	return PROTO_OK;
}

int
proto_encode(const struct proto_msg *m, uint8_t *out, size_t cap)
{
	size_t plen, namelen = 0;
	uint8_t *p;
	int ok;

	if (has_name(m->type)) {
		if (m->name == NULL || m->namelen == 0 ||
		    m->namelen > PROTO_NAME_MAX)
			return PROTO_E_MALFORMED;
		namelen = m->namelen;
	}
	if (m->type == PROTO_NOTIFY && (m->flags & ~PROTO_NOTIFY_WAKE) != 0)
		return PROTO_E_MALFORMED;
	plen = payload_len(m->type, namelen, &ok);
	if (!ok)
		return PROTO_E_MALFORMED;
	if (cap < PROTO_HDR_LEN + plen)
		return PROTO_E_SPACE;

	out[0] = PROTO_VERSION;
	out[1] = m->type;
	put16(out + 2, 0);
	put32(out + 4, (uint32_t)plen);
	p = out + PROTO_HDR_LEN;
	switch (m->type) {
	case PROTO_WAIT:
		put64(p, m->waiter_id);
		put64(p + 8, (uint64_t)m->expires);
		put16(p + WAIT_FIXED, (uint16_t)namelen);
		memcpy(p + WAIT_FIXED + NAMELEN_LEN, m->name, namelen);
		break;
	case PROTO_NOTIFY:
		p[0] = m->flags;
		put64(p + 1, m->waiter_id);
		put64(p + 9, (uint64_t)m->expires);
		put16(p + NOTIFY_FIXED, (uint16_t)namelen);
		memcpy(p + NOTIFY_FIXED + NAMELEN_LEN, m->name, namelen);
		break;
	case PROTO_WAKE:
		put64(p, m->waiter_id);
		break;
	case PROTO_PONG:
		put32(p, m->peers);
		put32(p + 4, m->waiters);
		put32(p + 8, m->locks);
		break;
	case PROTO_ERROR:
		p[0] = PROTO_VERSION;
		break;
	default:                 /* ACK, PING, UNWAIT: empty */
		break;
	}
	return (int)(PROTO_HDR_LEN + plen);
}
