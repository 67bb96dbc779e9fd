#!/usr/bin/python3
"""bench/procmem.py: where the memory of an httplock stack goes (W4).

    procmem.py LIGHTTPD_PID [COORD_PID]

For lighttpd, each of its children (the workers) and the coordinator:
RSS, threads and fds, and the resident memory split by kind of mapping
from /proc/PID/smaps:
  stacks  anonymous rw mappings right behind a PROT_NONE guard page
          (pthread stacks: the worker's are 256 KiB)
  arenas  glibc malloc arenas of threads (64 MiB reserved regions, the
          rw part growing from their start)
  heap    [heap] (the main arena, brk)
  anon    other anonymous memory (large mallocs are their own mmaps)
  file    file-backed mappings (binaries, libraries, the SQLite -shm)
All figures in KiB; "per thread" divides a worker's stacks and arenas by
its thread count.
"""
import os
import sys


def smaps(pid):
    maps = []
    cur = None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and len(parts) >= 5 and ":" not in parts[0]:
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                cur = {"lo": lo, "hi": hi, "perm": parts[1],
                       "path": parts[5] if len(parts) > 5 else "",
                       "rss": 0}
                maps.append(cur)
            elif parts[0] == "Rss:":
                cur["rss"] = int(parts[1])
    return maps


def classify(maps):
    out = {"stacks": 0, "arenas": 0, "heap": 0, "anon": 0, "file": 0}
    nstack = 0
    for i, m in enumerate(maps):
        size = m["hi"] - m["lo"]
        p = m["path"]
        if p == "[heap]":
            k = "heap"
        elif p.startswith("/") or p.startswith("[v") and p != "[vsyscall]":
            k = "file"
        elif p == "[stack]":
            k = "stacks"
        elif p == "" and m["perm"].startswith("rw"):
            prev = maps[i - 1] if i else None
            nxt = maps[i + 1] if i + 1 < len(maps) else None
            # an arena: rw from a 64 MiB-aligned start, the rest ---p
            if (m["lo"] % (64 << 20) == 0 and nxt is not None and
                    nxt["perm"].startswith("---") and nxt["lo"] == m["hi"] and
                    (nxt["hi"] - m["lo"]) == (64 << 20)):
                k = "arenas"
            elif (prev is not None and prev["perm"].startswith("---") and
                  prev["hi"] == m["lo"] and prev["hi"] - prev["lo"] == 4096):
                k = "stacks"
                nstack += 1
            else:
                k = "anon"
        else:
            k = "anon"
        out[k] += m["rss"]
    return out, nstack


def status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def children(pid):
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    st = f.read()
                if int(st.rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return sorted(kids)


def report(kind, pid):
    try:
        c, nstack = classify(smaps(pid))
        thr = status(pid, "Threads")
        fds = len(os.listdir("/proc/%d/fd" % pid))
        rss = status(pid, "VmRSS")
    except OSError as e:
        print("%-11s %7d  gone (%s)" % (kind, pid, e))
        return
    per = ""
    if thr > 1:
        per = "  per thread: stacks %.1f arenas %.1f rss %.1f" % (
            c["stacks"] / thr, c["arenas"] / thr, rss / thr)
    print("%-11s %7d rss %8d thr %6d fds %6d | stacks %7d (%d) arenas %7d"
          " heap %7d anon %7d file %6d%s" % (
              kind, pid, rss, thr, fds, c["stacks"], nstack, c["arenas"],
              c["heap"], c["anon"], c["file"], per))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    lt = int(sys.argv[1])
    report("lighttpd", lt)
    for k in children(lt):
        report("worker", k)
    if len(sys.argv) > 2:
        report("coordinator", int(sys.argv[2]))


if __name__ == "__main__":
    main()
