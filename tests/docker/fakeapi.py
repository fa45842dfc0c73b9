#!/usr/bin/env python3
"""fakeapi.py: a scripted Docker Engine API on a unix socket, for the docker source's tests
that need an order of answers a real dockerd cannot be made to give (stdlib only).

  fakeapi.py SOCKET burst N K

"burst": the listing is empty; the /events stream (once per connection), right after it
opens, sends in one write N "start" events (containers c1..cN, ids derived from the index),
then "die" events for the first K of them, then stays open (nothing more).  Inspect answers
wait INSPECT_DELAY seconds (so the die events are in before any of them): c1..cK answer
"not running", the others a running host-network container exposing port 20000+index.
/_ping answers OK.  Every request is logged to stderr ("GET path").
"""
import json
import os
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler

INSPECT_DELAY = 0.5


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
            return self.send_json([])
        if path.startswith('/containers/') and path.endswith('/json'):
            ident = path[len('/containers/'):-len('/json')]
            idx = srv.ids.get(ident)
            if idx is None:
                return self.send_json({'message': 'No such container: ' + ident}, 404)
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


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main(argv):
    if len(argv) != 5 or argv[2] != 'burst':
        sys.stderr.write(__doc__)
        return 2
    sock, n, k = argv[1], int(argv[3]), int(argv[4])
    if os.path.exists(sock):
        os.unlink(sock)
    srv = Server(sock, Handler)
    srv.n, srv.k, srv.sent = n, k, False
    srv.ids = {cid(i): i for i in range(1, n + 1)}
    srv.stop = threading.Event()
    try:
        srv.serve_forever()
    finally:
        srv.stop.set()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
