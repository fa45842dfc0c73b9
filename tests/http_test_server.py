#!/usr/bin/env python3
"""Test HTTP server for tests/test_http.c (Python 3 standard library only).

Options:
  --port N             serve HTTP on 127.0.0.1:N (0 = pick a free port)
  --unix PATH          serve on a unix socket too (or only, without --port)
  --exit-on-stdin-eof  exit when stdin reaches EOF (the test's pipe closes
                       when the test process dies, so no orphan survives)

Once every listener is bound, the first line on stdout is the TCP port
(0 when there is no TCP listener); stdout is flushed right after.

Endpoints:
  GET  /hello                      200 "hello world"
  POST /echo (also PUT, PATCH)     echoes the body; X-Echo = request X-Test,
                                   X-Method = request method
  ANY  /status/N                   status N, body "status N"
  GET  /stream?n=5&delay_ms=50     chunked: n lines {"i":K}, each its own chunk
                                   after delay_ms, then the final line
                                   {"done":true} without newline.
                                   crlf=1: lines end in CRLF;
                                   split=1: each line is sent as two chunks;
                                   burst=1: everything in one chunk, no delay
  GET  /big?bytes=N[&chunked=1]    N bytes, byte K = 'a' + K % 26
  GET  /hang                       reads the request, never answers
  GET  /slow-stream                chunked: one line, then stalls forever
  GET  /hints                      103 Early Hints (X-Echo: early), then
                                   200 "final" with X-Echo: final
"""
import argparse
import os
import select
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # quiet; unix peers have no address
        pass

    # -- helpers -------------------------------------------------------
    def _query(self):
        parts = urlsplit(self.path)
        return parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()}

    def _send(self, status, body, headers=None):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _chunk(self, data):
        if isinstance(data, str):
            data = data.encode()
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def _end_chunks(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _start_chunked(self, status=200, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def _hold(self):
        """Keep the connection open until the client goes away."""
        self.close_connection = True
        sock = self.connection
        while True:
            try:
                readable, _, _ = select.select([sock], [], [], 0.5)
                if readable and not sock.recv(4096):
                    return
            except OSError:
                return

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    # -- dispatch ------------------------------------------------------
    def _handle(self):
        path, q = self._query()
        if path == "/hello":
            self._send(200, "hello world")
        elif path == "/then-close":
            # a kept-alive answer (no "Connection: close"), then the server
            # closes the idle connection: the client finds out on its own
            self._send(200, "bye")
            self.wfile.flush()
            time.sleep(0.05)
            self.close_connection = True
        elif path == "/echo":
            body = self._body()
            self._send(200, body, {
                "X-Echo": self.headers.get("X-Test", ""),
                "X-Method": self.command,
                "X-Transport": "unix" if isinstance(self.server, UnixServer) else "tcp",
            })
        elif path.startswith("/status/"):
            self._body()
            try:
                code = int(path[len("/status/"):])
            except ValueError:
                code = 400
            self._send(code, "status %d" % code)
        elif path == "/stream":
            n = int(q.get("n", 5))
            delay = int(q.get("delay_ms", 50)) / 1000.0
            eol = "\r\n" if q.get("crlf") == "1" else "\n"
            split = q.get("split") == "1"
            self._start_chunked()
            if q.get("burst") == "1":
                pad = int(q.get("pad", 0))
                fmt = '{"i":%d' + (',"p":"' + "x" * pad + '"' if pad else "") + '}%s'
                text = "".join(fmt % (i, eol) for i in range(n))
                text += "x" * int(q.get("long", 0)) + (eol if q.get("long") else "")
                self._chunk(text + '{"done":true}')
                self._end_chunks()
                return
            for i in range(n):
                time.sleep(delay)
                line = '{"i":%d}%s' % (i, eol)
                if split:
                    half = len(line) // 2
                    self._chunk(line[:half])
                    time.sleep(delay / 2)
                    self._chunk(line[half:])
                else:
                    self._chunk(line)
            time.sleep(delay)
            self._chunk('{"done":true}')
            self._end_chunks()
        elif path == "/big":
            n = int(q.get("bytes", 0))
            chunked = q.get("chunked") == "1"
            if chunked:
                self._start_chunked(ctype="application/octet-stream")
            else:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(n))
                self.end_headers()
            alphabet = bytes(range(ord("a"), ord("z") + 1))
            block = alphabet * (65536 // 26 + 1)
            sent = 0
            try:
                while sent < n:
                    k = min(n - sent, 65520)  # a multiple of 26 keeps the pattern
                    piece = block[:k]
                    if chunked:
                        self._chunk(piece)
                    else:
                        self.wfile.write(piece)
                    sent += k
                if chunked:
                    self._end_chunks()
            except OSError:
                self.close_connection = True
        elif path == "/hints":
            self.wfile.write(b"HTTP/1.1 103 Early Hints\r\nX-Echo: early\r\n\r\n")
            self.wfile.flush()
            time.sleep(0.02)
            self._send(200, "final", {"X-Echo": "final"})
        elif path == "/hang":
            self._hold()
        elif path == "/slow-stream":
            self._start_chunked()
            self._chunk('{"first":true}\n')
            self._hold()
        else:
            self._send(404, "not found")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


class QuietErrors:
    """Clients hanging up mid-response (cancel tests) are not errors."""

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class TCPServer(QuietErrors, ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


class UnixServer(QuietErrors, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 128


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=None)
    ap.add_argument("--unix", default=None)
    ap.add_argument("--exit-on-stdin-eof", action="store_true")
    args = ap.parse_args()
    if args.port is None and args.unix is None:
        ap.error("need --port and/or --unix")

    servers = []
    port = 0
    if args.port is not None:
        tcp = TCPServer(("127.0.0.1", args.port), Handler)
        port = tcp.server_address[1]
        servers.append(tcp)
    if args.unix is not None:
        try:
            os.unlink(args.unix)
        except FileNotFoundError:
            pass
        servers.append(UnixServer(args.unix, Handler))

    for srv in servers:
        threading.Thread(target=srv.serve_forever, daemon=True).start()

    sys.stdout.write("%d\n" % port)
    sys.stdout.flush()

    try:
        if args.exit_on_stdin_eof:
            while os.read(sys.stdin.fileno(), 4096):
                pass
        else:
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        if args.unix is not None:
            try:
                os.unlink(args.unix)
            except OSError:
                pass
    os._exit(0)


if __name__ == "__main__":
    main()
