#!/usr/bin/env python3
"""etcd_watch.py - print every change under a key prefix with the time it arrived.

    etcd_watch.py ENDPOINT PREFIX

Watches PREFIX through etcd's v3 JSON gateway (POST /v3/watch, a streamed
response) and prints one line per event, flushed at once:

    <unix time in ns> PUT|DELETE <key>

and "<ns> WATCHING" once the watch is created.  Used by
tests/packaging/systemd_shutdown.sh to time each key's deletion from
outside the host being shut down.  Standard library only.
"""
import base64
import http.client
import json
import sys
import time
import urllib.parse


def b64(s):
    return base64.b64encode(s.encode()).decode()


def prefix_end(p):
    b = bytearray(p.encode())
    for i in range(len(b) - 1, -1, -1):
        if b[i] < 0xFF:
            b[i] += 1
            return bytes(b[: i + 1])
    return b"\0"


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: etcd_watch.py ENDPOINT PREFIX\n")
        return 2
    url = urllib.parse.urlparse(sys.argv[1])
    prefix = sys.argv[2]
    body = json.dumps({"create_request": {
        "key": b64(prefix),
        "range_end": base64.b64encode(prefix_end(prefix)).decode(),
    }})
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=None)
    conn.request("POST", "/v3/watch", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        sys.stderr.write("etcd_watch: %s answered %d %s\n" % (sys.argv[1], resp.status, resp.reason))
        return 1
    while True:
        line = resp.readline()
        if not line:
            sys.stderr.write("etcd_watch: %s closed the watch\n" % sys.argv[1])
            return 1
        now = time.time_ns()
        line = line.strip()
        if not line:
            continue
        msg = json.loads(line)
        res = msg.get("result", {})
        if res.get("created"):
            print("%d WATCHING" % now, flush=True)
        for ev in res.get("events", []):
            kind = ev.get("type", "PUT")
            key = base64.b64decode(ev["kv"]["key"]).decode(errors="replace")
            print("%d %s %s" % (now, kind, key), flush=True)


if __name__ == "__main__":
    sys.exit(main())
