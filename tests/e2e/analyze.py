#!/usr/bin/env python3
"""analyze.py - reads loadgen.py's JSON lines and answers the end-to-end
test's questions.  Subcommands:
  failures FILE                      requests that did not get a 200 (count, then examples)
  first-seen FILE ID12 SINCE         seconds from SINCE to the first answer from ID12
  last-seen FILE ID12                unix time of the last answer from ID12 ("never" and
                                     exit 1 if it never answered: a gap computed from it would
                                     be hugely negative and pass any upper bound)
  count FILE                         number of requests
"""
import json
import sys


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    cmd, path = sys.argv[1], sys.argv[2]
    recs = load(path)
    if cmd == "count":
        print(len(recs))
    elif cmd == "failures":
        bad = [r for r in recs if r["status"] != 200]
        print(len(bad))
        for r in bad[:5]:
            print("  %.3f status=%s error=%s" % (r["t"], r["status"], r["error"]), file=sys.stderr)
    elif cmd == "first-seen":
        ident, since = sys.argv[3], float(sys.argv[4])
        ts = [r["t"] for r in recs if r["body"] == "I'm " + ident and r["t"] >= since]
        print("%.3f" % (min(ts) - since) if ts else "never")
    elif cmd == "last-seen":
        ident = sys.argv[3]
        ts = [r["t"] for r in recs if r["body"] == "I'm " + ident]
        if not ts:
            print("never")
            raise SystemExit(1)
        print("%.3f" % max(ts))
    else:
        raise SystemExit("analyze.py: unknown command " + cmd)


if __name__ == "__main__":
    main()
