/*
 * The wire protocol between FastCGI workers and the coordinator, spoken over
 * a Unix-domain stream socket.  The coordinator never decides who holds a
 * lock (SQLite does); it only tells sleeping waiters when to look again.
 *
 * Every frame is an 8-byte header followed by `len` payload bytes:
 *
 *   u8 version | u8 type | u16 reserved (0) | u32 len      (network order)
 *
 * Payload integers are network order.  A lock name is u16 length + bytes.
 *
 *   WAIT    worker->coord  u64 waiter_id, i64 holder_expires, name
 *           Register the sleeping waiter `waiter_id` of lock `name` on this
 *           connection; holder_expires (ms, 0 = none) arms the lock's expiry
 *           timer.  Answered by ACK.  Registration is one-shot: after a WAKE
 *           the waiter sends WAIT again if it must go on waiting.
 *   ACK     coord->worker  (empty)
 *   WAKE    coord->worker  u64 waiter_id
 *   UNWAIT  worker->coord  (empty)
 *           Withdraw this connection's registration, if any, without
 *           passing its turn on (closing the connection passes it on), so
 *           that the connection can serve the next wait.  No answer.
 *   NOTIFY  worker->coord  u8 flags, u64 kick_id, i64 expires, name
 *           The lock's state changed.  PROTO_NOTIFY_WAKE: wake its first
 *           registered waiter (lowest waiter_id).  kick_id != 0: also wake
 *           that waiter.  expires != 0: re-arm the expiry timer.  No answer.
 *   PING    any->coord     (empty)
 *   PONG    coord->any     u32 peers, u32 waiters, u32 locks
 *   ERROR   coord->any     u8 version of the coordinator; then it closes.
 *
 * A frame whose version differs from PROTO_VERSION is answered with ERROR
 * and the peer is dropped, as is a peer sending a malformed frame.
 *
 * Bump PROTO_VERSION if any of these change.
 */
#ifndef HTTPLOCK_PROTO_H
#define HTTPLOCK_PROTO_H

#include <stddef.h>
#include <stdint.h>

/*
 * Version 2: names grew from 255 to 1024 bytes (lock keys with a tenant's
 * namespace, docs/tenants.md), and frames from 512 to 1088 payload bytes.
 * Version 3: UNWAIT, so that workers keep waiter connections open.
 */
#define PROTO_VERSION     3
#define PROTO_HDR_LEN     8
#define PROTO_NAME_MAX    1024
#define PROTO_PAYLOAD_MAX 1088  /* larger frames are malformed */
#define PROTO_FRAME_MAX   (PROTO_HDR_LEN + PROTO_PAYLOAD_MAX)

enum proto_type {
	PROTO_WAIT = 1,
	PROTO_ACK = 2,
	PROTO_WAKE = 3,
	PROTO_NOTIFY = 4,
	PROTO_PING = 5,
	PROTO_PONG = 6,
	PROTO_ERROR = 7,
	PROTO_UNWAIT = 8
};

#define PROTO_NOTIFY_WAKE 0x01

enum {
	PROTO_OK = 0,
	PROTO_E_SHORT = -1,      /* need more bytes; not an error on a stream */
	PROTO_E_VERSION = -2,    /* header version is not PROTO_VERSION */
	PROTO_E_MALFORMED = -3,  /* bad type, length, reserved bits or name */
	PROTO_E_SPACE = -4       /* encode: output buffer too small */
};

/* A decoded frame.  `name` points into the input buffer (not terminated). */
struct proto_msg {
	uint8_t     version;
	uint8_t     type;
	uint8_t     flags;
	uint64_t    waiter_id;   /* WAIT, WAKE; kick_id for NOTIFY */
	int64_t     expires;     /* WAIT holder_expires, NOTIFY expires */
	const char *name;
	size_t      namelen;
	uint32_t    peers, waiters, locks;   /* PONG */
};

/*
 * Decodes one frame from buf[0..len).  On PROTO_OK *used is the frame's
 * size and *m is filled.  PROTO_E_SHORT: the frame is incomplete (read more);
 * other negatives: the peer is broken (m->version is set on
 * PROTO_E_VERSION).  Never reads past buf+len.
 */
int proto_decode(const uint8_t *buf, size_t len, struct proto_msg *m,
    size_t *used) __attribute__((warn_unused_result));

/*
 * Encodes *m (by m->type; version is always PROTO_VERSION) into out[0..cap).
 * Returns the frame size, or PROTO_E_SPACE / PROTO_E_MALFORMED.
 */
int proto_encode(const struct proto_msg *m, uint8_t *out, size_t cap)
    __attribute__((warn_unused_result));

#endif /* HTTPLOCK_PROTO_H */
