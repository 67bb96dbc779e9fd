"""Lock semantics: handoff, timeouts, expiry, renew, FIFO, request_id
retries, cancel, status and listing."""

import time

from checks import check_grant, expect, is_int
from common import BG, log, wait_for
from markers import conf, shared, timeout
from traffic import queue_fifo_waiters


@shared
def test_blocking_handoff(s):
    a = s.acquire_ok("s-handoff", owner="A")
    b = BG(s.acquire, "s-handoff", owner="B")
    s.wait_waiters("s-handoff", 1, bg=b)
    t_rel = time.monotonic()
    s.release_ok("s-handoff", a["token"])
    r = b.get(12)
    ms = (b.t_done - t_rel) * 1000
    log("handoff: waiter granted %.1f ms after the release was sent" % ms)
    check_grant(r, "s-handoff", owner="B")
    assert r["fence"] == a["fence"] + 1, "fence %d after %d" % (r["fence"], a["fence"])
    assert ms < 2000, "handoff took %.0f ms" % ms
    st = s.status("s-handoff")
    assert st["waiters"] == 0 and st["holders"][0]["owner"] == "B", st.short()
    s.release_ok("s-handoff", r["token"])


@shared
def test_many_waiters_time_out_together(s):
    """20 waiters whose timeouts run out at the same moment all get 423
    timeout: a waiter whose row another waiter removed as past its
    deadline has timed out, not been cancelled."""
    name = "s-timeout-many"
    a = s.acquire_ok(name)
    for attempt in range(3):
        ws = [BG(s.acquire, name, timeout="1") for _ in range(20)]
        results = [w.get(10) for w in ws]
        got = sorted(set((r.status, r.get("error")) for r in results))
        log("attempt %d: %s" % (attempt, got))
        assert got == [(423, "timeout")], "expected only 423 timeout, got %s" % got
    wait_for(lambda: s.waiters(name) == 0, 2, "waiters to be 0 after the timeouts")
    s.release_ok(name, a["token"])


def test_acquire_timeout(s):
    a = s.acquire_ok("s-timeout")
    t0 = time.monotonic()
    r = s.acquire("s-timeout", timeout="0.5")
    el = time.monotonic() - t0
    log("timeout=0.5 -> %d after %.0f ms" % (r.status, el * 1000))
    expect(r, 423, "timeout")
    assert 0.4 <= el <= 3.0, "timeout=0.5 answered after %.3f s" % el
    t0 = time.monotonic()
    r = s.acquire("s-timeout", timeout=0)
    el = time.monotonic() - t0
    log("timeout=0 -> %d after %.0f ms" % (r.status, el * 1000))
    expect(r, 423, "timeout")
    assert el < 1.0, "timeout=0 took %.3f s" % el
    # the timed-out waiter left the queue
    wait_for(lambda: s.waiters("s-timeout") == 0, 2, "waiters to be 0 after the timeout")
    s.release_ok("s-timeout", a["token"])
    g = s.acquire_ok("s-timeout", timeout=0)
    assert g["fence"] == a["fence"] + 1, "a timed-out waiter was granted: fence %d after %d" % (
        g["fence"], a["fence"])
    s.release_ok("s-timeout", g["token"])


@conf(max_wait=2)
def test_wait_cap(s):
    a = s.acquire_ok("s-cap")
    t0 = time.monotonic()
    r = s.acquire("s-cap")
    el = time.monotonic() - t0
    log("no timeout, max_wait=2 -> %d after %.0f ms" % (r.status, el * 1000))
    expect(r, 423, "timeout")
    assert 1.6 <= el <= 5.0, "answered after %.3f s, expected about 2 s" % el
    t0 = time.monotonic()
    r = s.acquire("s-cap", timeout=100)
    el = time.monotonic() - t0
    log("timeout=100, max_wait=2 -> %d after %.0f ms" % (r.status, el * 1000))
    expect(r, 423, "timeout")
    assert 1.6 <= el <= 5.0, "answered after %.3f s, expected about 2 s" % el
    assert s.waiters("s-cap") == 0
    s.release_ok("s-cap", a["token"])


@shared
def test_expiry_handover(s):
    a = s.acquire_ok("s-expiry", ttl=1, owner="A")
    t_a = time.monotonic()
    b = BG(s.acquire, "s-expiry", owner="B")
    s.wait_waiters("s-expiry", 1, bg=b)
    r = b.get(12)
    el = b.t_done - t_a
    log("expiry handover: waiter granted %.0f ms after the ttl=1 grant" % (el * 1000))
    check_grant(r, "s-expiry", owner="B")
    assert 0.8 <= el <= 3.0, "granted %.3f s after the ttl=1 grant" % el
    assert r["fence"] == a["fence"] + 1, (a["fence"], r["fence"])
    expect(s.release("s-expiry", a["token"]), 409, "not_held")
    expect(s.renew("s-expiry", a["token"]), 409, "not_held")
    st = s.status("s-expiry")
    assert st["holders"][0]["owner"] == "B" and st["holders"][0]["fence"] == r["fence"], st.short()
    s.release_ok("s-expiry", r["token"])


@shared
def test_expired_lock_is_free(s):
    a = s.acquire_ok("s-expired", ttl="0.3")
    time.sleep(0.6)     # the lease runs out; nothing to wait on but time
    st = s.status("s-expired")
    assert st["held"] is False and st["holders"] == [], "expired lease still shown: " + st.short()
    g = s.acquire_ok("s-expired", timeout=0)
    assert g["fence"] == a["fence"] + 1
    expect(s.release("s-expired", a["token"]), 409, "not_held")
    s.release_ok("s-expired", g["token"])


@shared
def test_renew_keeps_lease(s):
    a = s.acquire_ok("s-renew", ttl=1)
    tok = a["token"]
    w = BG(s.acquire, "s-renew", timeout="1.5")
    t_end = time.monotonic() + 2.0
    n = 0
    last = a["expires_at"]
    while time.monotonic() < t_end:
        time.sleep(0.3)
        r = s.renew("s-renew", tok, ttl=1)
        check_grant(r, "s-renew", lease=1)
        assert r["token"] == tok and r["fence"] == a["fence"], r.short()
        assert r["expires_at"] > last, "expires_at did not move: %s -> %s" % (last, r["expires_at"])
        last = r["expires_at"]
        n += 1
    r = w.get(5)
    el = w.t_done - w.t_start
    log("%d renewals; the waiter (timeout=1.5) got %d after %.0f ms" % (n, r.status, el * 1000))
    expect(r, 423, "timeout")
    assert el >= 1.2, "waiter gave up after %.3f s" % el
    st = s.status("s-renew")
    assert st["held"] and st["holders"][0]["fence"] == a["fence"], st.short()
    s.release_ok("s-renew", tok)


@shared
@timeout(90)
def test_fifo_eight_waiters(s):
    name = "s-fifo"
    h = s.acquire_ok(name, owner="holder")
    bgs, order = queue_fifo_waiters(s, name, 8)
    st = s.status(name)
    assert st["waiters"] == 8 and st["holders"][0]["owner"] == "holder", st.short()
    t0 = time.monotonic()
    s.release_ok(name, h["token"])
    for b in bgs:
        r = b.get(30)
        check_grant(r, name)
    el = time.monotonic() - t0
    log("8 waiters served in %.0f ms; order %s" % (el * 1000, [i for i, _ in order]))
    assert [i for i, _ in order] == list(range(8)), "grant order %s != arrival order" % order
    fences = [h["fence"]] + [f for _, f in order]
    assert all(b > a for a, b in zip(fences, fences[1:])), "fences not increasing: %s" % fences
    assert fences[-1] == h["fence"] + 8, fences
    assert s.waiters(name) == 0


@shared
def test_request_id_retry_queued(s):
    name = "s-ridq"
    h = s.acquire_ok(name)
    first = BG(s.acquire, name, request_id="rid-semantics-0r2", owner="one")
    s.wait_waiters(name, 1, bg=first)
    second = BG(s.acquire, name, request_id="rid-semantics-0r2", owner="one")
    r1 = first.get(8)
    log("superseded request answered %.0f ms after the retry was sent" % (
        (first.t_done - second.t_start) * 1000))
    expect(r1, 409, "superseded")
    assert not second.done(), "the retry finished early: %r" % (second.result or second.exc)
    assert s.waiters(name) == 1, s.status(name).short()
    s.release_ok(name, h["token"])
    r2 = second.get(8)
    check_grant(r2, name, owner="one")
    assert r2["fence"] == h["fence"] + 1, (h["fence"], r2["fence"])
    # another retry now returns the same grant
    r3 = s.acquire_ok(name, request_id="rid-semantics-0r2", owner="one")
    assert (r3["token"], r3["fence"]) == (r2["token"], r2["fence"]), (r2.short(), r3.short())
    s.release_ok(name, r2["token"])
    # exactly one grant was made for r2: the next one is fence + 1
    g = s.acquire_ok(name, timeout=0)
    assert g["fence"] == r2["fence"] + 1, "extra grant(s): fence %d after %d" % (g["fence"], r2["fence"])
    s.release_ok(name, g["token"])


@shared
def test_cancel_waiting_and_held(s):
    name = "s-cancel"
    h = s.acquire_ok(name)
    w = BG(s.acquire, name, request_id="rid-semantics-0c1")
    s.wait_waiters(name, 1, bg=w)
    t0 = time.monotonic()
    c = expect(s.cancel(name, "rid-semantics-0c1"), 200)
    assert c["lock"] == name and c["cancelled"] is True and c["was"] == "waiting", c.short()
    r = w.get(8)
    log("cancelled waiter answered %.0f ms after the cancel" % ((w.t_done - t0) * 1000))
    expect(r, 409, "cancelled")
    assert (w.t_done - t0) < 2.0, "cancelled waiter answered only after %.3f s" % (w.t_done - t0)
    assert s.waiters(name) == 0
    expect(s.cancel(name, "rid-semantics-0c1"), 409, "not_held")
    s.release_ok(name, h["token"])
    g = s.acquire_ok(name, request_id="rid-semantics-0c2")
    assert g["fence"] == h["fence"] + 1, "the cancelled waiter was granted"
    c = expect(s.cancel(name, "rid-semantics-0c2"), 200)
    assert c["cancelled"] is True and c["was"] == "held", c.short()
    st = s.status(name)
    assert st["held"] is False, st.short()
    expect(s.release(name, g["token"]), 409, "not_held")
    expect(s.cancel(name, "rid-semantics-0c2"), 409, "not_held")


@shared
def test_cancel_grants_next_waiter(s):
    """Cancelling a held request_id hands the lock to the next waiter."""
    name = "s-cancel-next"
    g = s.acquire_ok(name, request_id="rid-semantics-hold")
    w = BG(s.acquire, name)
    s.wait_waiters(name, 1, bg=w)
    t0 = time.monotonic()
    expect(s.cancel(name, "rid-semantics-hold"), 200)
    r = w.get(8)
    log("waiter granted %.0f ms after the holder's cancel" % ((w.t_done - t0) * 1000))
    check_grant(r, name)
    assert r["fence"] == g["fence"] + 1
    assert (w.t_done - t0) < 2.0
    s.release_ok(name, r["token"])


@shared
def test_status_shows_waiters(s):
    name = "s-stat"
    h = s.acquire_ok(name, owner="h")
    bgs = [BG(s.acquire, name, timeout=8)]
    s.wait_waiters(name, 1, bg=bgs)
    bgs.append(BG(s.acquire, name, timeout=8))
    s.wait_waiters(name, 2, bg=bgs)
    st = s.status(name)
    assert st["held"] is True and len(st["holders"]) == 1 and st["waiters"] == 2, st.short()
    r = expect(s.get("/locks/", query={"prefix": name}), 200)
    ent = [e for e in r["locks"] if e["lock"] == name]
    assert ent and ent[0]["waiters"] == 2, r.short()
    s.release_ok(name, h["token"])
    for b in bgs:
        g = b.get(10)
        check_grant(g, name)
        s.release_ok(name, g["token"])
    assert s.status(name)["waiters"] == 0


@shared
def test_list_paging(s):
    names = ["pg-%s" % c for c in "edcba"]
    toks = {n: s.acquire_ok(n)["token"] for n in names}
    seen = []
    after = None
    pages = 0
    while True:
        q = {"prefix": "pg-", "limit": "2"}
        if after is not None:
            q["after"] = after
        r = expect(s.get("/locks/", query=q), 200)
        page = [e["lock"] for e in r["locks"]]
        pages += 1
        assert len(page) <= 2, r.short()
        for e in r["locks"]:
            hc = e["holders"] if is_int(e["holders"]) else len(e["holders"])
            assert hc == 1 and e["waiters"] == 0, r.short()
        seen += page
        if not r["more"]:
            break
        assert page, "more=true with an empty page: " + r.short()
        after = page[-1]
        assert pages < 10
    assert seen == sorted(names), seen
    assert pages == 3, "expected 3 pages of 2, 2, 1, got %d" % pages
    for n in names:
        s.release_ok(n, toks[n])
    r = expect(s.get("/locks/", query={"prefix": "pg-"}), 200)
    assert r["locks"] == [] and r["more"] is False, r.short()
