#!/usr/bin/env python3
"""Helpers for the haproxy sink's tests (stdlib only).

  hxtool.py backend PORT NAME
      HTTP/1.1 server on 127.0.0.1:PORT answering NAME (GET /slow waits 1.5 s first).
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
  hxtool.py get URL
      One GET: prints "STATUS BODY".
"""
import http.client
import http.server
import os
import socket
import socketserver
import sys
import time


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

        def do_GET(self):
            if self.path.startswith("/slow"):
                time.sleep(1.5)
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

    S(("127.0.0.1", port), H).serve_forever()


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


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text.replace("\\n", "\n"))
    os.rename(tmp, path)


def main(a):
    if a[1] == "backend":
        backend(int(a[2]), a[3])
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
    elif a[1] == "get":
        try:
            st, body = get(a[2], 10.0)
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
