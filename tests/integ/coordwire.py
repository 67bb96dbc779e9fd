"""The coordinator's wire protocol (coord/proto.h), spoken from the tests:
frames, their types and fields, reading one frame, and a PING on a fresh
connection (what /healthz reports of the coordinator, seen without the
web server).  The protocol version is read from coord/proto.h.
"""

import os
import re
import socket
import struct

from testenv import SRCDIR


def _proto_version():
    with open(os.path.join(SRCDIR, "coord", "proto.h")) as f:
        return int(re.search(r"#define PROTO_VERSION\s+(\d+)", f.read()).group(1))


PROTO_VERSION = _proto_version()
T_WAIT, T_ACK, T_WAKE, T_NOTIFY, T_PING, T_PONG, T_ERROR, T_UNWAIT = 1, 2, 3, 4, 5, 6, 7, 8
NOTIFY_WAKE = 1            # PROTO_NOTIFY_WAKE
NAME_MAX = 1024            # PROTO_NAME_MAX


def frame(ftype, payload=b"", version=PROTO_VERSION, length=None):
    """A frame: the 8-byte header (version, type, 0, length) and payload;
    length, if given, is announced instead of the payload's."""
    n = len(payload) if length is None else length
    return struct.pack("!BBHI", version, ftype, 0, n) + payload


def name_field(name):
    return struct.pack("!H", len(name)) + name


def notify_frame(name, expires_ms, flags=0, kick=0):
    return frame(T_NOTIFY, struct.pack("!BQq", flags, kick, expires_ms) + name_field(name))


def wait_frame(waiter_id, name, expires_ms=0):
    return frame(T_WAIT, struct.pack("!Qq", waiter_id, expires_ms) + name_field(name))


def recv_frame(sock, timeout_s=5.0):
    """(type, payload) of the next frame; None on EOF."""
    sock.settimeout(timeout_s)
    buf = b""
    while len(buf) < 8:
        b = sock.recv(8 - len(buf))
        if not b:
            return None
        buf += b
    _, ftype, _, n = struct.unpack("!BBHI", buf)
    payload = b""
    while len(payload) < n:
        b = sock.recv(n - len(payload))
        if not b:
            return None
        payload += b
    return ftype, payload


def ping(path, timeout_s=5.0):
    """(peers, waiters, locks) from a PING to the coordinator at `path`, on
    a fresh connection."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout_s)
        s.connect(path)
        s.sendall(frame(T_PING))
        f = recv_frame(s, timeout_s)
        if f is None or f[0] != T_PONG or len(f[1]) != 12:
            raise AssertionError("PING: bad answer %r" % (f,))
        return struct.unpack("!III", f[1])
    finally:
        s.close()
