#!/usr/bin/env python3
"""dockev.py - record a Docker daemon's container events with their arrival time.

  dockev.py DOCKER_SOCKET OUT.jsonl [--stop-file F] [--max-seconds S]

Follows GET /events (container events) on the daemon's unix socket and writes one JSON line
per event: {"tn": Docker's timeNano, "rx": arrival wall-clock ns, "a": action, "id": id,
"name": container name}.  Docker's own timestamp is the reference of the propagation bench;
rx - tn is what the event stream itself costs (a floor regent cannot beat).
"""
import argparse
import json
import os
import select
import socket
import sys
import time
import urllib.parse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("socket")
    ap.add_argument("out")
    ap.add_argument("--stop-file")
    ap.add_argument("--max-seconds", type=float, default=900)
    a = ap.parse_args()
    filt = urllib.parse.quote(json.dumps({"type": ["container"]}))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(a.socket)
    s.sendall(("GET /events?filters=%s HTTP/1.1\r\nHost: docker\r\n\r\n" % filt).encode())
    buf = b""
    # headers
    while b"\r\n\r\n" not in buf:
        b = s.recv(65536)
        if not b:
            return 1
        buf += b
    head, buf = buf.split(b"\r\n\r\n", 1)
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        print("dockev: %s" % head.split(b"\r\n", 1)[0].decode(), file=sys.stderr)
        return 1
    chunked = b"chunked" in head.lower()
    end = time.monotonic() + a.max_seconds
    data = b""  # de-chunked body
    with open(a.out, "w", buffering=1) as out:
        print("ready", flush=True)
        while time.monotonic() < end:
            if a.stop_file and os.path.exists(a.stop_file):
                break
            r, _, _ = select.select([s], [], [], 0.2)
            if not r:
                continue
            b = s.recv(65536)
            rx = time.time_ns()
            if not b:
                break
            buf += b
            if chunked:
                while True:
                    i = buf.find(b"\r\n")
                    if i < 0:
                        break
                    n = int(buf[:i].split(b";")[0], 16)
                    if len(buf) < i + 2 + n + 2:
                        break
                    data += buf[i + 2:i + 2 + n]
                    buf = buf[i + 2 + n + 2:]
            else:
                data, buf = data + buf, b""
            while b"\n" in data:
                line, data = data.split(b"\n", 1)
                if not line.strip():
                    continue
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                attrs = (ev.get("Actor") or {}).get("Attributes") or {}
                out.write(json.dumps({"tn": ev.get("timeNano"), "rx": rx, "a": ev.get("Action"),
                                      "id": ev.get("id"), "name": attrs.get("name")}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
