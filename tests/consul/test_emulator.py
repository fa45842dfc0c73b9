#!/usr/bin/env python3
"""Tests of consul_emulator.py against Consul's documented behaviour.

Run from the repository root:  python3 -m unittest tests/consul/test_emulator.py -v
Every test starts its own emulator on 127.0.0.1, port 0, and kills it (by pid)
in tearDown.
"""

import http.client
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from urllib.parse import quote

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(HERE, "consul_emulator.py")

UNKNOWN_CHECK = ('Unknown check ID "%s". Ensure that the check ID is passed, '
                 'not the check name.')


class Emulator(object):
    def __init__(self, *args):
        self.errfile = tempfile.TemporaryFile()
        cmd = [sys.executable, EMULATOR, "--http-addr", "127.0.0.1", "--port", "0"]
        cmd += list(args)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.errfile,
                                     stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        if not ready:
            self.kill()
            raise RuntimeError("emulator did not start")
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("listening 127.0.0.1:"):
            self.kill()
            raise RuntimeError("unexpected first line %r: %s" % (line, self.stderr()))
        self.port = int(line.rsplit(":", 1)[1])

    def stderr(self):
        self.errfile.seek(0)
        return self.errfile.read().decode(errors="replace")

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)
        self.proc.stdout.close()
        self.errfile.close()

    def request(self, method, path, body=None, headers=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            conn.close()

    def get(self, path, headers=None, timeout=30):
        status, hdrs, data = self.request("GET", path, headers=headers, timeout=timeout)
        obj = json.loads(data) if status == 200 else data.decode()
        return status, hdrs, obj

    def put(self, path, body=None, headers=None):
        status, hdrs, data = self.request("PUT", path, body, headers)
        return status, data.decode()

    def register(self, definition, headers=None):
        status, text = self.put("/v1/agent/service/register", definition, headers)
        if status != 200:
            raise AssertionError("register failed: %d %s" % (status, text))

    def index(self, path, headers=None):
        status, hdrs, _ = self.get(path, headers)
        assert status == 200, status
        return int(hdrs["x-consul-index"])


class EmulatorTest(unittest.TestCase):
    emulator_args = ()

    def setUp(self):
        self.emu = Emulator(*self.emulator_args)

    def tearDown(self):
        self.emu.kill()

    def start_other(self, *args):
        other = Emulator(*args)
        self.addCleanup(other.kill)
        return other

    def health(self, name, query=""):
        status, hdrs, obj = self.emu.get("/v1/health/service/%s%s" % (name, query))
        self.assertEqual(status, 200)
        return int(hdrs["x-consul-index"]), obj

    def wait_for(self, pred, timeout, interval=0.05):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return True
            time.sleep(interval)
        return pred()


class RegistrationTest(EmulatorTest):
    def test_register_appears_in_catalog_and_health(self):
        e = self.emu
        e.register({"ID": "web1", "Name": "web", "Tags": ["b", "a"], "Address": "10.1.2.3",
                    "Port": 8080, "Meta": {"version": "1"},
                    "Check": {"TTL": "15s", "Status": "passing"}})
        status, hdrs, services = e.get("/v1/catalog/services")
        self.assertEqual(status, 200)
        self.assertEqual(services["consul"], [])
        self.assertEqual(sorted(services["web"]), ["a", "b"])
        for h in ("x-consul-index", "x-consul-knownleader", "x-consul-lastcontact"):
            self.assertIn(h, hdrs)
        self.assertEqual(hdrs["x-consul-knownleader"], "true")
        self.assertEqual(hdrs["x-consul-lastcontact"], "0")
        self.assertEqual(hdrs["content-type"], "application/json")

        _, entries = self.health("web")
        self.assertEqual(len(entries), 1)
        ent = entries[0]
        self.assertEqual(set(ent), {"Node", "Service", "Checks"})
        for k in ("ID", "Node", "Address", "Datacenter", "TaggedAddresses", "Meta",
                  "CreateIndex", "ModifyIndex"):
            self.assertIn(k, ent["Node"])
        self.assertEqual(ent["Node"]["Node"], "emulator")
        self.assertEqual(ent["Node"]["Datacenter"], "dc1")
        svc = ent["Service"]
        for k in ("ID", "Service", "Tags", "Address", "TaggedAddresses", "Meta", "Port",
                  "Weights", "EnableTagOverride", "CreateIndex", "ModifyIndex"):
            self.assertIn(k, svc)
        self.assertEqual((svc["ID"], svc["Service"], svc["Address"], svc["Port"]),
                         ("web1", "web", "10.1.2.3", 8080))
        self.assertEqual(svc["Tags"], ["b", "a"])
        self.assertEqual(svc["Meta"], {"version": "1"})
        self.assertEqual(svc["Weights"], {"Passing": 1, "Warning": 1})
        self.assertEqual(svc["TaggedAddresses"]["lan_ipv4"],
                         {"Address": "10.1.2.3", "Port": 8080})
        ids = [c["CheckID"] for c in ent["Checks"]]
        self.assertEqual(ids, ["serfHealth", "service:web1"])
        serf = ent["Checks"][0]
        self.assertEqual((serf["Name"], serf["Status"], serf["ServiceTags"]),
                         ("Serf Health Status", "passing", []))
        chk = ent["Checks"][1]
        for k in ("Node", "CheckID", "Name", "Status", "Notes", "Output", "ServiceID",
                  "ServiceName", "ServiceTags", "Type", "CreateIndex", "ModifyIndex"):
            self.assertIn(k, chk)
        self.assertEqual((chk["Name"], chk["ServiceID"], chk["ServiceName"], chk["Type"]),
                         ("Service 'web' check", "web1", "web", "ttl"))

        status, _, nodes = e.get("/v1/catalog/service/web")
        self.assertEqual(status, 200)
        self.assertEqual([(n["ServiceID"], n["ServicePort"], n["ServiceTags"]) for n in nodes],
                         [("web1", 8080, ["b", "a"])])
        status, _, agent = e.get("/v1/agent/services")
        self.assertEqual(agent["web1"]["Service"], "web")
        status, _, leader = e.get("/v1/status/leader")
        self.assertEqual(leader, "127.0.0.1:8300")

    def test_id_defaults_to_name_and_tags_never_null(self):
        e = self.emu
        e.register({"Name": "db", "Check": {"TTL": "10s"}})
        _, entries = self.health("db")
        self.assertEqual(entries[0]["Service"]["ID"], "db")
        self.assertEqual(entries[0]["Service"]["Tags"], [])
        self.assertEqual(entries[0]["Checks"][1]["CheckID"], "service:db")
        self.assertEqual(entries[0]["Checks"][1]["ServiceTags"], [])
        _, _, nodes = e.get("/v1/catalog/service/db")
        self.assertEqual(nodes[0]["ServiceTags"], [])
        _, _, none = e.get("/v1/health/service/nosuch")
        self.assertEqual(none, [])

    def test_check_starts_critical_unless_status_given(self):
        e = self.emu
        e.register({"Name": "a", "Check": {"TTL": "30s"}})
        e.register({"Name": "b", "Check": {"TTL": "30s", "Status": "passing"}})
        e.register({"Name": "c", "Checks": [{"TTL": "30s"},
                                             {"TTL": "30s", "Status": "warning"}]})
        _, _, checks = e.get("/v1/agent/checks")
        self.assertEqual(checks["service:a"]["Status"], "critical")
        self.assertEqual(checks["service:b"]["Status"], "passing")
        self.assertEqual(checks["service:c:1"]["Status"], "critical")
        self.assertEqual(checks["service:c:2"]["Status"], "warning")
        self.assertEqual(checks["service:c:2"]["Name"], "Service 'c' check")
        _, entries = self.health("a")
        self.assertEqual(entries[0]["Checks"][1]["Status"], "critical")

    def test_explicit_check_id_and_name(self):
        e = self.emu
        e.register({"ID": "x1", "Name": "x", "Check": {"CheckID": "mine", "Name": "my check",
                                                     "TTL": "30s", "Notes": "n"}})
        _, _, checks = e.get("/v1/agent/checks")
        self.assertEqual(set(checks), {"mine"})
        self.assertEqual((checks["mine"]["Name"], checks["mine"]["Notes"]), ("my check", "n"))
        self.assertEqual(e.put("/v1/agent/check/pass/mine")[0], 200)

    def test_validation_errors(self):
        e = self.emu
        cases = [
            ({"ID": "x"}, "Missing service name"),
            ({"Name": "x", "Check": {"TTL": "abc"}},
             'Request decode failed: time: invalid duration "abc"'),
            ({"Name": "x", "Port": "80"}, "Request decode failed: json: cannot unmarshal "
                                          "string into Go struct field ServiceDefinition.Port "
                                          "of type int"),
            ({"Name": "x", "Checks": [{}]}, "Invalid check: TTL must be > 0 for TTL checks"),
            ({"Name": "x", "Check": {"TTL": "5s", "Status": "ok"}},
             "Status for checks must 'passing', 'warning', 'critical'"),
            ({"Name": "x", "Address": "0.0.0.0"}, "Invalid service address"),
            ({"Name": "x", "Meta": {"bad key": "v"}},
             "Invalid Service Meta: Couldn't load metadata pair ('bad key', 'v'): "
             "Key contains invalid characters"),
        ]
        for body, text in cases:
            status, got = e.put("/v1/agent/service/register", body)
            self.assertEqual((status, got), (400, text), body)
        self.assertEqual(e.put("/v1/agent/service/register", "")[1],
                         "Request decode failed: EOF")
        _, _, services = e.get("/v1/catalog/services")
        self.assertEqual(set(services), {"consul"})
        # wrong method
        status, _, _ = e.request("GET", "/v1/agent/service/register")
        self.assertEqual(status, 405)

    def test_reregister_replaces_and_keeps_check_status(self):
        e = self.emu
        d = {"ID": "w1", "Name": "web", "Tags": ["a"], "Port": 1,
             "Check": {"TTL": "30s"}}
        e.register(d)
        self.assertEqual(e.put("/v1/agent/check/pass/service:w1")[0], 200)
        i1, entries = self.health("web")
        self.assertEqual(entries[0]["Checks"][1]["Status"], "passing")
        e.register(d)  # identical: nothing changes, the index does not move
        i2, entries = self.health("web")
        self.assertEqual(i2, i1)
        self.assertEqual(entries[0]["Checks"][1]["Status"], "passing")
        d2 = dict(d, Tags=["b"], Port=2)
        e.register(d2)
        i3, entries = self.health("web")
        self.assertGreater(i3, i2)
        self.assertEqual(entries[0]["Service"]["Tags"], ["b"])
        self.assertEqual(entries[0]["Service"]["Port"], 2)
        self.assertEqual(entries[0]["Checks"][1]["Status"], "passing")
        self.assertEqual(entries[0]["Checks"][1]["ServiceTags"], ["b"])
        _, _, services = e.get("/v1/catalog/services")
        self.assertEqual(services["web"], ["b"])

    def test_service_id_with_slashes(self):
        e = self.emu
        sid = "node-1/0123456789ab/8080"
        e.register({"ID": sid, "Name": "web", "Check": {"TTL": "30s"}})
        self.assertEqual(e.put("/v1/agent/check/pass/service:" + sid)[0], 200)
        self.assertEqual(e.put("/v1/agent/check/pass/" + quote("service:" + sid, safe=""))[0],
                         200)
        self.assertEqual(e.put("/v1/agent/service/deregister/" + sid)[0], 200)
        _, entries = self.health("web")
        self.assertEqual(entries, [])


class DeregisterTest(EmulatorTest):
    def test_deregister_removes_service_and_checks(self):
        e = self.emu
        e.register({"ID": "w1", "Name": "web", "Checks": [{"TTL": "30s"}, {"TTL": "30s"}]})
        e.register({"ID": "w2", "Name": "web", "Check": {"TTL": "30s"}})
        self.assertEqual(e.put("/v1/agent/service/deregister/w1"), (200, ""))
        _, _, agent = e.get("/v1/agent/services")
        self.assertEqual(set(agent), {"w2"})
        _, _, checks = e.get("/v1/agent/checks")
        self.assertEqual(set(checks), {"service:w2"})
        _, entries = self.health("web")
        self.assertEqual([x["Service"]["ID"] for x in entries], ["w2"])
        self.assertEqual(e.put("/v1/agent/service/deregister/w2"), (200, ""))
        _, _, services = e.get("/v1/catalog/services")
        self.assertNotIn("web", services)
        self.assertEqual(self.health("web")[1], [])
        _, _, checks = e.get("/v1/agent/checks")
        self.assertEqual(checks, {})
        # a check of a deregistered service is gone
        self.assertEqual(e.put("/v1/agent/check/pass/service:w2"),
                         (404, UNKNOWN_CHECK % "service:w2"))
        # current Consul answers 404 for an unknown service ID
        self.assertEqual(e.put("/v1/agent/service/deregister/w2"),
                         (404, 'Unknown service ID "w2". Ensure that the service ID is '
                               'passed, not the service name.'))

    def test_pass_unknown_check_is_404_with_consul_text(self):
        e = self.emu
        for verb in ("pass", "warn", "fail"):
            self.assertEqual(e.put("/v1/agent/check/%s/nope?note=x" % verb),
                             (404, UNKNOWN_CHECK % "nope"))
        self.assertEqual(e.put("/v1/agent/check/update/nope",
                               {"Status": "passing", "Output": "x"}),
                         (404, UNKNOWN_CHECK % "nope"))
        self.assertEqual(e.put("/v1/agent/check/update/nope", {"Status": "bogus"}),
                         (400, "Invalid check status: 'bogus'"))


class HealthFilterTest(EmulatorTest):
    def test_passing_filters_critical_and_warning(self):
        e = self.emu
        for sid in ("p", "w", "c"):
            e.register({"ID": sid, "Name": "web", "Tags": ["t-" + sid],
                        "Check": {"TTL": "30s"}})
        e.put("/v1/agent/check/pass/service:p")
        e.put("/v1/agent/check/warn/service:w?note=slow")
        e.put("/v1/agent/check/fail/service:c")
        _, all_ = self.health("web")
        self.assertEqual(sorted(x["Service"]["ID"] for x in all_), ["c", "p", "w"])
        _, passing = self.health("web", "?passing")
        self.assertEqual([x["Service"]["ID"] for x in passing], ["p"])
        _, passing = self.health("web", "?passing=true")
        self.assertEqual([x["Service"]["ID"] for x in passing], ["p"])
        _, notfiltered = self.health("web", "?passing=false")
        self.assertEqual(len(notfiltered), 3)
        _, tagged = self.health("web", "?tag=t-w")
        self.assertEqual([x["Service"]["ID"] for x in tagged], ["w"])
        self.assertEqual(tagged[0]["Checks"][1]["Output"], "slow")
        _, tagged = self.health("web", "?tag=t-w&passing")
        self.assertEqual(tagged, [])
        _, dc = self.health("web", "?dc=dc1&passing")
        self.assertEqual(len(dc), 1)
        self.assertEqual(e.get("/v1/health/service/web?passing=maybe")[0], 400)
        status, _, text = e.get("/v1/health/service/web?dc=elsewhere")
        self.assertEqual((status, text), (500, "No path to datacenter"))


class TTLTest(EmulatorTest):
    def test_ttl_expiry_turns_critical(self):
        e = self.emu
        e.register({"Name": "ttl", "Check": {"TTL": "700ms", "Status": "passing"}})
        e.register({"Name": "ttl2", "Check": {"TTL": "700ms"}})
        e.put("/v1/agent/check/pass/service:ttl2?note=all%20good")
        idx, entries = self.health("ttl")
        self.assertEqual(entries[0]["Checks"][1]["Status"], "passing")
        t0 = time.monotonic()
        # a blocking query wakes on the expiry
        status, hdrs, entries = e.get("/v1/health/service/ttl?index=%d&wait=5s" % idx)
        self.assertLess(time.monotonic() - t0, 2.0)
        self.assertGreater(int(hdrs["x-consul-index"]), idx)
        chk = entries[0]["Checks"][1]
        self.assertEqual((chk["Status"], chk["Output"]), ("critical", "TTL expired"))
        self.assertEqual(self.health("ttl", "?passing")[1], [])
        self.assertTrue(self.wait_for(
            lambda: e.get("/v1/agent/checks")[2]["service:ttl2"]["Status"] == "critical", 2))
        self.assertEqual(e.get("/v1/agent/checks")[2]["service:ttl2"]["Output"],
                         "TTL expired (last output before timeout follows): all good")

    def test_pass_restarts_ttl_clock(self):
        e = self.emu
        e.register({"Name": "hb", "Check": {"TTL": "600ms"}})
        for _ in range(5):  # 1.5 s of heartbeats at 300 ms keep it passing
            self.assertEqual(e.put("/v1/agent/check/pass/service:hb")[0], 200)
            time.sleep(0.3)
            self.assertEqual(e.get("/v1/agent/checks")[2]["service:hb"]["Status"], "passing")


class ReapTest(EmulatorTest):
    emulator_args = ("--reap-interval", "0.2", "--min-deregister", "1")

    def test_reaped_after_deregister_critical_service_after(self):
        e = self.emu
        # 10ms is below the minimum, so it is raised to --min-deregister (1 s)
        e.register({"ID": "r1", "Name": "reap", "Check": {
            "TTL": "400ms", "Status": "passing", "DeregisterCriticalServiceAfter": "10ms"}})
        e.register({"ID": "k1", "Name": "keep", "Check": {"TTL": "30s"}})
        t0 = time.monotonic()
        self.assertTrue(self.wait_for(
            lambda: e.get("/v1/agent/checks")[2]["service:r1"]["Status"] == "critical", 2))
        time.sleep(max(0.0, t0 + 1.1 - time.monotonic()))
        # critical since ~0.4 s, so not reaped before ~1.4 s
        self.assertIn("r1", e.get("/v1/agent/services")[2])
        self.assertTrue(self.wait_for(lambda: "r1" not in e.get("/v1/agent/services")[2], 3))
        elapsed = time.monotonic() - t0
        self.assertGreater(elapsed, 1.3)
        self.assertEqual(self.health("reap")[1], [])
        self.assertNotIn("reap", e.get("/v1/catalog/services")[2])
        self.assertNotIn("service:r1", e.get("/v1/agent/checks")[2])
        # a critical check that never expired (no critical time yet) is not reaped
        self.assertIn("k1", e.get("/v1/agent/services")[2])
        self.assertIn("deregistered service r1", e.stderr())


class BlockingQueryTest(EmulatorTest):
    def blocking_get(self, path):
        result = {}

        def run():
            result["resp"] = self.emu.get(path)
            result["t"] = time.monotonic()

        th = threading.Thread(target=run, daemon=True)
        th.start()
        return th, result

    def test_wakes_within_100ms_of_relevant_change(self):
        e = self.emu
        e.register({"ID": "w1", "Name": "web", "Check": {"TTL": "30s"}})
        idx, _ = self.health("web")
        th, res = self.blocking_get("/v1/health/service/web?index=%d&wait=5s" % idx)
        time.sleep(0.3)
        self.assertTrue(th.is_alive())
        t_change = time.monotonic()
        self.assertEqual(e.put("/v1/agent/check/pass/service:w1")[0], 200)
        th.join(5)
        self.assertFalse(th.is_alive())
        status, hdrs, entries = res["resp"]
        self.assertLess(res["t"] - t_change, 0.1)
        self.assertGreater(int(hdrs["x-consul-index"]), idx)
        self.assertEqual(entries[0]["Checks"][1]["Status"], "passing")

        # catalog/services wakes on a registration
        cidx = e.index("/v1/catalog/services")
        th, res = self.blocking_get("/v1/catalog/services?index=%d&wait=5s" % cidx)
        time.sleep(0.2)
        t_change = time.monotonic()
        e.register({"Name": "new", "Check": {"TTL": "30s"}})
        th.join(5)
        self.assertLess(res["t"] - t_change, 0.1)
        self.assertIn("new", res["resp"][2])
        self.assertGreater(int(res["resp"][1]["x-consul-index"]), cidx)

    def test_times_out_with_same_index(self):
        e = self.emu
        e.register({"ID": "w1", "Name": "web", "Check": {"TTL": "30s"}})
        for path in ("/v1/health/service/web", "/v1/catalog/services",
                     "/v1/catalog/service/web"):
            status, hdrs, before = e.get(path)
            idx = int(hdrs["x-consul-index"])
            t0 = time.monotonic()
            status, hdrs, after = e.get("%s?index=%d&wait=1s" % (path, idx))
            elapsed = time.monotonic() - t0
            self.assertEqual(status, 200)
            self.assertGreaterEqual(elapsed, 0.95, path)
            self.assertLess(elapsed, 1.0 + 1.0 / 16 + 0.5, path)
            self.assertEqual(int(hdrs["x-consul-index"]), idx)
            self.assertEqual(after, before)

    def test_irrelevant_change_does_not_wake(self):
        e = self.emu
        e.register({"ID": "w1", "Name": "web", "Check": {"TTL": "30s"}})
        e.register({"ID": "a1", "Name": "api", "Check": {"TTL": "30s"}})
        idx, _ = self.health("api")
        cidx = e.index("/v1/catalog/services")
        th, res = self.blocking_get("/v1/health/service/api?index=%d&wait=1s" % idx)
        th2, res2 = self.blocking_get("/v1/catalog/services?index=%d&wait=1s" % cidx)
        t0 = time.monotonic()
        time.sleep(0.1)
        e.put("/v1/agent/check/pass/service:w1")       # web's check changes status
        e.register({"ID": "w2", "Name": "web", "Tags": ["x"]})  # another web instance
        e.put("/v1/agent/service/deregister/w2")
        th.join(5)
        th2.join(5)
        self.assertGreaterEqual(res["t"] - t0, 0.95)
        self.assertEqual(int(res["resp"][1]["x-consul-index"]), idx)
        # catalog/services did wake (registration), health for api did not
        self.assertLess(res2["t"] - t0, 0.5)
        self.assertGreater(int(res2["resp"][1]["x-consul-index"]), cidx)

    def test_check_status_change_does_not_move_catalog_services_index(self):
        e = self.emu
        e.register({"ID": "w1", "Name": "web", "Check": {"TTL": "30s"}})
        cidx = e.index("/v1/catalog/services")
        hidx = e.index("/v1/health/service/web")
        e.put("/v1/agent/check/pass/service:w1")
        self.assertEqual(e.index("/v1/catalog/services"), cidx)
        self.assertGreater(e.index("/v1/health/service/web"), hidx)

    def test_bad_index_or_wait_is_400(self):
        e = self.emu
        for q, text in (("index=abc", "Invalid index"), ("index=-1", "Invalid index"),
                        ("index=1&wait=abc", "Invalid wait time"),
                        ("index=1&wait=5", "Invalid wait time")):
            for path in ("/v1/catalog/services", "/v1/health/service/web"):
                status, _, body = e.get("%s?%s" % (path, q))
                self.assertEqual((status, body), (400, text), (path, q))
        # accepted wait formats
        idx = e.index("/v1/catalog/services")
        for w in ("100ms", "1.5s", "0.2s"):
            status, _, _ = e.get("/v1/catalog/services?index=%d&wait=%s" % (idx, w))
            self.assertEqual(status, 200)
        status, hdrs, _ = e.get("/v1/catalog/services?index=%d&wait=1m" % (idx - 1))
        self.assertEqual(int(hdrs["x-consul-index"]), idx)  # already newer: no wait


class IndexTest(EmulatorTest):
    def test_index_is_monotonic(self):
        e = self.emu
        seen = [e.index("/v1/catalog/services")]
        ops = [
            lambda: e.register({"ID": "w1", "Name": "web", "Check": {"TTL": "30s"}}),
            lambda: e.put("/v1/agent/check/pass/service:w1"),
            lambda: e.register({"ID": "w2", "Name": "web", "Tags": ["x"]}),
            lambda: e.put("/v1/agent/check/warn/service:w1"),
            lambda: e.put("/v1/agent/service/deregister/w2"),
            lambda: e.put("/v1/agent/service/deregister/w1"),
            lambda: e.register({"ID": "w3", "Name": "web"}),
        ]
        hseen = [e.index("/v1/health/service/web")]
        for op in ops:
            op()
            seen.append(e.index("/v1/catalog/services"))
            hseen.append(e.index("/v1/health/service/web"))
        self.assertEqual(seen, sorted(seen))
        # every one of these operations touched "web"
        for a, b in zip(hseen, hseen[1:]):
            self.assertGreater(b, a)
        self.assertGreaterEqual(min(seen + hseen), 1)

    def test_output_only_change_does_not_bump_index(self):
        e = self.emu
        e.register({"ID": "w1", "Name": "web", "Check": {"TTL": "30s"}})
        e.put("/v1/agent/check/pass/service:w1?note=one")
        idx, entries = self.health("web")
        self.assertEqual(entries[0]["Checks"][1]["Output"], "one")
        e.put("/v1/agent/check/pass/service:w1?note=two")
        idx2, entries = self.health("web")
        self.assertEqual(idx2, idx)
        # the catalog keeps the old output (synced lazily), the agent has the new one
        self.assertEqual(entries[0]["Checks"][1]["Output"], "one")
        self.assertEqual(e.get("/v1/agent/checks")[2]["service:w1"]["Output"], "two")
        e.put("/v1/agent/check/warn/service:w1?note=three")
        idx3, entries = self.health("web")
        self.assertGreater(idx3, idx2)
        self.assertEqual(entries[0]["Checks"][1]["Output"], "three")


class ImmediateOutputSyncTest(EmulatorTest):
    emulator_args = ("--check-update-interval", "0")

    def test_output_change_synced_at_once_when_interval_is_zero(self):
        e = self.emu
        e.register({"ID": "w1", "Name": "web", "Check": {"TTL": "30s"}})
        e.put("/v1/agent/check/pass/service:w1?note=one")
        idx, _ = self.health("web")
        e.put("/v1/agent/check/pass/service:w1?note=two")
        idx2, entries = self.health("web")
        self.assertGreater(idx2, idx)
        self.assertEqual(entries[0]["Checks"][1]["Output"], "two")


class ACLTest(EmulatorTest):
    emulator_args = ("--acl-token", "s3cr3t")

    def test_acl_tokens(self):
        e = self.emu
        good = {"X-Consul-Token": "s3cr3t"}
        bad = {"X-Consul-Token": "wrong"}
        bearer = {"Authorization": "Bearer s3cr3t"}
        body = {"ID": "w1", "Name": "web", "Check": {"TTL": "30s"}}
        # missing token: the anonymous token, which may not write
        status, text = e.put("/v1/agent/service/register", body)
        self.assertEqual(status, 403)
        self.assertTrue(text.startswith("Permission denied"), text)
        # wrong token
        self.assertEqual(e.put("/v1/agent/service/register", body, bad), (403, "ACL not found"))
        # right token, both header forms and ?token=
        self.assertEqual(e.put("/v1/agent/service/register", body, good), (200, ""))
        self.assertEqual(e.put("/v1/agent/check/pass/service:w1", None, bearer), (200, ""))
        self.assertEqual(e.put("/v1/agent/check/pass/service:w1?token=s3cr3t"), (200, ""))
        self.assertEqual(e.put("/v1/agent/check/pass/service:w1")[0], 403)
        self.assertEqual(e.put("/v1/agent/check/pass/service:w1", None, bad),
                         (403, "ACL not found"))
        for path in ("/v1/catalog/services", "/v1/health/service/web",
                     "/v1/catalog/service/web", "/v1/agent/services", "/v1/agent/checks",
                     "/v1/agent/self"):
            self.assertEqual(e.get(path, bad)[:3:2], (403, "ACL not found"), path)
            self.assertEqual(e.get(path, good)[0], 200, path)
            self.assertEqual(e.get(path, {"Authorization": "Bearer s3cr3t"})[0], 200, path)
        self.assertIn("web", e.get("/v1/catalog/services", good)[2])
        self.assertEqual(len(e.get("/v1/health/service/web", bearer)[2]), 1)
        # anonymous reads are filtered, not refused (default policy deny);
        # a request without a token is not told (maskResultsFilteredByACLs),
        # one that names the anonymous token is
        anon = {"X-Consul-Token": "anonymous"}
        for path, empty in (("/v1/catalog/services", {}), ("/v1/health/service/web", []),
                            ("/v1/health/state/any", []), ("/v1/agent/services", {})):
            status, hdrs, obj = e.get(path)
            self.assertEqual((status, obj), (200, empty), path)
            self.assertIsNone(hdrs.get("x-consul-results-filtered-by-acls"), path)
            status, hdrs, obj = e.get(path, anon)
            self.assertEqual((status, obj), (200, empty), path)
            self.assertEqual(hdrs.get("x-consul-results-filtered-by-acls"), "true", path)
        self.assertEqual(e.get("/v1/agent/self")[0], 403)
        self.assertEqual(e.get("/v1/status/leader")[0], 200)
        self.assertEqual(e.put("/v1/agent/service/deregister/w1")[0], 403)
        self.assertEqual(e.put("/v1/agent/service/deregister/w1", None, good), (200, ""))


class ACLAnonymousReadTest(EmulatorTest):
    emulator_args = ("--acl-token", "s3cr3t", "--anonymous-read", "consul")

    def test_anonymous_reads_only_what_its_policy_allows(self):
        e = self.emu
        good = {"X-Consul-Token": "s3cr3t"}
        e.put("/v1/agent/service/register", {"ID": "w1", "Name": "web"}, good)
        status, hdrs, obj = e.get("/v1/catalog/services")
        self.assertEqual((status, obj), (200, {"consul": []}))
        self.assertIsNone(hdrs.get("x-consul-results-filtered-by-acls"))
        anon = {"X-Consul-Token": "anonymous"}
        status, hdrs, obj = e.get("/v1/catalog/services", anon)
        self.assertEqual((status, obj), (200, {"consul": []}))
        self.assertEqual(hdrs.get("x-consul-results-filtered-by-acls"), "true")
        status, hdrs, obj = e.get("/v1/health/service/web", anon)
        self.assertEqual((status, obj), (200, []))
        self.assertEqual(hdrs.get("x-consul-results-filtered-by-acls"), "true")
        self.assertEqual(set(e.get("/v1/catalog/services", good)[2]), {"consul", "web"})
        self.assertIsNone(e.get("/v1/catalog/services", good)[1].get(
            "x-consul-results-filtered-by-acls"))


class HealthStateTest(EmulatorTest):
    def test_state_any_lists_every_check_and_wakes_on_status(self):
        e = self.emu
        e.register({"ID": "s1", "Name": "web", "Check": {"TTL": "30s", "Status": "passing"}})
        idx, obj = None, None
        status, hdrs, obj = e.get("/v1/health/state/any")
        self.assertEqual(status, 200)
        idx = int(hdrs["x-consul-index"])
        self.assertEqual(sorted(c["CheckID"] for c in obj), ["serfHealth", "service:s1"])
        self.assertEqual([c["CheckID"] for c in e.get("/v1/health/state/critical")[2]], [])
        self.assertEqual(e.get("/v1/health/state/bogus")[0], 400)
        got = {}

        def run():
            got["r"] = e.get("/v1/health/state/any?index=%d&wait=10s" % idx)

        th = threading.Thread(target=run, daemon=True)
        th.start()
        time.sleep(0.2)
        e.put("/v1/agent/check/fail/service:s1")
        th.join(5)
        self.assertFalse(th.is_alive())
        self.assertGreater(int(got["r"][1]["x-consul-index"]), idx)
        self.assertEqual([c["CheckID"] for c in e.get("/v1/health/state/critical")[2]],
                         ["service:s1"])


class ConnLimitTest(EmulatorTest):
    emulator_args = ("--http-max-conns-per-client", "4")

    def test_default_limit_is_200(self):
        other = self.start_other()
        time.sleep(0.1)
        self.assertIn("200 connections per client", other.stderr())

    def test_over_the_limit_429_and_closed(self):
        import socket
        e = self.emu
        held = []
        for _ in range(4):
            # idle keep-alive connections count as much as blocking queries
            s = socket.create_connection(("127.0.0.1", e.port), timeout=5)
            s.sendall(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 200 "))
            held.append(s)
        s = socket.create_connection(("127.0.0.1", e.port), timeout=5)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 429 "), data)
        # closing one held connection frees a slot
        held.pop().close()
        self.assertTrue(self.wait_for(lambda: e.get("/v1/status/leader")[0] == 200, 3))
        for h in held:
            h.close()


class OldAgentTest(EmulatorTest):
    emulator_args = ("--old-agent", "--acl-token", "s3cr3t")

    def test_unknown_check_is_500_unknown_check(self):
        good = {"X-Consul-Token": "s3cr3t"}
        self.assertEqual(self.emu.put("/v1/agent/check/pass/service:gone", None, good),
                         (500, 'Unknown check "service:gone"'))
        other = self.start_other("--old-agent")
        self.assertEqual(other.put("/v1/agent/check/pass/service:gone"),
                         (500, 'CheckID "service:gone" does not have associated TTL'))
        # 1.12+ (the default): 404
        now = self.start_other()
        self.assertEqual(now.put("/v1/agent/check/pass/service:gone"),
                         (404, UNKNOWN_CHECK % "service:gone"))


class AgentRateTest(EmulatorTest):
    """--agent-rate N: the agent's writes answered at most N a second, in
    arrival order; reads are not slowed; TTL misses are logged."""
    emulator_args = ("--agent-rate", "20", "--reap-mode", "fast")

    def test_writes_paced_reads_not(self):
        e = self.emu
        t0 = time.monotonic()
        for _ in range(6):
            self.assertEqual(e.put("/v1/agent/check/pass/service:gone")[0], 404)
        self.assertGreaterEqual(time.monotonic() - t0, 0.24)  # 5 gaps of 50 ms
        t0 = time.monotonic()
        for _ in range(6):
            self.assertEqual(e.get("/v1/agent/services")[0], 200)
        self.assertLess(time.monotonic() - t0, 0.24)

    def test_ttl_miss_logged(self):
        e = self.emu
        reg = {"ID": "a", "Name": "web", "Port": 80,
               "Check": {"CheckID": "service:a", "TTL": "1s"}}
        self.assertEqual(e.put("/v1/agent/service/register", reg)[0], 200)
        self.assertTrue(self.wait_for(lambda: "check service:a missed its TTL" in e.stderr(), 5))


class RealReapFloorsTest(EmulatorTest):
    """Default (and --reap-mode real): Consul's fixed floors, 1m and 30s."""

    def test_floors_by_default(self):
        e = self.emu
        self.assertIn("reaper every 30s, DeregisterCriticalServiceAfter floor 1m0s",
                      e.stderr())
        e.register({"ID": "r1", "Name": "reap", "Check": {
            "TTL": "200ms", "Status": "passing", "DeregisterCriticalServiceAfter": "1s"}})
        self.assertIn("deregister interval below minimum of 1m0s", e.stderr())
        self.assertTrue(self.wait_for(
            lambda: e.get("/v1/agent/checks")[2]["service:r1"]["Status"] == "critical", 2))
        time.sleep(1.5)
        # critical for > 1 s, still held: floored at 1 m
        self.assertIn("r1", e.get("/v1/agent/services")[2])

    def test_modes(self):
        fast = self.start_other("--reap-mode", "fast")
        self.assertIn("reaper every 300ms, DeregisterCriticalServiceAfter floor 1s",
                      fast.stderr())
        real = self.start_other("--reap-mode", "real", "--reap-interval", "1")
        self.assertIn("reaper every 30s, DeregisterCriticalServiceAfter floor 1m0s",
                      real.stderr())


class LifecycleTest(EmulatorTest):
    def test_sigterm_exits_promptly_with_blocked_query(self):
        e = self.emu
        idx = e.index("/v1/catalog/services")
        th = threading.Thread(target=lambda: e.request(
            "GET", "/v1/catalog/services?index=%d&wait=5m" % idx, timeout=10), daemon=True)
        th.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        os.kill(e.pid, signal.SIGTERM)
        rc = e.proc.wait(5)
        self.assertEqual(rc, 0)
        self.assertLess(time.monotonic() - t0, 2.0)
        th.join(5)

    def test_restart_forgets_by_default_and_state_file_persists(self):
        e = self.emu
        e.register({"ID": "w1", "Name": "web", "Check": {"TTL": "30s"}})
        os.kill(e.pid, signal.SIGTERM)
        self.assertEqual(e.proc.wait(5), 0)
        fresh = self.start_other()
        self.assertEqual(set(fresh.get("/v1/catalog/services")[2]), {"consul"})
        self.assertEqual(fresh.get("/v1/agent/services")[2], {})

        tmp = tempfile.mkdtemp()
        state = os.path.join(tmp, "state.json")
        a = self.start_other("--state-file", state)
        a.register({"ID": "w1", "Name": "web", "Check": {"TTL": "30s"}})
        a.put("/v1/agent/check/pass/service:w1")
        idx = a.index("/v1/health/service/web")
        os.kill(a.pid, signal.SIGTERM)
        self.assertEqual(a.proc.wait(5), 0)
        b = self.start_other("--state-file", state)
        _, _, entries = b.get("/v1/health/service/web")
        self.assertEqual([x["Service"]["ID"] for x in entries], ["w1"])
        self.assertEqual(entries[0]["Checks"][1]["Status"], "passing")
        self.assertGreater(b.index("/v1/health/service/web"), idx)
        self.stop_then_remove(b, tmp)

    def test_state_file_check_whose_ttl_ran_out_comes_back_critical(self):
        # Consul's agent restores a persisted check critical, whatever the Status it was
        # registered with, unless its TTL state has not expired (agent.go loadChecks,
        # loadCheckState).
        tmp = tempfile.mkdtemp()
        state = os.path.join(tmp, "state.json")
        a = self.start_other("--state-file", state)
        a.register({"ID": "w1", "Name": "web", "Check": {"TTL": "1s", "Status": "passing"}})
        a.register({"ID": "w2", "Name": "web", "Check": {"TTL": "30s", "Status": "passing"}})
        a.put("/v1/agent/check/pass/service:w2?note=up")
        time.sleep(0.3)  # the state file is written within 50 ms of a change
        os.kill(a.pid, signal.SIGKILL)
        a.proc.wait(5)
        time.sleep(1.2)
        b = self.start_other("--state-file", state)
        checks = b.get("/v1/agent/checks")[2]
        self.assertEqual(checks["service:w1"]["Status"], "critical")
        self.assertEqual((checks["service:w2"]["Status"], checks["service:w2"]["Output"]),
                         ("passing", "up"))
        self.stop_then_remove(b, tmp)

    def stop_then_remove(self, emu, tmp):
        # The emulator writes its state file (state.json.tmp, then renamed) within 50 ms of
        # a change, restoring included: stop it before its directory goes.
        os.kill(emu.pid, signal.SIGTERM)
        self.assertEqual(emu.proc.wait(5), 0)
        shutil.rmtree(tmp)


if __name__ == "__main__":
    unittest.main()
