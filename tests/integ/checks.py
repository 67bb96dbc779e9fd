"""Checks of what the service answers and of the invariants it keeps:
expect() for a status and error code, check_grant() for the shape of a
grant, check_json_error() for an error answer read off a raw socket,
check_no_overlap() for mutual exclusion and fence order over a run of
critical sections, check_integrity() for the database file.  They raise AssertionError naming the request.
"""

import json
import re
import sqlite3
import time

TOKEN_RE = re.compile(r"^[0-9a-f]{32}$")


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def expect(r, status, error=None):
    """Asserts the status (and for errors the {"error","message"} body)."""
    if r.status != status:
        raise AssertionError("%s: expected %d%s, got %s" % (
            r.desc, status, "" if error is None else " " + error, r.short()))
    if error is not None:
        if not isinstance(r.json, dict) or r.json.get("error") != error:
            raise AssertionError("%s: expected error %r, got %s" % (r.desc, error, r.short()))
        if not isinstance(r.json.get("message"), str):
            raise AssertionError("%s: error body without a string \"message\": %s" % (r.desc, r.short()))
    return r


def check_grant(r, name, owner=None, ttl=None, lease=None):
    """Asserts a 200 acquire/renew body: lock, token, fence, ttl, expires_at,
    owner.  ttl: the "ttl" field must be that and expires_at about now + ttl;
    lease: only expires_at must be about now + lease."""
    expect(r, 200)
    for k in ("lock", "token", "fence", "ttl", "expires_at", "owner"):
        r[k]
    if r["lock"] != name:
        raise AssertionError("%s: lock %r != %r" % (r.desc, r["lock"], name))
    if not isinstance(r["token"], str) or not TOKEN_RE.match(r["token"]):
        raise AssertionError("%s: token is not 32 lowercase hex: %r" % (r.desc, r["token"]))
    if not is_int(r["fence"]):
        raise AssertionError("%s: fence is not an integer: %r" % (r.desc, r["fence"]))
    if not is_num(r["ttl"]) or r["ttl"] <= 0:
        raise AssertionError("%s: bad ttl %r" % (r.desc, r["ttl"]))
    if not is_num(r["expires_at"]):
        raise AssertionError("%s: expires_at is not a number: %r" % (r.desc, r["expires_at"]))
    now = time.time()
    if ttl is not None:
        if abs(r["ttl"] - ttl) > 0.0015:
            raise AssertionError("%s: ttl %r != %r" % (r.desc, r["ttl"], ttl))
        if not (now + ttl - 5 <= r["expires_at"] <= now + ttl + 1):
            raise AssertionError("%s: expires_at %.3f not about now (%.3f) + ttl %s" % (
                r.desc, r["expires_at"], now, ttl))
    if lease is not None and not (now + lease - 5 <= r["expires_at"] <= now + lease + 1):
        raise AssertionError("%s: expires_at %.3f not about now (%.3f) + %s" % (
            r.desc, r["expires_at"], now, lease))
    if owner is not None and r["owner"] != owner:
        raise AssertionError("%s: owner %r != %r" % (r.desc, r["owner"], owner))
    return r


def check_json_error(what, st, hdrs, body, statuses, code=None):
    """Asserts an error answer read off a raw socket (rawsock.read_response):
    a status among `statuses`, Content-Type application/json and a body
    {"error": "<code>", "message": "..."} (with this code, if given).
    Returns the body."""
    assert st in statuses, "%s: status %s, want one of %s: %r" % (what, st, statuses, body[:300])
    ct = hdrs.get("content-type", "").split(";")[0].strip()
    assert ct == "application/json", "%s: %s with Content-Type %r: %r" % (what, st, ct, body[:300])
    j = json.loads(body.decode())
    assert isinstance(j.get("error"), str) and isinstance(j.get("message"), str), \
        "%s: not an error body: %r" % (what, j)
    if code is not None:
        assert j["error"] == code, "%s: %s with error %r, want %r" % (what, st, j["error"], code)
    return j


def check_no_overlap(records):
    """Per lock, sorted by enter time: each holder left before the next one
    entered, and fences strictly increase in grant order.  records:
    (lock, fence, t_enter, t_leave, client) tuples (traffic.CycleLog)."""
    by_lock = {}
    for rec in records:
        by_lock.setdefault(rec[0], []).append(rec)
    for name, recs in by_lock.items():
        recs.sort(key=lambda r: r[2])
        for a, b in zip(recs, recs[1:]):
            if b[2] < a[3]:
                raise AssertionError(
                    "lock %r: overlapping holders: client %d (fence %d) held [%.6f, %.6f], "
                    "client %d (fence %d) entered at %.6f" % (
                        name, a[4], a[1], a[2], a[3], b[4], b[1], b[2]))
            if b[1] <= a[1]:
                raise AssertionError(
                    "lock %r: fences not increasing in grant order: %d then %d" % (name, a[1], b[1]))
    return {k: len(v) for k, v in by_lock.items()}


def check_integrity(db_path):
    """PRAGMA integrity_check of the database at db_path (read-only) is
    "ok"."""
    db = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True, timeout=5)
    try:
        ic = [row[0] for row in db.execute("PRAGMA integrity_check")]
    finally:
        db.close()
    if ic != ["ok"]:
        raise AssertionError("PRAGMA integrity_check of %s: %s" % (db_path, ic))
