#!/usr/bin/env python3
"""scale_tool.py - helpers of the scale bench (etcd v3 JSON gateway, haproxy admin socket,
/proc).  Loopback only, stdlib only.

  scale_tool.py ports N LO HI RESERVED_FILE          N ports free on 127.0.0.1 in [LO, HI]
  scale_tool.py bulk EP PREFIX NSVC NINST PORTS      write NINST instances in NSVC services
  scale_tool.py wait-count EP PREFIX N TIMEOUT       wall ns when PREFIX holds >= N keys
  scale_tool.py range-floor EP PREFIX PAGE           what etcd needs to answer the agent's first
                                                     read: ms for every key under PREFIX in pages
                                                     of PAGE keys at one revision, each asked
                                                     after the last answer (as the agent does),
                                                     then ms for one range of them all; the
                                                     answers read whole, not parsed
  scale_tool.py rawreg EP PREFIX N                   the register side's floor: N keys under one
                                                     lease in 128-op txns, 16 in flight; seconds
  scale_tool.py watch-count EP PREFIX N TIMEOUT READY  wall ns when a watch saw N keys put under
                                                     PREFIX (touches READY once watching)
  scale_tool.py wait-config FILE N TIMEOUT           wall ns when FILE has N service listens
  scale_tool.py wait-serving SOCK N TIMEOUT          wall ns when haproxy routes to >= N servers
                                                     (the answer read whole; then its first byte)
  scale_tool.py changes EP PREFIX SOCK PID M OUT [NSVC]  M single-instance changes (join / leave)
                                                     in services fleet0000..NSVC-1 (1000)
  scale_tool.py newsvc EP PREFIX SOCK PID M PORTS OUT [LIMIT]  M new services (reload path) and
                                                     removals, each waited for LIMIT s (30)
  scale_tool.py quiet PID MS_PER_S TIMEOUT           wall ns and CPU ns when PID's CPU over the
                                                     last second fell to MS_PER_S ms/s or less
  scale_tool.py cpu PID                              CPU ns of every thread of PID

The fleet: service fleetNNNN (NNNN < NSVC) has instances fleet-node/iNNNNNN/8000 with
service_port = the service's own port (from PORTS, one per line), addresses in 127.1.0.0/16
(nothing listens there: health checks simply fail, see check_interval in the bench config;
"routes to" therefore means: the server is enabled at its address, whatever its check says).
"""
import base64
import http.client
import json
import os
import socket
import sys
import time
import urllib.parse

MAINT_OR_DRAIN = 0x23 | 0x18


def b64(s):
    return base64.b64encode(s.encode()).decode()


class Etcd:
    def __init__(self, ep):
        u = urllib.parse.urlsplit(ep)
        self.c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)

    def post(self, path, body):
        self.c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        r = self.c.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError("%s: %d %s" % (path, r.status, data[:200]))
        return json.loads(data)

    def count(self, prefix):
        r = self.post("/v3/kv/range", {"key": b64(prefix), "range_end": b64(prefix[:-1] + chr(ord(prefix[-1]) + 1)),
                                       "count_only": True})
        return int(r.get("count", 0))


def inst_value(addr, port, sport):
    return json.dumps({"address": addr, "port": port, "proto": "tcp", "service_port": sport,
                       "node": "fleet-node", "tags": [], "meta": {}}, separators=(",", ":"))


def addr_of(i):
    return "127.1.%d.%d" % (i // 250, i % 250 + 1)


def cpu_ns(pid):
    s = 0
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                s += int(f.read().split()[0])
        except OSError:
            pass
    return s


def admin(sock, cmd, timeout=5, first=None):
    """The answer to cmd; first (a list), if given, gets the wall ns of its first byte."""
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
            if first is not None and not out:
                first.append(time.time_ns())
            out.append(b)
        return b"".join(out).decode("utf-8", "replace")
    finally:
        s.close()


def servers_up(txt):
    """Servers haproxy has enabled at their address: admin state neither maintenance nor
    drain.  The operational state is ignored: nothing listens behind the synthetic fleet, so
    haproxy's own health checks fail; what regent controls is the admin state and address."""
    up = set()
    for line in txt.split("\n"):
        f = line.split(" ")
        if len(f) < 19 or line.startswith("#"):
            continue
        try:
            op, adm = int(f[5]), int(f[6])
        except ValueError:
            continue
        if not adm & MAINT_OR_DRAIN and f[4] != "0.0.0.0":
            up.add("%s %s:%s" % (f[1], f[4], f[18]))
    return up


def cmd_ports(n, lo, hi, reserved):
    import fcntl
    got = []
    with open(reserved, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        taken = {l.strip() for l in f if l.strip()}
        for p in range(lo, hi + 1):
            if len(got) == n:
                break
            if str(p) in taken:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
            finally:
                s.close()
            got.append(p)
        if len(got) == n:  # reserved only when all were found (the caller may try a wider range)
            for p in got:
                f.write("%d\n" % p)
    if len(got) < n:
        print("only %d free ports in %d-%d" % (len(got), lo, hi), file=sys.stderr)
        return 1
    print("\n".join(map(str, got)))
    return 0


def cmd_bulk(ep, prefix, nsvc, ninst, portsf):
    ports = [int(l) for l in open(portsf) if l.strip()]
    e = Etcd(ep)
    ops = []
    t0 = time.monotonic()
    for i in range(ninst):
        s = i % nsvc
        key = "%s/fleet%04d/fleet-node/i%06d/8000" % (prefix, s, i)
        ops.append({"request_put": {"key": b64(key), "value": b64(inst_value(addr_of(i), 10000 + i % 50000, ports[s]))}})
        if len(ops) == 128:
            e.post("/v3/kv/txn", {"success": ops})
            ops = []
    if ops:
        e.post("/v3/kv/txn", {"success": ops})
    print("%.3f" % (time.monotonic() - t0))
    return 0


def cmd_range_floor(ep, prefix, page):
    u = urllib.parse.urlsplit(ep)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    end = base64.b64encode(prefix_end(prefix + "/")).decode()

    def ask(body):
        c.request("POST", "/v3/kv/range", json.dumps(body), {"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError("range: %d %s" % (r.status, data[:200]))
        return data

    t0 = time.monotonic()
    key, rev = b64(prefix + "/"), 0
    while True:
        body = {"key": key, "range_end": end, "limit": page}
        if rev:
            body["revision"] = rev
        data = ask(body)
        # only what the next page needs: the revision and the last key
        # (a key's base64 has no quote; the answer lists kvs in key order)
        if not rev:
            i = data.find(b'"revision":"')
            rev = int(data[i + 12:data.index(b'"', i + 12)])
        more = b'"more":true' in data
        i = data.rfind(b'"key":"')
        if i < 0 or not more:
            break
        last = base64.b64decode(data[i + 7:data.index(b'"', i + 7)])
        key = base64.b64encode(last + b"\0").decode()
    t1 = time.monotonic()
    ask({"key": b64(prefix + "/"), "range_end": end, "revision": rev})
    t2 = time.monotonic()
    print("%.1f %.1f" % ((t1 - t0) * 1000, (t2 - t1) * 1000))
    return 0


def cmd_rawreg(ep, prefix, n):
    """What etcd itself needs for the register side's work: a plain client (no agent) grants a
    lease and writes n instance keys attached to it, in txns of 128 puts (etcd's
    --max-txn-ops default), 16 txns in flight (the etcd store's pipeline)."""
    import threading
    lease = Etcd(ep).post("/v3/lease/grant", {"TTL": 60})["ID"]
    bodies = []
    for s in range(0, n, 128):
        ops = []
        for i in range(s, min(n, s + 128)):
            key = "%s/svc%05d/raw/synth%07d/8000" % (prefix, i % max(1, n // 10), i)
            ops.append({"request_put": {"key": b64(key), "value": b64(inst_value("127.0.0.1", 10000 + i % 50000, 0)),
                                        "lease": lease}})
        bodies.append(json.dumps({"success": ops}))
    todo = list(range(len(bodies)))
    lock = threading.Lock()
    errs = []

    def worker():
        e = Etcd(ep)
        while True:
            with lock:
                if not todo:
                    return
                k = todo.pop()
            try:
                e.c.request("POST", "/v3/kv/txn", bodies[k], {"Content-Type": "application/json"})
                r = e.c.getresponse()
                r.read()
                if r.status != 200:
                    errs.append(r.status)
            except OSError as x:
                errs.append(str(x))

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker) for _ in range(16)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.monotonic() - t0
    Etcd(ep).post("/v3/lease/revoke", {"ID": lease})
    if errs:
        print("rawreg: %d txns failed: %s" % (len(errs), errs[:3]), file=sys.stderr)
        return 1
    print("%.3f" % dt)
    return 0


def cmd_wait_count(ep, prefix, n, timeout):
    e = Etcd(ep)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if e.count(prefix) >= n:
            print(time.time_ns())
            return 0
        time.sleep(0.01)
    return 1


def prefix_end(prefix):
    b = bytearray(prefix.encode())
    b[-1] += 1
    return bytes(b)


def cmd_watch_count(ep, prefix, n, timeout, ready):
    """Wall ns when a watch on PREFIX has seen puts of N distinct keys.  Unlike polling a count
    (a range over every key, 100 times a second), a watch costs etcd almost nothing while the
    agent writes.  Touches READY once the watch is in place."""
    u = urllib.parse.urlsplit(ep)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    body = {"create_request": {"key": b64(prefix),
                               "range_end": base64.b64encode(prefix_end(prefix)).decode()}}
    c.request("POST", "/v3/watch", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    end = time.monotonic() + timeout
    seen = set()
    while time.monotonic() < end:
        line = r.readline()
        if not line:
            break
        m = json.loads(line).get("result", {})
        if m.get("created"):
            open(ready, "w").close()
        for ev in m.get("events", []):
            if ev.get("type", "PUT") == "PUT":
                seen.add(ev["kv"]["key"])
        if len(seen) >= n:
            print(time.time_ns())
            return 0
    return 1


def cmd_wait_config(path, n, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with open(path) as f:
                txt = f.read()
            if txt.count("\nlisten fleet") >= n:
                print(time.time_ns())
                return 0
        except OSError:
            pass
        time.sleep(0.005)
    return 1


def cmd_wait_serving(sock, n, timeout):
    """Prints when the answer that lists n servers routed had been read whole, and when its
    first byte came (haproxy's worker was answering, every server routed: the dump of
    16,000 servers then takes 0.1-1 s to read)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            first = []
            if len(servers_up(admin(sock, "show servers state", first=first))) >= n:
                print(time.time_ns(), first[0])
                return 0
        except OSError:
            pass
        time.sleep(0.05)
    return 1


def wait_state(sock, backend, key, want_up, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            up = key in servers_up(admin(sock, "show servers state %s" % backend))
            if up == want_up:
                return time.time_ns()
        except OSError:
            pass
        time.sleep(0.002)
    return None


def settle_cpu(pid, idle_ns_per_s, limit_s=5.0, not_before=0.0):
    """CPU ns of PID once it is back to its idle rate: the CPU it used over the last 200 ms is
    at most what idling costs in 200 ms plus 0.5 ms (or after limit_s); not before the
    monotonic time not_before."""
    end = time.monotonic() + limit_s
    hist = [(time.monotonic(), cpu_ns(pid))]
    while time.monotonic() < end:
        time.sleep(0.05)
        hist.append((time.monotonic(), cpu_ns(pid)))
        old = [h for h in hist if hist[-1][0] - h[0] >= 0.2]
        if old and hist[-1][0] >= not_before:
            t, c = old[-1]
            if hist[-1][1] - c <= idle_ns_per_s * (hist[-1][0] - t) + 500000:
                return hist[-1][1]
    return hist[-1][1]


def idle_rate(pid, seconds=3.0):
    c0, t0 = cpu_ns(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_ns(pid) - c0) / (time.monotonic() - t0)  # ns of CPU per second


POLL_METRIC = "regent_haproxy_state_poll_cpu_seconds_total"


class PollMeter:
    """The agent's CPU ns on the haproxy sink's background state poll so far (its counter
    regent_haproxy_state_poll_cpu_seconds_total, summed over sink instances; 0 without the
    metric or URL), read over one kept-alive connection, so that the scrape leaves no connection
    to close in the window that follows it (its CPU falls before the reading of the agent's
    CPU that opens a window, or after the one that closes it)."""

    def __init__(self, url, pid):
        self.u = urllib.parse.urlsplit(url) if url else None
        self.c = None
        self.pid = pid
        self.scrape_ns = 0  # the agent's CPU over the scrapes (~2 ms each at 10,000 instances)

    def ns(self):
        if not self.u:
            return 0
        c0 = cpu_ns(self.pid)
        try:
            return self._read()
        finally:
            self.scrape_ns += cpu_ns(self.pid) - c0

    def _read(self):
        for _ in range(2):  # once more on a connection the agent closed (idle timeout)
            try:
                if self.c is None:
                    self.c = http.client.HTTPConnection(self.u.hostname, self.u.port, timeout=10)
                self.c.request("GET", self.u.path or "/metrics")
                r = self.c.getresponse()
                text = r.read().decode()
                return int(round(sum(float(ln.split()[-1]) for ln in text.splitlines()
                                     if ln.startswith(POLL_METRIC + "{")) * 1e9))
            except (OSError, http.client.HTTPException, ValueError):
                if self.c:
                    self.c.close()
                self.c = None
        return 0


def idle_rate_poll(pid, meter, seconds):
    """The idle rate (ns of CPU per second) and the poll's CPU ns over the same window."""
    p0 = meter.ns()
    c0, t0 = cpu_ns(pid), time.monotonic()
    time.sleep(seconds)
    c1, t1 = cpu_ns(pid), time.monotonic()
    p1 = meter.ns()
    return (c1 - c0) / (t1 - t0), p1 - p0, t1 - t0


def cmd_quiet(pid, max_ms_per_s, timeout):
    """Wall ns and CPU ns when PID's CPU over the last second fell below max_ms_per_s."""
    end = time.monotonic() + timeout
    hist = [(time.monotonic(), cpu_ns(pid))]
    while time.monotonic() < end:
        time.sleep(0.1)
        hist.append((time.monotonic(), cpu_ns(pid)))
        old = [h for h in hist if hist[-1][0] - h[0] >= 1.0]
        if old:
            t, c = old[-1]
            if (hist[-1][1] - c) / (hist[-1][0] - t) <= max_ms_per_s * 1e6:
                print(time.time_ns(), hist[-1][1])
                return 0
    print(0, hist[-1][1])
    return 1


# The idle rate is read IDLE_SETTLE_S after the cold start's quiet point, over IDLE_WINDOW_S, and
# again after the changes.  The haproxy sink's first state poll of every server (and the
# publication of every server's state) comes one server_state_interval (5 s) after its first
# try, which fails while haproxy starts: at 10,000 instances on a quiet machine it fell inside
# the 3-s idle window that followed the quiet point at once, and the bench subtracted it from
# every change (21 ms/s of "idle" against 4-6 ms/s measured later).  The window covers two
# state-poll intervals, whose chunks of servers are spread over the interval.
IDLE_SETTLE_S = 6.0
IDLE_WINDOW_S = 10.0
# A change's window ends no sooner than this after its write: the haproxy sink reads the changed
# servers' state back 300 ms after a change (annot.c POKE_MS, answer read 20 ms later), work the
# change causes.  Without the floor a join's window (quiet 200 ms after the write) closed before
# that read, which then fell between two windows, counted in none; a leave's (its drain poll at
# +100 ms keeps it busy longer) mostly held it (session 12).
CHANGE_TAIL_S = 0.45


def proxy_snap(path):
    """[requests, up_bytes, down_bytes] of countproxy's STATS.json (rewritten every 100 ms while
    something changed: read 250 ms after the moment it stands for)."""
    time.sleep(0.25)
    try:
        with open(path) as f:
            st = json.load(f)
        return [st["requests"], st["up_bytes"], st["down_bytes"]]
    except (OSError, ValueError, KeyError):
        return None


class SyscallCount:
    """perf stat -e raw_syscalls:sys_enter,syscalls:sys_enter_connect,context-switches -p PID
    from start() to stop(): the system calls, the connect() among them, and the agent's
    threads' context switches (each sleep and wakeup: the loop's and the pool's hand-offs), as
    (all, connects, switches)."""
    def __init__(self, pid, path):
        self.pid, self.path, self.p = pid, path, None

    def start(self):
        import subprocess
        self.p = subprocess.Popen(["perf", "stat", "-x,", "-e",
                                   "raw_syscalls:sys_enter,syscalls:sys_enter_connect,context-switches",
                                   "-p", str(self.pid),
                                   "-o", self.path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)  # perf attached

    def stop(self):
        import signal
        self.p.send_signal(signal.SIGINT)
        self.p.wait(timeout=30)
        n = {}
        with open(self.path) as f:
            for line in f:
                x = line.split(",")
                if len(x) > 2 and x[0].isdigit():
                    n[x[2].split("/")[0]] = int(x[0])
        return [n.get("raw_syscalls:sys_enter"), n.get("syscalls:sys_enter_connect"),
                n.get("context-switches")]


class StraceCount:
    """strace -f -c -p PID from start() to stop(), its table written to PREFIX.NAME (the
    system calls by name, every thread: SC_STRACE=PREFIX, for profiling; it slows the agent, so
    the CPU figures of such a run are not to be used); SC_STRACE_TT=1: every call, timed."""
    def __init__(self, pid, prefix):
        self.pid, self.prefix, self.p = pid, prefix, None

    def start(self, name):
        import subprocess
        how = ["-tt", "-e", "trace=!clock_nanosleep"] if os.environ.get("SC_STRACE_TT") else ["-c"]
        self.p = subprocess.Popen(["strace", "-f"] + how + ["-o", "%s.%s" % (self.prefix, name),
                                   "-p", str(self.pid)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # attached

    def stop(self):
        import signal
        self.p.send_signal(signal.SIGINT)
        self.p.wait(timeout=30)


class CallgrindCount:
    """The user-space instructions of a callgrind-run PID between zero() and dump() (its
    "totals:" line; callgrind_control -z / -d; dumps are OUT.1, OUT.2, ...)."""
    def __init__(self, pid, out):
        self.pid, self.out, self.n = pid, out, 0

    def zero(self):
        import subprocess
        subprocess.run(["callgrind_control", "-z", str(self.pid)], stdout=subprocess.DEVNULL, check=False)

    def dump(self):
        import subprocess
        subprocess.run(["callgrind_control", "-d", str(self.pid)], stdout=subprocess.DEVNULL, check=False)
        self.n += 1
        path = "%s.%d" % (self.out, self.n)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                with open(path) as f:
                    for line in f:
                        if line.startswith("totals:"):
                            return int(line.split()[1])
            except OSError:
                pass
            time.sleep(0.2)
        return None


def change_target(e, prefix, j, nsvc):
    """The j-th change's service, key, service port (from any existing instance) and address."""
    svc = "fleet%04d" % ((j * 37) % nsvc)
    key = "%s/%s/fleet-node/x%06d/8000" % (prefix, svc, 900000 + j)
    r = e.post("/v3/kv/range", {"key": b64("%s/%s/" % (prefix, svc)),
                                "range_end": b64("%s/%s0" % (prefix, svc)), "limit": 1})
    sport = json.loads(base64.b64decode(r["kvs"][0]["value"]))["service_port"]
    return svc, key, sport, "127.2.%d.%d" % (j // 250, j % 250 + 1), 20000 + j


def one_change(e, prefix, sock, j, nsvc, kinds):
    svc, key, sport, addr, port = change_target(e, prefix, j, nsvc)
    for kind in kinds:
        if kind == "join":
            e.post("/v3/kv/put", {"key": b64(key), "value": b64(inst_value(addr, port, sport))})
        else:
            e.post("/v3/kv/deleterange", {"key": b64(key)})
        wait_state(sock, svc, "%s %s:%d" % (svc, addr, port), kind == "join")
    time.sleep(1.0)


def cmd_changes(ep, prefix, sock, pid, m, out, nsvc=1000):
    """Environment (all optional): SC_PROXY_STATS: countproxy's STATS.json, read around the change
    loop only; SC_SYSCALLS=1: perf stat raw_syscalls:sys_enter over the first idle window and over
    the change loop; SC_CALLGRIND=OUT: the agent runs under callgrind (--callgrind-out-file=OUT):
    its instructions over the same two windows; SC_METRICS_URL: the agent's /metrics, whose
    haproxy state-poll CPU counter is read around each change window and each idle window (the
    poll's CPU then comes out of a change's, and out of the idle rate subtracted)."""
    e = Etcd(ep)
    extra = {}
    if os.environ.get("SC_WARMUP") == "1":
        # One join and leave before the windows (bench/run scale --state-interval): the status
        # page's first whole poll, which a long interval leaves to the first change, comes now.
        one_change(e, prefix, sock, m + 1, nsvc, ("join", "leave"))
    sysc = SyscallCount(pid, out + ".perf") if os.environ.get("SC_SYSCALLS") == "1" else None
    cg = CallgrindCount(pid, os.environ["SC_CALLGRIND"]) if os.environ.get("SC_CALLGRIND") else None
    meter = PollMeter(os.environ.get("SC_METRICS_URL"), pid)
    st = StraceCount(pid, os.environ["SC_STRACE"]) if os.environ.get("SC_STRACE") else None
    time.sleep(IDLE_SETTLE_S)
    if st:
        st.start("idle")
    if sysc:
        sysc.start()
    if cg:
        cg.zero()
    t = time.monotonic()
    idle_before, poll_before, idle_before_s = idle_rate_poll(pid, meter, IDLE_WINDOW_S)
    if cg:
        extra["cg_idle"] = cg.dump()
    if sysc:
        extra["sc_idle"] = sysc.stop()
    if st:
        st.stop()
        st.start("loop")
    extra["idle_s"] = time.monotonic() - t
    idle = idle_before
    samples = []
    if os.environ.get("SC_PROXY_STATS"):
        extra["proxy0"] = proxy_snap(os.environ["SC_PROXY_STATS"])
    if sysc:
        sysc.start()
    if cg:
        cg.zero()
    pp0 = meter.ns()
    sc0 = meter.scrape_ns
    p0c, p0t = cpu_ns(pid), time.monotonic()
    for j in range(m):
        svc, key, sport, addr, port = change_target(e, prefix, j, nsvc)
        hk = "%s %s:%d" % (svc, addr, port)
        for kind in ("join", "leave"):
            settle_cpu(pid, idle)
            # the poll's counter read just before the window opens and just after it closes
            # (not when it stood still over the idle window: --state-interval 1h, whose
            # per-change system calls the scrapes would swell)
            q0 = meter.ns() if poll_before else 0
            c0 = cpu_ns(pid)
            t0c = time.monotonic()
            t0 = time.time_ns()
            if kind == "join":
                e.post("/v3/kv/put", {"key": b64(key), "value": b64(inst_value(addr, port, sport))})
            else:
                e.post("/v3/kv/deleterange", {"key": b64(key)})
            ta = time.time_ns()  # etcd answered the write (committed: its WAL synced)
            t1 = wait_state(sock, svc, hk, kind == "join")
            c1 = settle_cpu(pid, idle, not_before=t0c + CHANGE_TAIL_S)
            dt = time.monotonic() - t0c
            q1 = meter.ns() if poll_before else 0
            samples.append({"kind": kind, "ms": (t1 - t0) / 1e6 if t1 else None, "ack_ms": (ta - t0) / 1e6,
                            "cpu_ms": (c1 - c0) / 1e6, "window_ms": dt * 1000,
                            "poll_ms": (q1 - q0) / 1e6})
    p1c, p1t = cpu_ns(pid), time.monotonic()
    sc1 = meter.scrape_ns  # the scrapes around each window, in the phase (not in a window)
    pp1 = meter.ns()
    if cg:
        extra["cg_loop"] = cg.dump()
    if sysc:
        extra["sc_loop"] = sysc.stop()
    if st:
        st.stop()
    if os.environ.get("SC_PROXY_STATS"):
        extra["proxy1"] = proxy_snap(os.environ["SC_PROXY_STATS"])
    if cg:
        cg.zero()
    idle_after, poll_after, idle_after_s = idle_rate_poll(pid, meter, IDLE_WINDOW_S)
    if cg:
        # Under valgrind the agent runs ~50x slower: the first idle window may still hold the
        # tail of the warm-up (--state-interval: the status page's first whole poll), so the
        # instructions are counted idle after the loop too (scale.sh subtracts the lower rate)
        extra["cg_idle_after"] = cg.dump()
        extra["cg_idle_after_s"] = idle_after_s
    idle = (idle_before + idle_after) / 2
    # the idle rate without the poll: what the agent spends idle on anything else
    idle_np = (idle_before * idle_before_s - poll_before + idle_after * idle_after_s - poll_after) / (
        idle_before_s + idle_after_s)
    for s in samples:  # the mean of both idle windows is subtracted
        s["idle_ms"] = idle * s["window_ms"] / 1e3 / 1e6
        s["idle_np_ms"] = idle_np * s["window_ms"] / 1e3 / 1e6
    with open(out, "w") as f:
        json.dump({"idle_ns_per_s": idle, "idle_before_ns_per_s": idle_before,
                   "idle_after_ns_per_s": idle_after, "phase_cpu_ns": p1c - p0c,
                   "idle_nopoll_ns_per_s": idle_np, "poll_metric": bool(meter.u),
                   "poll_idle_ns": [poll_before, poll_after],
                   "idle_windows_s": [idle_before_s, idle_after_s], "phase_poll_ns": pp1 - pp0, "phase_scrape_ns": sc1 - sc0,
                   "phase_s": p1t - p0t, "samples": samples, **extra}, f)
    return 0


def refuses(port):
    """The service's listener (bind_address 127.0.0.1) refuses a connection."""
    c = socket.socket()
    c.settimeout(1.0)
    try:
        c.connect(("127.0.0.1", port))
        return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    finally:
        c.close()


def cmd_newsvc(ep, prefix, sock, pid, m, portsf, out, limit=30.0):
    e = Etcd(ep)
    idle = idle_rate(pid, 2.0)
    ports = [int(l) for l in open(portsf) if l.strip()][-m:]  # the last M: not the fleet's
    samples = []
    for j in range(m):
        svc = "fleetnew%02d" % j
        key = "%s/%s/fleet-node/n%06d/8000" % (prefix, svc, j)
        addr, port = "127.3.0.%d" % (j + 1), 21000 + j
        hk = "%s %s:%d" % (svc, addr, port)
        for kind in ("add", "remove"):
            c0 = settle_cpu(pid, idle)
            t0c = time.monotonic()
            t0 = time.time_ns()
            if kind == "add":
                e.post("/v3/kv/put", {"key": b64(key), "value": b64(inst_value(addr, port, ports[j]))})
                t1 = wait_state(sock, svc, hk, True, timeout=limit)
            else:
                e.post("/v3/kv/deleterange", {"key": b64(key)})
                t1 = t1r = None
                end = time.monotonic() + limit
                while time.monotonic() < end:  # the listen section is gone after the reload
                    if t1r is None and refuses(ports[j]):  # its listener closed
                        t1r = time.time_ns()
                    try:
                        if "Can't find backend" in admin(sock, "show servers state %s" % svc):
                            t1 = time.time_ns()
                            if t1r is None and refuses(ports[j]):
                                t1r = t1
                            break
                    except OSError:
                        pass
                    time.sleep(0.005)
                while kind == "remove" and t1r is None and time.monotonic() < end:
                    if refuses(ports[j]):  # without the runtime close: after the reload
                        t1r = time.time_ns()
                    else:
                        time.sleep(0.005)
            c1 = settle_cpu(pid, idle, limit_s=max(15.0, limit / 2))
            dt = time.monotonic() - t0c
            samples.append({"kind": kind, "ms": (t1 - t0) / 1e6 if t1 else None,
                            "refused_ms": (t1r - t0) / 1e6 if kind == "remove" and t1r else None,
                            "cpu_ms": (c1 - c0) / 1e6, "idle_ms": idle * dt / 1e6,
                            "window_ms": dt * 1000})
    with open(out, "w") as f:
        json.dump({"samples": samples}, f)
    return 0


def main():
    a = sys.argv[1:]
    c = a[0]
    if c == "ports":
        return cmd_ports(int(a[1]), int(a[2]), int(a[3]), a[4])
    if c == "bulk":
        return cmd_bulk(a[1], a[2], int(a[3]), int(a[4]), a[5])
    if c == "range-floor":
        return cmd_range_floor(a[1], a[2], int(a[3]))
    if c == "rawreg":
        return cmd_rawreg(a[1], a[2], int(a[3]))
    if c == "wait-count":
        return cmd_wait_count(a[1], a[2], int(a[3]), float(a[4]))
    if c == "watch-count":
        return cmd_watch_count(a[1], a[2], int(a[3]), float(a[4]), a[5])
    if c == "wait-config":
        return cmd_wait_config(a[1], int(a[2]), float(a[3]))
    if c == "wait-serving":
        return cmd_wait_serving(a[1], int(a[2]), float(a[3]))
    if c == "changes":
        return cmd_changes(a[1], a[2], a[3], int(a[4]), int(a[5]), a[6], *(int(x) for x in a[7:8]))
    if c == "newsvc":
        return cmd_newsvc(a[1], a[2], a[3], int(a[4]), int(a[5]), a[6], a[7], *(float(x) for x in a[8:9]))
    if c == "quiet":
        return cmd_quiet(int(a[1]), float(a[2]), float(a[3]))
    if c == "cpu":
        print(cpu_ns(int(a[1])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
