#!/usr/bin/env python3
"""churn_drive.py - start and kill containers on a fixed cadence through the Docker API.

  churn_drive.py create --sock S1 --sock S2 --addr A1 --addr A2 --image IMG --pool P
                        --reserved PORTS_FILE --harness-dir DIR --state STATE.json
  churn_drive.py run --state STATE.json --interval-ms 250 --lifetime L --duration S --out OUT.json

`create` makes a pool of P stopped whoami containers (host network, one port each,
alternating between the two daemons; WHOAMI_GRACE: they keep serving that long after a
SIGTERM, like an app with a graceful shutdown).  `run`: every interval, start pool[k % P] and
end the container started L ticks before, with --action kill (SIGKILL: it dies at once,
requests in flight with it) or stop (`docker stop`: SIGTERM, the grace, exit), each call on
its own thread so that a slow Docker call never shifts the cadence.  OUT.json: every operation with its issue time, duration and
error, and the counts.
"""
import argparse
import contextlib
import http.client
import io
import json
import socket
import sys
import threading
import time


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("docker", timeout=30)
        self.path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(self.path)
        self.sock = s


def api(sock, method, path, body=None):
    c = UnixHTTP(sock)
    try:
        hdr = {"Content-Type": "application/json"} if body is not None else {}
        c.request(method, path, json.dumps(body) if body is not None else None, hdr)
        r = c.getresponse()
        data = r.read()
        if r.status >= 300:  # 304 too: already started / stopped, the call did nothing
            raise RuntimeError("%d %s" % (r.status, data[:160].decode("utf-8", "replace").strip()))
        return json.loads(data) if data else None
    finally:
        c.close()


def cmd_create(a):
    sys.path.insert(0, a.harness_dir)
    import hutil
    pool = []
    for j in range(a.pool):
        h = j % 2
        addr = a.addr[h]
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            if hutil.free_port(addr, a.reserved) != 0:
                raise RuntimeError("no free port")
        port = int(buf.getvalue().strip())
        name = "churn%02d" % j
        api(a.sock[h], "POST", "/containers/create?name=%s" % name, {
            "Image": a.image,
            "Env": ["WHOAMI_ADDR=%s" % addr, "WHOAMI_PORT=%d" % port, "WHOAMI_GRACE=%g" % a.grace],
            "ExposedPorts": {"%d/tcp" % port: {}}, "HostConfig": {"NetworkMode": "host"}})
        pool.append({"name": name, "sock": a.sock[h], "addr": addr, "port": port})
    with open(a.state, "w") as f:
        json.dump(pool, f)
    return 0


def cmd_run(a):
    pool = json.load(open(a.state))
    ops = []
    lock = threading.Lock()

    def op(kind, c, tick):
        t0 = time.time_ns()
        err = None
        try:
            api(c["sock"], "POST", "/containers/%s/%s" % (c["name"], kind if kind != "stop" else "stop?t=10"))
        except (OSError, RuntimeError, http.client.HTTPException) as e:
            err = str(e)
        with lock:
            ops.append({"tick": tick, "kind": kind, "name": c["name"], "t": t0,
                        "ms": (time.time_ns() - t0) / 1e6, "err": err})

    interval = a.interval_ms / 1000.0
    ticks = int(a.duration / interval)
    threads = []
    start = time.monotonic()
    for k in range(ticks):
        d = start + k * interval - time.monotonic()
        if d > 0:
            time.sleep(d)
        t = threading.Thread(target=op, args=("start", pool[k % len(pool)], k))
        t.start()
        threads.append(t)
        if k >= a.lifetime:
            t = threading.Thread(target=op, args=(a.action, pool[(k - a.lifetime) % len(pool)], k))
            t.start()
            threads.append(t)
    for t in threads:
        t.join(60)
    late = max(0.0, time.monotonic() - start - ticks * interval)
    res = {"ticks": ticks, "interval_ms": a.interval_ms, "lifetime": a.lifetime,
           "starts": sum(1 for o in ops if o["kind"] == "start" and not o["err"]),
           "kills": sum(1 for o in ops if o["kind"] == a.action and not o["err"]),
           "errors": [o for o in ops if o["err"]], "late_s": late,
           "start_ms": sorted(o["ms"] for o in ops if o["kind"] == "start"),
           "kill_ms": sorted(o["ms"] for o in ops if o["kind"] == a.action)}
    with open(a.out, "w") as f:
        json.dump(res, f)
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["create", "run"])
    ap.add_argument("--sock", action="append")
    ap.add_argument("--addr", action="append")
    ap.add_argument("--image")
    ap.add_argument("--pool", type=int, default=8)
    ap.add_argument("--reserved")
    ap.add_argument("--harness-dir")
    ap.add_argument("--state", required=True)
    ap.add_argument("--interval-ms", type=float, default=250)
    ap.add_argument("--lifetime", type=int, default=4)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--out")
    ap.add_argument("--action", choices=["kill", "stop"], default="kill")
    ap.add_argument("--grace", type=float, default=1.0)
    a = ap.parse_args()
    return cmd_create(a) if a.cmd == "create" else cmd_run(a)


if __name__ == "__main__":
    sys.exit(main())
