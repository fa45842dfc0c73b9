#!/usr/bin/env python3
"""seed_discover.py - a stand-in for the seed's docker-discover on one
client host: every INTERVAL seconds (5 s in the seed) it lists /backends
recursively through etcd's v2 API, renders one haproxy `listen` per service
(bound on BIND:<the service's /port key>) with a server per instance key,
and reloads haproxy when the text changed.  haproxy runs as this script's
child in master-worker mode (reloaded through its master CLI), so the test
owns every pid it starts.

On SIGTERM it hands the port over the way an operator replacing it would:
the haproxy listeners are paused (SIGTTOU: the kernel then sends new
connections to the other SO_REUSEPORT listener, regent's haproxy), then
haproxy soft-stops (SIGUSR1: connections in flight finish), and the script
exits when haproxy has.  Loopback only."""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

TEMPLATE_HEAD = """global
    maxconn 4096
    master-worker
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch
"""


def v2_list(etcd, prefix):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    url = etcd + "/v2/keys" + prefix + "?recursive=true"
    try:
        with opener.open(url, timeout=5) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return {"node": {"nodes": []}}
        raise


def render(tree, bind):
    services = {}
    for svc in tree.get("node", {}).get("nodes", []) or []:
        if not svc.get("dir"):
            continue
        name = svc["key"].rsplit("/", 1)[-1]
        port, servers = None, []
        for n in svc.get("nodes", []) or []:
            leaf = n["key"].rsplit("/", 1)[-1]
            if leaf == "port":
                port = n.get("value")
            elif n.get("value"):
                servers.append((leaf, n["value"]))
        if port and port.isdigit():
            services[name] = (port, sorted(servers))
    out = [TEMPLATE_HEAD]
    for name in sorted(services):
        port, servers = services[name]
        out.append("listen %s\n    bind %s:%s\n    balance roundrobin\n" % (name, bind, port))
        for sid, addr in servers:
            out.append("    server %s %s check inter 2s rise 3 fall 2\n" % (sid, addr))
    return "".join(out), len(services)


def master_cmd(sock, cmd):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(sock)
    s.sendall((cmd + "\n").encode())
    s.shutdown(socket.SHUT_WR)
    data = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        data += b
    s.close()
    return data.decode(errors="replace")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--etcd", required=True)
    ap.add_argument("--prefix", default="/backends")
    ap.add_argument("--bind", required=True, help="address the listeners bind (loopback)")
    ap.add_argument("--dir", required=True, help="where haproxy.cfg and the master socket go")
    ap.add_argument("--haproxy", default="haproxy")
    ap.add_argument("--interval", type=float, default=5.0)
    a = ap.parse_args()
    if not a.bind.startswith("127.") or not urllib.parse.urlparse(a.etcd).hostname.startswith("127."):
        sys.exit("seed_discover: loopback only")
    cfg = os.path.join(a.dir, "haproxy.cfg")
    sock = os.path.join(a.dir, "master.sock")
    proc = None
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    last = None
    while not stopping:
        try:
            text, n = render(v2_list(a.etcd, a.prefix), a.bind)
        except Exception as e:
            print("seed_discover: listing failed: %s" % e, flush=True)
            text, n = None, 0
        if text is not None and n > 0 and text != last:
            with open(cfg + ".new", "w") as f:
                f.write(text)
            os.rename(cfg + ".new", cfg)
            if proc is None:
                proc = subprocess.Popen([a.haproxy, "-W", "-S", sock, "-f", cfg, "-db"])
                print("seed_discover: haproxy started, pid %d (%d services)" % (proc.pid, n),
                      flush=True)
            else:
                master_cmd(sock, "reload")
                print("seed_discover: haproxy reloaded (%d services)" % n, flush=True)
            last = text
        end = time.time() + a.interval
        while time.time() < end and not stopping:
            time.sleep(0.05)
    if proc is not None:
        proc.send_signal(signal.SIGTTOU)  # pause the listeners
        time.sleep(1.0)
        proc.send_signal(signal.SIGUSR1)  # soft stop
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        print("seed_discover: haproxy stopped (exit %s)" % proc.returncode, flush=True)


if __name__ == "__main__":
    main()
