#!/usr/bin/env python3
"""Small stdlib-only helpers (no socat needed).  lib.sh calls hutil.pl for free-port and
unix-cmd (perl starts 10-20 times faster than python3 on the loaded machine; tests call them
hundreds of times); the python versions stay for bench/lib (which imports free_port) and
stay in step with hutil.pl: same files, same formats.

  hutil.py free-port ADDR RESERVED_FILE   print a TCP port free on ADDR, not yet in RESERVED_FILE
                                          nor handed to another test in the last hour
                                          (one port per line; the chosen port is appended)
  hutil.py unix-cmd PATH CMD [TIMEOUT]    send CMD + "\\n" to a unix stream socket, shut the write
                                          side, print everything read until EOF (haproxy admin
                                          and master CLI)
  hutil.py etcd-leader                    read `etcdctl endpoint status -w json` on stdin, print
                                          the leader's endpoint
"""
import fcntl
import json
import os
import random
import socket
import sys
import time


# Ports handed out by any test on this machine, so that test entries run side by side
# (ctest -j) never pick the same one between choosing it and binding it: "PORT EPOCH" lines,
# entries older than SHARED_TTL seconds forgotten.  REGENT_PORTS_FILE overrides the path.
SHARED_FILE = os.environ.get("REGENT_PORTS_FILE", "/tmp/regent-test-ports")
SHARED_TTL = 3600


def free_port(addr, reserved_file):
    # Ports below the ephemeral range (32768-60999 on Linux) so that an outgoing connection's
    # source port cannot take a port the test is about to bind.
    with open(reserved_file, "a+") as f, open(SHARED_FILE, "a+") as g:
        fcntl.flock(f, fcntl.LOCK_EX)
        fcntl.flock(g, fcntl.LOCK_EX)
        f.seek(0)
        reserved = {line.strip() for line in f if line.strip()}
        now = int(time.time())
        g.seek(0)
        shared = {}
        for line in g:
            parts = line.split()
            if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit() \
                    and now - int(parts[1]) < SHARED_TTL:
                shared[parts[0]] = parts[1]
        rnd = random.Random(os.getpid() ^ int.from_bytes(os.urandom(4), "little"))
        for _ in range(2000):
            port = rnd.randint(20000, 32000)
            if str(port) in reserved or str(port) in shared:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((addr, port))
            except OSError:
                continue
            finally:
                s.close()
            f.write("%d\n" % port)
            f.flush()
            shared[str(port)] = str(now)
            g.seek(0)
            g.truncate()
            g.writelines("%s %s\n" % kv for kv in shared.items())
            g.flush()
            print(port)
            return 0
    print("free-port: no free port found on %s" % addr, file=sys.stderr)
    return 1


def unix_cmd(path, cmd, timeout):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(cmd.encode() + b"\n")
        s.shutdown(socket.SHUT_WR)
        out = bytearray()
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except OSError as e:
        print("unix-cmd %s: %s" % (path, e), file=sys.stderr)
        return 1
    finally:
        s.close()
    sys.stdout.write(out.decode(errors="replace"))
    return 0


def etcd_leader():
    data = json.load(sys.stdin)
    for st in data:
        status = st.get("Status", {})
        if status.get("leader") and status.get("header", {}).get("member_id") == status["leader"]:
            print(st["Endpoint"])
            return 0
    return 1


def main(argv):
    if len(argv) >= 4 and argv[1] == "free-port":
        return free_port(argv[2], argv[3])
    if len(argv) >= 4 and argv[1] == "unix-cmd":
        return unix_cmd(argv[2], argv[3], float(argv[4]) if len(argv) > 4 else 10.0)
    if len(argv) == 2 and argv[1] == "etcd-leader":
        return etcd_leader()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
