#!/usr/bin/env python3
"""fakeapi.py: a scripted Docker Engine API on a unix socket, for the docker source's tests
that need an order of answers a real dockerd cannot be made to give (stdlib only).

  fakeapi.py SOCKET burst N K
  fakeapi.py SOCKET huge

"burst": the listing is empty; the /events stream (once per connection), right after it
opens, sends in one write N "start" events (containers c1..cN, ids derived from the index),
then "die" events for the first K of them, then stays open (nothing more).  Inspect answers
wait INSPECT_DELAY seconds (so the die events are in before any of them): c1..cK answer
"not running", the others a running host-network container exposing port 20000+index.
/_ping answers OK.  Every request is logged to stderr ("GET path").

"huge": containers c1, c2 start when the first /events stream opens: c1's event is a normal
one, c2's carries a label of HUGE_LABEL bytes (an event line longer than the docker source's
limit); c3 starts 0.3 s after a second stream opens.  Each stream sends the events whose
timeNano is at or after its `since` (inclusive, as dockerd), then every new one, and stays
open.  The listing shows every container started so far (running, host network, port
20000+index; inspect answers carry no labels).
"""
import json
import os
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler

INSPECT_DELAY = 0.5
HUGE_LABEL = 5 << 20


def cid(i):
    return ('%02x' % i) * 32


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def address_string(self):
        return 'unix'

    def log_message(self, fmt, *args):
        sys.stderr.write('%s\n' % (fmt % args))
        sys.stderr.flush()

    def send_json(self, obj, status=200):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        srv = self.server
        path = self.path.split('?', 1)[0]
        ver = '/v1.41'
        if not path.startswith(ver):
            return self.send_json({'message': 'bad version'}, 400)
        path = path[len(ver):]
        if path == '/_ping':
            body = b'OK'
            self.send_response(200)
            self.send_header('Content-Type', 'text/plain')
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if path == '/containers/json':
            if srv.mode == 'huge':
                with srv.lock:
                    return self.send_json([{'Id': i, 'Names': ['/c%d' % x]}
                                           for i, x in srv.ids.items()])
            return self.send_json([])
        if path.startswith('/containers/') and path.endswith('/json'):
            ident = path[len('/containers/'):-len('/json')]
            with srv.lock:
                idx = srv.ids.get(ident)
            if idx is None:
                return self.send_json({'message': 'No such container: ' + ident}, 404)
            if srv.mode == 'burst':
                time.sleep(INSPECT_DELAY)
            running = idx > srv.k
            port = 20000 + idx
            return self.send_json({
                'Id': ident, 'Name': '/c%d' % idx,
                'State': {'Running': running,
                          'StartedAt': '2026-01-01T00:00:00Z'},
                'Config': {'Image': 'acme/fake:1',
                           'ExposedPorts': {'%d/tcp' % port: {}}},
                'HostConfig': {'NetworkMode': 'host'}})
        if path == '/events' and srv.mode == 'huge':
            return self.huge_stream()
        if path == '/events':
            self.send_response(200)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Transfer-Encoding', 'chunked')
            self.end_headers()
            self.wfile.flush()
            out = []
            if not srv.sent:
                srv.sent = True
                t = time.time_ns()
                def ev(action, i, dt):
                    return json.dumps({
                        'Type': 'container', 'Action': action,
                        'Actor': {'ID': cid(i), 'Attributes': {'name': 'c%d' % i}},
                        'time': (t + dt) // 10**9, 'timeNano': t + dt}) + '\n'
                for i in range(1, srv.n + 1):
                    out.append(ev('start', i, i))
                for i in range(1, srv.k + 1):
                    out.append(ev('die', i, 1000 + i))
            if out:
                data = ''.join(out).encode()
                self.wfile.write(b'%x\r\n%s\r\n' % (len(data), data))
                self.wfile.flush()
            while not srv.stop.wait(1.0):  # open, silent, until the server stops
                pass
            return
        return self.send_json({'message': 'page not found'}, 404)

    def huge_stream(self):
        srv = self.server
        since = 0
        for kv in self.path.split('?', 1)[-1].split('&'):
            if kv.startswith('since='):
                sec, _, frac = kv[len('since='):].partition('.')
                since = int(sec) * 10**9 + int((frac + '000000000')[:9])
        with srv.lock:
            srv.streams += 1
            if srv.streams == 1:
                huge_start(srv, 1, {})
                huge_start(srv, 2, {'big': 'x' * HUGE_LABEL})
            elif srv.streams == 2:
                threading.Timer(0.3, huge_start, (srv, 3, {})).start()
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Transfer-Encoding', 'chunked')
        self.end_headers()
        self.wfile.flush()
        sent = 0
        try:
            while not srv.stop.is_set():
                with srv.lock:
                    new = [line for t, line in srv.events[sent:] if t >= since]
                    sent = len(srv.events)
                if new:
                    data = ''.join(new).encode()
                    self.wfile.write(b'%x\r\n%s\r\n' % (len(data), data))
                    self.wfile.flush()
                srv.stop.wait(0.05)
        except OSError:  # the client went away
            pass


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def huge_start(srv, i, labels):
    """Container ci starts now: listed from now on, its start event queued."""
    with srv.lock:
        t = max(time.time_ns(), srv.events[-1][0] + 1 if srv.events else 0)
        srv.ids[cid(i)] = i
        attrs = dict(labels, name='c%d' % i)
        srv.events.append((t, json.dumps({
            'Type': 'container', 'Action': 'start',
            'Actor': {'ID': cid(i), 'Attributes': attrs},
            'time': t // 10**9, 'timeNano': t}) + '\n'))


def main(argv):
    burst = len(argv) == 5 and argv[2] == 'burst'
    if not burst and not (len(argv) == 3 and argv[2] == 'huge'):
        sys.stderr.write(__doc__)
        return 2
    sock = argv[1]
    n, k = (int(argv[3]), int(argv[4])) if burst else (0, 0)
    if os.path.exists(sock):
        os.unlink(sock)
    srv = Server(sock, Handler)
    srv.mode = argv[2]
    srv.n, srv.k, srv.sent = n, k, False
    srv.ids = {cid(i): i for i in range(1, n + 1)} if burst else {}
    srv.lock = threading.RLock()
    srv.events, srv.streams = [], 0
    srv.stop = threading.Event()
    try:
        srv.serve_forever()
    finally:
        srv.stop.set()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
