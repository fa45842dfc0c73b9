#!/usr/bin/env python3
"""hostile_tool.py - helpers of `bench/run hostile` (etcd v3 JSON gateway, haproxy admin socket,
the agent's /healthz, /proc).  Loopback only, stdlib only.

  hostile_tool.py sample URL OUT                     GET URL every 50 ms for ever; one line per
                                                     request: start_ns latency_ns code (0 = failed)
  hostile_tool.py stall OUT T0_NS T1_NS              JSON: the samples overlapping [T0, T1]: n,
                                                     max_ms, p99_ms, failed, still_open_ms
  hostile_tool.py bulk EP PREFIX SVC N SPORT [RATE]  N instances of SVC (txns of 128 puts), at
                                                     most RATE keys a second (0 or none: as fast
                                                     as etcd takes them); prints start_ns end_ns
  hostile_tool.py meta EP KEY NPAIRS SEED            one instance value with NPAIRS meta pairs;
                                                     prints end_ns bytes
  hostile_tool.py big EP PREFIX N BYTES              N values of BYTES under PREFIX/bigNN/x;
                                                     prints start_ns end_ns
  hostile_tool.py put EP KEY VALUE                   one put; prints end_ns
  hostile_tool.py del EP KEY                         delete one key; prints end_ns
  hostile_tool.py change-wait EP KEY VALUE URL NAME N T  put KEY (VALUE - : delete), then poll
                                                     /metrics until NAME == N; prints the ms
                                                     from the write to the first poll seeing it
  hostile_tool.py wait-backend SOCK BACKEND N TIMEOUT  wall ns when BACKEND has >= N servers up (-0: none)
  hostile_tool.py wait-log FILE REGEX N TIMEOUT      wall ns when FILE holds >= N lines matching
  hostile_tool.py wait-metric URL SAMPLE N TIMEOUT  wall ns when /metrics SAMPLE >= N (-0: gone)
  hostile_tool.py cpu PID                            CPU ns of every thread of PID
  hostile_tool.py termstall PID URL STALL_MS WINDOW [LOG REGEX]
                                                     SIGTERM PID at the first /healthz request
                                                     open for STALL_MS (or after WINDOW s), or
                                                     as soon as LOG has a line matching REGEX;
                                                     JSON: trigger, at_ms (after the call), exit_ms
  hostile_tool.py delbulk EP PREFIX SVC N            delete what bulk wrote, 10,000 keys a request
"""
import base64
import http.client
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import urllib.parse

MAINT_OR_DRAIN = 0x23 | 0x18


def b64(s):
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


class Etcd:
    def __init__(self, ep):
        u = urllib.parse.urlsplit(ep)
        self.c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)

    def post(self, path, body):
        self.c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        r = self.c.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError("%s: %d %s" % (path, r.status, data[:200]))
        return json.loads(data)

    def put(self, key, value):
        return self.post("/v3/kv/put", {"key": b64(key), "value": b64(value)})


def inst_value(addr, port, sport, meta=None):
    return json.dumps({"address": addr, "port": port, "proto": "tcp", "service_port": sport,
                       "node": "hostile-node", "tags": [], "meta": meta or {}},
                      separators=(",", ":"))


def cpu_ns(pid):
    s = 0
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                s += int(f.read().split()[0])
        except OSError:
            pass
    return s


def http_get(url, timeout):
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        c.request("GET", u.path or "/")
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def cmd_sample(url, out):
    with open(out, "a", buffering=1) as f:
        while True:
            t0 = time.monotonic()
            s = time.time_ns()
            try:
                code = http_get(url, 120)
            except OSError:
                code = 0
            f.write("%d %d %d\n" % (s, time.time_ns() - s, code))
            time.sleep(max(0.0, 0.05 - (time.monotonic() - t0)))


def cmd_stall(out, t0, t1):
    xs, failed = [], 0
    last_end = 0
    up = False  # samples before the listener first answered (a starting agent) do not count
    for line in open(out):
        f = line.split()
        if len(f) != 3:
            continue
        s, lat, code = int(f[0]), int(f[1]), int(f[2])
        up = up or code != 0
        if not up:
            continue
        last_end = max(last_end, s + lat)
        if s <= t1 and s + lat >= t0:
            xs.append(lat / 1e6)
            failed += code == 0
    xs.sort()
    # a request still unanswered when the file was read: the sampler writes a line only at the end
    still = max(0.0, (time.time_ns() - last_end) / 1e6 - 50) if last_end else 0.0
    r = {"n": len(xs), "max_ms": xs[-1] if xs else None,
         "p99_ms": xs[int(0.99 * (len(xs) - 1))] if xs else None, "failed": failed,
         "still_open_ms": still}
    print(json.dumps(r))
    return 0


def cmd_bulk(ep, prefix, svc, n, sport, rate=0.0):
    e = Etcd(ep)
    ops = []
    t0 = time.time_ns()
    m0 = time.monotonic()
    for i in range(n):
        key = "%s/%s/hostile-node/i%06d/8000" % (prefix, svc, i)
        addr = "127.3.%d.%d" % (i // 250 % 250, i % 250 + 1)
        ops.append({"request_put": {"key": b64(key), "value": b64(inst_value(addr, 10000 + i // 62500, sport))}})
        if len(ops) == 128:
            e.post("/v3/kv/txn", {"success": ops})
            ops = []
            if rate > 0:  # paced: key i + 1 not before (i + 1) / rate s after the start
                time.sleep(max(0.0, m0 + (i + 1) / rate - time.monotonic()))
    if ops:
        e.post("/v3/kv/txn", {"success": ops})
    print(t0, time.time_ns())
    return 0


def cmd_meta(ep, key, npairs, seed):
    meta = {"k%05d" % j: "%s-%05d" % (seed, j) for j in range(npairs)}
    v = inst_value("127.4.0.1", 9000, 0, meta)
    Etcd(ep).put(key, v)
    print(time.time_ns(), len(v))
    return 0


def cmd_big(ep, prefix, n, nbytes):
    e = Etcd(ep)
    t0 = time.time_ns()
    for j in range(n):
        head = '{"address":"127.5.0.%d","port":9000,"meta":{"pad":"' % (j + 1)
        v = head + "x" * (nbytes - len(head) - 3) + '"}}'
        e.put("%s/big%02d/x" % (prefix, j), v)
    print(t0, time.time_ns())
    return 0


def cmd_put(ep, key, value):
    Etcd(ep).put(key, value)
    print(time.time_ns())
    return 0


def metric_value(url, name):
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        c.request("GET", u.path)
        txt = c.getresponse().read().decode("utf-8", "replace")
    finally:
        c.close()
    for line in txt.split("\n"):
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def cmd_change_wait(ep, key, value, url, name, want, timeout):
    """one put (value "-": a delete) of KEY, then /metrics polled every 10 ms from the same
    process until sample NAME == want; prints the ms from the end of the write to the first
    poll that saw it (no process start-up in between)"""
    e = Etcd(ep)
    if value == "-":
        e.post("/v3/kv/deleterange", {"key": b64(key)})
    else:
        e.put(key, value)
    t1 = time.monotonic()
    end = t1 + timeout
    while time.monotonic() < end:
        try:
            if metric_value(url, name) == want:
                print("%.1f" % ((time.monotonic() - t1) * 1000))
                return 0
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    return 1


def cmd_del(ep, key):
    Etcd(ep).post("/v3/kv/deleterange", {"key": b64(key)})
    print(time.time_ns())
    return 0


def admin(sock, cmd, timeout=10):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock)
        s.sendall(cmd.encode() + b"\n")
        s.shutdown(socket.SHUT_WR)
        out = []
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            out.append(b)
        return b"".join(out).decode("utf-8", "replace")
    finally:
        s.close()


def servers_up(txt):
    n = 0
    for line in txt.split("\n"):
        f = line.split(" ")
        if len(f) < 19 or line.startswith("#"):
            continue
        try:
            adm = int(f[6])
        except ValueError:
            continue
        if not adm & MAINT_OR_DRAIN and f[4] != "0.0.0.0":
            n += 1
    return n


def cmd_wait_backend(sock, backend, n, timeout):
    """n >= 0: at least n servers up; n given as -0: none up any more (or the backend gone)."""
    none = n == "-0"
    n = int(n)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            txt = admin(sock, "show servers state %s" % backend)
            if none and ("Can't find backend" in txt or servers_up(txt) == 0) or not none and servers_up(txt) >= n:
                print(time.time_ns())
                return 0
        except OSError:
            pass
        time.sleep(0.05)
    return 1


def cmd_wait_log(path, regex, n, timeout):
    rx = re.compile(regex)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with open(path, errors="replace") as f:
                if sum(1 for l in f if rx.search(l)) >= n:
                    print(time.time_ns())
                    return 0
        except OSError:
            pass
        time.sleep(0.02)
    return 1


def cmd_wait_metric(url, name, n, timeout):
    """wall ns when the /metrics sample NAME (exact, with labels) is >= n; n given as -0: when
    the sample is gone (or 0)."""
    none = n == "-0"
    n = float(n)
    u = urllib.parse.urlsplit(url)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
            c.request("GET", u.path)
            txt = c.getresponse().read().decode("utf-8", "replace")
            c.close()
            v = 0.0
            for line in txt.split("\n"):
                if line.startswith(name + " "):
                    v = float(line.split()[1])
            if none and v == 0 or not none and v >= n:
                print(time.time_ns())
                return 0
        except (OSError, ValueError):
            pass
        time.sleep(0.1)  # a scrape is work for the agent: 10 a second
    return 1


def gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def cmd_delbulk(ep, prefix, svc, n):
    """delete what `bulk` wrote, 10,000 keys a request (one request for all 100,000 exceeds
    etcd's own request timeout on a loaded machine)"""
    e = Etcd(ep)
    deleted = 0
    for lo in range(0, n, 10000):
        k0 = "%s/%s/hostile-node/i%06d" % (prefix, svc, lo)
        k1 = "%s/%s/hostile-node/i%06d" % (prefix, svc, min(n, lo + 10000))
        r = e.post("/v3/kv/deleterange", {"key": b64(k0), "range_end": b64(k1)})
        deleted += int(r.get("deleted", 0))
    print(time.time_ns(), deleted)
    return 0


def cmd_termstall(pid, url, stall_ms, window, log=None, regex=None):
    t_call = time.monotonic()
    if log:
        # the worst moment: right after the agent logged REGEX (its first read is complete:
        # the whole registry is being reported to the sinks), at once
        rx = re.compile(regex)
        while time.monotonic() - t_call < window:
            try:
                with open(log, errors="replace") as f:
                    if any(rx.search(l) for l in f):
                        break
            except OSError:
                pass
            time.sleep(0.005)
        stall_ms = 0
    state = {"open_since": None}
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            state["open_since"] = time.monotonic()
            try:
                http_get(url, 60)
            except OSError:
                pass
            state["open_since"] = None
            time.sleep(0.05)
    th = threading.Thread(target=poll, daemon=True)
    th.start()
    trigger = "window"
    while time.monotonic() - t_call < window:
        if log:
            trigger = "log"
            break
        o = state["open_since"]
        if o is not None and time.monotonic() - o >= stall_ms / 1000.0:
            trigger = "stall"
            break
        if gone(pid):
            print(json.dumps({"trigger": "exited before", "at_ms": None, "exit_ms": None}))
            return 1
        time.sleep(0.005)
    stop.set()
    t_term = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    while not gone(pid):
        if time.monotonic() - t_term > 120:
            break
        time.sleep(0.005)
    print(json.dumps({"trigger": trigger, "at_ms": (t_term - t_call) * 1000,
                      "exit_ms": (time.monotonic() - t_term) * 1000 if gone(pid) else None}))
    return 0


def main():
    a = sys.argv[1:]
    if not a:
        print(__doc__, file=sys.stderr)
        return 2
    c = a[0]
    if c == "sample":
        return cmd_sample(a[1], a[2])
    if c == "stall":
        return cmd_stall(a[1], int(a[2]), int(a[3]))
    if c == "bulk":
        return cmd_bulk(a[1], a[2], a[3], int(a[4]), int(a[5]), float(a[6]) if len(a) > 6 else 0.0)
    if c == "meta":
        return cmd_meta(a[1], a[2], int(a[3]), a[4])
    if c == "big":
        return cmd_big(a[1], a[2], int(a[3]), int(a[4]))
    if c == "put":
        return cmd_put(a[1], a[2], a[3])
    if c == "wait-backend":
        return cmd_wait_backend(a[1], a[2], a[3], float(a[4]))
    if c == "wait-log":
        return cmd_wait_log(a[1], a[2], int(a[3]), float(a[4]))
    if c == "wait-metric":
        return cmd_wait_metric(a[1], a[2], a[3], float(a[4]))
    if c == "change-wait":
        return cmd_change_wait(a[1], a[2], a[3], a[4], a[5], float(a[6]), float(a[7]))
    if c == "del":
        return cmd_del(a[1], a[2])
    if c == "delbulk":
        return cmd_delbulk(a[1], a[2], a[3], int(a[4]))
    if c == "cpu":
        print(cpu_ns(int(a[1])))
        return 0
    if c == "termstall":
        return cmd_termstall(int(a[1]), a[2], float(a[3]), float(a[4]), *a[5:7])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
