"""The HTTP client the tests use: Client sends one request a connection
to the service at 127.0.0.1:port (below a mount prefix), checks that the
answer is JSON, keeps every token the service hands out (so that the logs
and status bodies can be searched for them), and offers the lock
operations, the status and the waiter count of a lock, and raw bytes on a
connection of their own.  Stack is a Client; a test that needs another
client (other credentials, say) makes one on the stack's port.
"""

import http.client
import json
import threading
import time
import urllib.parse

from checks import check_grant, expect, is_int
from common import wait_for
from rawsock import raw_connect, raw_exchange


class Resp:
    """One answer: status, headers, body bytes, the parsed JSON (or None) and
    the round trip in milliseconds; r["key"] asserts the key is there."""

    def __init__(self, desc, status, reason, headers, body, ms):
        self.desc = desc          # "POST /lock/x/acquire/ {...}" for messages
        self.status = status
        self.reason = reason
        self.headers = headers    # http.client.HTTPMessage
        self.body = body          # bytes
        self.ms = ms              # round trip in milliseconds
        self.json = None
        self.t_done = time.monotonic()

    def header(self, name):
        return self.headers.get(name) if self.headers is not None else None

    def __getitem__(self, k):
        if not isinstance(self.json, dict):
            raise AssertionError("%s: body is not a JSON object: %r" % (self.desc, self.body[:300]))
        if k not in self.json:
            raise AssertionError("%s: key %r missing in %s" % (self.desc, k, self.short()))
        return self.json[k]

    def get(self, k, default=None):
        return self.json.get(k, default) if isinstance(self.json, dict) else default

    def short(self):
        b = self.body[:400].decode("utf-8", "replace")
        return "%d %s" % (self.status, b)

    def __repr__(self):
        return "<%s -> %s>" % (self.desc, self.short())


def lpath(name, action=None):
    """URL path of a lock (name is str or bytes, percent-encoded here)."""
    q = urllib.parse.quote(name, safe="")
    return "/lock/%s/%s" % (q, action + "/" if action else "")


class Client:
    """Requests to 127.0.0.1:port, below the URL prefix (e.g. "/httplock",
    "" at the root); tokens: every token seen in an answer."""

    def __init__(self, port=None, prefix=""):
        self.port = port
        self.prefix = prefix
        self.tokens = set()
        self._lock = threading.Lock()

    def url(self, path):
        return "http://127.0.0.1:%d%s%s" % (self.port, self.prefix, path)

    def request(self, method, path, query=None, form=None, body=None, ctype=None,
                headers=None, timeout=20.0, expect_json=True, mount=True):
        """One request on a fresh connection.  `query` goes to the URL, `form`
        is url-encoded into the body; without either a POST still sends an
        empty body with Content-Length: 0.  The mount prefix goes before path
        unless not mount.  Asserts Content-Type
        application/json and a parseable JSON body unless not expect_json."""
        url = self.prefix + path if mount else path
        if query is not None:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(query)
        hdrs = dict(headers or {})
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            ctype = ctype or "application/x-www-form-urlencoded"
        if body is None and method in ("POST", "PUT", "PATCH", "DELETE"):
            body = b""
        if body is not None:
            hdrs["Content-Length"] = str(len(body))
        if ctype is not None:
            hdrs["Content-Type"] = ctype
        desc = "%s %s" % (method, url if len(url) < 200 else url[:200] + "...")
        if form is not None:
            d = urllib.parse.urlencode(form)
            desc += " body=%s" % (d if len(d) < 200 else d[:200] + "...")
        t0 = time.monotonic()
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, url, body=body, headers=hdrs)
            r = c.getresponse()
            data = r.read()
        except (OSError, http.client.HTTPException) as e:
            raise AssertionError("%s: request failed after %.0f ms: %r" % (
                desc, (time.monotonic() - t0) * 1000, e))
        finally:
            c.close()
        res = Resp(desc, r.status, r.reason, r.headers, data, (time.monotonic() - t0) * 1000)
        if expect_json:
            ct = r.headers.get("Content-Type", "")
            if ct.split(";")[0].strip().lower() != "application/json":
                raise AssertionError("%s: Content-Type %r, expected application/json (%s)" % (
                    desc, ct, res.short()))
            if method != "HEAD":
                try:
                    res.json = json.loads(data.decode("utf-8"))
                except ValueError as e:
                    raise AssertionError("%s: body is not JSON (%s): %r" % (desc, e, data[:300]))
        elif data:
            try:
                res.json = json.loads(data.decode("utf-8"))
            except ValueError:
                pass
        if isinstance(res.json, dict) and isinstance(res.json.get("token"), str):
            with self._lock:
                self.tokens.add(res.json["token"])
        lt = r.headers.get("Lock-Token")
        if lt:
            with self._lock:
                self.tokens.add(lt)
        return res

    def get(self, path, query=None, **kw):
        return self.request("GET", path, query=query, **kw)

    def post(self, path, form=None, **kw):
        return self.request("POST", path, form=form, **kw)

    # Lock operations.  Extra keyword arguments become form parameters.

    def acquire(self, name, timeout_s=20.0, **params):
        return self.post(lpath(name, "acquire"), form=params, timeout=timeout_s)

    def acquire_ok(self, name, **params):
        """Acquire that must succeed; returns the checked Resp."""
        r = self.acquire(name, **params)
        check_grant(r, name if isinstance(name, str) else name.decode(), owner=params.get("owner"))
        if r.header("Lock-Token") != r["token"]:
            raise AssertionError("%s: Lock-Token header %r != token %r" % (
                r.desc, r.header("Lock-Token"), r["token"]))
        return r

    def release(self, name, token, **kw):
        return self.post(lpath(name, "release"), form={"token": token}, **kw)

    def release_ok(self, name, token):
        r = expect(self.release(name, token), 200)
        if r["released"] is not True or r["lock"] != name:
            raise AssertionError("%s: bad release body %s" % (r.desc, r.short()))
        return r

    def renew(self, name, token, ttl=None):
        form = {"token": token}
        if ttl is not None:
            form["ttl"] = ttl
        return self.post(lpath(name, "renew"), form=form)

    def cancel(self, name, request_id):
        return self.post(lpath(name, "cancel"), form={"request_id": request_id})

    def status(self, name):
        """GET /lock/<name>/, checked for shape and for leaked tokens."""
        r = expect(self.get(lpath(name)), 200)
        for k in ("lock", "held", "holders", "waiters"):
            r[k]
        if not isinstance(r["held"], bool) or not isinstance(r["holders"], list) \
                or not is_int(r["waiters"]):
            raise AssertionError("%s: bad status body %s" % (r.desc, r.short()))
        for h in r["holders"]:
            for k in ("owner", "fence", "acquired_at", "expires_at"):
                if k not in h:
                    raise AssertionError("%s: holder without %r: %s" % (r.desc, k, r.short()))
            if "token" in h:
                raise AssertionError("%s: holder shows a token: %s" % (r.desc, r.short()))
        text = r.body.decode("utf-8", "replace")
        with self._lock:
            tokens = list(self.tokens)
        for t in tokens:
            if t in text:
                raise AssertionError("%s: status body contains token %s: %s" % (r.desc, t, r.short()))
        return r

    def waiters(self, name):
        return self.status(name)["waiters"]

    def wait_waiters(self, name, n, timeout_s=5.0, bg=None):
        """Polls the status until waiters == n.  If bg (a BG or list of them)
        finishes first, fails with its outcome."""
        bgs = [] if bg is None else (bg if isinstance(bg, list) else [bg])
        seen = [None]

        def pred():
            for b in bgs:
                if b.done():
                    raise AssertionError("background request finished before %r had %d waiters: %r" % (
                        name, n, b.exc if b.exc is not None else b.result))
            seen[0] = self.waiters(name)
            return seen[0] == n
        try:
            wait_for(pred, timeout_s, "%r to show %d waiters" % (name, n))
        except AssertionError as e:
            raise AssertionError("%s (last seen: %s)" % (e, seen[0]))

    def health(self):
        return expect(self.get("/healthz"), 200)

    def assert_healthy_and_working(self, name="health-probe"):
        """GET /healthz is 200 and an acquire/release round trip works."""
        h = self.health()
        if h["ok"] is not True or h["database"] != "ok":
            raise AssertionError("unhealthy: %s" % h.short())
        g = self.acquire_ok(name, timeout=0)
        self.release_ok(name, g["token"])

    # Raw sockets.

    def raw_connect(self, timeout=10.0):
        return raw_connect(self.port, timeout)

    def raw(self, data, timeout=10.0, shut_wr=False):
        """Sends raw bytes, reads until the server closes (or `timeout` passes
        without data); returns what was read."""
        return raw_exchange(self.port, data, timeout, shut_wr)
