"""Requests that must be refused and leave the lock as it was.

- A token that nearly matches the holder's: one hexadecimal digit changed
  (first, middle, last) is a token that does not hold the lock, 409
  not_held (README, Release and Renew); one character more or less is a
  malformed token, 400 bad_request (README, Errors).  Sent as the token
  parameter and as the Lock-Token header, to release and to renew.  The
  real token still holds the lock afterwards, with the fence and the
  expiry it had: a refused renew extends nothing.
- A renew after the lease ran out is refused with 409 not_held ("once the
  lease is gone"), whether nothing else touched the lock since (the lock
  is then free) or a waiter was granted it at the expiry (the waiter then
  holds it, untouched by the stale renew).

Token comparison and the expiry check happen in lockcore; these tests see
them through the web server, behind each front end.
"""

import secrets
import time

from checks import check_grant, expect
from common import BG, wait_for
from httpclient import lpath
from markers import shared

LEASE_S = 0.5       # the short lease of the expiry tests
EXPIRY_SLACK = 0.05  # seconds past expires_at before the stale renew is sent


def _other_digit(c):
    """A hexadecimal digit other than c (so the token keeps its shape)."""
    return "0" if c != "0" else "1"


def _near_matches(tok):
    """(label, token, status, error) of tokens one edit away from tok."""
    n = len(tok)
    out = []
    for label, i in (("first", 0), ("middle", n // 2), ("last", n - 1)):
        near = tok[:i] + _other_digit(tok[i]) + tok[i + 1:]
        out.append(("%s digit changed" % label, near, 409, "not_held"))
    out.append(("a digit added at the end", tok + "0", 400, "bad_request"))
    out.append(("a digit added in front", "0" + tok, 400, "bad_request"))
    out.append(("the last digit removed", tok[:-1], 400, "bad_request"))
    out.append(("the first digit removed", tok[1:], 400, "bad_request"))
    return out


def _holder(s, name):
    st = s.status(name)
    assert st["held"] is True and len(st["holders"]) == 1, st.short()
    return st["holders"][0]


@shared
def test_near_match_token_refused(s):
    name = "r-near-" + secrets.token_hex(4)
    g = s.acquire_ok(name, ttl=60, owner="real")
    tok = g["token"]
    before = _holder(s, name)
    assert before["fence"] == g["fence"], (before, g.short())
    for label, bad, status, error in _near_matches(tok):
        assert bad != tok and bad.lower() != tok
        for action in ("release", "renew"):
            what = "%s with %s" % (action, label)
            form = {"token": bad}
            if action == "renew":
                form["ttl"] = 600
            expect(s.post(lpath(name, action), form=form), status, error)
            r = s.post(lpath(name, action), headers={"Lock-Token": bad})
            expect(r, status, error)
            h = _holder(s, name)
            assert h["fence"] == g["fence"] and h["owner"] == "real", "%s: %s" % (what, h)
            assert abs(h["expires_at"] - before["expires_at"]) < 0.0015, \
                "%s moved the expiry: %s -> %s" % (what, before["expires_at"], h["expires_at"])
    # The real token still holds the lock: it renews it (same fence) and
    # releases it.
    r = check_grant(s.renew(name, tok, ttl=60), name, owner="real", ttl=60)
    assert r["token"] == tok and r["fence"] == g["fence"], r.short()
    s.release_ok(name, tok)
    assert s.status(name)["held"] is False


def _wait_expired(g):
    """Waits until the wall clock is EXPIRY_SLACK past g's expires_at (the
    server stamps it with the same clock): nothing to wait on but time."""
    wait_for(lambda: time.time() > g["expires_at"] + EXPIRY_SLACK,
             LEASE_S + 5, "the lease of fence %d to run out" % g["fence"], interval=0.01)


@shared
def test_renew_after_expiry_refused_lock_free(s):
    """Nothing touches the lock between the expiry and the renew: the
    renew itself must see that the lease is over."""
    name = "r-expired-" + secrets.token_hex(4)
    g = s.acquire_ok(name, ttl=LEASE_S)
    _wait_expired(g)
    expect(s.renew(name, g["token"]), 409, "not_held")
    expect(s.renew(name, g["token"], ttl=60), 409, "not_held")
    expect(s.release(name, g["token"]), 409, "not_held")
    st = s.status(name)
    assert st["held"] is False and st["holders"] == [], st.short()
    n = s.acquire_ok(name, timeout=0)
    assert n["fence"] > g["fence"], (n.short(), g.short())
    expect(s.renew(name, g["token"]), 409, "not_held")
    assert _holder(s, name)["fence"] == n["fence"]
    s.release_ok(name, n["token"])


@shared
def test_renew_after_expiry_refused_lock_handed_on(s):
    """A waiter is granted the lock when the lease runs out; the old
    holder's renew is refused and leaves the waiter's grant as it was."""
    name = "r-handed-" + secrets.token_hex(4)
    g = s.acquire_ok(name, ttl=LEASE_S, owner="first")
    w = BG(s.acquire, name, timeout=10, ttl=60, owner="next")
    s.wait_waiters(name, 1, bg=w)
    n = check_grant(w.get(10), name, owner="next", ttl=60)
    assert n["fence"] == g["fence"] + 1, (n.short(), g.short())
    assert n["acquired_at"] >= g["expires_at"] - 0.001, \
        "the waiter was granted before the lease ran out: %s" % n.short()
    before = _holder(s, name)
    for ttl in (None, 600):
        expect(s.renew(name, g["token"], ttl=ttl), 409, "not_held")
    expect(s.release(name, g["token"]), 409, "not_held")
    h = _holder(s, name)
    assert h["owner"] == "next" and h["fence"] == n["fence"], h
    assert abs(h["expires_at"] - before["expires_at"]) < 0.0015, (before, h)
    r = check_grant(s.renew(name, n["token"]), name, owner="next")
    assert r["fence"] == n["fence"], r.short()
    s.release_ok(name, n["token"])
