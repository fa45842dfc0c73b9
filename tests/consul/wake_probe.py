#!/usr/bin/env python3
"""Measures how fast a change registered directly at a Consul agent reaches
a regent testsink file (the plugin's blocking query waking up).

    wake_probe.py AGENT_URL SINK_FILE KIND COUNT [TOKEN]

KIND "instance": each sample registers a new instance of the existing
service "lat" (wakes its /v1/health/service query); KIND "service": each
sample registers a new service "latN" (wakes /v1/catalog/services, then the
new service's first health read).  The clock starts right before the PUT
and stops when the sink's last complete snapshot lists the instance.
Prints one line per sample and "KIND samples=N median=X max=Y" (ms).
Python 3 standard library only.
"""
import json
import os
import sys
import time
import urllib.request

TIMEOUT = 10.0


def put(url, body, token):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="PUT")
    if token:
        req.add_header("X-Consul-Token", token)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=5) as r:
        r.read()


def last_snapshot(path):
    try:
        with open(path, "r", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        return ""
    end = text.rfind("\nend\n")
    if end < 0:
        return ""
    start = text.rfind("apply ", 0, end)
    return text[start:end] if start >= 0 else ""


def wait_for(path, needle, t0):
    while time.monotonic() - t0 < TIMEOUT:
        if needle in last_snapshot(path):
            return (time.monotonic() - t0) * 1000.0
        time.sleep(0.001)
    return None


def main():
    base, sink, kind, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    token = sys.argv[5] if len(sys.argv) > 5 else ""
    samples = []
    for i in range(count):
        tag = "%d-%d" % (os.getpid(), i)
        if kind == "instance":
            name, sid = "lat", "probe-%s" % tag
        else:
            name, sid = "lat%s" % tag.replace("-", "x"), "probe-%s" % tag
        body = {"ID": sid, "Name": name, "Address": "127.0.0.9", "Port": 20000 + i}
        t0 = time.monotonic()
        put(base + "/v1/agent/service/register", body, token)
        # Not registered by regent: listed as "<consul node>/<ID>".
        ms = wait_for(sink, "/%s 127.0.0.9:%d/" % (sid, 20000 + i), t0)
        print("sample %d %s: %s" % (i, kind, "timeout" if ms is None else "%.1f ms" % ms))
        sys.stdout.flush()
        samples.append(ms if ms is not None else float("inf"))
        time.sleep(0.3)
    s = sorted(samples)
    print("%s samples=%d median=%.1f max=%.1f" % (kind, len(s), s[len(s) // 2], s[-1]))


if __name__ == "__main__":
    main()
