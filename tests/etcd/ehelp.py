#!/usr/bin/env python3
"""Helpers for the etcd plugin's script tests (stdlib only).

  ehelp.py last FILE            the last complete snapshot a testsink wrote to FILE
  ehelp.py leases               `etcdctl get -w json` on stdin -> "KEY LEASE_HEX" lines
  ehelp.py revs                 `etcdctl get -w json` on stdin -> "KEY MOD_REVISION" lines
  ehelp.py until-count EP PREFIX N TIMEOUT CMD...
                                run CMD, then poll etcd's range API every 20 ms until PREFIX
                                holds N keys; print the seconds since CMD ran; exit 1 on timeout
  ehelp.py until-snap FILE LINE TIMEOUT CMD...
                                run CMD, then poll the testsink FILE every 10 ms until its last
                                snapshot holds LINE (exactly); print the seconds since CMD ran;
                                exit 1 on timeout
  ehelp.py until-snap-at FILE LINE TIMEOUT CMD...
                                the same, printing the time (seconds since the epoch) it
                                saw LINE
  ehelp.py failover-times FAULT SEEN KEY AGENT_LOG CLIENT_LOG ETCD_LOG...
                                the failover's parts, from the logs: FAULT and SEEN are epoch
                                seconds (signal sent, line seen in the client's sink); prints
                                "election sent commit discover seen" in seconds: fault -> first
                                "became leader" after it in an etcd log, -> the backend agent
                                sent the txn that put KEY, -> its answer, -> the client's first
                                catalog change after the fault, -> SEEN; exit 1 when a log line
                                is missing
  ehelp.py big-put EP KEY SIZE PORT
                                put an instance whose JSON value is SIZE bytes at KEY
  ehelp.py bulk-put EP SERVICE N [BATCH]
                                put N instances /backends/SERVICE/bulk/I (txns of BATCH,
                                default 100)
  ehelp.py meta-put EP KEY NPAIRS
                                put an instance with NPAIRS meta pairs at KEY
  ehelp.py seq EP OP...         puts and deletes one after the other on one connection, as
                                fast as etcd answers (a burst the agent reads at once): OP is
                                "put KEY VALUE" or "del KEY"
  ehelp.py sample URL OUT       GET URL every 50 ms for ever, one line per request to OUT:
                                "latency_ms code" (code 0: no answer)
  ehelp.py stall OUT            "max_ms failed n" of OUT's samples since the first answer
  ehelp.py proxy PORT TARGET    TCP proxy 127.0.0.1:PORT -> 127.0.0.1:TARGET; SIGUSR1 cuts
                                every connection and stops listening, SIGUSR2 listens again
"""
import base64
import json
import selectors
import signal
import socket
import sys


def last(path):
    block, done = [], []
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("apply "):
                block = [line]
            elif block:
                block.append(line)
                if line == "end":
                    done = block
                    block = []
    print("\n".join(done))


def kvs():
    data = json.load(sys.stdin)
    for kv in data.get("kvs", []):
        yield base64.b64decode(kv["key"]).decode(errors="replace"), kv


def leases():
    for k, kv in kvs():
        print(k, "%x" % int(kv.get("lease", 0)))


def revs():
    for k, kv in kvs():
        print(k, kv.get("mod_revision", 0))


def until_count(ep, prefix, n, timeout, cmd):
    import subprocess
    import time
    import urllib.request
    p = prefix.encode()
    body = json.dumps({"key": base64.b64encode(p).decode(),
                       "range_end": base64.b64encode(p[:-1] + bytes([p[-1] + 1])).decode(),
                       "count_only": True}).encode()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    t0 = time.time()
    subprocess.run(cmd, check=False)
    while True:
        try:
            with opener.open(ep + "/v3/kv/range", data=body, timeout=2) as r:
                count = int(json.load(r).get("count", "0"))
        except Exception:
            count = -1
        took = time.time() - t0
        if count == n:
            print("%.2f" % took)
            return 0
        if took > timeout:
            print("%.2f" % took)
            return 1
        time.sleep(0.02)


def big_put(ep, key, size, port):
    """put one instance whose JSON value is SIZE bytes (padded meta) at KEY"""
    import urllib.request
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    v = {"address": "127.0.0.5", "port": int(port), "node": "big", "meta": {"pad": ""}}
    pad = int(size) - len(json.dumps(v))
    v["meta"]["pad"] = "x" * max(0, pad)
    b64 = lambda x: base64.b64encode(x.encode()).decode()
    body = json.dumps({"key": b64(key), "value": b64(json.dumps(v))}).encode()
    with opener.open(ep + "/v3/kv/put", data=body, timeout=30) as r:
        out = json.loads(r.read())
    if "header" not in out:
        print(out, file=sys.stderr)
        return 1
    return 0


def bulk_put(ep, service, n, batch=100):
    import urllib.request
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    b64 = lambda x: base64.b64encode(x.encode()).decode()
    for start in range(0, n, batch):
        ops = []
        for i in range(start, min(n, start + batch)):
            v = json.dumps({"address": "127.1.%d.%d" % (i // 250, i % 250 + 1), "port": 8000,
                            "node": "bulk"})
            ops.append({"request_put": {"key": b64("/backends/%s/bulk/%05d" % (service, i)),
                                        "value": b64(v)}})
        body = json.dumps({"success": ops}).encode()
        with opener.open(ep + "/v3/kv/txn", data=body, timeout=60) as r:
            r.read()


def seq(ep, ops):
    import http.client
    import urllib.parse
    u = urllib.parse.urlsplit(ep)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    b64 = lambda x: base64.b64encode(x.encode()).decode()
    i = 0
    while i < len(ops):
        if ops[i] == "put":
            path, body, i = "/v3/kv/put", {"key": b64(ops[i + 1]), "value": b64(ops[i + 2])}, i + 3
        elif ops[i] == "del":
            path, body, i = "/v3/kv/deleterange", {"key": b64(ops[i + 1])}, i + 2
        else:
            print("seq: unknown op %r" % ops[i], file=sys.stderr)
            return 1
        c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        r = c.getresponse()
        out = json.loads(r.read())
        if "header" not in out:
            print(out, file=sys.stderr)
            return 1
    return 0


def meta_put(ep, key, npairs):
    import urllib.request
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    v = {"address": "127.0.0.6", "port": 8000, "node": "meta",
         "meta": {"k%05d" % j: "v%05d" % j for j in range(npairs)}}
    b64 = lambda x: base64.b64encode(x.encode()).decode()
    body = json.dumps({"key": b64(key), "value": b64(json.dumps(v))}).encode()
    with opener.open(ep + "/v3/kv/put", data=body, timeout=30) as r:
        r.read()


def sample(url, out):
    import http.client
    import time
    import urllib.parse
    u = urllib.parse.urlsplit(url)
    with open(out, "a", buffering=1) as f:
        while True:
            t0 = time.monotonic()
            code = 0
            try:
                c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
                c.request("GET", u.path)
                r = c.getresponse()
                r.read()
                code = r.status
                c.close()
            except OSError:
                pass
            lat = time.monotonic() - t0
            f.write("%.1f %d\n" % (lat * 1000, code))
            time.sleep(max(0.0, 0.05 - lat))


def stall(out):
    xs, failed, up = [], 0, False
    for line in open(out):
        f = line.split()
        if len(f) != 2:
            continue
        up = up or f[1] != "0"
        if up:
            xs.append(float(f[0]))
            failed += f[1] == "0"
    print("%.0f %d %d" % (max(xs) if xs else -1, failed, len(xs)))


def proxy(port, target):
    sel = selectors.DefaultSelector()
    state = {"lsock": None, "pairs": {}, "cut": False, "up": True}

    def listen():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(64)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, "listen")
        state["lsock"] = s

    def close_pair(a):
        b = state["pairs"].pop(a, None)
        for s in (a, b):
            if s is None:
                continue
            state["pairs"].pop(s, None)
            try:
                sel.unregister(s)
            except Exception:
                pass
            s.close()

    def cut(*_):
        state["up"] = False
        state["cut"] = True

    def restore(*_):
        state["up"] = True
        state["cut"] = True

    signal.signal(signal.SIGUSR1, cut)
    signal.signal(signal.SIGUSR2, restore)
    listen()
    print("proxy 127.0.0.1:%d -> %d ready" % (port, target), flush=True)
    while True:
        if state["cut"]:
            state["cut"] = False
            if not state["up"]:
                for a in list(state["pairs"].keys()):
                    close_pair(a)
                if state["lsock"]:
                    sel.unregister(state["lsock"])
                    state["lsock"].close()
                    state["lsock"] = None
                print("proxy cut", flush=True)
            elif state["lsock"] is None:
                listen()
                print("proxy restored", flush=True)
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            if key.data == "listen":
                try:
                    c, _ = s.accept()
                except OSError:
                    continue
                try:
                    u = socket.create_connection(("127.0.0.1", target), timeout=2)
                except OSError:
                    c.close()
                    continue
                c.setblocking(False)
                u.setblocking(False)
                state["pairs"][c] = u
                state["pairs"][u] = c
                sel.register(c, selectors.EVENT_READ, "conn")
                sel.register(u, selectors.EVENT_READ, "conn")
                continue
            if s not in state["pairs"]:
                continue
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                close_pair(s)
                continue
            try:
                state["pairs"][s].setblocking(True)
                state["pairs"][s].sendall(data)
                state["pairs"][s].setblocking(False)
            except OSError:
                close_pair(s)


def until_snap(path, line, timeout, cmd):
    import subprocess
    import time
    subprocess.run(cmd, check=True)
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            with open(path, errors="replace") as f:
                text = f.read()
        except OSError:
            text = ""
        block, done = [], []
        for ln in text.split("\n"):
            if ln.startswith("apply "):
                block = [ln]
            elif block:
                block.append(ln)
                if ln == "end":
                    done, block = block, []
        if line in done:
            print("%.2f" % (time.time() - t0))
            return 0
        time.sleep(0.01)
    print("timeout")
    return 1


def until_snap_at(path, line, timeout, cmd):
    import contextlib
    import io
    import time
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = until_snap(path, line, timeout, cmd)
    print("%.3f" % time.time() if rc == 0 else "timeout")
    return rc


def failover_times(fault, seen, key, agent_log, client_log, etcd_logs):
    """fault -> leader (etcd) -> put answered (backend agent) -> catalog (client) -> seen"""
    import calendar
    import re
    import time

    def regent_ts(line):  # "2026-11-30T18:11:54.493 debug: ..." (local time)
        m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3}) ", line)
        if not m:
            return None
        return time.mktime(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) + int(m.group(2)) / 1000

    leader = None
    for path in etcd_logs:
        with open(path, errors="replace") as f:
            for line in f:
                if "became leader at term" not in line:
                    continue
                try:
                    ts = json.loads(line)["ts"]
                except (ValueError, KeyError):
                    continue
                m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3})Z", ts)
                if not m:
                    continue
                t = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) + \
                    int(m.group(2)) / 1000
                if t > fault and (leader is None or t < leader):
                    leader = t
    put = sent = None
    with open(agent_log, errors="replace") as f:
        for line in f:
            m = re.search(r": put " + re.escape(key) + r" \(txn answered (\d+) ms after", line)
            if m:
                t = regent_ts(line)
                if t is not None and t > fault:
                    put, sent = t, t - int(m.group(1)) / 1000
                    break
    cat = None
    with open(client_log, errors="replace") as f:
        for line in f:
            if " core: catalog: " in line:
                t = regent_ts(line)
                if t is not None and t > fault:
                    cat = t
                    break
    if None in (leader, put, cat):
        print("missing: leader %s put %s catalog %s" % (leader, put, cat), file=sys.stderr)
        return 1
    print("%.3f %.3f %.3f %.3f %.3f" % (leader - fault, sent - leader, put - sent, cat - put,
                                        seen - cat))
    return 0


def main():
    cmd = sys.argv[1]
    if cmd == "last":
        last(sys.argv[2])
    elif cmd == "leases":
        leases()
    elif cmd == "revs":
        revs()
    elif cmd == "until-count":
        sys.exit(until_count(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]),
                             sys.argv[6:]))
    elif cmd == "until-snap":
        sys.exit(until_snap(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5:]))
    elif cmd == "until-snap-at":
        sys.exit(until_snap_at(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5:]))
    elif cmd == "failover-times":
        sys.exit(failover_times(float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5],
                                sys.argv[6], sys.argv[7:]))
    elif cmd == "big-put":
        sys.exit(big_put(*sys.argv[2:6]))
    elif cmd == "bulk-put":
        bulk_put(sys.argv[2], sys.argv[3], int(sys.argv[4]), *map(int, sys.argv[5:6]))
    elif cmd == "meta-put":
        meta_put(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif cmd == "seq":
        sys.exit(seq(sys.argv[2], sys.argv[3:]))
    elif cmd == "sample":
        sample(sys.argv[2], sys.argv[3])
    elif cmd == "stall":
        stall(sys.argv[2])
    elif cmd == "proxy":
        proxy(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
