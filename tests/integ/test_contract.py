"""The HTTP contract, row by row: responses, parameters, names, errors."""

import sqlite3
import subprocess
import time

from checks import check_grant, expect, is_int, is_num
from common import BG, log, wait_for
from httpclient import lpath
from markers import conf, needs_store, shared
import pgdb
from rawsock import parse_raw_response


# -- acquire ----------------------------------------------------------------

@shared
def test_acquire_response_shape(s):
    t0 = time.time()
    r = s.acquire_ok("c-shape", owner="alice", ttl=5)
    check_grant(r, "c-shape", owner="alice", ttl=5)
    assert r["expires_at"] >= t0 + 4, r.short()
    assert isinstance(r["expires_at"], float) or is_int(r["expires_at"]), r.short()
    # default ttl
    r2 = s.acquire_ok("c-shape-default")
    check_grant(r2, "c-shape-default", ttl=30)
    assert r2["owner"] in ("", None), r2.short()
    # decimal ttl
    r3 = s.acquire_ok("c-shape-dec", ttl="1.5")
    check_grant(r3, "c-shape-dec", ttl=1.5)
    # max_ttl itself is allowed
    r4 = s.acquire_ok("c-shape-max", ttl=3600)
    check_grant(r4, "c-shape-max", ttl=3600)
    for n, g in (("c-shape", r), ("c-shape-default", r2), ("c-shape-dec", r3), ("c-shape-max", r4)):
        s.release_ok(n, g["token"])


@shared
def test_acquire_params_in_query_string(s):
    r = s.post(lpath("c-query", "acquire"), query={"ttl": "7", "owner": "q", "timeout": "0"})
    check_grant(r, "c-query", owner="q", ttl=7)
    # release with the token in the query string too
    rr = expect(s.post(lpath("c-query", "release"), query={"token": r["token"]}), 200)
    assert rr["released"] is True and rr["lock"] == "c-query", rr.short()


@shared
def test_acquire_held_timeout_zero_is_423(s):
    a = s.acquire_ok("c-busy")
    t0 = time.monotonic()
    expect(s.acquire("c-busy", timeout=0), 423, "timeout")
    ms = (time.monotonic() - t0) * 1000
    log("timeout=0 on a held lock answered 423 in %.0f ms" % ms)
    assert ms < 1000, "timeout=0 took %.0f ms" % ms
    assert s.waiters("c-busy") == 0
    s.release_ok("c-busy", a["token"])


@shared
def test_acquire_ttl_limits(s):
    expect(s.acquire("c-ttl", ttl=3601), 400, "bad_request")
    expect(s.acquire("c-ttl", ttl="3600.001"), 400, "bad_request")
    st = s.status("c-ttl")
    assert st["held"] is False, st.short()


@shared
def test_acquire_owner_and_request_id_lengths(s):
    o128 = "o" * 128
    r = s.acquire_ok("c-len", owner=o128)
    assert r["owner"] == o128
    s.release_ok("c-len", r["token"])
    expect(s.acquire("c-len", owner="o" * 129), 400, "bad_request")
    rid = "r" * 128
    r = s.acquire_ok("c-len", request_id=rid)
    s.release_ok("c-len", r["token"])
    expect(s.acquire("c-len", request_id="r" * 129), 400, "bad_request")
    expect(s.acquire("c-len", request_id=""), 400, "bad_request")
    assert s.status("c-len")["held"] is False


@shared
def test_request_id_retry_same_grant(s):
    r1 = s.acquire_ok("c-rid", request_id="rid-contract-0001", owner="x")
    r2 = s.acquire_ok("c-rid", request_id="rid-contract-0001", owner="x")
    assert (r2["token"], r2["fence"]) == (r1["token"], r1["fence"]), \
        "retry with the same request_id: %s vs %s" % (r1.short(), r2.short())
    # another request_id on the held lock is refused, not granted
    expect(s.acquire("c-rid", request_id="rid-contract-0002", timeout=0), 423, "timeout")
    st = s.status("c-rid")
    assert len(st["holders"]) == 1 and st["holders"][0]["fence"] == r1["fence"], st.short()
    s.release_ok("c-rid", r1["token"])


# -- release ----------------------------------------------------------------

@shared
def test_release_variants(s):
    a = s.acquire_ok("c-rel")
    tok = a["token"]
    # Lock-Token header instead of the token parameter
    r = expect(s.post(lpath("c-rel", "release"), headers={"Lock-Token": tok}), 200)
    assert r["released"] is True and r["lock"] == "c-rel", r.short()
    # already released
    expect(s.release("c-rel", tok), 409, "not_held")
    # unknown but well-formed token
    expect(s.release("c-rel", "0" * 32), 409, "not_held")
    # no token at all
    expect(s.post(lpath("c-rel", "release")), 400, "bad_request")
    # malformed tokens
    for bad in ("xyz", "0" * 31, "0" * 33, "g" * 32, ""):
        expect(s.release("c-rel", bad), 400, "bad_request")
    expect(s.post(lpath("c-rel", "release"), headers={"Lock-Token": "nothex"}), 400, "bad_request")
    # the token of another lock does not release this one
    b = s.acquire_ok("c-rel-b")
    c = s.acquire_ok("c-rel")
    expect(s.release("c-rel", b["token"]), 409, "not_held")
    assert s.status("c-rel")["held"] is True
    s.release_ok("c-rel", c["token"])
    s.release_ok("c-rel-b", b["token"])


# -- renew ------------------------------------------------------------------

@shared
def test_renew_without_ttl_keeps_the_grants_lease(s):
    """A renew without ttl extends by the grant's own ttl (300 s here),
    never cuts it to the server's default_ttl (30 s)."""
    a = s.acquire_ok("c-renew-own", ttl=300)
    r = s.renew("c-renew-own", a["token"])
    check_grant(r, "c-renew-own", lease=300)
    assert r["ttl"] == 300, r.short()
    st = s.status("c-renew-own")
    assert st["holders"][0]["expires_at"] > time.time() + 290, st.short()
    s.release_ok("c-renew-own", a["token"])


@shared
def test_request_ids_are_credentials(s):
    """request_ids too short to be random are refused, naming the rule; a
    UUID and 22 base64url characters pass."""
    for bad in ("req-81", "r1", "x" * 15, "a b" * 8, "\u00e9" * 16, "x" * 129):
        r = expect(s.acquire("c-rid-rule", request_id=bad, timeout=0), 400, "bad_request")
        assert "request_id must be 16 to 128 characters" in r["message"], r.short()
        r = expect(s.cancel("c-rid-rule", bad), 400, "bad_request")
        assert "request_id" in r["message"], r.short()
    for good in ("123e4567-e89b-12d3-a456-426614174000", "Zm9vYmFyYmF6cXV4cXV1eA"):
        g = s.acquire_ok("c-rid-rule", request_id=good)
        s.release_ok("c-rid-rule", g["token"])


@shared
def test_renew(s):
    a = s.acquire_ok("c-renew", ttl=2, owner="rn")
    time.sleep(0.05)
    r = s.renew("c-renew", a["token"], ttl=10)
    check_grant(r, "c-renew", owner="rn", lease=10)
    assert r["token"] == a["token"] and r["fence"] == a["fence"], r.short()
    assert r["expires_at"] > a["expires_at"] + 7, "renew did not extend: %s -> %s" % (
        a["expires_at"], r["expires_at"])
    st = s.status("c-renew")
    assert abs(st["holders"][0]["expires_at"] - r["expires_at"]) < 0.002, st.short()
    # without a ttl: the lease it was last given (10), not default_ttl
    r2 = s.renew("c-renew", a["token"])
    check_grant(r2, "c-renew", lease=10)
    # Lock-Token header works for renew too
    r3 = expect(s.post(lpath("c-renew", "renew"), headers={"Lock-Token": a["token"]},
                       form={"ttl": "5"}), 200)
    check_grant(r3, "c-renew", lease=5)
    expect(s.renew("c-renew", a["token"], ttl=3601), 400, "bad_request")
    expect(s.renew("c-renew", a["token"], ttl=0), 400, "bad_request")
    expect(s.renew("c-renew", "f" * 32), 409, "not_held")
    expect(s.post(lpath("c-renew", "renew")), 400, "bad_request")
    expect(s.renew("c-renew", "short"), 400, "bad_request")
    s.release_ok("c-renew", a["token"])
    expect(s.renew("c-renew", a["token"]), 409, "not_held")


@shared
def test_renew_reports_the_new_ttl(s):
    """The "ttl" of a renew answer is the lease just granted (what a client
    schedules its next renew by), as in the acquire answer."""
    a = s.acquire_ok("c-renew-ttl", ttl=2)
    time.sleep(0.2)
    try:
        for ttl in (10, 1, 30):
            r = s.renew("c-renew-ttl", a["token"], ttl=ttl)
            check_grant(r, "c-renew-ttl", ttl=ttl)
        r = s.renew("c-renew-ttl", a["token"])
        check_grant(r, "c-renew-ttl", ttl=30)      # default_ttl
    finally:
        s.release_ok("c-renew-ttl", a["token"])


# -- cancel -----------------------------------------------------------------

@shared
def test_cancel_errors(s):
    expect(s.post(lpath("c-cancel", "cancel")), 400, "bad_request")
    expect(s.cancel("c-cancel", ""), 400, "bad_request")
    expect(s.cancel("c-cancel", "rid-never-seen-0000"), 409, "not_held")
    a = s.acquire_ok("c-cancel", request_id="rid-contract-held1")
    r = expect(s.cancel("c-cancel", "rid-contract-held1"), 200)
    assert r["lock"] == "c-cancel" and r["cancelled"] is True and r["was"] == "held", r.short()
    assert s.status("c-cancel")["held"] is False
    expect(s.release("c-cancel", a["token"]), 409, "not_held")
    expect(s.cancel("c-cancel", "rid-contract-held1"), 409, "not_held")


# -- status and listing -----------------------------------------------------

@shared
def test_status_never_used_and_held(s):
    st = s.status("c-never-used-lock")
    assert st["lock"] == "c-never-used-lock" and st["held"] is False \
        and st["holders"] == [] and st["waiters"] == 0, st.short()
    a = s.acquire_ok("c-status", owner="bob", ttl=60)
    st = s.status("c-status")
    assert st["held"] is True and st["waiters"] == 0, st.short()
    assert len(st["holders"]) == 1, st.short()
    h = st["holders"][0]
    assert h["owner"] == "bob" and h["fence"] == a["fence"], st.short()
    assert is_num(h["acquired_at"]) and is_num(h["expires_at"]), st.short()
    assert abs(h["expires_at"] - a["expires_at"]) < 0.002, st.short()
    assert h["acquired_at"] <= h["expires_at"] and abs(h["expires_at"] - h["acquired_at"] - 60) < 0.01, st.short()
    assert a["token"] not in st.body.decode(), "token in status body"
    # HEAD on status: headers only
    r = s.request("HEAD", lpath("c-status"))
    assert r.status == 200 and r.body == b"", r.short()
    s.release_ok("c-status", a["token"])
    st = s.status("c-status")
    assert st["held"] is False and st["holders"] == [], st.short()


@shared
def test_trailing_slash_optional(s):
    r = s.post("/lock/c-slash/acquire", form={"timeout": "0"})
    check_grant(r, "c-slash")
    st = expect(s.get("/lock/c-slash"), 200)
    assert st["held"] is True, st.short()
    expect(s.get("/locks"), 200)
    r2 = expect(s.post("/lock/c-slash/renew", form={"token": r["token"]}), 200)
    assert r2["token"] == r["token"]
    expect(s.post("/lock/c-slash/release", form={"token": r["token"]}), 200)


@shared
def test_list_locks(s):
    toks = {}
    for n in ("cl-b", "cl-a", "cl-c"):
        toks[n] = s.acquire_ok(n)["token"]
    r = expect(s.get("/locks/", query={"prefix": "cl-"}), 200)
    names = [e["lock"] for e in r["locks"]]
    assert names == ["cl-a", "cl-b", "cl-c"], r.short()
    assert r["more"] is False, r.short()
    for e in r["locks"]:
        hc = e["holders"] if is_int(e["holders"]) else len(e["holders"])
        assert hc == 1 and e["waiters"] == 0, r.short()
        for t in toks.values():
            assert t not in r.body.decode(), "token in /locks/ body"
    r = expect(s.get("/locks/", query={"prefix": "cl-", "limit": "1"}), 200)
    assert [e["lock"] for e in r["locks"]] == ["cl-a"] and r["more"] is True, r.short()
    r = expect(s.get("/locks/", query={"prefix": "cl-", "after": "cl-a"}), 200)
    assert [e["lock"] for e in r["locks"]] == ["cl-b", "cl-c"] and r["more"] is False, r.short()
    s.release_ok("cl-b", toks["cl-b"])
    r = expect(s.get("/locks/", query={"prefix": "cl-"}), 200)
    assert [e["lock"] for e in r["locks"]] == ["cl-a", "cl-c"], "released lock still listed: " + r.short()
    r = expect(s.get("/locks/", query={"prefix": "cl-zzz"}), 200)
    assert r["locks"] == [] and r["more"] is False, r.short()
    expect(s.get("/locks/", query={"limit": "abc"}), 400, "bad_request")
    expect(s.get("/locks/", query={"bogus": "1"}), 400, "bad_request")
    for n in ("cl-a", "cl-c"):
        s.release_ok(n, toks[n])


# -- health -----------------------------------------------------------------

@shared
def test_healthz(s):
    h = s.health()
    assert h["ok"] is True and h["database"] == "ok" and h["coordinator"] == "ok", h.short()


@shared
def test_head_healthz_raw(s):
    r = s.request("HEAD", "/healthz")
    assert r.status == 200 and r.body == b"", r.short()
    data = s.raw(b"HEAD /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", timeout=5)
    status, hdrs, body = parse_raw_response(data)
    assert status == 200, data[:300]
    assert body == b"", "HEAD /healthz sent a body: %r" % body[:200]
    assert hdrs.get("content-type", "").split(";")[0] == "application/json", hdrs


# -- errors -----------------------------------------------------------------

@shared
def test_not_found(s):
    for p in ("/nope", "/lock/", "/lock/c-nf/bogus/", "/locks/extra/", "/healthz/more", "/"):
        r = s.get(p)
        assert r.status in (404, 405) if p == "/lock/" else r.status == 404, \
            "GET %s: expected 404, got %s" % (p, r.short())
        expect(r, r.status, "not_found" if r.status == 404 else "method_not_allowed")
    expect(s.post("/nope"), 404, "not_found")


@shared
def test_method_not_allowed(s):
    cases = [
        ("GET", lpath("c-m", "acquire"), "POST"),
        ("GET", lpath("c-m", "release"), "POST"),
        ("GET", lpath("c-m", "renew"), "POST"),
        ("GET", lpath("c-m", "cancel"), "POST"),
        ("PUT", lpath("c-m", "acquire"), "POST"),
        ("POST", lpath("c-m"), "GET"),
        ("DELETE", lpath("c-m"), "GET"),
        ("POST", "/locks/", "GET"),
        ("POST", "/healthz", "GET"),
    ]
    for method, path, allowed in cases:
        r = s.request(method, path)
        expect(r, 405, "method_not_allowed")
        allow = r.header("Allow") or ""
        assert allowed in [a.strip() for a in allow.split(",")], \
            "%s %s: Allow %r should contain %s" % (method, path, allow, allowed)


@shared
def test_body_too_large(s):
    big = "x" * (17 * 1024)
    r = s.post(lpath("c-big", "acquire"), form={"owner": big})
    expect(r, 413, "too_large")
    assert s.status("c-big")["held"] is False
    # exactly at the limit is not "too large" (it fails for other reasons)
    body = ("owner=" + "o" * (16 * 1024 - 6)).encode()
    assert len(body) == 16 * 1024
    r = s.request("POST", lpath("c-big", "acquire"), body=body,
                  ctype="application/x-www-form-urlencoded")
    expect(r, 400, "bad_request")   # owner too long, but not 413


@shared
def test_unknown_and_duplicate_params(s):
    r = expect(s.acquire("c-param", bogus="1"), 400, "bad_request")
    assert "bogus" in r["message"], "message should name the parameter: " + r.short()
    r = expect(s.post(lpath("c-param", "acquire"), form=[("ttl", "5"), ("ttl", "6")]), 400, "bad_request")
    r = expect(s.post(lpath("c-param", "acquire"), query={"ttl": "5"}, form={"ttl": "6"}),
               400, "bad_request")
    # a parameter another route takes is still unknown here
    r = expect(s.acquire("c-param", token="0" * 32), 400, "bad_request")
    assert "token" in r["message"], r.short()
    r = expect(s.post(lpath("c-param", "release"), form={"token": "0" * 32, "ttl": "5"}),
               400, "bad_request")
    assert "ttl" in r["message"], r.short()
    expect(s.post(lpath("c-param", "cancel"), form={"request_id": "rid-contract-0003", "owner": "b"}),
           400, "bad_request")
    expect(s.get(lpath("c-param"), query={"x": "1"}), 400, "bad_request")
    expect(s.get("/healthz", query={"x": "1"}), 400, "bad_request")
    assert s.status("c-param")["held"] is False


@shared
def test_non_form_content_type(s):
    for ct in ("application/json", "text/plain", "multipart/form-data; boundary=x"):
        r = s.request("POST", lpath("c-ct", "acquire"), body=b'{"ttl": 5}', ctype=ct)
        expect(r, 400, "bad_request")
    # a charset parameter on the form type is still a form
    r = s.request("POST", lpath("c-ct", "acquire"), body=b"ttl=5",
                  ctype="application/x-www-form-urlencoded; charset=utf-8")
    check_grant(r, "c-ct", ttl=5)
    s.release_ok("c-ct", r["token"])
    assert s.status("c-ct")["held"] is False


@shared
def test_bad_numbers(s):
    for k, v in (("ttl", "abc"), ("ttl", "-1"), ("ttl", "0"), ("ttl", ""), ("ttl", "1.5.5"),
                 ("ttl", "1e3"), ("ttl", " 5"), ("ttl", "0x10"), ("ttl", "inf"),
                 ("timeout", "1e3"), ("timeout", "nan"), ("timeout", "-1"), ("timeout", "abc"),
                 ("timeout", ""), ("timeout", "+1"), ("timeout", "1,5")):
        r = s.acquire("c-num", **{k: v})
        expect(r, 400, "bad_request")
    assert s.status("c-num")["held"] is False


# -- names ------------------------------------------------------------------

BAD_NAMES = ["a%2Fb", "a%2fb", "n" * 256, "a%00b", "%C0%AF", "%FF", "a%FFb", "%E2%82",
             "a%01b", "a%0Ab", "a%1Fb", "a%7Fb", "%ED%A0%80", "%F4%90%80%80"]


@shared
def test_bad_names(s):
    """Every malformed name is refused with 400 (by the worker, or by
    lighttpd's URL checks; test_bad_names_answered_in_json wants JSON)."""
    n255 = "n" * 255
    for enc in BAD_NAMES:
        for method, action in (("POST", "acquire"), ("GET", None)):
            path = "/lock/%s/%s" % (enc, action + "/" if action else "")
            r = s.request(method, path, expect_json=False)
            assert r.status == 400, "%s: expected 400, got %s" % (r.desc, r.short())
            if r.json is not None:
                expect(r, 400, "bad_request")
    # an empty name is not a name
    r = s.request("POST", "/lock//acquire/")
    assert r.status in (400, 404), r.short()
    # 255 bytes is fine, 255 bytes of multibyte UTF-8 too
    g = s.acquire_ok(n255, timeout=0)
    s.release_ok(n255, g["token"])
    n3 = "\u20ac" * 85       # 255 bytes
    g = s.acquire_ok(n3, timeout=0)
    s.release_ok(n3, g["token"])
    expect(s.acquire("\u20ac" * 86, timeout=0), 400, "bad_request")   # 258 bytes


@shared
def test_bad_names_answered_in_json(s):
    """All responses are JSON: also the 400s for names with control
    characters (%00, %01, %0A, %1F, %7F) and invalid UTF-8 (%C0%AF, %FF)."""
    bad = []
    for enc in BAD_NAMES:
        path = "/lock/%s/acquire/" % enc
        r = s.request("POST", path, expect_json=False)
        ct = (r.header("Content-Type") or "").split(";")[0]
        if r.status != 400 or ct != "application/json" or not isinstance(r.json, dict) \
                or r.json.get("error") != "bad_request":
            bad.append("%s -> %d %s" % (enc, r.status, ct))
    assert not bad, "not a JSON bad_request: " + ", ".join(bad)


@shared
def test_utf8_name_roundtrip(s):
    name = "s\u00e9ssion:42"
    g = s.acquire_ok(name, owner="\u00fcser")
    assert g["lock"] == name and g["owner"] == "\u00fcser", g.short()
    st = s.status(name)
    assert st["lock"] == name and st["held"] is True, st.short()
    assert st["holders"][0]["owner"] == "\u00fcser", st.short()
    r = expect(s.get("/locks/", query={"prefix": "s\u00e9ss"}), 200)
    assert name in [e["lock"] for e in r["locks"]], r.short()
    # the same name spelt with other (equivalent) escapes is the same lock
    st2 = expect(s.get("/lock/s%c3%a9ssion%3a42/"), 200)
    assert st2["held"] is True, st2.short()
    st3 = expect(s.get("/lock/s%C3%A9ssion:42/"), 200)
    assert st3["held"] is True, st3.short()
    s.release_ok(name, g["token"])
    assert s.status(name)["held"] is False


@shared
def test_names_with_odd_characters(s):
    for name in ("a b", "a+b", "a?b", "a#b", "a%b", "a.b", "a&b=c", "\u65e5\u672c"):
        g = s.acquire_ok(name, timeout=0)
        st = s.status(name)
        assert st["lock"] == name and st["held"] is True, (name, st.short())
        s.release_ok(name, g["token"])


# -- waiter cap ---------------------------------------------------------------

@conf(max_waiters=3)
def test_too_many_waiters(s):
    a = s.acquire_ok("cap")
    bgs = [BG(s.acquire, "cap", owner="w%d" % i) for i in range(4)]
    # exactly one of the four is refused at once; the other three queue
    wait_for(lambda: sum(1 for b in bgs if b.done()) >= 1, 5, "one waiter to be refused")
    s.wait_waiters("cap", 3)
    refused = [b for b in bgs if b.done()]
    assert len(refused) == 1, "%d waiters finished early" % len(refused)
    expect(refused[0].get(1), 503, "too_many_waiters")
    # more refusals do not leave waiters behind
    for _ in range(5):
        expect(s.acquire("cap", timeout=5), 503, "too_many_waiters")
    assert s.waiters("cap") == 3, s.status("cap").short()
    # the three waiters are served; each releases in turn
    s.release_ok("cap", a["token"])
    waiting = [b for b in bgs if b is not refused[0]]
    fences = []
    for _ in range(3):
        done = wait_for(lambda: [b for b in waiting if b.done()], 5, "a waiter to be granted")
        b = done[0]
        waiting.remove(b)
        g = b.get(1)
        check_grant(g, "cap")
        fences.append(g["fence"])
        s.release_ok("cap", g["token"])
    assert fences == sorted(fences) and len(set(fences)) == 3, fences
    wait_for(lambda: s.waiters("cap") == 0, 5, "waiters to drop to 0")
    g = s.acquire_ok("cap", timeout=0)
    assert g["fence"] == fences[-1] + 1, (fences, g["fence"])
    s.release_ok("cap", g["token"])


# -- database unavailable ----------------------------------------------------

@needs_store("sqlite")
@conf(busy_timeout="0.3")
def test_unavailable_when_database_locked(s):
    """While another process holds SQLite's write lock past busy_timeout,
    writes fail with 503 unavailable; afterwards the service recovers."""
    g = s.acquire_ok("db-pre")
    s.release_ok("db-pre", g["token"])
    db = sqlite3.connect(s.db_path, timeout=5, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        t0 = time.monotonic()
        r = s.acquire("db-locked", timeout=0, timeout_s=15)
        ms = (time.monotonic() - t0) * 1000
        log("acquire with the database write-locked: %d after %.0f ms" % (r.status, ms))
        expect(r, 503, "unavailable")
    finally:
        try:
            db.execute("ROLLBACK")
        finally:
            db.close()
    s.assert_healthy_and_working("db-after")


@needs_store("postgresql")
def test_unavailable_when_store_locked(s):
    """While another session holds an exclusive lock on the store's lock
    table, reads and writes get 503 unavailable within about a second
    (never a hang), and the service recovers by itself when the table is
    let go."""
    g = s.acquire_ok("db-pre")
    s.release_ok("db-pre", g["token"])
    sql = subprocess.Popen([pgdb.PSQL, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            "-d", s.store_uri],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
    try:
        sql.stdin.write(b"BEGIN; LOCK TABLE httplock.locks IN ACCESS EXCLUSIVE MODE;"
                        b" SELECT 'locked';\n")
        sql.stdin.flush()
        line = sql.stdout.readline()
        assert b"locked" in line, "psql: %r" % line
        for what, call in (("acquire", lambda: s.acquire("db-locked", timeout=0, timeout_s=15)),
                           ("status", lambda: s.get(lpath("db-pre"), timeout=15))):
            t0 = time.monotonic()
            r = call()
            ms = (time.monotonic() - t0) * 1000
            log("%s with the lock table locked: %d after %.0f ms" % (what, r.status, ms))
            expect(r, 503, "unavailable")
            assert ms < 1500, "%s answered after %.0f ms" % (what, ms)
    finally:
        sql.stdin.write(b"ROLLBACK;\n")
        sql.stdin.close()
        sql.wait(10)
    s.assert_healthy_and_working("db-after")
