#!/usr/bin/env python3
"""dtool.py: small readers for the docker plugin's script tests (stdlib only).

  logtime LOG REGEX AFTER_NS   ns stamp of the first regent log line matching REGEX whose
                               stamp (ms resolution, local time) is >= AFTER_NS rounded down
                               to the ms; exit 1 if none
  evtime EVENTS REGEX ID AFTER_NS
                               TimeNano of the first `docker events` line (TIMENANO ACTION ID)
                               whose action matches REGEX, for that container id (prefix),
                               at or after AFTER_NS; exit 1 if none
  storeset STORELOG            the instance ids a teststore log leaves registered, sorted
  sinkset SINKFILE             the instance ids of the last testsink snapshot, sorted
"""
import datetime
import re
import sys

STAMP = re.compile(r'^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3}) ')


def logtime(path, regex, after):
    rx = re.compile(regex)
    after_ms = int(after) // 1000000
    with open(path, errors='replace') as f:
        for line in f:
            m = STAMP.match(line)
            if not m or not rx.search(line):
                continue
            t = datetime.datetime.strptime(m.group(1), '%Y-%m-%dT%H:%M:%S').timestamp()
            ms = int(t) * 1000 + int(m.group(2))
            if ms >= after_ms:
                print(ms * 1000000)
                return 0
    return 1


def evtime(path, regex, cid, after):
    rx = re.compile(regex)
    with open(path, errors='replace') as f:
        for line in f:
            parts = line.split()
            if len(parts) < 3 or not parts[0].isdigit():
                continue
            t, action, ident = int(parts[0]), ' '.join(parts[1:-1]), parts[-1]
            if t >= int(after) and ident.startswith(cid) and rx.search(action):
                print(t)
                return 0
    return 1


def storeset(path):
    ids = set()
    with open(path, errors='replace') as f:
        for line in f:
            p = line.split()
            if len(p) >= 2 and p[0] == 'register':
                ids.add(p[1])
            elif len(p) >= 2 and p[0] == 'deregister':
                ids.discard(p[1])
    for i in sorted(ids):
        print(i)
    return 0


def sinkset(path):
    last = []
    cur = None
    with open(path, errors='replace') as f:
        for line in f:
            if line.startswith('apply '):
                cur = []
            elif line.startswith('end'):
                if cur is not None:
                    last = cur
                cur = None
            elif cur is not None and line.startswith('    '):
                cur.append(line.split()[0])
    for i in sorted(last):
        print(i)
    return 0


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == 'logtime' and len(args) == 3:
        return logtime(*args)
    if cmd == 'evtime' and len(args) == 4:
        return evtime(*args)
    if cmd == 'storeset' and len(args) == 1:
        return storeset(*args)
    if cmd == 'sinkset' and len(args) == 1:
        return sinkset(*args)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv))
