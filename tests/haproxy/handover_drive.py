#!/usr/bin/env python3
"""handover_drive.py - the registry side of handover_test.sh (stdlib only): writes instances
straight into etcd (v3 JSON gateway, loopback only) and SIGHUPs the agent at chosen moments.

  handover_drive.py run EP PREFIX PID INI SPEC_JSON
      SPEC_JSON: {"web": [[addr, port], ...], "web_port": P, "churn": NSVC, "per": N,
                  "churn_ports": [P, ...], "extra_ports": [P, ...], "rounds": R,
                  "interval_ms": [A, B], "pending_at": S, "hup_at": S, "round_s": S}
      Registers service web (its real backends) and NSVC churn services of N instances (no
      listener behind them), then moves one churn instance to another port every 20 ms for
      the whole run.  Each round: a new service xK (5 instances, a listener: a reload)
      appears; pending_at s later a second one yK (a reload the sink holds back until its
      reload_interval has passed since the first); hup_at s after the round's start the
      [sink haproxy] reload_interval in INI flips between A and B ms and PID gets SIGHUP, so
      that the running sink instance's held-back reload falls due while the new instance
      starts (the hand-over).  The round's services go again in the next round.  Prints
      "rounds N moves M" at the end.
  handover_drive.py churn EP PREFIX SPEC_JSON
      SPEC_JSON: {"web": [[addr, port], ...], "web_port": P, "churn": NSVC, "per": N,
                  "churn_ports": [P, ...], "seconds": S}
      Registers web (unless empty) and the NSVC churn services as `run` does, then moves one churn instance
      every 20 ms for S seconds (no SIGHUP: the test sends its own).  Prints "moves M".
  handover_drive.py expect EP PREFIX
      Every service and its "addr:port" instances in the registry, one "SVC ADDR:PORT" line
      each, sorted.
"""
import base64
import http.client
import json
import os
import random
import re
import signal
import sys
import time
import urllib.parse


def b64(s):
    return base64.b64encode(s.encode()).decode()


class Etcd:
    def __init__(self, ep):
        u = urllib.parse.urlsplit(ep)
        if not u.hostname.startswith("127."):
            raise SystemExit("handover_drive: refusing a non-loopback endpoint: " + ep)
        self.c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)

    def post(self, path, body):
        self.c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        r = self.c.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError("etcd %s: %d %s" % (path, r.status, data[:200]))
        return json.loads(data)


def value(addr, port, sport=0):
    v = {"address": addr, "port": port, "proto": "tcp", "node": "handover", "tags": [], "meta": {}}
    if sport:
        v["service_port"] = sport
    return json.dumps(v, separators=(",", ":"))


def put_service(e, prefix, name, insts, sport=0):
    ops = [{"request_put": {"key": b64("%s%s/handover/i%d/80" % (prefix, name, i)),
                            "value": b64(value(a, p, sport))}} for i, (a, p) in enumerate(insts)]
    e.post("/v3/kv/txn", {"success": ops})


def del_service(e, prefix, name):
    e.post("/v3/kv/deleterange", {"key": b64(prefix + name + "/"), "range_end": b64(prefix + name + "0")})


def set_interval(ini, ms):
    text = open(ini).read()
    text = re.sub(r"(?m)^reload_interval\s*=.*$", "reload_interval = %dms" % ms, text)
    tmp = ini + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, ini)


def run(ep, prefix, pid, ini, spec):
    e = Etcd(ep)
    put_service(e, prefix, "web", spec["web"], spec["web_port"])
    churn = {}
    for k in range(spec["churn"]):
        name = "c%03d" % k
        churn[name] = [("127.0.9.%d" % (k + 1), 20000 + i) for i in range(spec["per"])]
        put_service(e, prefix, name, churn[name], spec["churn_ports"][k])
    time.sleep(2)  # the agent's first snapshot and haproxy's first reload
    moves = 0
    rnd = random.Random(7)
    names = sorted(churn)
    ports = spec["extra_ports"]
    prev = []
    flip = False

    def move():
        nonlocal moves
        k = moves % len(names)
        name = names[k]
        i = rnd.randrange(spec["per"])
        a, p = churn[name][i]
        churn[name][i] = (a, 20000 + (p - 20000 + spec["per"]) % 1000)
        put_service(e, prefix, name, churn[name], spec["churn_ports"][k])
        moves += 1

    def until(t):
        while time.monotonic() < t:
            move()
            time.sleep(0.02)

    for r in range(spec["rounds"]):
        t0 = time.monotonic()
        for name in prev:
            del_service(e, prefix, name)
        x, y = "x%02d" % r, "y%02d" % r
        put_service(e, prefix, x, [("127.0.8.%d" % (i + 1), 30000 + i) for i in range(5)],
                    ports[(2 * r) % len(ports)])
        until(t0 + spec["pending_at"])
        put_service(e, prefix, y, [("127.0.7.%d" % (i + 1), 30000 + i) for i in range(5)],
                    ports[(2 * r + 1) % len(ports)])
        until(t0 + spec["hup_at"])
        flip = not flip
        set_interval(ini, spec["interval_ms"][1 if flip else 0])
        os.kill(pid, signal.SIGHUP)
        until(t0 + spec["round_s"])
        prev = [x, y]
    for name in prev:
        del_service(e, prefix, name)
    print("rounds %d moves %d" % (spec["rounds"], moves))


def churn_only(ep, prefix, spec):
    e = Etcd(ep)
    if spec["web"]:
        put_service(e, prefix, "web", spec["web"], spec["web_port"])
    churn = {}
    for k in range(spec["churn"]):
        name = "c%03d" % k
        churn[name] = [("127.0.9.%d" % (k + 1), 20000 + i) for i in range(spec["per"])]
        put_service(e, prefix, name, churn[name], spec["churn_ports"][k])
    rnd = random.Random(11)
    names = sorted(churn)
    moves = 0
    end = time.monotonic() + spec["seconds"]
    while time.monotonic() < end:
        k = moves % len(names)
        name = names[k]
        i = rnd.randrange(spec["per"])
        a, p = churn[name][i]
        churn[name][i] = (a, 20000 + (p - 20000 + spec["per"]) % 1000)
        put_service(e, prefix, name, churn[name], spec["churn_ports"][k])
        moves += 1
        time.sleep(0.02)
    print("moves %d" % moves)


def expect(ep, prefix):
    e = Etcd(ep)
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    r = e.post("/v3/kv/range", {"key": b64(prefix), "range_end": b64(end)})
    out = []
    for kv in r.get("kvs", []):
        k = base64.b64decode(kv["key"]).decode()
        v = json.loads(base64.b64decode(kv["value"]))
        out.append("%s %s:%d" % (k[len(prefix):].split("/", 1)[0], v["address"], v["port"]))
    print("\n".join(sorted(out)))


def main(a):
    if a[:1] == ["run"] and len(a) == 6:
        run(a[1], a[2], int(a[3]), a[4], json.loads(a[5]))
    elif a[:1] == ["churn"] and len(a) == 4:
        churn_only(a[1], a[2], json.loads(a[3]))
    elif a[:1] == ["expect"] and len(a) == 3:
        expect(a[1], a[2])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
