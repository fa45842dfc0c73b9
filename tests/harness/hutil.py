#!/usr/bin/env python3
"""Small stdlib-only helpers for tests/harness/lib.sh that need json (the ones called in loops,
free-port and unix-cmd, are in hutil.pl: perl starts 10-20 times faster than python3).

  hutil.py etcd-leader                    read `etcdctl endpoint status -w json` on stdin, print
                                          the leader's endpoint
"""
import json
import sys


def etcd_leader():
    data = json.load(sys.stdin)
    for st in data:
        status = st.get("Status", {})
        if status.get("leader") and status.get("header", {}).get("member_id") == status["leader"]:
            print(st["Endpoint"])
            return 0
    return 1


def main(argv):
    if len(argv) == 2 and argv[1] == "etcd-leader":
        return etcd_leader()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
