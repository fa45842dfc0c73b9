#!/usr/bin/env python3
"""Helpers for the haproxy sink's tests (stdlib only).

  hxtool.py backend PORT NAME [PORT NAME ...]
      HTTP/1.1 server on 127.0.0.1:PORT answering NAME (GET /slow waits 1.5 s first;
      GET /hold?PATH waits until the file PATH exists, at most 50 s); several in one process.
  hxtool.py rr URL N
      N GETs (new connection each); prints "NAME COUNT" per answer, sorted, and
      "errors N".
  hxtool.py servers SOCK BACKEND
      "show servers state BACKEND" as "name addr:port op admin" lines.
  hxtool.py write-wait FILE TEXT SOCK BACKEND ADDR:PORT (up|down) TIMEOUT_MS
      Writes TEXT to FILE (atomically), then polls the admin socket every 2 ms until
      a server of BACKEND at ADDR:PORT is up (ready, admin 0) / down (no server
      there is ready or draining); prints the milliseconds that took, exit 1 on timeout.
  hxtool.py wait-down SOCK BACKEND ADDR:PORT TIMEOUT_MS
      Waits until no server of BACKEND at ADDR:PORT is in use any more (maint).
  hxtool.py wait-ready SOCK BACKEND ADDR:PORT TIMEOUT_MS
      Waits until a server of BACKEND at ADDR:PORT is ready (admin state; its check may be
      pending).
  hxtool.py get URL [TIMEOUT_S]
      One GET (socket timeout TIMEOUT_S, default 10): prints "STATUS BODY".
  hxtool.py churn FILE SOCK BACKEND DURATION_S PERIOD_MS KEEP [SVC:PORT:START_S ...]
      Every PERIOD_MS: a new backend process (forked, listening at once) joins BACKEND as
      instance churn-N in FILE and, if the admin socket shows the previous newcomer up (start
      first, as a rolling update with health checks; never waited for: the oldest stay until a
      later tick, a newcomer not up within 3 s counts as notup), the oldest beyond KEEP
      leaves; the leaving
      backend is killed (SIGKILL) only once the admin socket SOCK shows it in maintenance
      (polled every 5 ms between ticks: a removal never delays the next tick).
      Each SVC:PORT:START_S adds an instance of service SVC (a backend on PORT) at START_S.
      Then the backends in the catalog keep serving until FILE.stop exists.
      Prints what it did; exit 1 if a backend never reached maintenance.
  hxtool.py late-backend PORT NAME GATE STAMP
      Holds 127.0.0.1:PORT bound but not listening (a connection is refused) until the file
      GATE exists (at most 60 s), then listens, writes the wall-clock time it started
      listening to STAMP and serves NAME like `backend`.
  hxtool.py pid SOCK
      The pid of the worker answering on the admin socket SOCK ("show info").
  hxtool.py watch SOCK MAX_S OUT URL...
      Until OUT.stop exists (at most MAX_S): one client per URL sends GETs one after the other (new connection each,
      timeout 5 s), and every 50 ms the admin socket SOCK is asked "show info; show servers
      state; show stat": OUT gets one line per server, "TIME PID PROXY SERVER ADDR:PORT LBTOT
      STATUS" (wall clock; PID the worker that answered; STATUS as show stat words it).
      Prints per URL "load URL ok=N fail=M" then one "body URL NAME COUNT" per answer.
  hxtool.py silent SOCK
      A unix socket at SOCK that accepts every connection and never answers nor closes it
      (an admin socket that hangs).
"""
import random
import signal
import threading
import http.client
import http.server
import os
import socket
import socketserver
import sys
import time
import urllib.parse


def unix_cmd(path, cmd, timeout=5.0):
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
        return out.decode(errors="replace")
    finally:
        s.close()


def servers(sock, backend):
    """[(name, addr, port, op_state, admin_state)] of a backend."""
    try:
        out = unix_cmd(sock, "show servers state %s" % backend)
    except OSError:
        return None
    res = []
    for line in out.splitlines():
        f = line.split()
        if len(f) < 19 or line.startswith("#"):
            continue
        res.append((f[3], f[4], int(f[18]), int(f[5]), int(f[6])))
    return res


def backend(port, name):
    body = (name + "\n").encode()

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self):
            if self.path.startswith("/slow"):
                time.sleep(1.5)
            elif self.path.startswith("/hold?"):
                # held until the test creates the gate file (at most 50 s)
                gate = urllib.parse.unquote(self.path[len("/hold?"):])
                end = time.monotonic() + 50
                while not os.path.exists(gate) and time.monotonic() < end:
                    time.sleep(0.02)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 256

        def handle_error(self, request, client_address):
            pass  # health checks and clients that reset: not the test's business

    return S(("127.0.0.1", port), H)


def backends(pairs):
    """Several backends in one process (one python start instead of one each: 0.1 s of CPU
    each quiet, seconds on a loaded machine); each listens before any serves."""
    servers_ = [backend(int(port), name) for port, name in pairs]
    threads = [threading.Thread(target=srv.serve_forever, daemon=True) for srv in servers_[1:]]
    for t in threads:
        t.start()
    servers_[0].serve_forever()


def serve_on(sock, name):
    """Child process: serve name on an already listening socket until killed."""
    body = (name + "\n").encode()

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address):
            pass

    srv = S(("127.0.0.1", 0), H, bind_and_activate=False)
    srv.socket.close()
    srv.socket = sock
    srv.server_address = sock.getsockname()
    srv.serve_forever()


def listen_free():
    """A listening socket on 127.0.0.1, port in 20000-32000 (below the ephemeral range)."""
    for _ in range(2000):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", random.randint(20000, 32000)))
            s.listen(256)
            return s
        except OSError:
            s.close()
    raise SystemExit("no free port")


def spawn(name):
    sock = listen_free()
    pid = os.fork()
    if pid == 0:
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            serve_on(sock, name)
        finally:
            os._exit(0)
    port = sock.getsockname()[1]
    sock.close()
    return pid, port


def churn(path, sock, be, duration, period_ms, keep, extras):
    children = {}

    def cleanup(*_):
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        os._exit(3)

    signal.signal(signal.SIGTERM, cleanup)
    extra = []
    for spec in extras:
        svc, port, at = spec.split(":")
        extra.append([float(at), svc, int(port), False])
    active = []  # (n, pid, port), oldest first
    n = 0
    for _ in range(keep):
        pid, port = spawn("churn-%d" % n)
        children[pid] = port
        active.append((n, pid, port))
        n += 1

    def write():
        lines = ["churn-%d %s 127.0.0.1 %d" % (k, be, p) for k, _, p in active]
        lines += ["x-%s %s 127.0.0.1 %d" % (e[1], e[1], e[2]) for e in extra if e[3]]
        write_atomic(path, "\n".join(lines) + "\n")

    write()
    start = time.monotonic()
    added = removed = killed = late = stuck = notup = 0
    waits, upwaits = [], []
    prev = None  # (port, joined at) of the newcomer not seen up yet
    # Removed from the catalog, not yet killed: (n, pid, port, removed at).  Each is killed once
    # the admin socket shows it in maintenance (or counted stuck after 5 s).  Never waited for
    # inside a tick: a removal waits for regent and haproxy, and a tick blocked on it started
    # the next ones late (late=20 of 60 at load 7-16), the driver's schedule then measuring
    # regent's latency under load instead of keeping the churn's pace.
    leaving = []

    def reap():
        nonlocal stuck, killed
        sv = servers(sock, be)
        now = time.monotonic()
        for item in list(leaving):
            k, pid, port, t0 = item
            here = [x for x in (sv or []) if x[1] == "127.0.0.1" and x[2] == port]
            if sv is not None and all(x[4] & 0x01 for x in here):
                pass
            elif now - t0 > 5:
                stuck += 1
            else:
                continue
            waits.append((now - t0) * 1000)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            del children[pid]
            killed += 1
            leaving.remove(item)

    def sleep_until(t):
        # polls the leaving backends every 5 ms meanwhile
        while True:
            if leaving:
                reap()
            now = time.monotonic()
            if now >= t:
                return
            time.sleep(min(t - now, 0.005) if leaving else t - now)

    tick = start
    while tick + period_ms / 1000.0 <= start + duration:
        if time.monotonic() >= tick:
            late += 1   # this tick starts behind schedule
        sleep_until(tick)
        tick += period_ms / 1000.0
        for e in extra:
            if not e[3] and time.monotonic() - start >= e[0]:
                e[3] = True
        pid, port = spawn("churn-%d" % n)
        children[pid] = port
        active.append((n, pid, port))
        n += 1
        write()
        added += 1
        # Start first, as a rolling update with health checks does: the oldest leaves once the
        # previous tick's newcomer is up in haproxy (a joining server of a service with a check
        # is pending until its check passed).  Never waited for: while it is not up (a reload
        # under way), the oldest stay and leave at a later tick; after 3 s it counts as notup.
        if prev:
            if state_ok(sock, be, "127.0.0.1", prev[0], "up"):
                upwaits.append((time.monotonic() - prev[1]) * 1000)
                prev = None
            elif time.monotonic() - prev[1] > 3:
                notup += 1
                prev = None
        if not prev:
            prev = (port, time.monotonic())
        up = prev[0] == port  # every earlier newcomer was seen up
        # at most 4 extra instances wait for it; beyond, the oldest leave anyway
        while len(active) > keep and (up or len(active) > keep + 4):
            old = active.pop(0)
            write()
            removed += 1
            leaving.append(old + (time.monotonic(),))
    while leaving:
        sleep_until(time.monotonic() + 0.005)
    # The backends still in the catalog keep serving until the test says stop.
    stop = path + ".stop"
    deadline = time.monotonic() + 50
    while not os.path.exists(stop) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in list(children):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    waits.sort()
    upwaits.sort()
    print("added=%d removed=%d killed=%d late=%d stuck=%d notup=%d extras=%d "
          "maint_wait_ms_median=%.1f maint_wait_ms_max=%.1f "
          "up_wait_ms_median=%.1f up_wait_ms_max=%.1f" %
          (added, removed, killed, late, stuck, notup, sum(1 for e in extra if e[3]),
           waits[len(waits) // 2] if waits else 0, waits[-1] if waits else 0,
           upwaits[len(upwaits) // 2] if upwaits else 0, upwaits[-1] if upwaits else 0))
    return 1 if stuck else 0


def get(url, timeout=5.0):
    u = url.split("/", 3)
    host, port = u[2].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        c.request("GET", "/" + (u[3] if len(u) > 3 else ""))
        r = c.getresponse()
        return r.status, r.read().decode(errors="replace").strip()
    finally:
        c.close()


def rr(url, n):
    counts, errors = {}, 0
    for _ in range(n):
        try:
            st, body = get(url)
            key = body if st == 200 else "status-%d" % st
            counts[key] = counts.get(key, 0) + 1
        except OSError:
            errors += 1
    for k in sorted(counts):
        print(k, counts[k])
    print("errors", errors)


def state_ok(sock, be, addr, port, want):
    sv = servers(sock, be)
    if sv is None:
        return False
    here = [s for s in sv if s[1] == addr and s[2] == port]
    if want == "up":
        return any(s[3] == 2 and (s[4] & 0x2b) == 0 for s in here)
    if want == "ready":  # admin ready (its health check may still be pending)
        return any((s[4] & 0x2b) == 0 for s in here)
    if want == "down":  # neither ready nor draining: no new request reaches it
        return not any((s[4] & 0x2b) == 0 for s in here)
    if want == "maint":  # in maintenance (drained) or gone
        return all(s[4] & 0x01 for s in here)
    raise SystemExit("bad state " + want)


def wait_state(sock, be, hostport, want, timeout_ms, start):
    addr, port = hostport.rsplit(":", 1)
    deadline = start + timeout_ms / 1000.0
    while True:
        if state_ok(sock, be, addr, int(port), want):
            print("%.1f" % ((time.monotonic() - start) * 1000))
            return 0
        if time.monotonic() > deadline:
            print("timeout")
            return 1
        time.sleep(0.002)


def late_backend(port, name, gate, stamp):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))  # bound, not listening: a connection is refused
    end = time.monotonic() + 60
    while not os.path.exists(gate) and time.monotonic() < end:
        time.sleep(0.01)
    s.listen(256)
    write_atomic(stamp, "%.3f\n" % time.time())
    serve_on(s, name)


def stat_sample(sock):
    """[(pid, px, sv, "addr:port", lbtot, status)] from one admin-socket request."""
    out = unix_cmd(sock, "show info;show servers state;show stat", timeout=2.0)
    pid, where, rows = 0, {}, []
    for line in out.splitlines():
        if line.startswith("Pid: "):
            pid = int(line[5:])
            continue
        f = line.split()
        if len(f) >= 19 and f[0].isdigit():
            where[(f[1], f[3])] = "%s:%s" % (f[4], f[18])
            continue
        c = line.split(",")
        if len(c) > 30 and not line.startswith("#") and c[1] not in ("FRONTEND", "BACKEND"):
            rows.append((c[0], c[1], c[30] or "0", c[17]))
    return [(pid, px, sv, where.get((px, sv), "-"), lb, st) for px, sv, lb, st in rows]


def watch(sock, duration, out, urls):
    end = time.monotonic() + duration
    res = {u: [0, 0, {}] for u in urls}

    def going():
        return time.monotonic() < end and not os.path.exists(out + ".stop")

    def load(u):
        r = res[u]
        while going():
            try:
                st, body = get(u, 5.0)
                if st == 200:
                    r[0] += 1
                    r[2][body] = r[2].get(body, 0) + 1
                else:
                    r[1] += 1
            except OSError:
                r[1] += 1

    threads = [threading.Thread(target=load, args=(u,)) for u in urls]
    for t in threads:
        t.start()
    with open(out, "w") as f:
        while going():
            t0 = time.time()
            try:
                for row in stat_sample(sock):
                    f.write("%.3f %d %s %s %s %s %s\n" % ((t0,) + row))
            except OSError:
                pass
            time.sleep(0.05)
    for t in threads:
        t.join()
    for u in urls:
        print("load %s ok=%d fail=%d" % (u, res[u][0], res[u][1]))
    for u in urls:
        for b, n in sorted(res[u][2].items()):
            print("body %s %s %d" % (u, b, n))


def silent(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(64)
    held = []
    while True:
        c, _ = s.accept()
        held.append(c)  # kept open, never read from


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text.replace("\\n", "\n"))
    os.rename(tmp, path)


def main(a):
    if a[1] == "backend":
        backends(list(zip(a[2::2], a[3::2])))
    elif a[1] == "rr":
        rr(a[2], int(a[3]))
    elif a[1] == "servers":
        for s in servers(a[2], a[3]) or []:
            print("%s %s:%d %d %d" % s)
    elif a[1] == "write-wait":
        start = time.monotonic()
        write_atomic(a[2], a[3])
        return wait_state(a[4], a[5], a[6], a[7], int(a[8]), start)
    elif a[1] == "wait-down":
        return wait_state(a[2], a[3], a[4], "maint", int(a[5]), time.monotonic())
    elif a[1] == "wait-ready":
        return wait_state(a[2], a[3], a[4], "ready", int(a[5]), time.monotonic())
    elif a[1] == "wait-up":
        return wait_state(a[2], a[3], a[4], "up", int(a[5]), time.monotonic())
    elif a[1] == "churn":
        return churn(a[2], a[3], a[4], float(a[5]), int(a[6]), int(a[7]), a[8:])
    elif a[1] == "late-backend":
        late_backend(int(a[2]), a[3], a[4], a[5])
    elif a[1] == "pid":
        try:
            out = unix_cmd(a[2], "show info")
        except OSError as e:
            print("error", e)
            return 1
        pid = [l[5:] for l in out.splitlines() if l.startswith("Pid: ")]
        if not pid:
            return 1
        print(pid[0])
    elif a[1] == "watch":
        watch(a[2], float(a[3]), a[4], a[5:])
    elif a[1] == "silent":
        silent(a[2])
    elif a[1] == "get":
        try:
            st, body = get(a[2], float(a[3]) if len(a) > 3 else 10.0)
            print(st, body)
        except OSError as e:
            print("error", e)
            return 1
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
