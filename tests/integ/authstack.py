"""A stack behind web-server basic authentication (docs/tenants.md):
lighttpd with conf/lighttpd-auth.conf or Apache with conf/apache-auth.conf,
behind the front end the suite runs behind, with a generated htpasswd
file that knows USERS; and User, requests with one user's credentials.
"""

import base64
import hashlib
import os

from checks import expect
from httpclient import lpath
from markers import on_own_stack
from stack import Stack
from testenv import FRONT, SRCDIR

CONFDIR = os.path.join(SRCDIR, "conf")
AUTH_CONF = os.path.join(CONFDIR, "lighttpd-auth.conf")
APACHE_AUTH_CONF = os.path.join(CONFDIR, "apache-auth.conf")

# A long name with '/' and '%': its namespace is percent-encoded, and its
# keys are longer than 255 bytes (a one-byte length would not carry them).
LONG_USER = "ops/" * 20 + "%x"
USERS = {
    "alice": "alice-pw",
    "bob": "bob pw:2",
    LONG_USER: "long-pw",
}


def htpasswd_line(user, password):
    """A "{SHA}" line (base64 of SHA-1), which lighttpd's htpasswd backend
    and Apache's mod_authn_file take and the standard library can make."""
    digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
    return "%s:{SHA}%s\n" % (user, digest)


def start_auth_stack(label, conf_overrides=None, extra_env=None):
    """A started basic-auth stack knowing USERS, behind the suite's front
    end."""
    env = {"HTTPLOCK_CONFDIR": CONFDIR}
    env.update(extra_env or {})
    s = Stack(conf_overrides, label=label, front=FRONT,
              lighttpd_conf=AUTH_CONF, apache_conf=APACHE_AUTH_CONF, extra_env=env)
    try:
        path = os.path.join(s.dir, "htpasswd")
        with open(path, "w") as f:
            for u, p in USERS.items():
                f.write(htpasswd_line(u, p))
        s.extra_env["HTTPLOCK_HTPASSWD"] = path
        s.start()
    except BaseException:
        s.cleanup()
        raise
    return s


def on_auth_stack(conf_overrides=None, extra_env=None, after_stop=None):
    """Runs the test as fn(auth_stack) on a basic-auth stack of its own
    (markers.on_own_stack: stopped and its logs checked after, and
    after_stop(auth_stack) called)."""
    return on_own_stack(lambda label: start_auth_stack(label, conf_overrides, extra_env),
                        after_stop)


class User:
    """Requests with one user's basic-auth credentials (or none)."""

    def __init__(self, s, name=None, password=None, extra=None):
        self.s = s
        self.h = dict(extra or {})
        if name is not None:
            cred = base64.b64encode(("%s:%s" % (name, password)).encode()).decode()
            self.h["Authorization"] = "Basic " + cred

    def acquire(self, name, **form):
        timeout_s = form.pop("timeout_s", 20.0)
        return self.s.post(lpath(name, "acquire"), form=form, headers=self.h,
                           timeout=timeout_s)

    def acquire_ok(self, name, **form):
        r = expect(self.acquire(name, **form), 200)
        assert r["lock"] == name, r.short()
        assert r.header("Lock-Token") == r["token"], r.short()
        return r

    def release(self, name, token):
        return self.s.post(lpath(name, "release"), form={"token": token}, headers=self.h)

    def renew(self, name, token, ttl=None):
        form = {"token": token}
        if ttl is not None:
            form["ttl"] = ttl
        return self.s.post(lpath(name, "renew"), form=form, headers=self.h)

    def cancel(self, name, request_id):
        return self.s.post(lpath(name, "cancel"), form={"request_id": request_id},
                           headers=self.h)

    def status(self, name):
        r = expect(self.s.get(lpath(name), headers=self.h), 200)
        assert r["lock"] == name, r.short()
        return r

    def list(self, **query):
        r = expect(self.s.get("/locks", query=query or None, headers=self.h), 200)
        return [e["lock"] for e in r["locks"]], r["more"]


def users(s):
    return (User(s, "alice", USERS["alice"]), User(s, "bob", USERS["bob"]))
