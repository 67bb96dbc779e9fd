"""A small httplock client: Python 3 standard library only.

    from httplock_client import lock

    with lock("session:42") as lease:
        session = load_session(42)
        ...                          # work; a thread renews the lease
        lease.check()                # raises LeaseLost if the lease is gone
        save_session(42, session)

The block runs while this process holds the lock "session:42".  On the way
out the lock is released, also when the block raises.  If the lease was lost
in between (the server expired or released it, so someone else may have held
the lock meanwhile), leaving the block raises LeaseLost.

The server is the `url` argument, else $HTTPLOCK_URL, else
http://127.0.0.1:8080/.  Copy this file into your project; it has no
dependencies.
"""

import contextlib
import http.client
import json
import logging
import os
import socket
import threading
import time
import urllib.parse
import uuid

DEFAULT_URL = "http://127.0.0.1:8080/"

# The server answers an acquire without `timeout` after at most its max_wait
# (30 s by default).  We wait that long, plus a margin, for any answer.
ASSUMED_MAX_WAIT = 30.0
HTTP_MARGIN = 10.0          # seconds added to every HTTP timeout
RETRY_FOR = 10.0            # keep retrying an unreachable server this long

log = logging.getLogger("httplock")
log.addHandler(logging.NullHandler())     # silent unless the application configures logging


class LockError(Exception):
    """An httplock call failed.  `code` is the server's error code
    ("timeout", "not_held", "unavailable", ...) or, when there was no usable
    answer, "connection" or "protocol"; `status` is the HTTP status or None."""

    def __init__(self, code, message, status=None):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message
        self.status = status


class LockTimeout(LockError):
    """The lock was still held when the acquire's timeout ran out (423)."""


class LeaseLost(LockError):
    """The lease ended before we released it: another process may have held
    the lock while we thought we did.  Do not trust what the block wrote."""


class _Retry(Exception):
    """Internal: a failure worth retrying (no answer, or 503 unavailable)."""

    def __init__(self, error):
        super().__init__(str(error))
        self.error = error


class Client:
    """The HTTP calls, one connection per call (so a Client may be shared by
    threads).  Every method raises LockError (or a subclass) on failure."""

    def __init__(self, url=None):
        url = url or os.environ.get("HTTPLOCK_URL") or DEFAULT_URL
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("not an http(s) URL: %r" % url)
        self.url = url
        self._https = parts.scheme == "https"
        self._netloc = parts.netloc
        self._prefix = parts.path.rstrip("/")      # e.g. "/httplock" behind a proxy

    # -- one request ------------------------------------------------------

    def _request(self, method, path, params, http_timeout):
        """Sends one request; returns the decoded JSON answer of a 2xx.
        Raises _Retry for failures worth retrying, LockError for the rest."""
        conn_class = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = conn_class(self._netloc, timeout=http_timeout)
        body = urllib.parse.urlencode(params or {}).encode() if method == "POST" else None
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
        try:
            # A POST always has a body (maybe empty), so it always has a
            # Content-Length: lighttpd refuses a POST without one (411).
            conn.request(method, self._prefix + path, body=body, headers=headers)
            resp = conn.getresponse()
            status, data = resp.status, resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise _Retry(LockError("connection", "%s %s: %s" % (method, path, e)))
        finally:
            conn.close()
        try:
            answer = json.loads(data.decode("utf-8"))
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            err = LockError("protocol", "HTTP %d without a JSON body: %r" % (status, data[:200]),
                            status)
            # E.g. the web server's own 500 page while it restarts a worker.
            if status >= 500:
                raise _Retry(err)
            raise err
        if 200 <= status < 300:
            return answer
        code = str(answer.get("error", "http_%d" % status))
        message = str(answer.get("message", ""))
        if status == 423:
            raise LockTimeout(code, message, status)
        if status == 503 and code == "unavailable":
            raise _Retry(LockError(code, message, status))
        raise LockError(code, message, status)

    def _retrying(self, method, path, params, http_timeout, retry_for=RETRY_FOR, before=None):
        """_request, retried with backoff while it raises _Retry, for up to
        retry_for seconds.  before(params), if given, may update the
        parameters of each attempt."""
        give_up = time.monotonic() + retry_for
        delay = 0.05
        while True:
            if before is not None:
                before(params)
            try:
                return self._request(method, path, params, http_timeout)
            except _Retry as r:
                if time.monotonic() + delay > give_up:
                    raise r.error from None
                log.info("httplock: %s; retrying in %.2f s", r.error, delay)
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    @staticmethod
    def _path(name, action=None):
        path = "/lock/" + urllib.parse.quote(name, safe="")
        return path + "/" + action if action else path

    # -- the API ----------------------------------------------------------

    def acquire(self, name, timeout=None, ttl=None, owner=None, request_id=None):
        """Waits for lock `name` (at most `timeout` seconds; None: the
        server's max_wait) and returns the grant as a dict (token, fence,
        ttl, expires_at, ...).  Raises LockTimeout if it is still held then.

        Each acquire carries a request_id (a random one unless given).  When
        the connection fails or the server answers 503 unavailable we ask
        again with the same id: the server then returns the grant we may
        already have got, or our old place in the queue -- never a second
        grant.  If we give up, we cancel that id so that a grant we never
        saw does not stay behind until its lease expires."""
        request_id = request_id or uuid.uuid4().hex
        params = {"request_id": request_id}
        if ttl is not None:
            params["ttl"] = "%g" % ttl
        if owner is not None:
            params["owner"] = owner
        wait = ASSUMED_MAX_WAIT if timeout is None else float(timeout)
        wait_until = time.monotonic() + wait

        def remaining_timeout(p):
            # A retry asks only for the time that is left of our wait.
            if timeout is not None:
                p["timeout"] = "%.3f" % max(0.0, wait_until - time.monotonic())

        try:
            grant = self._retrying("POST", self._path(name, "acquire"), params,
                                   http_timeout=wait + HTTP_MARGIN,
                                   retry_for=wait + RETRY_FOR, before=remaining_timeout)
        except LockError as e:
            if e.code in ("connection", "protocol", "unavailable"):
                self._cancel_quietly(name, request_id)
            raise
        grant["request_id"] = request_id
        return grant

    def release(self, name, token):
        """Releases the grant with `token`.  Raises LockError "not_held" if
        it no longer holds the lock (its lease expired, or it was released).
        Retrying a release whose answer was lost is harmless: the second
        one answers not_held, which counts as released here."""
        attempts = []
        try:
            return self._retrying("POST", self._path(name, "release"), {"token": token},
                                  http_timeout=HTTP_MARGIN, before=attempts.append)
        except LockError as e:
            if e.code == "not_held" and len(attempts) > 1:
                # An earlier attempt got through but its answer was lost.
                return {"lock": name, "released": True}
            raise

    def renew(self, name, token, ttl=None):
        """Extends the lease to now + ttl (None: the grant's own ttl, as
        acquired or last renewed) and returns the grant.  LockError "not_held" once the lease is gone."""
        params = {"token": token}
        if ttl is not None:
            params["ttl"] = "%g" % ttl
        return self._retrying("POST", self._path(name, "renew"), params,
                              http_timeout=HTTP_MARGIN, retry_for=0)

    def cancel(self, name, request_id):
        """Withdraws the queued acquire with this request_id, or releases
        the grant it got."""
        return self._retrying("POST", self._path(name, "cancel"), {"request_id": request_id},
                              http_timeout=HTTP_MARGIN)

    def status(self, name):
        """{"lock", "held", "holders": [...], "waiters"} of lock `name`."""
        return self._retrying("GET", self._path(name), None, http_timeout=HTTP_MARGIN)

    def _cancel_quietly(self, name, request_id):
        # Best effort, briefly: the server was just unreachable.
        try:
            self._retrying("POST", self._path(name, "cancel"), {"request_id": request_id},
                           http_timeout=HTTP_MARGIN, retry_for=1.0)
        except LockError:
            pass        # nothing to cancel, or the server is still unreachable


class Lease:
    """What `with lock(...) as lease` gives you: the grant, and whether it
    is still ours."""

    def __init__(self, name, grant):
        self.name = name
        self.token = grant["token"]
        self.fence = grant["fence"]         # pass it to the resource you protect
        self.ttl = float(grant["ttl"])
        self.expires_at = float(grant["expires_at"])   # server clock, Unix time
        self.request_id = grant["request_id"]
        self.lost_reason = None
        self._lost = threading.Event()

    @property
    def lost(self):
        return self._lost.is_set()

    def check(self):
        """Raises LeaseLost if the lease is known to be gone.  Call it before
        a write that must not happen without the lock."""
        if self.lost:
            raise LeaseLost("not_held", "lease on %r lost: %s" % (self.name, self.lost_reason))

    def _gone_reason(self, when):
        """Why the server said not_held: it says so both when the lease
        expired and when the grant was released or cancelled, so tell them
        apart by expires_at and this machine's clock."""
        left = self.expires_at - time.time()
        if left <= 0:
            return "it expired %.1f s ago (%s)" % (-left, when)
        return "someone else released or cancelled it, %.1f s before it would " \
            "have expired (%s)" % (left, when)

    def _mark_lost(self, reason):
        if not self.lost:
            self.lost_reason = reason
            self._lost.set()


class _Renewer(threading.Thread):
    """Renews a lease every ttl/3 until stopped, or until the lease is lost:
    the server says not_held, or it could not be renewed before it ran out."""

    def __init__(self, client, lease):
        super().__init__(name="httplock-renew %s" % lease.name, daemon=True)
        self.client = client
        self.lease = lease
        self._stop_evt = threading.Event()

    def run(self):
        lease = self.lease
        interval = max(lease.ttl / 3.0, 0.05)
        # Our own estimate of the lease's end, on our clock, so that a server
        # that cannot be reached does not leave us believing we hold it.
        ends = time.monotonic() + lease.ttl
        wait = interval
        while not self._stop_evt.wait(wait):
            sent = time.monotonic()
            try:
                grant = self.client.renew(lease.name, lease.token, ttl=lease.ttl)
            except LockError as e:
                if e.code == "not_held":
                    lease._mark_lost(lease._gone_reason("renew: %s" % e.message))
                    return
                if time.monotonic() >= ends:
                    lease._mark_lost("could not renew it before it expired (%s)" % e)
                    return
                log.warning("httplock: renewing %r failed (%s); retrying", lease.name, e)
                wait = min(interval, max(0.05, (ends - time.monotonic()) / 3.0))
                continue
            lease.expires_at = float(grant["expires_at"])
            ends = sent + lease.ttl
            wait = interval

    def stop(self):
        self._stop_evt.set()
        self.join()


@contextlib.contextmanager
def lock(name, url=None, timeout=None, ttl=None, owner=None):
    """Holds lock `name` for the duration of a `with` block; yields a Lease.

    timeout: seconds to wait for the lock (None: the server's max_wait);
    raises LockTimeout if it is still held then.
    ttl: the lease in seconds (None: the server's default_ttl).  A thread
    renews it every ttl/3 while the block runs.
    owner: a label shown in the lock's status (default: host:pid).

    The lock is released when the block ends, also by an exception.  If the
    lease was lost on the way, leaving the block raises LeaseLost (or, if
    the block raised, that exception carries a note saying so)."""
    client = Client(url)
    if owner is None:
        owner = "%s:%d" % (socket.gethostname(), os.getpid())
    lease = Lease(name, client.acquire(name, timeout=timeout, ttl=ttl, owner=owner))
    renewer = _Renewer(client, lease)
    renewer.start()
    try:
        yield lease
    except BaseException as e:
        _finish(client, lease, renewer)
        if lease.lost:
            e.add_note("httplock: the lease on %r was lost during the block: %s" % (
                name, lease.lost_reason))
        raise
    _finish(client, lease, renewer)
    lease.check()


def _finish(client, lease, renewer):
    """Stops the renewals and releases the lock."""
    renewer.stop()
    try:
        client.release(lease.name, lease.token)
    except LockError as e:
        if e.code == "not_held":
            lease._mark_lost(lease._gone_reason("at the release"))
        else:
            # The lease will run out by itself within its ttl.
            log.warning("httplock: could not release %r: %s", lease.name, e)
