#!/usr/bin/env python3
"""seed_register.py - a stand-in for the seed's docker-register: what its
docker-gen template writes, through etcd's v2 API, the way python-etcd /
etcdctl v2 did.  Every INTERVAL seconds (10 s in the seed) it lists the
running containers of one dockerd and, for each container's first exposed
TCP port, sets

    /backends/<repo>/<id12> = HOST_IP:<port>   (ttl 15 s)
    /backends/<repo>/port   = <port>           (ttl 15 s)

where <repo> is the image's repository name without registry or namespace
(jwilder/whoami:latest -> whoami).  Nothing is ever deleted: a stopped
container's key lives until its TTL runs out, as in the seed.
Loopback only."""
import argparse
import http.client
import json
import signal
import socket
import sys
import time
import urllib.parse
import urllib.request


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=5)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(self.path)


def docker_get(sock, path):
    c = UnixHTTPConnection(sock)
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError("docker %s: %d" % (path, r.status))
        return json.loads(body)
    finally:
        c.close()


def repo_of(image):
    name = image.split("@")[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":")[0]


def v2_set(etcd, key, value, ttl):
    data = urllib.parse.urlencode({"value": value, "ttl": str(ttl)}).encode()
    req = urllib.request.Request(etcd + "/v2/keys" + key, data=data, method="PUT")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=5) as r:
        r.read()


def one_pass(a):
    n = 0
    for c in docker_get(a.docker, "/v1.41/containers/json"):
        info = docker_get(a.docker, "/v1.41/containers/%s/json" % c["Id"])
        ports = sorted(int(p.split("/")[0]) for p in (info["Config"].get("ExposedPorts") or {})
                       if p.endswith("/tcp"))
        if not ports:
            continue
        repo = repo_of(c["Image"])
        v2_set(a.etcd, "%s/%s/%s" % (a.prefix, repo, c["Id"][:12]), "%s:%d" % (a.host_ip, ports[0]),
               a.ttl)
        v2_set(a.etcd, "%s/%s/port" % (a.prefix, repo), str(ports[0]), a.ttl)
        n += 1
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--docker", required=True, help="dockerd's unix socket")
    ap.add_argument("--etcd", required=True, help="http://127.0.0.1:PORT (v2 enabled)")
    ap.add_argument("--host-ip", required=True)
    ap.add_argument("--prefix", default="/backends")
    ap.add_argument("--interval", type=float, default=10.0)
    ap.add_argument("--ttl", type=int, default=15)
    a = ap.parse_args()
    host = urllib.parse.urlparse(a.etcd).hostname or ""
    if not host.startswith("127."):
        sys.exit("seed_register: refusing a non-loopback etcd: " + a.etcd)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        try:
            n = one_pass(a)
            print("seed_register: wrote %d container(s)" % n, flush=True)
        except Exception as e:  # the seed's script just ran again 10 s later
            print("seed_register: pass failed: %s" % e, flush=True)
        time.sleep(a.interval)


if __name__ == "__main__":
    main()
