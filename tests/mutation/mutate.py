#!/usr/bin/python3
"""Reads tests/mutation/mutations.txt and applies one mutation to a tree.

    mutate.py LIST SRCDIR check          every snippet occurs exactly once
    mutate.py LIST SRCDIR names          one line per mutation:
                                         NAME<TAB>TESTS (space-separated)
    mutate.py LIST SRCDIR show NAME      the mutation, as a diff-like text
    mutate.py LIST SRCDIR apply NAME     applies it; prints the file's path
                                         (relative to SRCDIR); the original
                                         is kept as FILE.mutation-orig
    mutate.py LIST SRCDIR restore        puts every kept original back

A mutation names no file: its snippet must occur exactly once in all of
the C sources (*.c, *.h) under lockcore/, fcgi/, coord/ and common/, so
it follows code moved between files.  A mutation may give several
find/replace pairs, the same change to code that exists in more than one
shape (before and after a refactoring lands): exactly one of them may be
found, and that one exactly once.  Anything else is an error (exit 2)
that names the mutation and where its snippets were or were not found.
"""

import os
import sys

DIRS = ("lockcore", "fcgi", "coord", "common")
KEYS = ("name", "breaks", "find", "replace", "tests", "killed-by")
PAIRED = ("find", "replace")      # may repeat, pairing up in order
ORIG = ".mutation-orig"


def die(msg):
    sys.stderr.write("mutate.py: %s\n" % msg)
    sys.exit(2)


def parse(path):
    """The list's mutations, in order, as dicts of KEYS."""
    muts, cur = [], None
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if line.startswith("#"):
                continue
            if line.strip() == "":
                cur = None
                continue
            key, sep, val = line.partition(": ")
            if not sep or key not in KEYS:
                die("%s:%d: expected one of %s followed by ': '" %
                    (path, no, ", ".join(KEYS)))
            if key == "name":
                cur = {"line": no}
                muts.append(cur)
            elif cur is None:
                die("%s:%d: a mutation starts with 'name: '" % (path, no))
            if key in PAIRED:
                cur.setdefault(key, []).append(val)
                if key == "replace" and \
                        len(cur["replace"]) != len(cur.get("find", [])):
                    die("%s:%d: each 'replace' follows its 'find'" % (path, no))
                continue
            if key in cur:
                die("%s:%d: '%s' given twice" % (path, no, key))
            cur[key] = val
    names = set()
    for m in muts:
        for k in KEYS:
            if k not in m:
                die("%s:%d: mutation %s has no '%s'" %
                    (path, m["line"], m.get("name"), k))
        if m["name"] in names:
            die("%s:%d: mutation %s listed twice" % (path, m["line"], m["name"]))
        if len(m["find"]) != len(m["replace"]):
            die("%s:%d: mutation %s: a 'find' without its 'replace'" %
                (path, m["line"], m["name"]))
        for f, r in zip(m["find"], m["replace"]):
            if f == r:
                die("%s:%d: mutation %s replaces its snippet by itself" %
                    (path, m["line"], m["name"]))
        names.add(m["name"])
    return muts


def sources(src):
    for d in DIRS:
        for root, _, files in os.walk(os.path.join(src, d)):
            for f in sorted(files):
                if f.endswith((".c", ".h")):
                    yield os.path.join(root, f)


def locate(src, m):
    """(file, index): the one file that holds the one pair's snippet, once."""
    found, report = [], []
    for j, snippet in enumerate(m["find"]):
        hits = []
        for path in sources(src):
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                n = f.read().count(snippet)
            if n:
                hits.append((os.path.relpath(path, src), n))
        if hits:
            found.append((j, hits))
        report.append("%r: %s" % (snippet, ", ".join(
            "%s (%d times)" % h for h in hits) or "nowhere"))
    if len(found) != 1 or len(found[0][1]) != 1 or found[0][1][0][1] != 1:
        die("mutation %s: exactly one snippet must occur, exactly once, "
            "under %s; found %s" % (m["name"], "/ ".join(DIRS) + "/",
                                    "; ".join(report)))
    j, hits = found[0]
    return hits[0][0], j


def find(muts, name):
    for m in muts:
        if m["name"] == name:
            return m
    die("no mutation named %s" % name)


def apply(src, m):
    rel, j = locate(src, m)
    path = os.path.join(src, rel)
    if os.path.exists(path + ORIG):
        die("%s: a mutation is applied already (restore first)" % rel)
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        text = f.read()
    os.rename(path, path + ORIG)
    # A new file, so that its mtime is new and make rebuilds from it.
    with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(text.replace(m["find"][j], m["replace"][j], 1))
    print(rel)


def restore(src):
    for d in DIRS:
        for root, _, files in os.walk(os.path.join(src, d)):
            for f in files:
                if f.endswith(ORIG):
                    path = os.path.join(root, f)
                    real = path[:-len(ORIG)]
                    # Written anew (not renamed back): its mtime must be
                    # newer than the objects built from the mutant.
                    with open(path, "rb") as i, open(real, "wb") as o:
                        o.write(i.read())
                    os.unlink(path)


def main(argv):
    if len(argv) < 4:
        die("usage: mutate.py LIST SRCDIR check|names|show NAME|apply NAME|restore")
    muts, src, cmd = parse(argv[1]), argv[2], argv[3]
    if cmd == "check":
        for m in muts:
            print("%-24s %s" % (m["name"], locate(src, m)[0]))
    elif cmd == "names":
        for m in muts:
            print("%s\t%s" % (m["name"], m["tests"]))
    elif cmd == "show" and len(argv) == 5:
        m = find(muts, argv[4])
        rel, j = locate(src, m)
        print("%s (%s): breaks: %s\n  - %s\n  + %s" %
              (m["name"], rel, m["breaks"], m["find"][j].strip(),
               m["replace"][j].strip()))
    elif cmd == "apply" and len(argv) == 5:
        apply(src, find(muts, argv[4]))
    elif cmd == "restore":
        restore(src)
    else:
        die("unknown command %s" % " ".join(argv[3:]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
