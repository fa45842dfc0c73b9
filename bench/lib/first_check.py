#!/usr/bin/env python3
"""first_check.py - when does haproxy run a joining server's first health check?

  first_check.py ROWS.jsonl RESERVED_PORTS HARNESS_DIR [--inter-ms 2000] [-n 3]

One haproxy (the installed one) on loopback: backend `be` (roundrobin, `option httpchk GET
/health`) with one server always up ("base") and 2n free slots the way regent renders them
(`server sN 0.0.0.0:0 check inter I rise 1 downinter 100ms disabled`), and two HTTP servers
(python) that answer every request and log each with its time: the joiner's and the base's.
A client sends a request through the frontend every 5 ms the whole time.  Each join, one at a
time, at a random moment (uniform over one check interval):

  slot:    regent's join of a checked service's free slot: `set server be/sN addr A port P;
           set server be/sN weight 0; set server be/sN state ready; set server be/sN health
           down; set server be/sN weight 1`
  dynamic: `add server be/dN A:P check inter I rise 1 downinter 100ms weight 0; enable health
           be/dN; enable server be/dN; set server be/dN health down; set server be/dN weight 1`
           (run twice: without and with `global max-spread-checks 1ms`, each its own haproxy)

For each join: command sent -> the joiner's first check arrives, -> haproxy shows it UP (admin
socket poll every 2 ms), and the requests the joiner got before its first check (the #16.2
guarantee: 0).  Rows are appended to ROWS.jsonl.
"""
import argparse
import contextlib
import http.server
import io
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


class Rec(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr):
        super().__init__(addr, Handler)
        self.lock = threading.Lock()
        self.checks = []
        self.requests = []


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        now = time.monotonic()
        with self.server.lock:
            (self.server.checks if self.path == "/health" else self.server.requests).append(now)
        try:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        except OSError:
            pass

    def log_message(self, *a):
        pass

    def handle_error(self, *a):
        pass


def cli(sock, cmd, timeout=2.0):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    try:
        s.connect(sock)
        s.sendall(cmd.encode() + b"\n")
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                return out.decode()
            out += b
    finally:
        s.close()


def server_up(sock, name):
    for line in cli(sock, "show servers state be").split("\n"):
        f = line.split()
        if len(f) > 7 and f[3] == name:
            return int(f[5]) == 2 and int(f[7]) > 0
    return False


def pct(xs, p):
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


def run_haproxy(d, sock, fport, base_port, nslots, inter_ms, spread):
    cfg = ["global", "    stats socket %s level admin" % sock]
    if spread:
        cfg.append("    max-spread-checks 1ms")
    cfg += ["defaults", "    mode http", "    timeout connect 1s", "    timeout client 5s",
            "    timeout server 5s", "frontend f", "    bind 127.0.0.1:%d" % fport,
            "    default_backend be", "backend be", "    balance roundrobin",
            "    option httpchk GET /health",
            "    server base 127.0.0.1:%d check inter %dms rise 1" % (base_port, inter_ms)]
    for i in range(1, nslots + 1):
        cfg.append("    server s%d 0.0.0.0:0 check inter %dms rise 1 downinter 100ms disabled" %
                   (i, inter_ms))
    path = os.path.join(d, "first-check-%s.cfg" % ("spread" if spread else "plain"))
    with open(path, "w") as f:
        f.write("\n".join(cfg) + "\n")
    p = subprocess.Popen(["haproxy", "-db", "-f", path], stdout=subprocess.DEVNULL,
                         stderr=open(path + ".log", "w"))
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            if server_up(sock, "base"):
                return p
        except OSError:
            pass
        time.sleep(0.02)
    p.terminate()
    p.wait()
    raise RuntimeError("haproxy did not come up with %s (see %s.log)" % (path, path))


def load(fport, stop, errors):
    while not stop.is_set():
        try:
            urllib.request.urlopen("http://127.0.0.1:%d/" % fport, timeout=2).read()
        except Exception:  # noqa: BLE001 - a refused request only counts
            errors[0] += 1
        time.sleep(0.005)


def join(sock, cmd, name, joiner, timeout):
    with joiner.lock:
        n0c, n0r = len(joiner.checks), len(joiner.requests)
    t0 = time.monotonic()
    out = cli(sock, cmd)
    up = None
    while time.monotonic() - t0 < timeout:
        if server_up(sock, name):
            up = time.monotonic() - t0
            break
        time.sleep(0.002)
    time.sleep(0.05)  # the last requests before the poll saw it
    with joiner.lock:
        checks = joiner.checks[n0c:]
        reqs = joiner.requests[n0r:]
    first = checks[0] if checks else None
    early = sum(1 for r in reqs if first is None or r < first)
    return {"cli": out.strip(), "first": (first - t0) if first else None, "up": up, "early": early}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rows")
    ap.add_argument("reserved")
    ap.add_argument("harness_dir")
    ap.add_argument("--inter-ms", type=int, default=2000)
    ap.add_argument("-n", type=int, default=3)
    a = ap.parse_args()
    sys.path.insert(0, a.harness_dir)
    import hutil

    def free_port():
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            if hutil.free_port("127.0.0.1", a.reserved) != 0:
                raise RuntimeError("no free port on 127.0.0.1")
        return int(buf.getvalue().strip())

    d = tempfile.mkdtemp(prefix="first-check-")
    base = Rec(("127.0.0.1", free_port()))
    joiner = Rec(("127.0.0.1", free_port()))
    for srv in (base, joiner):
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    jport = joiner.server_address[1]
    timeout = 2 * a.inter_ms / 1000.0 + 3
    rnd = random.Random()
    results = {}
    for path, spread in (("slot", False), ("dynamic", False), ("dynamic", True)):
        sock = os.path.join(d, "adm.sock")
        fport = free_port()
        hp = run_haproxy(d, sock, fport, base.server_address[1], a.n, a.inter_ms, spread)
        stop, errors = threading.Event(), [0]
        lt = threading.Thread(target=load, args=(fport, stop, errors), daemon=True)
        lt.start()
        try:
            for i in range(1, a.n + 1):
                if path == "slot":
                    s = "be/s%d" % i
                    cmd = ("set server {s} addr 127.0.0.1 port {p};set server {s} weight 0;"
                           "set server {s} state ready;set server {s} health down;"
                           "set server {s} weight 1")
                else:
                    s = "be/d%d" % i
                    cmd = ("add server {s} 127.0.0.1:{p} check inter %dms rise 1 downinter 100ms "
                           "weight 0;enable health {s};enable server {s};set server {s} health "
                           "down;set server {s} weight 1") % a.inter_ms
                # at a random moment of the check period: the slots' check tasks tick in step
                # (all started with haproxy), so back-to-back joins would all land at the same
                # phase of it
                time.sleep(rnd.uniform(0, a.inter_ms / 1000.0))
                r = join(sock, cmd.format(s=s, p=jport), s.split("/")[1], joiner, timeout)
                results.setdefault((path, spread), []).append(r)
                print("%s%s %s: first check %s s, up %s s, requests before it %d" % (
                    path, " (max-spread-checks 1ms)" if spread else "", s,
                    "%.3f" % r["first"] if r["first"] is not None else "none",
                    "%.3f" % r["up"] if r["up"] is not None else "never", r["early"]),
                    file=sys.stderr, flush=True)
                # out of rotation again before the next join (the joiner's port is shared)
                cli(sock, "set server %s state maint" % s)
        finally:
            stop.set()
            lt.join()
            hp.terminate()
            hp.wait()
        results[(path, spread, "errors")] = errors[0]
    with open(a.rows, "a") as f:
        for (path, spread), label in ((("slot", False), "slot (regent's join sequence)"),
                                      (("dynamic", False), "dynamic server (add server)"),
                                      (("dynamic", True), "dynamic server, max-spread-checks 1ms")):
            rs = results[(path, spread)]
            sec = "inter %d ms" % a.inter_ms
            for what, key in (("join command -> first check", "first"),
                              ("join command -> server UP", "up")):
                xs = [1000 * r[key] for r in rs if r[key] is not None]
                row = {"bench": "first-check", "section": sec, "metric": "%s: %s" % (label, what),
                       "n": len(xs), "unit": "ms"}
                if xs:
                    row.update({"p50": pct(xs, 50), "max": max(xs)})
                if len(xs) < len(rs):
                    row["note"] = "%d of %d never within %.0f s" % (len(rs) - len(xs), len(rs),
                                                                     timeout)
                f.write(json.dumps(row) + "\n")
            f.write(json.dumps({"bench": "first-check", "section": sec,
                                "metric": "%s: requests the joiner got before its first check" % label,
                                "value": sum(r["early"] for r in rs), "unit": "requests",
                                "target": "0",
                                "missed": "met" if sum(r["early"] for r in rs) == 0 else "MISSED"})
                    + "\n")
            f.write(json.dumps({"bench": "first-check", "section": sec,
                                "metric": "%s: client requests failed meanwhile" % label,
                                "value": results[(path, spread, "errors")], "unit": "requests",
                                "target": "0",
                                "missed": "met" if results[(path, spread, "errors")] == 0
                                else "MISSED"}) + "\n")
    shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
