#!/usr/bin/env python3
"""bench/lib/consul_discovery.py - Consul discovery at scale, against
tests/consul/consul_emulator.py with Consul's per-client connection limit on
(200, the default of limits.http_max_conns_per_client).

N services (default 1,000), one instance each with a passing TTL check,
registered straight at the agent; then one regent client (store consul +
testsink, debounce 0) starts.  Measured:
  - first snapshot: regent start -> the sink's first snapshot holding all N;
  - one change's propagation: a new instance of one service registered at the
    agent -> in the sink (and a check turned critical -> out of the sink);
  - the most connections regent held to the agent at once (sampled with ss),
    and how many connections the agent refused with 429.

Prints a Markdown table; with --out FILE also writes it there.
Usage: consul_discovery.py --regent BIN --plugins DIR [--services N] [--samples K]
"""
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(HERE, "..", "..", "tests", "consul", "consul_emulator.py")
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def put(base, path, body=None):
    data = json.dumps(body).encode() if body is not None else b""
    req = urllib.request.Request(base + path, data=data, method="PUT")
    OPENER.open(req, timeout=30).read()


def sink_state(path):
    """(number of complete snapshots, set of instance ids in the last one)."""
    try:
        with open(path) as fh:
            text = fh.read()
    except FileNotFoundError:
        return 0, set()
    n = 0
    last, cur, inblk = set(), set(), False
    for line in text.splitlines():
        if line.startswith("apply "):
            cur, inblk = set(), True
        elif line == "end":
            if inblk:
                last, n = cur, n + 1
            inblk = False
        elif inblk and line.startswith("    "):
            cur.add(line.split()[0])
    return n, last


def conns(port, pid):
    try:
        out = subprocess.run(["ss", "-tnpH", "state", "established", "dport", "= :%d" % port],
                             capture_output=True, text=True, timeout=5).stdout
    except Exception:
        return -1
    return sum(1 for line in out.splitlines() if "pid=%d," % pid in line)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--regent", required=True)
    p.add_argument("--plugins", required=True)
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--out")
    a = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-consul-")
    emu_err = open(os.path.join(tmp, "emulator.log"), "w")
    emu = subprocess.Popen([sys.executable, EMULATOR, "--port", "0", "--compact-json",
                            "--http-max-conns-per-client", str(a.limit),
                            "--check-update-interval", "0"],
                           stdout=subprocess.PIPE, stderr=emu_err, text=True)
    regent = None
    try:
        line = emu.stdout.readline().strip()
        port = int(line.rsplit(":", 1)[1])
        base = "http://127.0.0.1:%d" % port
        t0 = time.monotonic()
        for i in range(a.services):
            put(base, "/v1/agent/service/register",
                {"ID": "s%d-1" % i, "Name": "s%d" % i, "Address": "127.0.0.2", "Port": 10000 + i,
                 "Check": {"TTL": "1h", "Status": "passing"}})
        reg_s = time.monotonic() - t0
        sink = os.path.join(tmp, "c.sink")
        ini = os.path.join(tmp, "c.ini")
        with open(ini, "w") as fh:
            fh.write("[agent]\nnode = client-1\ndebounce = 0\nstate_dir = %s\n"
                     "[store consul]\naddress = %s\n[sink testsink]\nfile = %s\n"
                     % (tmp, base, sink))
        log = open(os.path.join(tmp, "regent.log"), "w")
        t0 = time.monotonic()
        regent = subprocess.Popen([a.regent, "-c", ini, "--plugin-dir", a.plugins],
                                  stdout=log, stderr=subprocess.STDOUT)
        peak = [0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], conns(port, regent.pid))
                time.sleep(0.05)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        first = None
        while time.monotonic() - t0 < 300:
            n, ids = sink_state(sink)
            if n and len(ids) >= a.services:
                first = time.monotonic() - t0
                break
            time.sleep(0.02)
        if first is None:
            raise SystemExit("no complete first snapshot within 300 s (see %s)" % tmp)
        time.sleep(1.0)
        adds, drops = [], []
        for k in range(a.samples):
            svc = (k * 97) % a.services
            iid = "s%d-new%d" % (svc, k)
            t1 = time.monotonic()
            put(base, "/v1/agent/service/register",
                {"ID": iid, "Name": "s%d" % svc, "Address": "127.0.0.3", "Port": 20000 + k,
                 "Check": {"TTL": "1h", "Status": "passing"}})
            while time.monotonic() - t1 < 30:
                _, ids = sink_state(sink)
                if any(x.endswith("/" + iid) for x in ids):
                    adds.append((time.monotonic() - t1) * 1000)
                    break
                time.sleep(0.005)
            time.sleep(0.3)
            t1 = time.monotonic()
            put(base, "/v1/agent/check/fail/service:%s" % iid)
            while time.monotonic() - t1 < 30:
                _, ids = sink_state(sink)
                if not any(x.endswith("/" + iid) for x in ids):
                    drops.append((time.monotonic() - t1) * 1000)
                    break
                time.sleep(0.005)
            time.sleep(0.3)
        stop.set()
        th.join(2)
        refused = len(re.findall(r": 429", open(os.path.join(tmp, "emulator.log")).read()))
        rows = [
            ("services (1 instance each, TTL check), registered at the agent", str(a.services)),
            ("registering them (bench client, sequential)", "%.1f s" % reg_s),
            ("agent's connection limit per client IP", str(a.limit)),
            ("first snapshot with every service (regent start -> sink)", "%.2f s" % first),
            ("new instance of one service -> sink: median / max (%d samples)" % len(adds),
             "%.0f / %.0f ms" % (statistics.median(adds), max(adds)) if adds else "n/a"),
            ("check turned critical -> out of the sink: median / max (%d samples)" % len(drops),
             "%.0f / %.0f ms" % (statistics.median(drops), max(drops)) if drops else "n/a"),
            ("most connections regent held to the agent at once (ss, every 50 ms)", str(peak[0])),
            ("connections the agent refused with 429 (log lines)", str(refused)),
        ]
        md = "| what | result |\n|---|---|\n" + "".join("| %s | %s |\n" % r for r in rows)
        print(md)
        if a.out:
            with open(a.out, "w") as fh:
                fh.write("# Consul discovery at %d services (%s)\n\n" % (a.services, time.strftime("%F %T")))
                fh.write(md)
        return 0
    finally:
        if regent and regent.poll() is None:
            regent.send_signal(signal.SIGTERM)
            try:
                regent.wait(10)
            except subprocess.TimeoutExpired:
                regent.kill()
        emu.send_signal(signal.SIGTERM)
        try:
            emu.wait(10)
        except subprocess.TimeoutExpired:
            emu.kill()


if __name__ == "__main__":
    sys.exit(main())
