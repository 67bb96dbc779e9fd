"""Power loss and unclean restarts.

A power loss is played without one: the workers (a build configured with
--enable-test-hooks, as `./quickstart test` makes) run with a boot id given in
HTTPLOCK_TEST_BOOT_ID, the whole stack is killed -9, the tail of the WAL
written after a chosen moment is cut off (what an OS crash does to commits
that synchronous = normal had not synced yet), the -shm file is removed,
and the stack starts again under another boot id, with
HTTPLOCK_TEST_BOOT_TIME saying the machine booted just now.  Checked:

- the grant in the lost tail is really gone from the database, while its
  client still holds it;
- with crash_grace = yes (the default) every acquire is answered 503
  unavailable with Retry-After and recovering_until until max_ttl after the
  boot, /healthz says so and stays 200; renew/release/status of what is on
  disk go on; then grants resume by themselves;
- fences after the restart are above every fence issued before it, the lost
  ones included, on the same lock and on a lock created in the lost tail;
- synchronous = full: no grace, and the same "reboot" loses nothing;
- crash_grace = no: no grace, but fences still never repeat;
- a process crash without a reboot (kill -9 of the whole stack, same boot)
  recovers nothing and grants at once: test_failure's
  test_durability_kill9_restart.
"""

import os
import sqlite3
import struct
import time

from checks import check_integrity, expect
from common import log, wait_for
from markers import conf, fronts, needs, needs_store, timeout

MAX_TTL = 4          # seconds: the grace after a "power loss"
FENCE_JUMP = 1 << 32


def _start(s, boot, boot_time_ms=None):
    s.extra_env["HTTPLOCK_TEST_BOOT_ID"] = boot
    if boot_time_ms is None:
        s.extra_env.pop("HTTPLOCK_TEST_BOOT_TIME", None)
    else:
        s.extra_env["HTTPLOCK_TEST_BOOT_TIME"] = str(boot_time_ms)


def _boot_a(s):
    """Restarts the test's stack as boot A (a clean stop first, so the WAL
    starts empty and every frame below comes from this run)."""
    s.stop()
    _start(s, "boot-A")
    s.start()


def _wal_commits(path):
    """Byte offsets just after each commit frame of the WAL at `path`."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 32:
        return []
    magic, _, page, _, salt1, salt2 = struct.unpack(">IIIIII", data[:24])
    assert magic in (0x377F0682, 0x377F0683), "not a WAL: %x" % magic
    out, off = [], 32
    while off + 24 + page <= len(data):
        _, commit, s1, s2 = struct.unpack(">IIII", data[off:off + 16])
        if (s1, s2) != (salt1, salt2):
            break
        off += 24 + page
        if commit:
            out.append(off)
    return out


def _power_loss(s, keep_commits):
    """kill -9 everything, keep only the first keep_commits commits of the
    WAL, and forget the shared-memory index."""
    wal = s.db_path + "-wal"
    s.kill_all_9()
    commits = _wal_commits(wal)
    assert len(commits) > keep_commits, (len(commits), keep_commits)
    with open(wal, "r+b") as f:
        f.truncate(commits[keep_commits - 1])
    try:
        os.unlink(s.db_path + "-shm")
    except FileNotFoundError:
        pass
    log("power loss: kept %d of %d commits in the WAL" % (keep_commits, len(commits)))


def _fence_seq(s, name):
    db = sqlite3.connect("file:%s?mode=ro" % s.db_path, uri=True)
    try:
        row = db.execute("SELECT fence_seq FROM locks WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None
    finally:
        db.close()


def _lose_a_grant(s):
    """Boot A: grants that reach the disk, then (after the cut) grants that a
    power loss takes away.  Returns (grant on disk, lost grant, lost grant
    on a lock created in the lost tail, number of commits kept)."""
    _boot_a(s)
    kept = s.acquire_ok("pl", ttl=MAX_TTL, owner="kept", timeout=0)
    g = s.acquire_ok("pl-gone", timeout=0)
    s.release_ok("pl-gone", g["token"])
    keep = len(_wal_commits(s.db_path + "-wal"))
    lost = s.acquire_ok("pl-gone", ttl=MAX_TTL, owner="lost", timeout=0)
    fresh = s.acquire_ok("pl-fresh", ttl=MAX_TTL, owner="lost", timeout=0)
    # The first grant of each lock since the start carries the same floor.
    assert lost["fence"] == g["fence"] + 1 and fresh["fence"] == g["fence"], (g, lost, fresh)
    return kept, lost, fresh, keep


@fronts("lighttpd")
@needs("--enable-test-hooks")
@needs_store("sqlite")
@conf(max_ttl=MAX_TTL, default_ttl=2)
@timeout(60)
def test_power_loss_grace(s):
    kept, lost, fresh, keep = _lose_a_grant(s)
    _power_loss(s, keep)
    boot_ms = int(time.time() * 1000)
    _start(s, "boot-B", boot_ms)
    s.restart()
    # The lost grant is gone from the file: its client still "holds" it.
    assert _fence_seq(s, "pl-gone") == lost["fence"] - 1, _fence_seq(s, "pl-gone")
    assert _fence_seq(s, "pl-fresh") is None
    st = s.status("pl-gone")
    assert st["held"] is False, st.short()

    # The grace: every acquire is refused with a clear answer.
    grace_end = boot_ms / 1000.0 + MAX_TTL
    for name in ("pl-gone", "pl-fresh", "pl-never-used"):
        r = expect(s.acquire(name, timeout=5), 503, "unavailable")
        assert "unclean shutdown" in r["message"], r.short()
        assert abs(r["recovering_until"] - grace_end) < 0.002, (r.short(), grace_end)
        ra = int(r.header("Retry-After"))
        assert 0 < ra <= MAX_TTL, r.header("Retry-After")
        assert 0 < r["retry_after"] <= MAX_TTL, r.short()
    h = s.health()
    assert h["ok"] is True and abs(h["recovering_until"] - grace_end) < 0.002, h.short()
    # What the disk kept goes on: status, renew, release.
    st = s.status("pl")
    assert st["held"] is True and st["holders"][0]["fence"] == kept["fence"], st.short()
    expect(s.renew("pl", kept["token"], ttl=1), 200)
    s.release_ok("pl", kept["token"])
    text = s.log_text("lighttpd.out")     # the workers' stderr
    assert "never closed" in text and "no new grant for" in text, s.log_tail("lighttpd.out")

    # Grants resume by themselves when the grace ends, with fresh fences.
    got = {}

    def granted():
        r = s.acquire("pl-gone", timeout=0)
        if r.status == 503:
            return False
        got["r"] = expect(r, 200)
        return True
    wait_for(granted, MAX_TTL + 10, "a grant after the grace", interval=0.05)
    late = time.time() - grace_end
    log("first grant %.0f ms after the grace's end (%.1f s after the boot)" % (
        late * 1000, time.time() - boot_ms / 1000.0))
    assert late > -0.05, late
    g = got["r"]
    assert g["fence"] >= lost["fence"] + FENCE_JUMP, (g.short(), lost.short())
    f = s.acquire_ok("pl-fresh", timeout=0)
    assert f["fence"] >= fresh["fence"] + FENCE_JUMP, f.short()
    log("fences after recovery: %d (lost: %d), %d (lost: %d)" % (
        g["fence"], lost["fence"], f["fence"], fresh["fence"]))
    s.release_ok("pl-gone", g["token"])
    s.release_ok("pl-fresh", f["token"])
    # A restart in the same boot after a clean stop: nothing to recover.
    s.stop()
    s.start()
    h = s.health()
    assert "recovering_until" not in h.body.decode() or h["recovering_until"] <= time.time(), h.short()
    g2 = s.acquire_ok("pl-gone", timeout=0)
    assert g2["fence"] == g["fence"] + 1, (g2.short(), g.short())
    s.release_ok("pl-gone", g2["token"])
    s.stop()
    check_integrity(s.db_path)


@fronts("lighttpd")
@needs("--enable-test-hooks")
@needs_store("sqlite")
@conf(max_ttl=MAX_TTL, default_ttl=2, crash_grace="no")
@timeout(60)
def test_power_loss_no_grace(s):
    """crash_grace = no: grants at once after the "reboot", and still no
    fence is issued twice."""
    kept, lost, fresh, keep = _lose_a_grant(s)
    _power_loss(s, keep)
    _start(s, "boot-B", int(time.time() * 1000))
    s.restart()
    g = s.acquire_ok("pl-gone", timeout=0)
    f = s.acquire_ok("pl-fresh", timeout=0)
    assert g["fence"] >= lost["fence"] + FENCE_JUMP, g.short()
    assert f["fence"] >= fresh["fence"] + FENCE_JUMP, f.short()
    text = s.log_text("lighttpd.out")
    assert "never closed" in text and "no grace" in text, s.log_tail("lighttpd.out")
    s.stop()
    check_integrity(s.db_path)


@fronts("lighttpd")
@needs("--enable-test-hooks")
@needs_store("sqlite")
@conf(max_ttl=MAX_TTL, default_ttl=2, synchronous="full")
@timeout(60)
def test_power_loss_synchronous_full(s):
    """synchronous = full: every grant was on disk before it was answered, so
    a reboot under open connections needs no grace and loses nothing (no
    WAL tail is cut here: with fsync per commit there is none to lose)."""
    kept, lost, fresh, keep = _lose_a_grant(s)
    s.kill_all_9()
    _start(s, "boot-B", int(time.time() * 1000))
    s.restart()
    st = s.status("pl-gone")
    assert st["held"] is True and st["holders"][0]["fence"] == lost["fence"], st.short()
    # A start after a stop floors fences at the clock: above all before.
    g = s.acquire_ok("pl-other", timeout=0)
    assert g["fence"] > lost["fence"], (g.short(), lost.short())
    expect(s.acquire("pl-gone", timeout=0), 423, "timeout")
    s.release_ok("pl-gone", lost["token"])
    g = s.acquire_ok("pl-gone", timeout=0)
    assert g["fence"] > lost["fence"], (g.short(), lost.short())
    assert "never closed" not in s.log_text("lighttpd.out"), s.log_tail("lighttpd.out")
    s.stop()
    check_integrity(s.db_path)
