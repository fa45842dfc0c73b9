#!/usr/bin/env python3
"""prop_drive.py - the propagation bench's driver: start and kill containers one at a time
through the Docker API, each time waiting until haproxy's runtime state (as hapoll.py
records it) shows the change.

  prop_drive.py --sock S1 --sock S2 --addr A1 --addr A2 --image IMG --events N
                --reload-every K --poll POLL.jsonl --plan PLAN.tsv --reserved PORTS_FILE
                --harness-dir DIR [--timeout 10]

A pool of 2*K containers (K >= 2) is created first (not timed), alternating between the two
daemons; pool members K-1 and 2K-1 carry `regent.service=bench-rNN`, a service of their own,
the others join `whoami`.  Then N events: cycle i starts pool[i % 2K], waits until haproxy
routes to it, pauses, kills it (SIGKILL), waits until haproxy stops routing to it.  A
`bench-r` container's service leaves the catalog with it, so its every start needs a new
listen section (a reload).  PLAN.tsv gets one line per event:
  seq container service addr port start|kill issued_ns
"""
import argparse
import contextlib
import http.client
import io
import json
import os
import socket
import sys
import time


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("docker", timeout=60)
        self.path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(60)
        s.connect(self.path)
        self.sock = s


def api(conn, method, path, body=None):
    hdr = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, json.dumps(body) if body is not None else None, hdr)
    r = conn.getresponse()
    data = r.read()
    if r.status >= 300:
        raise RuntimeError("%s %s: %d %s" % (method, path, r.status, data[:200]))
    return json.loads(data) if data else None


class PollTail:
    def __init__(self, path):
        self.f = open(path)
        self.buf = ""

    def wait(self, key, field, not_before, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            chunk = self.f.read()
            if chunk:
                self.buf += chunk
                while "\n" in self.buf:
                    line, self.buf = self.buf.split("\n", 1)
                    try:
                        p = json.loads(line)
                    except ValueError:
                        continue
                    if p.get("t", 0) >= not_before and key in p.get(field, ()):
                        return True
            else:
                time.sleep(0.005)
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sock", action="append", required=True)
    ap.add_argument("--addr", action="append", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--reload-every", type=int, default=5)
    ap.add_argument("--poll", required=True)
    ap.add_argument("--plan", required=True)
    ap.add_argument("--reserved", required=True)
    ap.add_argument("--harness-dir", required=True)
    ap.add_argument("--timeout", type=float, default=10)
    ap.add_argument("--pause", type=float, default=0.1)
    a = ap.parse_args()
    sys.path.insert(0, a.harness_dir)
    import hutil  # the harness's free-port (keeps its reserved-ports file right)

    def free_port(addr):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            if hutil.free_port(addr, a.reserved) != 0:
                raise RuntimeError("no free port on %s" % addr)
        return int(buf.getvalue().strip())

    k = max(2, a.reload_every) if a.reload_every > 0 else 5
    pool = []
    conns = [UnixHTTP(s) for s in a.sock]
    for j in range(2 * k):
        h = j % 2
        addr = a.addr[h]
        port = free_port(addr)
        name = "p%02d" % j
        svc = "whoami"
        labels = {}
        if a.reload_every > 0 and j % k == k - 1:
            svc = "bench-r%02d" % j
            labels["regent.service"] = svc
        api(conns[h], "POST", "/containers/create?name=%s" % name, {
            "Image": a.image,
            "Env": ["WHOAMI_ADDR=%s" % addr, "WHOAMI_PORT=%d" % port],
            "ExposedPorts": {"%d/tcp" % port: {}},
            "Labels": labels,
            "HostConfig": {"NetworkMode": "host"},
        })
        pool.append((name, svc, addr, port, h))
    print("pool of %d containers created" % len(pool), file=sys.stderr, flush=True)
    tail = PollTail(a.poll)
    tail.f.seek(0, os.SEEK_END)  # only what happens from now on
    seq = 0
    t0 = time.monotonic()
    with open(a.plan, "w", buffering=1) as plan:
        ncycles = (a.events + 1) // 2
        for i in range(ncycles):
            name, svc, addr, port, h = pool[i % len(pool)]
            key = "%s %s:%d" % (svc, addr, port)
            for kind, path, field in (("start", "/containers/%s/start" % name, "up"),
                                      ("kill", "/containers/%s/kill" % name, "down")):
                if kind == "kill" and seq >= a.events:
                    break
                issued = time.time_ns()
                try:
                    api(conns[h], "POST", path)
                except (OSError, RuntimeError, http.client.HTTPException) as e:
                    print("%s %s: %s" % (kind, name, e), file=sys.stderr, flush=True)
                    conns[h] = UnixHTTP(a.sock[h])
                    continue
                plan.write("%d %s %s %s %d %s %d\n" % (seq, name, svc, addr, port, kind, issued))
                seq += 1
                if not tail.wait(key, field, issued, a.timeout):
                    print("%s %s: not shown in haproxy within %g s" % (kind, name, a.timeout),
                          file=sys.stderr, flush=True)
                time.sleep(a.pause)
            if (i + 1) % 10 == 0:
                print("%d/%d cycles (%.0f s)" % (i + 1, ncycles, time.monotonic() - t0),
                      file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
