"""Tenants from web-server authentication (docs/tenants.md): the front end
with basic auth (lighttpd: conf/lighttpd-auth.conf; Apache:
conf/apache-auth.conf) and two users, each with a lock namespace of their
own; a client's Remote-User header changes nothing; anonymous = deny
refuses unauthenticated requests.  Worker log lines name the lock and the
tenant, never a token, a password or the internal key.

The auth tests run on a stack of their own (authstack.on_auth_stack),
behind the front end the suite runs behind (HTTPLOCK_FRONT), with a
generated htpasswd file.
Some requests go straight to a worker's FastCGI socket, as the web server
would, to show what the default namespace lists and that the socket is
trusted with REMOTE_USER.
"""

import base64
import time

from authstack import LONG_USER, USERS, User, on_auth_stack, users
from checks import expect
from common import BG, log, wait_for
from fcgiwire import fcgi_request, worker_socket
from httpclient import lpath
from markers import conf, shared
from stack import LOG_FILES
import storeview

# ---------------------------------------------------------------------------
# The database, read beside the service.

def db_keys(s):
    """Every lock key in the store (read-only)."""
    return sorted(r[0] for r in storeview.rows(s, "SELECT name FROM locks"))


# ---------------------------------------------------------------------------
# Tests.

@on_auth_stack()
def test_same_name_in_two_tenants(s):
    alice, bob = users(s)
    a = alice.acquire_ok("t-x", owner="A", ttl=30)
    assert expect(bob.status("t-x"), 200)["held"] is False
    b = bob.acquire_ok("t-x", owner="B", timeout=0)
    assert alice.status("t-x")["holders"][0]["owner"] == "A"
    assert bob.status("t-x")["holders"][0]["owner"] == "B"
    # Each release frees only its own.
    r = expect(bob.release("t-x", b["token"]), 200)
    assert r["lock"] == "t-x" and r["released"] is True, r.short()
    assert alice.status("t-x")["held"] is True
    assert bob.status("t-x")["held"] is False
    r = expect(alice.renew("t-x", a["token"], ttl=60), 200)
    assert r["lock"] == "t-x" and r["token"] == a["token"], r.short()
    expect(alice.release("t-x", a["token"]), 200)
    assert sorted(k for k in db_keys(s)) == ["/alice/t-x", "/bob/t-x"], db_keys(s)


@on_auth_stack()
def test_list_shows_only_own_locks(s):
    alice, bob = users(s)
    grants = [alice.acquire_ok(n) for n in ("t-a1", "t-a2", "u-a3")]
    bg = bob.acquire_ok("t-b1")
    assert alice.list() == (["t-a1", "t-a2", "u-a3"], False), alice.list()
    assert alice.list(prefix="t-") == (["t-a1", "t-a2"], False)
    assert alice.list(limit=1) == (["t-a1"], True)
    assert alice.list(after="t-a1", limit=1) == (["t-a2"], True)
    assert alice.list(after="t-a2") == (["u-a3"], False)
    assert alice.list(prefix="t-b") == ([], False)
    assert alice.list(prefix="/") == ([], False)
    assert bob.list() == (["t-b1"], False), bob.list()
    assert bob.list(after="t-a") == (["t-b1"], False)
    assert bob.list(prefix="%2F") == ([], False)
    for n, g in zip(("t-a1", "t-a2", "u-a3"), grants):
        expect(alice.release(n, g["token"]), 200)
    expect(bob.release("t-b1", bg["token"]), 200)
    assert alice.list() == ([], False)


@on_auth_stack()
def test_other_tenants_token_is_not_held(s):
    """A token stolen or guessed from alice acts on nothing of bob's: his
    key for the same name differs.  409 not_held, alice's lock untouched."""
    alice, bob = users(s)
    a = alice.acquire_ok("t-tok", owner="A", request_id="rid-tenants-000a")
    expect(bob.release("t-tok", a["token"]), 409, "not_held")
    expect(bob.renew("t-tok", a["token"], ttl=1), 409, "not_held")
    expect(bob.cancel("t-tok", "rid-tenants-000a"), 409, "not_held")
    # Even with bob holding the same name.
    b = bob.acquire_ok("t-tok", owner="B")
    expect(bob.release("t-tok", a["token"]), 409, "not_held")
    expect(alice.release("t-tok", b["token"]), 409, "not_held")
    st = alice.status("t-tok")
    assert st["held"] is True and st["holders"][0]["owner"] == "A", st.short()
    assert st["holders"][0]["expires_at"] > time.time() + 10, st.short()
    st = bob.status("t-tok")
    assert st["held"] is True and st["holders"][0]["owner"] == "B", st.short()
    r = expect(alice.cancel("t-tok", "rid-tenants-000a"), 200)
    assert r["lock"] == "t-tok" and r["was"] == "held", r.short()
    expect(bob.release("t-tok", b["token"]), 200)


@on_auth_stack({"poll_interval": "10"})
def test_waiters_in_a_tenant(s):
    """A waiter is woken by the coordinator (poll_interval is 10 s, so a
    prompt handoff proves it) also for keys longer than 255 bytes; another
    tenant's release of the same name wakes nobody."""
    alice, bob = users(s)
    long_user = User(s, LONG_USER, USERS[LONG_USER])
    name = "w" * 255
    for u in (alice, long_user):
        a = u.acquire_ok(name, owner="first")
        w = BG(u.acquire, name, owner="second")
        wait_for(lambda: u.status(name)["waiters"] == 1, 5, "a waiter")
        b = bob.acquire_ok(name, timeout=0)
        expect(bob.release(name, b["token"]), 200)
        time.sleep(0.3)
        assert not w.done(), "another tenant's release woke the waiter: %r" % (w.result,)
        t0 = time.monotonic()
        expect(u.release(name, a["token"]), 200)
        r = expect(w.get(8), 200)
        ms = (w.t_done - t0) * 1000
        log("%s: handoff %.0f ms" % ("long user" if u is long_user else "alice", ms))
        assert r["lock"] == name and r["owner"] == "second", r.short()
        assert ms < 2000, "handoff took %.0f ms" % ms
        expect(u.release(name, r["token"]), 200)
    keys = db_keys(s)
    long_key = "/" + LONG_USER.replace("%", "%25").replace("/", "%2F") + "/" + name
    assert long_key in keys and len(long_key.encode()) > 255, keys


@on_auth_stack()
def test_authentication_by_web_server(s):
    """Wrong or missing credentials are the web server's 401 (its JSON
    error document, not httplock's answer); a Remote-User header
    authenticates nobody; /healthz stays open; a path spelled with
    %-escapes is still behind the password."""
    cases = [
        ("wrong password", User(s, "alice", "nope")),
        ("unknown user", User(s, "mallory", "x")),
        ("no credentials", User(s)),
        ("Remote-User header", User(s, extra={"Remote-User": "alice"})),
    ]
    for what, u in cases:
        for method, path in (("POST", lpath("t-auth", "acquire")), ("GET", "/locks"),
                             ("GET", lpath("t-auth"))):
            r = s.request(method, path, headers=u.h, expect_json=False)
            assert r.status == 401, "%s: %s" % (what, r.short())
            ct = r.header("Content-Type") or ""
            assert ct.startswith("application/json"), "%s: %s %s" % (what, ct, r.short())
            assert r.json["error"] == "unauthorized", "%s: %s" % (what, r.short())
            assert "anonymous" not in r.json["message"], \
                "%s: httplock's 401, not the web server's: %s" % (what, r.short())
            assert (r.header("WWW-Authenticate") or "").startswith("Basic"), r.headers
    expect(s.get("/healthz"), 200)
    # The right password works, a Remote-User header beside it changes
    # nothing: the lock is alice's.
    alice = User(s, "alice", USERS["alice"], extra={"Remote-User": "bob"})
    g = alice.acquire_ok("t-auth")
    assert db_keys(s) == ["/alice/t-auth"], db_keys(s)
    expect(alice.release("t-auth", g["token"]), 200)
    # Both auth samples protect everything but /healthz, so an escape in
    # the path does not get around it ("%6C" is "l").
    r = s.request("GET", "/%6Cocks", expect_json=False)
    assert r.status == 401, r.short()


@on_auth_stack()
def test_default_namespace_lists_no_tenant(s):
    """Straight on the FastCGI socket (where the web server is trusted):
    without REMOTE_USER a request is in the default namespace, which lists
    none of the tenants' locks; with it, it is that tenant."""
    alice, bob = users(s)
    ga = alice.acquire_ok("t-1")
    gb = bob.acquire_ok("!early")       # sorts before '/'
    sock = worker_socket(s)
    st, body = fcgi_request(sock, "POST", "/lock/t-0/acquire", body=b"ttl=30")
    assert st == 200 and body["lock"] == "t-0", (st, body)
    st, body = fcgi_request(sock, "POST", "/lock/!0/acquire", body=b"ttl=30")
    assert st == 200, (st, body)
    st, body = fcgi_request(sock, "GET", "/locks")
    assert st == 200 and [e["lock"] for e in body["locks"]] == ["!0", "t-0"], body
    st, body = fcgi_request(sock, "GET", "/locks?prefix=%2F")
    assert st == 200 and body["locks"] == [], body
    st, body = fcgi_request(sock, "GET", "/locks?after=!0&limit=1")
    assert st == 200 and [e["lock"] for e in body["locks"]] == ["t-0"], body
    # A client's header is HTTP_REMOTE_USER: still the default namespace.
    st, body = fcgi_request(sock, "GET", "/locks", {"HTTP_REMOTE_USER": "alice"})
    assert [e["lock"] for e in body["locks"]] == ["!0", "t-0"], body
    # REMOTE_USER itself is believed: whoever reaches this socket is trusted.
    st, body = fcgi_request(sock, "GET", "/locks", {"REMOTE_USER": "alice"})
    assert [e["lock"] for e in body["locks"]] == ["t-1"], body
    st, body = fcgi_request(sock, "GET", "/lock/x", {"REMOTE_USER": "a" * 129})
    assert st == 400 and "REMOTE_USER" in body["message"], (st, body)
    expect(alice.release("t-1", ga["token"]), 200)
    expect(bob.release("!early", gb["token"]), 200)


def check_debug_log(s):
    """After test_log_lines: the workers' lines (their stderr: lighttpd's
    own stderr, or the pool's behind Apache) tell what happened to which
    lock of which tenant, and never show a password, credentials or the key
    (the tokens are checked by check_logs)."""
    text = "".join(s.log_text(n) for n in LOG_FILES)
    lines = [l for l in text.splitlines() if "httplock-worker" in l]
    a, b = "lock 't-log' of 'alice'", "lock 't-log' of 'bob'"

    def has(*parts):
        assert any(all(p in l for p in parts) for l in lines), \
            "no log line with %r in:\n%s" % (parts, "\n".join(lines[-40:]))
    has(a, ": granted, fence ", "owner 'first'", "waited ")
    has(a, ": timeout after ")
    has(a, ": held, no wait after ")
    has(b, ": release: not_held")
    has(b, ": granted, fence ", "owner 'b'")
    has(a, ": granted, fence ", "owner 'second'", "waited ")
    has(a, ": release: released")
    has(a, ": renew: renewed")
    has(a, ": cancel: cancelled (was held)")
    for secret in list(USERS.values()) + [
            base64.b64encode(("%s:%s" % (u, p)).encode()).decode()
            for u, p in USERS.items()] + ["/alice/t-log", "/bob/t-log"]:
        assert secret not in text, "%r appears in the logs" % secret


@on_auth_stack(extra_env={"HTTPLOCK_DEBUG": "1"}, after_stop=check_debug_log)
def test_log_lines(s):
    """With HTTPLOCK_DEBUG=1, a grant / timeout / wait / release / renew /
    cancel cycle in two tenants is logged per request (checked after the
    stack stopped, in check_debug_log)."""
    alice, bob = users(s)
    a = alice.acquire_ok("t-log", owner="first", ttl=30)
    expect(alice.acquire("t-log", timeout=0.2), 423, "timeout")
    expect(alice.acquire("t-log", timeout=0), 423, "timeout")
    expect(bob.release("t-log", a["token"]), 409, "not_held")
    b = bob.acquire_ok("t-log", owner="b")
    expect(bob.release("t-log", b["token"]), 200)
    w = BG(alice.acquire, "t-log", owner="second")
    wait_for(lambda: alice.status("t-log")["waiters"] == 1, 5, "a waiter")
    expect(alice.renew("t-log", a["token"], ttl=20), 200)
    expect(alice.release("t-log", a["token"]), 200)
    g = expect(w.get(8), 200)
    expect(alice.release("t-log", g["token"]), 200)
    alice.acquire_ok("t-log", owner="third", request_id="rid-tenants-0log")
    r = expect(alice.cancel("t-log", "rid-tenants-0log"), 200)
    assert r["was"] == "held", r.short()


@shared
def test_remote_user_header_changes_nothing(s):
    """Without authentication, a Remote-User header is just a header: the
    lock is in the default namespace, under its own name."""
    h = {"Remote-User": "alice"}
    r = expect(s.post(lpath("t-spoof", "acquire"), form={"owner": "spoof"}, headers=h), 200)
    assert r["lock"] == "t-spoof", r.short()
    st = expect(s.get(lpath("t-spoof")), 200)
    assert st["held"] is True and st["holders"][0]["owner"] == "spoof", st.short()
    keys = db_keys(s)
    assert "t-spoof" in keys and not any(k.startswith("/") for k in keys), keys
    expect(s.post(lpath("t-spoof", "release"), form={"token": r["token"]}, headers=h), 200)


@conf(anonymous="deny")
def test_anonymous_deny(s):
    """anonymous = deny and no authentication configured: every lock
    operation is httplock's JSON 401, a Remote-User header or not;
    /healthz still answers."""
    for h in ({}, {"Remote-User": "alice"}):
        for method, path, form in (("POST", lpath("t-deny", "acquire"), {}),
                                   ("POST", lpath("t-deny", "release"), {"token": "0" * 32}),
                                   ("GET", lpath("t-deny"), None),
                                   ("GET", "/locks", None)):
            r = s.request(method, path, form=form, headers=h)
            expect(r, 401, "unauthorized")
            assert "anonymous = deny" in r["message"], r.short()
    expect(s.get("/healthz"), 200)
    assert db_keys(s) == [], db_keys(s)
