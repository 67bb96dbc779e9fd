"""What the database keeps and for how long: tokens and request ids only
as hashes, state files private to the service's user (and group), idle
locks reclaimed without a fence ever being issued twice, fences above
every earlier one after a restore of an older copy, and quotas per tenant.
"""

import json
import os
import re
import secrets
import shutil
import stat
import subprocess

import authstack
from checks import expect
from common import BG, log, wait_for
from markers import conf, needs_store, shared
import storeview
from storeview import rows as _rows
from testenv import SRCDIR


def _files(s):
    return [s.db_path + sfx for sfx in ("", "-wal", "-shm") if os.path.exists(s.db_path + sfx)]


def test_no_token_or_request_id_in_the_database(s):
    """The store (SQLite: the database, its WAL and its shared-memory
    file; PostgreSQL: a dump of its schema) holds neither a token nor a
    request_id, while the grants live and after a stop; a retry with the
    request_id still gets its token back."""
    rid_h, rid_w = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    h = s.acquire_ok("hs-secret", request_id=rid_h, ttl=60)
    w_tok = None
    w = BG(s.acquire, "hs-secret", request_id=rid_w, timeout=20)
    s.wait_waiters("hs-secret", 1, bg=w)
    plain = [h["token"].encode(), rid_h.encode(), rid_w.encode()]
    data = storeview.dump(s)
    assert data, "no database files"
    for p in plain:
        assert p not in data, "%r found in the database files" % p[:6]
    again = s.acquire_ok("hs-secret", request_id=rid_h, ttl=60)
    assert (again["token"], again["fence"]) == (h["token"], h["fence"]), again.short()
    s.release_ok("hs-secret", h["token"])
    g = w.get(10)
    expect(g, 200)
    w_tok = g["token"]
    # The waiter's retry gets the token its own request was answered with.
    again = s.acquire_ok("hs-secret", request_id=rid_w)
    assert again["token"] == w_tok, again.short()
    data = storeview.dump(s)
    for p in plain + [w_tok.encode()]:
        assert p not in data, "%r found in the database files" % p[:6]
    s.release_ok("hs-secret", w_tok)
    s.stop()
    data = storeview.dump(s)
    for p in plain + [w_tok.encode()]:
        assert p not in data, "%r found after the stop" % p[:6]
    cols = storeview.columns(s, "holders")
    assert "token" not in cols and "token_hash" in cols, cols


@needs_store("sqlite")
def test_state_files_are_private(s):
    """Whatever the umask, the database files deny other users, and an
    existing database readable by everyone is made private when opened."""
    s.acquire_ok("hs-mode", ttl=60)
    paths = _files(s)
    assert len(paths) >= 2, paths
    for p in paths:
        mode = stat.S_IMODE(os.stat(p).st_mode)
        log("%s: %o" % (os.path.basename(p), mode))
        assert mode & 0o007 == 0, "%s is mode %o" % (p, mode)
    s.stop()
    for p in _files(s):
        os.chmod(p, 0o644)
    s.start()
    s.acquire_ok("hs-mode2", ttl=60)
    for p in _files(s):
        mode = stat.S_IMODE(os.stat(p).st_mode)
        assert mode & 0o007 == 0, "%s is still mode %o after a restart" % (p, mode)


@conf(idle_reclaim=0)
def test_idle_locks_are_reclaimed(s):
    """Locks used once and released leave no row behind (idle_reclaim);
    a name used again carries a fence above every fence it had."""
    n = 300
    fences = {}
    for i in range(n):
        name = "hs-idle-%d" % i
        g = s.acquire_ok(name, ttl=60)
        s.release_ok(name, g["token"])
        fences[name] = g["fence"]
    held = s.acquire_ok("hs-idle-held", ttl=60)
    before = _rows(s, "SELECT count(*) FROM locks")[0][0]
    log("lock rows after %d names: %d" % (n, before))

    def left():
        s.status("hs-idle-poke")           # a request: workers sweep after one
        c = _rows(s, "SELECT count(*) FROM locks")[0][0]
        return c if c <= 1 else None
    wait_for(left, 30, "idle lock rows to be reclaimed", interval=0.2)
    # The held lock stays.
    assert _rows(s, "SELECT count(*) FROM locks WHERE name = 'hs-idle-held'")[0][0] == 1
    top = max(fences.values())
    for name in ("hs-idle-0", "hs-idle-%d" % (n - 1)):
        g = s.acquire_ok(name, ttl=60)
        assert g["fence"] > top, "%s: fence %d after reclaim, it had %d (top %d)" % (
            name, g["fence"], fences[name], top)
        s.release_ok(name, g["token"])
    s.release_ok("hs-idle-held", held["token"])


@needs_store("sqlite")
def test_restored_backup_never_reissues_a_fence(s):
    """A copy of the database taken at fence f, restored after the server
    went on to later fences, grants above all of them."""
    name = "hs-restore"
    g = s.acquire_ok(name, ttl=60)
    s.release_ok(name, g["token"])
    s.stop()
    backup = s.db_path + ".bak"
    shutil.copyfile(s.db_path, backup)
    s.start()
    top = g["fence"]
    for _ in range(3):
        g = s.acquire_ok(name, ttl=60)
        s.release_ok(name, g["token"])
        top = max(top, g["fence"])
    s.stop()
    for p in _files(s):
        os.unlink(p)
    shutil.copyfile(backup, s.db_path)
    os.chmod(s.db_path, 0o600)
    s.start()
    g = s.acquire_ok(name, ttl=60)
    log("fence after the restore: %d, highest before it: %d" % (g["fence"], top))
    assert g["fence"] > top, "fence %d reissued after a restore (highest before: %d)" % (
        g["fence"], top)
    s.release_ok(name, g["token"])


@authstack.on_auth_stack(conf_overrides={"tenant_max_held": "2", "tenant_max_waiting": "1"})
def test_tenant_quotas(s):
    """A tenant holds at most tenant_max_held locks and has at most
    tenant_max_waiting waiters; one more gets 429 quota_exceeded, while
    another tenant is unaffected and a request_id retry is not counted."""
    alice = authstack.User(s, "alice", authstack.USERS["alice"])
    bob = authstack.User(s, "bob", authstack.USERS["bob"])
    rid = secrets.token_urlsafe(16)
    a1 = alice.acquire_ok("q1", request_id=rid)
    a2 = alice.acquire_ok("q2")
    r = expect(alice.acquire("q3", timeout=0), 429, "quota_exceeded")
    assert "tenant_max_held" in r["message"], r.short()
    again = alice.acquire_ok("q1", request_id=rid)      # a retry: no new grant
    assert again["token"] == a1["token"], again.short()
    b1 = bob.acquire_ok("q1")
    # bob waits on his own lock (one waiter allowed), a second is refused.
    w = BG(bob.acquire, "q1", timeout=10)
    wait_for(lambda: bob.status("q1")["waiters"] == 1, 5, "bob's waiter")
    r = expect(bob.acquire("q1", timeout=5), 429, "quota_exceeded")
    assert "tenant_max_waiting" in r["message"], r.short()
    expect(bob.release("q1", b1["token"]), 200)
    g = w.get(10)
    expect(g, 200)
    expect(bob.release("q1", g["token"]), 200)
    # At its quota of grants, a tenant may not queue for more either.
    r = expect(alice.acquire("q1-other", timeout=5), 429, "quota_exceeded")
    expect(alice.release("q2", a2["token"]), 200)
    alice.acquire_ok("q3")
    expect(alice.release("q1", a1["token"]), 200)


@shared
def test_readme_first_example(s):
    """The README's first commands, run as written against this server: the
    request_id they make passes the rule, the acquire is granted, the
    release frees the lock, and the cancel of a released grant is 409."""
    readme = open(os.path.join(SRCDIR, "README")).read()
    start = readme.index("gives every language a lock through two HTTP calls:")
    block = readme[start:readme.index("An acquire blocks", start)]
    lines = [ln[4:] for ln in block.splitlines() if ln.startswith("    ")]
    script = "\n".join(lines)
    assert "request_id=$RID" in script and "/cancel" in script, script
    base = s.url("/").rstrip("/")
    script = script.replace("http://127.0.0.1:8080", base)
    # The release needs the token the acquire printed.
    script = script.replace("curl -m 15 -d", "OUT=$(curl -sS -m 15 -d", 1)
    script = script.replace("/acquire\n", "/acquire)\necho \"$OUT\"\n"
                            "TOKEN=$(printf '%s' \"$OUT\" | sed 's/.*\"token\":\"\\([0-9a-f]*\\)\".*/\\1/')\n", 1)
    script = script.replace("token=TOKEN", "token=$TOKEN")
    script = script.replace("curl -d", "curl -sS -w '%{http_code}\\n' -d")
    r = subprocess.run(["bash", "-ec", script + "\necho \"RID=$RID\"\n"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    out = r.stdout.splitlines()
    log("README's commands: acquire granted, release %s, cancel %s, request_id of %d "
        "characters" % (out[2] if len(out) > 2 else "?", out[4] if len(out) > 4 else "?",
                        len(out[5]) - 4 if len(out) > 5 else 0))
    grant = json.loads(out[0])
    assert grant["lock"] == "session:42" and len(grant["token"]) == 32, out
    # Each JSON body ends with a newline, then curl's status code.
    assert '"released":true' in out[1] and out[2] == "200", out
    assert "not_held" in out[3] and out[4] == "409", out
    rid = out[5][len("RID="):]
    assert re.fullmatch(r"[A-Za-z0-9_.~-]{16,128}", rid), rid
    assert s.status("session:42")["held"] is False
