#!/usr/bin/env python3
"""make_seeds.py - writes the seed corpora of tests/fuzz/corpus/<harness>
from the other tests' fixtures and a few hand-written inputs.  Run it from
anywhere; it only adds or overwrites seed-*, never the crash-* files that
findings left there.  See docs/fuzzing.md."""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def put(harness, name, data):
    d = os.path.join(HERE, "corpus", harness)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def read(*parts):
    with open(os.path.join(ROOT, *parts), "rb") as f:
        return f.read()


# config: the shipped and example configs, and the cases of tests/test_config.c
put("config", "packaging.ini", read("packaging", "regent.ini"))
put("config", "demo.ini", read("examples", "demo.ini"))
for i, text in enumerate([
    "[agent]\nnode = backend-1\nhost_ip = 127.0.0.2 ; c\ndebounce = 20ms\ndebounce_max = 2m\n"
    "stop_timeout = 90\nstate_dir = /tmp/x\nlog_level = debug\n[store etcd]\n[sink haproxy]\n"
    "[service whoami]\nport = 8000\n",
    "[agent]\nstop_timeout = 0x10\ndebounce = 1e3\ndebounce_max = 1.5s\n[store x]\n",
    "[store teststore]\n[service web]\nport = +80\n[service a]\nport = 8 0\n",
    "[storage etcd]\n[store a b c d]\n[sink ../x]\n[service x/../../y]\n[agent]\n[agent]\n",
    "key = outside\n[agent]\nnode = a\nnode = b\nbogus\n",
    "[agent]\nnode = a\x1b[2J\r\nhost_ip = 1.2.3.4 x\n[source docker]\n",
]):
    put("config", "case%d.ini" % i, text)

# docker: the recorded Engine API answers
fx = os.path.join(ROOT, "tests", "docker", "fixtures")
for n in sorted(os.listdir(fx)):
    put("docker", n, read("tests", "docker", "fixtures", n))

# etcd: KEY NUL VALUE, as the store reads them
inst = {"address": "10.0.0.5", "port": 32768, "proto": "tcp", "service_port": 80,
        "tags": ["v1", "blue"], "meta": {"team": "a", "version": "1.2"}, "node": "backend-1"}
put("etcd", "json", b"/backends/web/backend-1/abc/80\0" + json.dumps(inst).encode())
put("etcd", "udp", b"/backends/dns/n/x/53/udp\0" +
    json.dumps({"address": "::1", "port": 53, "proto": "udp"}).encode())
put("etcd", "plain", b"/backends/whoami/n1:whoami:8000\0" + b"10.170.71.10:32768")
put("etcd", "plain6", b"/backends/whoami/x\0[::1]:80")
put("etcd", "port", b"/backends/whoami/port\0" + b"8000\n")
put("etcd", "bad", b"/backends/web/id\0" + b"127.0.0.1:+80")
put("etcd", "value-only", json.dumps(inst).encode())
# a range answer page (the discovery's read; etcd_scan_range)
put("etcd", "range", b'{"header":{"cluster_id":"14841639068965178418","member_id":"1","revision":"80",'
    b'"raft_term":"2"},"kvs":[{"key":"L2ZsZWV0L2Evbi8x","create_revision":"5","mod_revision":"5",'
    b'"version":"1","value":"MTI3LjAuMC4xOjgw"},{"key":"L2ZsZWV0L2IvcG9ydA==","mod_revision":"6",'
    b'"lease":"7"}],"more":true,"count":"3"}')

# consul: /v1/health/service and /v1/catalog/services answers
health = [
    {"Node": {"Node": "n1", "Address": "10.0.0.1"},
     "Service": {"ID": "backend-1/abc/80", "Service": "web", "Tags": ["v1"],
                 "Address": "10.0.0.5", "Port": 32768,
                 "Meta": {"proto": "udp", "service_port": "80", "node": "backend-1",
                          "team": "a"}},
     "Checks": [{"Status": "passing"}]},
    {"Node": {"Node": "n2", "Address": "10.0.0.2"},
     "Service": {"ID": "web", "Service": "web", "Tags": [], "Address": "", "Port": 8080,
                 "Meta": None}, "Checks": []},
    {"Service": {"ID": "bad", "Service": "web", "Port": 1,
                 "Meta": {"service_port": " 27816", "node": "n"}}},
    17,
]
put("consul", "health.json", json.dumps(health))
put("consul", "services.json",
    json.dumps({"consul": [], "web": ["v1", "Blue"], "odd": None, "x": [1, "t"]}))
# /v1/health/state/any (node-level and service checks) and /v1/agent/services
state = [
    {"Node": "n1", "CheckID": "serfHealth", "Status": "passing", "ServiceName": "",
     "ModifyIndex": 12},
    {"Node": "n1", "CheckID": "service:backend-1/abc/80", "Status": "passing",
     "ServiceName": "web", "ServiceID": "backend-1/abc/80", "ModifyIndex": 40},
    {"Node": "n2", "CheckID": "c2", "Status": "critical", "ServiceName": "web",
     "ModifyIndex": 41},
    {"Node": "n2", "CheckID": "c3", "Status": "warning", "ServiceName": "db"},
]
put("consul", "state.json", json.dumps(state))
put("consul", "state-bare.json", json.dumps(state[:2] + [7, "x"]))
put("consul", "agent-services.json", json.dumps({
    "backend-1/abc/80": {"ID": "backend-1/abc/80", "Service": "web",
                         "Meta": {"node": "node-1", "proto": "tcp", "regent-id": "abc",
                                  "regent-hash": "f00"}},
    "old": {"ID": "old", "Service": "web", "Meta": {"node": "node-1", "proto": "tcp"}},
    "other": {"ID": "other", "Service": "db", "Meta": {"node": "node-2", "proto": "tcp"}},
    "x": 3}))
put("consul", "address", "http://user:pw@127.0.0.1:8500/prefix")
put("consul", "unix", "unix:///run/consul.sock")

# haproxy: NUL-separated fields (see fuzz_haproxy.c)
def hx(*fields):
    return b"\0".join(f.encode() if isinstance(f, str) else f for f in fields)


put("haproxy", "basic", hx("web", "127.0.0.1", "8000", "/health", "roundrobin",
                           "check, inter 2s, weight 10", "/var/lib/regent/web.state",
                           "10.0.0.1", "32768", "n1/abc/80",
                           "::1", "81", "n2/def/81",
                           "nonsense", "0", ""))
put("haproxy", "tcp", hx("db.v2", "*", "5432", "", "leastconn", "", "",
                         "192.168.1.9", "5432", "x"))
put("haproxy", "hostile", hx("web", "127.0.0.1", "8000", "/h", "first",
                             "weight \r0, maxconn 1\n0", "/x y",
                             "10.0.0.1", " 80", "id\nlisten evil",
                             "10.0.0.2", "+80", "ok/1"))
put("haproxy", "show-proc", "#<PID>          <type>          <reloads>       <uptime>        "
    "<version>\n1234            master          2 [failed: 1]   0d00h01m02s     2.6.12\n"
    "# workers\n1300            worker          0               0d00h00m10s     2.6.12\n")
print("seeds written under", os.path.join(HERE, "corpus"))
