#!/usr/bin/env python3
"""floors.py - what the pieces cost on their own, measured in the same run.

  floors.py etcd-watch ENDPOINT N OUT.json     put -> watch event latency (v3 JSON gateway)
  floors.py consul-block ADDRESS N OUT.json    register -> blocking query wake-up
  floors.py admin-rtt SOCKET N OUT.json        one admin-socket round trip (the poller's
                                               `show info;show servers state`)

Each writes {"what": ..., "ns": [samples]}.  Loopback only; stdlib only.
"""
import base64
import json
import socket
import sys
import time
import http.client
import urllib.parse


def b64(s):
    return base64.b64encode(s.encode()).decode()


def host_port(url):
    u = urllib.parse.urlsplit(url)
    return u.hostname, u.port


class Stream:
    """A streaming HTTP/1.1 response read line by line (chunked or not)."""

    def __init__(self, sock, first=b""):
        self.s = sock
        self.buf = first
        self.data = b""
        self.chunked = None

    def _fill(self):
        b = self.s.recv(65536)
        if not b:
            raise EOFError("stream closed")
        self.buf += b

    def start(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
        self.chunked = b"chunked" in head.lower()

    def line(self):
        while b"\n" not in self.data:
            if self.chunked:
                i = self.buf.find(b"\r\n")
                if i >= 0:
                    n = int(self.buf[:i].split(b";")[0], 16)
                    if len(self.buf) >= i + 2 + n + 2:
                        self.data += self.buf[i + 2:i + 2 + n]
                        self.buf = self.buf[i + 2 + n + 2:]
                        continue
                self._fill()
            else:
                if self.buf:
                    self.data += self.buf
                    self.buf = b""
                    continue
                self._fill()
        line, self.data = self.data.split(b"\n", 1)
        return line


def etcd_watch(endpoint, n):
    host, port = host_port(endpoint)
    prefix = "/bench-floor/"
    ws = socket.create_connection((host, port))
    ws.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    body = json.dumps({"create_request": {"key": b64(prefix), "range_end": b64("/bench-floor0")}})
    ws.sendall(("POST /v3/watch HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                "Content-Length: %d\r\n\r\n%s" % (host, port, len(body), body)).encode())
    st = Stream(ws)
    st.start()
    st.line()  # created
    c = http.client.HTTPConnection(host, port)
    out = []
    for i in range(n):
        val = "v%d" % i
        req = json.dumps({"key": b64(prefix + "k"), "value": b64(val)})
        t0 = time.time_ns()
        c.request("POST", "/v3/kv/put", req, {"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        while True:
            ev = json.loads(st.line())
            evs = (ev.get("result") or {}).get("events") or []
            if any(base64.b64decode(e["kv"].get("value", "")).decode() == val for e in evs):
                break
        out.append(time.time_ns() - t0)
        time.sleep(0.01)
    c.request("POST", "/v3/kv/deleterange",
              json.dumps({"key": b64(prefix), "range_end": b64("/bench-floor0")}))
    c.getresponse().read()
    ws.close()
    return out


def consul_block(address, n):
    host, port = host_port(address)
    c = http.client.HTTPConnection(host, port)
    name = "bench-floor"
    # Each register changes the instance (its meta), which wakes the blocking query.  proto
    # udp keeps it out of haproxy (the sink routes TCP only), so the client agent under test
    # reloads nothing because of the floor measurement.
    reg = lambda i: json.dumps({"ID": "%s-%d" % (name, i % 2), "Name": name,
                                "Address": "127.0.0.1", "Port": 10000,
                                "Meta": {"proto": "udp", "seq": str(i)}})
    c.request("PUT", "/v1/agent/service/register", reg(0))
    c.getresponse().read()
    out = []
    for i in range(1, n + 1):
        c.request("GET", "/v1/health/service/%s?passing=1" % name)
        r = c.getresponse()
        r.read()
        idx = r.getheader("X-Consul-Index")
        bs = socket.create_connection((host, port))
        bs.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        bs.sendall(("GET /v1/health/service/%s?passing=1&index=%s&wait=10s HTTP/1.1\r\n"
                    "Host: %s:%d\r\nConnection: close\r\n\r\n" % (name, idx, host, port)).encode())
        time.sleep(0.02)  # the query is parked in the server
        t0 = time.time_ns()
        c.request("PUT", "/v1/agent/service/register", reg(i))
        c.getresponse().read()
        bs.recv(1)  # the first byte of the woken answer
        out.append(time.time_ns() - t0)
        bs.close()
    for i in range(2):
        c.request("PUT", "/v1/agent/service/deregister/%s-%d" % (name, i))
        c.getresponse().read()
    return out


def admin_rtt(path, n):
    out = []
    for _ in range(n):
        t0 = time.time_ns()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.sendall(b"show info;show servers state\n")
        s.shutdown(socket.SHUT_WR)
        while s.recv(262144):
            pass
        s.close()
        out.append(time.time_ns() - t0)
        time.sleep(0.005)
    return out


def main():
    what, target, n, outf = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    fn = {"etcd-watch": etcd_watch, "consul-block": consul_block, "admin-rtt": admin_rtt}[what]
    ns = fn(target, n)
    with open(outf, "w") as f:
        json.dump({"what": what, "ns": ns}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
