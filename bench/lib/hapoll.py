#!/usr/bin/env python3
"""hapoll.py - watch a haproxy worker's runtime state through its admin socket.

  hapoll.py SOCKET OUT.jsonl [--interval-ms 2] [--stop-file F] [--max-seconds S] [--backend B]

Every interval it sends `show info;show servers state [B]` (one connection, the way any CLI
client does) and writes one JSON line per poll whose result differs from the previous one:

  {"t": RECV_NS, "s": SEND_NS, "pid": WORKER_PID, "up": [KEY...], "down": [KEY...],
   "set": [KEY...], "unset": [KEY...]}

KEY is "backend addr:port".  A server counts as "up" when its admin state has neither a
maintenance nor a drain flag, its operational state is running (2) and its weight is above 0:
haproxy routes to it.  (The weight matters: a joiner of a checked service leaves maintenance
at weight 0 and is up for an instant before `health down` lands, and a poll can fall between
the two commands of the agent's line.)
It counts as "set" when it has the runtime state the agent gives a joining server: the
address, no maintenance or drain flag, a weight above 0, whatever its operational state (a
joiner of a checked service is down until its first check passes, which haproxy schedules).
`t` is the wall-clock time the answer was complete (an upper bound of when haproxy's state was
read), `s` when the request was sent.  A poll that fails (the socket is being re-bound by a
reload) is recorded as {"t":..., "err": "..."} once per failure streak.  At the end a line
{"rtt": [ns...]} holds every poll's round trip, so the poller's own resolution is known.
"""
import argparse
import json
import os
import socket
import sys
import time

# haproxy 2.6 srv_admin: FMAINT 0x01, IMAINT 0x02, RMAINT 0x20 (SRV_ADMF_MAINT = 0x23) and
# FDRAIN 0x08, IDRAIN 0x10 (SRV_ADMF_DRAIN = 0x18).  CMAINT (0x04) only says the server was
# `disabled` in the configuration: a slot enabled at runtime keeps it while it serves.
MAINT_OR_DRAIN = 0x23 | 0x18


def query(path, cmd, timeout=1.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(cmd)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            b = s.recv(262144)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks).decode("utf-8", "replace")
    finally:
        s.close()


def parse(out):
    """-> (pid, {key: up_bool}, {key: set_bool})"""
    pid = 0
    servers = {}
    sets = {}
    state_part = False
    for line in out.split("\n"):
        if line.startswith("Pid: "):
            try:
                pid = int(line[5:])
            except ValueError:
                pass
            continue
        if line == "1":
            state_part = True
            continue
        if not state_part or not line or line.startswith("#"):
            continue
        f = line.split(" ")
        # be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ... srv_port(18)
        if len(f) < 19:
            continue
        try:
            op = int(f[5])
            admin = int(f[6])
            uweight = int(f[7])
        except ValueError:
            continue
        key = "%s %s:%s" % (f[1], f[4], f[18])
        ready = (admin & MAINT_OR_DRAIN) == 0
        up = op == 2 and ready and uweight > 0
        # Several slots may carry the same addr:port (a disabled slot keeps 0.0.0.0:0): up wins.
        servers[key] = servers.get(key, False) or up
        sets[key] = sets.get(key, False) or (ready and uweight > 0)
    return pid, servers, sets


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("socket")
    ap.add_argument("out")
    ap.add_argument("--interval-ms", type=float, default=2.0)
    ap.add_argument("--stop-file")
    ap.add_argument("--max-seconds", type=float, default=900)
    ap.add_argument("--backend", default="")
    a = ap.parse_args()
    cmd = ("show info;show servers state %s\n" % a.backend).encode()
    interval = a.interval_ms / 1000.0
    end = time.monotonic() + a.max_seconds
    prev_pid, prev, prev_set = None, {}, {}
    rtts = []
    failing = False
    with open(a.out, "w", buffering=1) as out:
        next_t = time.monotonic()
        while time.monotonic() < end:
            if a.stop_file and os.path.exists(a.stop_file):
                break
            s_ns = time.time_ns()
            try:
                txt = query(a.socket, cmd)
            except OSError as e:
                if not failing:
                    out.write(json.dumps({"t": time.time_ns(), "err": str(e)}) + "\n")
                failing = True
                time.sleep(interval)
                continue
            t_ns = time.time_ns()
            failing = False
            pid, cur, cur_set = parse(txt)
            if pid == 0 or "# be_id" not in txt:
                time.sleep(interval)
                continue
            rtts.append(t_ns - s_ns)
            up = sorted(k for k, v in cur.items() if v and not prev.get(k, False))
            down = sorted(k for k, v in prev.items() if v and not cur.get(k, False))
            st = sorted(k for k, v in cur_set.items() if v and not prev_set.get(k, False))
            unset = sorted(k for k, v in prev_set.items() if v and not cur_set.get(k, False))
            if up or down or st or unset or pid != prev_pid:
                out.write(json.dumps({"t": t_ns, "s": s_ns, "pid": pid, "up": up, "down": down,
                                      "set": st, "unset": unset}) + "\n")
            prev_pid, prev, prev_set = pid, cur, cur_set
            next_t += interval
            d = next_t - time.monotonic()
            if d > 0:
                time.sleep(d)
            else:
                next_t = time.monotonic()
        out.write(json.dumps({"rtt": rtts}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
